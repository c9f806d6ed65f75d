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


# The public API has docstrings ----------------------------------------------------------
import importlib  # noqa: E402
import inspect  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

import fastrnn  # noqa: E402

# Public submodules whose API is not all re-exported by fastrnn.__all__.
SUBMODULES = ("fastrnn.layers", "fastrnn.cells", "fastrnn.engine", "fastrnn.grad_mode", "fastrnn.saving",
              "fastrnn.utils.rnn", "fastrnn.masks", "fastrnn.esn", "fastrnn.onnx")


def _module_api(module):
    """A module's public names: its __all__, else what it defines without a leading _."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(module).items() if not n.startswith("_")
                 and getattr(obj, "__module__", None) == module.__name__]
    return [(f"{module.__name__}.{n}", getattr(module, n)) for n in names]


def _class_api(qualname, cls):
    """Public methods and properties a fastrnn class defines or inherits from fastrnn."""
    out = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if owner.__module__.startswith("fastrnn") and (callable(attr) or isinstance(attr, property)
                                                       or isinstance(attr, (staticmethod, classmethod))):
            out.append((f"{qualname}.{name}", attr))
    return out


def public_api():
    seen, items = set(), []
    todo = [(f"fastrnn.{n}", getattr(fastrnn, n)) for n in fastrnn.__all__ if n != "__version__"]
    todo += [(name, importlib.import_module(name)) for name in SUBMODULES]
    while todo:
        name, obj = todo.pop(0)
        if inspect.ismodule(obj) or inspect.isclass(obj):
            if id(obj) in seen:     # a module or class re-exported under several names
                continue
            seen.add(id(obj))
        items.append((name, obj))
        if inspect.ismodule(obj):
            todo += _module_api(obj)
        elif inspect.isclass(obj) and obj.__module__.startswith("fastrnn"):
            todo += _class_api(name, obj)
    return items


def _doc(obj):
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return (obj.__doc__ or "").strip()


def test_public_api_is_found():
    names = {name for name, _ in public_api()}
    # The walk reaches functions, classes, methods and properties of the submodules.
    assert {"fastrnn.LSTM", "fastrnn.LSTM.backward", "fastrnn.functional.gru_forward",
            "fastrnn.optim.Adam.step", "fastrnn.distributed.DataParallel",
            "fastrnn.onnx.export", "fastrnn.InferenceEngine.step", "fastrnn.utils.rnn.pack_sequence"} <= names


def test_every_public_name_has_a_docstring():
    missing = [name for name, obj in public_api() if not _doc(obj)]
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


@pytest.mark.docs
def test_mkdocs_build_strict(tmp_path):
    """The site builds offline with no warning (broken links, docstrings mkdocstrings cannot
    render, a nav entry without its page)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    mkdocs = shutil.which("mkdocs") or pytest.skip("no mkdocs command")
    run = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_versions_agree():
    """pyproject.toml, fastrnn.__version__ and CHANGELOG.md's newest release name one version."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d[^\]]*)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)
    assert "## [Unreleased]" in changelog
    assert fastrnn.__version__ == declared == releases[0], (fastrnn.__version__, declared, releases)
