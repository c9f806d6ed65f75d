"""MkDocs hook (mkdocs.yml `hooks:`): links from docs/ to repository files outside it.

The pages are read on GitHub as much as on the site, so they link source files as
`[examples/char_lm.py](../examples/char_lm.py)`. MkDocs only knows docs/, and in strict
mode such a link is an error; here it becomes plain text on the site, after checking that
the file exists in the repository (a missing one is a warning, so strict mode still fails).
"""
import logging
import posixpath
import re
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.fastrnn")
LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown, page, config, files):
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    page_dir = posixpath.dirname(page.file.src_uri)

    def outside(m):
        text, target = m.group(1), m.group(2)
        path = (docs / page_dir / target).resolve()
        if docs in path.parents:
            return m.group(0)                  # inside docs/: MkDocs checks it
        rel = path.relative_to(root).as_posix() if root in path.parents else target
        if not path.exists():
            log.warning("%s links %s, which is not in the repository", page.file.src_uri, rel)
        return text if path.name in text else f"{text} (`{rel}`)"

    return LINK.sub(outside, markdown)
