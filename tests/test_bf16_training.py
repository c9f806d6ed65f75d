"""bf16 mixed-precision training (docs/precision.md, "Training"; issue #23).

precision="bfloat16" runs every product of forward and backward with bf16 operands and
fp32 sums; gate math, states, caches and gradients stay fp32. Checked here: every
gradient within the issue's 3e-2 relative (Frobenius) of the fp32 gradient on the
DESIGN §5 grid shapes (full size: one layer-direction's step takes well under a second),
on every bf16 kernel path this CPU runs; the hardware path against the emulated one;
bit-identical results for every thread count; the weight-gradient GEMM and its bias sums
against the NumPy model; the layer API and the training toolkit.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrnn

F = pytest.importorskip("fastrnn.functional")
from fastrnn._isa import core  # noqa: E402  (the kernel module: its private path= argument)
from fastrnn import _lowp_reference as ref  # noqa: E402

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# DESIGN §5 grid (T, B, I, H).
GRID = {"latency_b1": (100, 1, 128, 128), "mid_b32": (100, 32, 256, 256),
        "big_b64": (50, 64, 512, 512), "long_t1000": (1000, 16, 128, 128),
        "small_h64": (200, 64, 32, 64)}
# The bound on ||g_bf16 - g_fp32||_F / ||g_fp32||_F for every gradient.
BOUND = 3e-2
CELLS = {"lstm": ("lstm", {}), "lstm-peephole": ("lstm", {"peephole": True}),
         "gru": ("gru", {"reset_after": True}), "gru-reset-before": ("gru", {"reset_after": False}),
         "rnn-tanh": ("rnn", {"relu": False})}
PATHS = fastrnn.config()["bf16_paths_available"]
EMULATED = [p for p in ("avx2", "scalar") if p in PATHS]


def problem(cell, shape, seed=0):
    """One layer-direction with PyTorch's init (U(±1/sqrt(H)), as fastrnn's layers), x and
    d_out ~ N(0, 1)."""
    kind, opts = CELLS[cell]
    T, B, I, H = shape
    G, k = GATES[kind], 1 / np.sqrt(H)
    rng = np.random.default_rng(seed)
    u = lambda *s: rng.uniform(-k, k, s).astype(np.float32)  # noqa: E731
    p = dict(x=rng.standard_normal((T, B, I)).astype(np.float32), w_ih=u(G * H, I), w_hh=u(G * H, H),
             b_ih=u(G * H), b_hh=u(G * H), h0=u(B, H))
    if kind == "lstm":
        p["c0"] = u(B, H)
        p["peephole"] = u(3, H) if opts.get("peephole") else None
    d = dict(d_out=rng.standard_normal((T, B, H)).astype(np.float32), d_h_n=u(B, H))
    if kind == "lstm":
        d["d_c_n"] = u(B, H)
    return kind, opts, p, d


def run(cell, shape, precision, path=None, seed=0, lengths=None):
    """Forward (training) and backward on the kernel module -> {name: array}."""
    kind, opts, p, d = problem(cell, shape, seed)
    kw = dict(precision=precision, path=path)
    common = (p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"])
    if kind == "lstm":
        r = core.lstm_forward(*common, p["c0"], p["peephole"], lengths, False, True, **kw)
        g = core.lstm_backward(r.cache, d["d_out"], d["d_h_n"], d["d_c_n"], **kw)
    elif kind == "gru":
        r = core.gru_forward(*common, lengths, False, True, opts["reset_after"], **kw)
        g = core.gru_backward(r.cache, d["d_out"], d["d_h_n"], **kw)
    else:
        r = core.rnn_forward(*common, lengths, False, True, opts["relu"], **kw)
        g = core.rnn_backward(r.cache, d["d_out"], d["d_h_n"], **kw)
    out = {"out": r.out, "h_n": r.h_n}
    for name in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "dpeephole"):
        if getattr(g, name) is not None:
            out[name] = getattr(g, name)
    return out


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def check_gradients(cell, shape, path):
    ref, got = run(cell, shape, "float32"), run(cell, shape, "bfloat16", path)
    for name, g in got.items():
        assert g.dtype == np.float32 and g.shape == ref[name].shape
        if name.startswith("d"):
            assert rel(g, ref[name]) <= BOUND, f"{name}: {rel(g, ref[name]):.3g}"
    return got


@pytest.mark.parametrize("shape", list(GRID))
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradients_on_grid_shapes(cell, shape):
    """The issue's bound on every grid shape, on the path this process uses (the hardware
    one where the CPU has it)."""
    check_gradients(cell, GRID[shape], None)


@pytest.mark.parametrize("path", EMULATED)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_gradients_on_the_emulated_paths(cell, path):
    """The AVX2 (and scalar) path, which every x86 machine runs, against fp32: mid_b32's
    (I, H) at a small B and T (the scalar path is slow)."""
    check_gradients(cell, (12, 8, 256, 256), path)


@pytest.mark.skipif(not EMULATED or "avx512_bf16" not in PATHS, reason="needs avx512_bf16 and a fallback")
@pytest.mark.parametrize("cell", list(CELLS))
def test_hardware_path_against_the_emulated_one(cell):
    """avx512_bf16 and avx2 multiply the same bf16 operands exactly and sum them in fp32,
    in the order vdpbf16ps documents and the fallback follows; a CPU whose instruction
    sums differently (or flushes denormals, as vdpbf16ps does) could drift by bf16
    round-off: a state that differs in its last fp32 bit may round to a neighbouring bf16
    value (2^-8 relative) at the next step. Bound: a tenth of the issue's 3e-2. On this
    project's Zen 4 the two paths agree bit for bit."""
    shape = (24, 16, 128, 96)
    hw, em = run(cell, shape, "bfloat16", "avx512_bf16"), run(cell, shape, "bfloat16", "avx2")
    for name in hw:
        assert rel(hw[name], em[name]) <= 3e-3, name


