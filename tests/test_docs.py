"""The docs hold together: every "DESIGN §N" citation names a section of docs/design.md."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("*.md", "*.py", "*.hpp", "*.cpp", "*.txt", "*.toml", "*.sh")
SKIP = {"build", ".git", "dist", "site", "wheelhouse", "__pycache__"}
# "DESIGN §3", "DESIGN §2–§3", "DESIGN §2-3", "DESIGN §2, §3"
CITATION = re.compile(r"DESIGN §(\d+)((?:\s*[–,-]\s*§?\d+)*)")


def tree_files():
    for pattern in SOURCES:
        for path in ROOT.rglob(pattern):
            if not SKIP.intersection(path.relative_to(ROOT).parts):
                yield path


def citations():
    found = []
    for path in tree_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in CITATION.finditer(line):
                numbers = [m.group(1)] + re.findall(r"\d+", m.group(2))
                found += [(f"{path.relative_to(ROOT)}:{lineno}", int(n)) for n in numbers]
    return found


def design_sections():
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    return {int(n) for n in re.findall(r"^## (\d+)\. ", text, flags=re.M)}


def test_the_tree_cites_design_sections():
    # Guards the scan itself: if the pattern or the file walk broke, the check below
    # would pass vacuously.
    assert len(citations()) >= 20


def test_every_design_citation_names_a_section():
    sections = design_sections()
    missing = [f"{where} cites DESIGN §{n}" for where, n in citations() if n not in sections]
    assert not missing, "no '## N.' heading in docs/design.md for:\n" + "\n".join(missing)


def test_design_sections_are_numbered_in_order():
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. ", text, flags=re.M)]
    assert numbers == list(range(1, len(numbers) + 1))
