"""Each example in examples/ runs in its --quick mode and learns to a stated level.

The example runs in a subprocess with the fastrnn this test process imported (and
OMP_NUM_THREADS=1 unless set); the metric is parsed from the last line of its output
(DESIGN §8). Thresholds (quick mode):

    binary_addition     held-out accuracy = 100%
    forecast_gru        test MAE < 0.5 x naive last-value MAE, and < seasonal-naive MAE
    bilstm_classifier   test accuracy >= 95%            (chance: 25%)
    seq2seq_attention   exact-match accuracy >= 90%     (chance: ~0%)
    char_lm             validation bits/char < 3.2 and at least 1.5 below the unigram
                        baseline (about 4.8)

Each takes 1-6 s with the C++ kernels (about 20 s for the file), so none is marked slow.
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import fastrnn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def run_example(name, tmp_path, *args, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg")
    # One kernel thread unless the caller chose: these are small problems (no gain from a
    # second thread), and on a busy machine spinning OpenMP threads make them many times
    # slower. This tests learning, not threading.
    env.setdefault("OMP_NUM_THREADS", "1")
    root = str(Path(fastrnn.__file__).resolve().parent.parent)   # the fastrnn under test
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout.strip().splitlines()[-1]


def number(pattern, line):
    m = re.fullmatch(pattern, line)
    assert m, f"last line {line!r} does not match {pattern!r}"
    return [float(g) for g in m.groups()]


def plot_args(tmp_path):
    return ["--plot", str(tmp_path / "fig.png")] if HAS_MPL else []


def check_plot(tmp_path):
    if HAS_MPL:
        assert (tmp_path / "fig.png").stat().st_size > 1000


def test_binary_addition(tmp_path):
    line = run_example("binary_addition", tmp_path)
    [acc] = number(r"held-out accuracy: ([\d.]+)%", line)
    assert acc == 100.0, line


def test_forecast_gru(tmp_path):
    line = run_example("forecast_gru", tmp_path, *plot_args(tmp_path))
    mae, naive, seasonal = number(
        r"test MAE: ([\d.]+) \(naive last-value ([\d.]+), seasonal naive ([\d.]+)\)", line)
    assert mae < 0.5 * naive and mae < seasonal, line
    check_plot(tmp_path)


def test_bilstm_classifier(tmp_path):
    line = run_example("bilstm_classifier", tmp_path)
    [acc] = number(r"test accuracy: ([\d.]+)%", line)
    assert acc >= 95.0, line


def test_seq2seq_attention(tmp_path):
    line = run_example("seq2seq_attention", tmp_path, *plot_args(tmp_path))
    [acc] = number(r"exact-match accuracy: ([\d.]+)%", line)
    assert acc >= 90.0, line
    check_plot(tmp_path)


def test_char_lm(tmp_path):
    line = run_example("char_lm", tmp_path)
    bpc, unigram = number(
        r"validation bits per character: ([\d.]+) \(unigram baseline ([\d.]+)\)", line)
    assert bpc < 3.2 and bpc < unigram - 1.5, line