@pytest.mark.skipif(EMULATED != ["avx2", "scalar"], reason="needs the avx2 and scalar paths")
@pytest.mark.parametrize("cell", ["lstm", "gru-reset-before"])
def test_avx2_equals_scalar_bit_for_bit(cell):
    """The two fallbacks sum the same exact products in the same fp32 order
    (csrc/precision/avx2.cpp), so whole training steps agree bit for bit."""
    shape = (6, 5, 40, 36)
    a, s = run(cell, shape, "bfloat16", "avx2"), run(cell, shape, "bfloat16", "scalar")
    for name in a:
        assert np.array_equal(a[name], s[name]), name


# (k, m, n) of the weight-gradient GEMM aᵀ·b, a (k, m): full 16 × 16 blocks of its transposing
# pass with a tail of columns (m = 84) and of pairs of k (k = 1001: 500 pairs, 4 past the
# blocks, and an odd last row), blocks only, and k too short for any block.
TN_SHAPES = [(1001, 84, 37), (64, 32, 40), (7, 3, 2)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", TN_SHAPES)
def test_weight_gradient_gemm_and_bias_sums(path, shape):
    """bf16 training's dW GEMM (lowp::gemm_tn) against the NumPy model of bf16 operands with
    fp32 sums (_lowp_reference.bf16_gemm): exactly on the fallbacks, which sum in the model's
    order; avx512_bf16 within the bound of test_lowp's hardware test (the same products
    summed in another order: at most 2·k·2⁻²⁴ of Σ|terms| apart). A misplaced or unrounded
    operand would miss by far more. The bias sums from the same pass are Σ_k in k order:
    exactly NumPy's fp32 cumsum (sequential) at its last row."""
    k, m, n = shape
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((k, m)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    c, colsum = core.lowp_gemm_tn(a, b, path=path)
    model = ref.bf16_gemm(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T))
    if path == "avx512_bf16":
        terms = np.abs(ref.to_bf16(a.T)).astype(np.float64) @ np.abs(ref.to_bf16(b.T)).astype(np.float64).T
        assert np.all(np.abs(c.astype(np.float64) - model) <= 2.1 * k * 2.0**-24 * terms)
    else:
        np.testing.assert_array_equal(c, model)
    np.testing.assert_array_equal(colsum, np.cumsum(a, axis=0, dtype=np.float32)[-1])


def test_weight_gradient_gemm_bad_inputs():
    a = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="same number of rows"):
        core.lowp_gemm_tn(a, np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="b must be float32"):
        core.lowp_gemm_tn(a, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="path"):
        core.lowp_gemm_tn(a, a, path="avx512_vnni")


