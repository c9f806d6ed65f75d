"""Every code block of README.md works as written, as a new user would run it.

Python blocks run in a fresh interpreter each and must print what shows they worked;
blocks that import torch or keras are marked and skipped without them. Shell blocks
(installs, the benchmark, the tests: minutes each) are checked for what can go stale:
the files they run and the extras they install exist.
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastrnn

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(lang):
    return [m.group(2) for m in BLOCK.finditer(README) if m.group(1) == lang]


def _param(code):
    needs = [m for m in ("torch", "keras") if re.search(rf"^import {m}\b", code, re.M)]
    first = next(line for line in code.splitlines() if line and not line.startswith(("import", "from", "#")))
    return pytest.param(code, needs, marks=[getattr(pytest.mark, m) for m in needs] + [pytest.mark.docs],
                        id=first[:40])


def run(code):
    env = dict(os.environ, PYTHONPATH=str(Path(fastrnn.__file__).resolve().parents[1]))
    env.pop("KERAS_BACKEND", None)       # the Keras block must set its backend itself
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_has_the_front_door_blocks():
    head = "\n".join(README.splitlines()[:40])
    assert "pip install ." in head and "import fastrnn" in head
    assert len(README.splitlines()) <= 150
    assert len(blocks("python")) >= 3 and len(blocks("bash")) >= 2


@pytest.mark.parametrize("code,needs", [_param(c) for c in blocks("python")])
def test_python_block_runs_and_shows_it_worked(code, needs):
    for module in needs:   # find_spec: importing keras here would need KERAS_BACKEND set
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    out = run(code)
    assert out.strip(), "the block prints nothing, so a reader cannot tell that it worked"
    losses = [float(v) for v in re.findall(r"loss ([0-9.eE+-]+)", out)]
    if losses:
        # Training shows learning: the loss falls by two orders of magnitude (0.08 -> ~1e-4
        # for the running-mean LSTM; the same seed on every machine).
        assert len(losses) >= 3 and losses[-1] < losses[0] / 100, out
    for diff in re.findall(r"max \|[^|]+\| = ([0-9.eE+-]+)", out):
        # float32 agreement with PyTorch / Keras on a 2-layer, 10-step problem: round-off,
        # ~1e-7 here; 1e-5 leaves room for other BLAS builds (docs/numerics.md).
        assert float(diff) < 1e-5, out
    assert losses or "max |" in out or "fastrnn" in out.lower(), out


def test_shell_blocks_name_files_and_extras_that_exist():
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^(\w+) = \[", section, re.M))
    text = "\n".join(blocks("bash")) + README
    for extra in re.findall(r'pip install "\.\[(\w+)\]"', text):
        assert extra in extras, f"README installs .[{extra}], which pyproject.toml lacks"
    for path in re.findall(r"python ((?:benchmarks|examples|tools)/\S+\.py)", text):
        assert (ROOT / path).exists(), path
    for option in re.findall(r"benchmarks/run.py (--\w+)", text):
        assert option in (ROOT / "benchmarks" / "run.py").read_text(), option