@pytest.fixture
def restore_threads():
    old = F.get_num_threads()
    yield
    F.set_num_threads(old)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("shape", [(10, 48, 24, 40), (8, 4, 16, 136), (9, 23, 20, 70)],
                         ids=["rows", "units", "odd-rows"])
def test_bit_identical_for_every_thread_count(restore_threads, cell, shape, path):
    """As tests/test_determinism.py for fp32: B = 48 splits rows, B = 4 splits units,
    B = 23 leaves thread shares of rows that are not multiples of the bf16 kernel's 8;
    with lengths. Tolerance: none."""
    lengths = np.random.default_rng(1).integers(0, shape[0] + 1, shape[1])
    base = None
    for n in (1, 2, 3):
        F.set_num_threads(n)
        got = run(cell, shape, "bfloat16", path, lengths=lengths)
        if base is None:
            base = got
            continue
        for name in base:
            assert np.array_equal(got[name], base[name]), f"{n} threads, {name}"


@pytest.mark.parametrize("cls, kw", [(fastrnn.LSTM, {}), (fastrnn.GRU, {}), (fastrnn.SimpleRNN, {}),
                                     (fastrnn.LSTM, dict(proj_size=8)),
                                     (fastrnn.GRU, dict(layer_norm=True))])
def test_layer_precision(cls, kw):
    """A stacked bidirectional layer with lengths: bf16 near fp32 (outputs within bf16's
    end-to-end 1e-2 of docs/precision.md, gradients within the issue's 3e-2), the attribute
    switches it, repr names it, and the backward runs in the forward's precision."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 6, 12)).astype(np.float32)
    lengths = np.array([9, 9, 7, 5, 3, 1])
    layers = [cls(12, 24, num_layers=2, bidirectional=True, seed=3, precision=p, **kw)
              for p in ("float32", "bfloat16")]
    assert layers[1].precision == "bfloat16" and "precision='bfloat16'" in repr(layers[1])
    assert "precision" not in repr(layers[0])
    res = []
    for layer in layers:
        y, _ = layer(x, lengths=lengths)
        layer.backward(np.cos(y))
        res.append((y, layer.grads))
    (y32, g32), (y16, g16) = res
    # layer_norm rescales each product to unit variance, so the product's relative bf16
    # error (~2^-8) becomes an absolute one at O(1) scale: measured 3.2e-2 here (1.8e-2 at
    # H = 128); its gradients keep the bound (1.1e-2)
    assert 0 < np.abs(y16 - y32).max() <= (5e-2 if kw.get("layer_norm") else 1e-2)
    for name in g32:
        assert rel(g16[name], g32[name]) <= BOUND, name
    # the attribute: switched to float32 after the forward, the backward still runs in bf16
    layer = cls(12, 24, seed=3, precision="bfloat16", **kw)
    y, _ = layer(x)
    layer.precision = "float32"
    layer.backward(np.cos(y))
    again = cls(12, 24, seed=3, precision="bfloat16", **kw)
    y2, _ = again(x)
    again.backward(np.cos(y2))
    for name in layer.grads:
        assert np.array_equal(layer.grads[name], again.grads[name]), name


def test_functional_public_api():
    """The checked functional calls take precision= and give what the kernel module gives."""
    kind, _, p, d = problem("lstm", (7, 5, 16, 24))
    out, h, c, cache = F.lstm_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"],
                                      p["c0"], precision="bfloat16")
    g = F.lstm_backward(cache, d["d_out"], d["d_h_n"], d["d_c_n"], precision="bfloat16")
    ref = run("lstm", (7, 5, 16, 24), "bfloat16")
    assert np.array_equal(out, ref["out"]) and np.array_equal(g.dw_hh, ref["dw_hh"])
    assert not np.array_equal(g.dw_hh, run("lstm", (7, 5, 16, 24), "float32")["dw_hh"])


def test_training_toolkit_unchanged():
    """Adam and gradient clipping on a bf16 layer: parameters and gradients stay float32
    and the loss of a small regression falls as in fp32 (final losses within 10 %)."""
    from fastrnn import optim
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 16, 4)).astype(np.float32)
    target = np.cumsum(x[..., :1], axis=0).astype(np.float32) * 0.1
    finals = {}
    for precision in ("float32", "bfloat16"):
        layer = fastrnn.GRU(4, 16, seed=1, precision=precision)
        opt = optim.Adam(layer, lr=1e-2)
        losses = []
        for _ in range(60):
            layer.zero_grad()
            y, _ = layer(x)
            err = y[..., :1] - target
            losses.append(float((err ** 2).mean()))
            d = np.zeros_like(y)
            d[..., :1] = 2 * err / err.size
            layer.backward(d)
            optim.clip_grad_norm(layer, 1.0)
            opt.step()
        assert all(v.dtype == np.float32 for v in layer.params.values())
        assert losses[-1] < 0.5 * losses[0]
        finals[precision] = losses[-1]
    assert abs(finals["bfloat16"] - finals["float32"]) <= 0.1 * finals["float32"]


@pytest.mark.torch
def test_benchmark_training_mode(tmp_path):
    """run.py --precision float32,bfloat16 --modes training: fastrnn bf16 and torch autocast
    rows, every gradient error within the issue's bound (both are bf16 GEMMs over fp32
    master weights, so both should be)."""
    pytest.importorskip("torch")
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "training.json"
    env = dict(os.environ, PYTHONPATH=str(Path(fastrnn.__file__).resolve().parents[1]))
    run = subprocess.run([sys.executable, str(root / "benchmarks" / "run.py"), "--precision",
                          "float32,bfloat16", "--modes", "training", "--shapes", "none", "--shape",
                          "tiny=6,3,16,40", "--cells", "lstm,gru", "--threads", "1", "--json", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    doc = json.loads(out.read_text())
    assert doc["precision"] == [] and {r["cell"] for r in doc["training"]} == {"lstm", "gru"}
    for r in doc["training"]:
        assert set(r["ms"]) == {"fastrnn float32", "fastrnn bfloat16", "torch fp32", "torch autocast"}
        assert r["errors"]["fastrnn float32"] == 0
        assert 0 < r["errors"]["fastrnn bfloat16"] <= BOUND and r["errors"]["torch autocast"] <= BOUND
        # torch fp32 sums in another order: fp32 round-off only
        assert r["errors"]["torch fp32"] <= 1e-4
    assert "bf16 × torch autocast" in run.stdout


@pytest.mark.examples
def test_forecast_gru_in_both_precisions(tmp_path):
    """examples/forecast_gru.py --precision both: the bf16 model's test MAE within 5 % of the
    fp32 model's (the issue asks 2 % of the full run, measured 0.2 %: docs/precision.md;
    --quick trains 4 short epochs, whose curves have not settled), both beating the naive
    forecast by far."""
    root = Path(fastrnn.__file__).resolve().parents[1]
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "examples" /
                                               "forecast_gru.py"), "--quick", "--precision", "both"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mae = {p: float(v) for p, v in re.findall(r"\[(\w+)\] test MAE: ([\d.]+)", proc.stdout)}
    naive = float(re.search(r"naive last-value ([\d.]+)", proc.stdout).group(1))
    assert set(mae) == {"float32", "bfloat16"}
    assert abs(mae["bfloat16"] - mae["float32"]) <= 0.05 * mae["float32"]
    assert max(mae.values()) < 0.5 * naive
