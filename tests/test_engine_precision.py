"""bfloat16 and int8 inference engines (docs/precision.md): accuracy against the float32
engine on the DESIGN §5 grid shapes, every cell and layer option, the fallback kernel
paths against the hardware one, step against call, and the path forced by environment."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import GRU, LSTM, SimpleRNN
from fastrnn.engine import InferenceEngine

pytest.importorskip("fastrnn.functional")

LOWP = ["bfloat16", "int8"]
# The (DESIGN §10) end-to-end bounds on max |y - y_fp32|.
BOUND = {"bfloat16": 1e-2, "int8": 3e-2}


def bound(precision, cell):
    """The issue's bounds for every cell. SimpleRNN int8 meets 3e-2 because its x rows
    are quantised in two terms (docs/precision.md: one term measured up to 3.1e-2, two
    at most 1.8e-2 on the full grid over three seeds)."""
    return BOUND[precision]


# DESIGN §5 grid (T, B, I, H).
GRID = {"latency_b1": (100, 1, 128, 128), "mid_b32": (100, 32, 256, 256),
        "big_b64": (50, 64, 512, 512), "long_t1000": (1000, 16, 128, 128),
        "small_h64": (200, 64, 32, 64)}
CELLS = {"lstm": (LSTM, {}), "lstm-peephole": (LSTM, dict(peephole=True)),
         "gru": (GRU, {}), "gru-reset-before": (GRU, dict(reset_after=False)),
         "rnn-tanh": (SimpleRNN, {}), "rnn-relu": (SimpleRNN, dict(nonlinearity="relu"))}


def paths(precision):
    key = "bf16_paths_available" if precision == "bfloat16" else "int8_paths_available"
    return fastrnn.config()[key]


def max_error(cell, shape, precision, seed=0):
    """max |y - y_fp32| and max |state - state_fp32| of one layer with PyTorch's init
    (fastrnn's default, U(±1/sqrt(H))) on N(0, 1) inputs."""
    cls, kw = CELLS[cell]
    T, B, I, H = shape
    layer = cls(I, H, seed=seed, **kw)
    x = np.random.default_rng(seed + 1).standard_normal((T, B, I)).astype(np.float32)
    y32, s32 = layer.inference()(x)
    y, s = layer.inference(precision)(x)
    assert y.dtype == np.float32 and y.shape == y32.shape
    states = zip(s if isinstance(s, tuple) else (s,), s32 if isinstance(s32, tuple) else (s32,))
    return np.abs(y - y32).max(), max(np.abs(a - b).max() for a, b in states)


@pytest.mark.parametrize("shape", list(GRID), ids=list(GRID))
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("precision", LOWP)
def test_accuracy_on_grid_shapes(precision, cell, shape):
    """The issue's bounds, on every grid shape's B, I, H with T cut to 12 to stay fast
    (the error settles within a few steps: gates contract it; the slow test runs full T).
    The LSTM cell state c is not bounded by 1, so states are checked against y's bound
    only for h-only cells; c gets twice the bound."""
    T, B, I, H = GRID[shape]
    dy, ds = max_error(cell, (min(T, 12), B, I, H), precision)
    assert dy <= bound(precision, cell), (dy, ds)
    assert ds <= (2 if cell.startswith("lstm") else 1) * bound(precision, cell), (dy, ds)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["mid_b32", "big_b64", "long_t1000"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru-reset-before", "rnn-tanh"])
@pytest.mark.parametrize("precision", LOWP)
def test_accuracy_full_grid_shapes(precision, cell, shape):
    """Full grid shapes (all T steps): the error does not grow with T."""
    dy, _ = max_error(cell, GRID[shape], precision)
    assert dy <= bound(precision, cell), dy


CONFIGS = [
    (LSTM, dict(num_layers=2, bidirectional=True, peephole=True)),
    (LSTM, dict(num_layers=3, batch_first=True, bias=False)),
    (GRU, dict(reset_after=False, num_layers=2, bidirectional=True, batch_first=True)),
    (GRU, dict(num_layers=2)),
    (SimpleRNN, dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
]
IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw in CONFIGS]


@pytest.mark.parametrize("cls, kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("precision", LOWP)
def test_layer_options(precision, cls, kw):
    """Stacked, bidirectional, batch_first, initial states and lengths follow the float32
    engine's contract: within the bound, padding exactly zero, and each row's result
    equal (to round-off) to that row run alone on its own length. Row alone vs in a
    batch: int8 quantises per row, so the integer sums are the same; the fp32 sums of
    bf16 products and the gate math may regroup with the block sizes, hence 1e-5."""
    T, B, I, H = 9, 5, 16, 40        # H not a multiple of the 32-unit panels
    layer = cls(I, H, seed=3, **kw)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, I) if layer.batch_first else (T, B, I)).astype(np.float32)
    shape = (layer.num_layers * layer.num_directions, B, H)
    h = [0.5 * rng.standard_normal(shape).astype(np.float32) for _ in layer._states]
    state = tuple(h) if len(h) > 1 else h[0]
    lengths = np.array([9, 4, 0, 9, 1])
    eng = layer.inference(precision)
    y, s = eng(x, state, lengths=lengths)
    y32, s32 = layer.inference()(x, state, lengths=lengths)
    assert np.abs(y - y32).max() <= BOUND[precision]
    flat = (lambda a: a if isinstance(a, tuple) else (a,))
    for a, b in zip(flat(s), flat(s32)):
        assert np.abs(a - b).max() <= 2 * BOUND[precision]
    time_axis = 1 if layer.batch_first else 0
    for b, n in enumerate(lengths):
        yb = np.take(y, [b], axis=1 - time_axis)
        assert not np.take(yb, range(n, T), axis=time_axis).any()      # padding
        if n == 0:
            for a, s0 in zip(flat(s), flat(state)):
                np.testing.assert_array_equal(a[:, b], s0[:, b])
            continue
        xb = np.take(np.take(x, [b], axis=1 - time_axis), range(n), axis=time_axis)
        alone_y, alone_s = eng(np.ascontiguousarray(xb), tuple(a[:, b:b + 1] for a in flat(state))
                               if len(h) > 1 else state[:, b:b + 1])
        np.testing.assert_allclose(np.take(yb, range(n), axis=time_axis), alone_y, rtol=0, atol=1e-5)
        for a, c in zip(flat(s), flat(alone_s)):
            np.testing.assert_allclose(a[:, b:b + 1], c, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("precision", LOWP)
def test_fallback_paths_agree_with_the_hardware_path(precision, cell):
    """Every kernel path this CPU runs gives the same engine result.
    int8: the paths compute identical s32 sums (docs/precision.md) and the same fp32
    dequantisation, and everything else is shared code, so the outputs are equal bit
    for bit. bf16: the products are exact in fp32 and only their summation order
    differs between avx512_bf16 and the fallbacks (≤ 2·K·2⁻²⁴·Σ|a·w| ≈ 1e-5 relative
    per product at K = 256); through contracting gates over 20 steps 1e-5 absolute
    covers it, while a wrong panel or a misread pair of k would be off by ~1e-2."""
    cls, kw = CELLS[cell]
    layer = cls(96, 200, num_layers=2, seed=5, **kw)
    x = np.random.default_rng(6).standard_normal((20, 7, 96)).astype(np.float32)
    results = {p: InferenceEngine(layer, precision, _path=p)(x)[0] for p in paths(precision)}
    if len(results) < 2:
        pytest.skip(f"this CPU runs one {precision} path")
    best, *others = list(results)
    for p in others:
        if precision == "int8":
            np.testing.assert_array_equal(results[p], results[best], err_msg=p)
        else:
            np.testing.assert_allclose(results[p], results[best], rtol=0, atol=1e-5, err_msg=p)
    if "avx2" in results and "scalar" in results and precision == "bfloat16":
        # the same fp32 order of the same exact products: bit for bit
        np.testing.assert_array_equal(results["avx2"], results["scalar"])


@pytest.mark.parametrize("cls, kw", [(LSTM, dict(num_layers=2)), (GRU, dict(reset_after=False, num_layers=3)),
                                     (SimpleRNN, dict(num_layers=2))], ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("precision", LOWP)
def test_step_equals_call(precision, cls, kw):
    """T steps equal one call to round-off (the float32 engine's contract): a step
    quantises or rounds the same rows; only the projection's fp32 block sums may group
    differently (bf16), so 1e-5."""
    layer = cls(24, 70, seed=7, **kw)
    x = np.random.default_rng(8).standard_normal((6, 3, 24)).astype(np.float32)
    eng = layer.inference(precision)
    y, s = eng(x)
    state = None
    for t in range(6):
        y_t, state = eng.step(x[t], state)
        np.testing.assert_allclose(y_t, y[t], rtol=0, atol=1e-5)
    for a, b in zip(state if isinstance(state, tuple) else (state,), s if isinstance(s, tuple) else (s,)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("precision", LOWP)
def test_threads_agree(precision):
    """Two threads split the units of each step and each prepares its own copy of h_t:
    the same values as one thread (round-off: the unit split moves SIMD edges)."""
    layer = LSTM(64, 256, seed=9)
    x = np.random.default_rng(10).standard_normal((15, 4, 64)).astype(np.float32)
    eng = layer.inference(precision)
    before = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        one = eng(x)[0]
        fastrnn.set_num_threads(2)
        two = eng(x)[0]
    finally:
        fastrnn.set_num_threads(before)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)


def test_snapshot_and_description():
    layer = GRU(8, 33, seed=11)
    eng = layer.inference("int8")
    assert eng.precision == "int8" and eng.path == fastrnn.config()["int8_path"]
    assert f"precision='int8', path='{eng.path}'" in repr(eng)
    assert layer.inference().path is None
    x = np.random.default_rng(12).standard_normal((4, 2, 8)).astype(np.float32)
    y = eng(x)[0]
    layer.params["weight_hh_l0"][:] = 0        # the engine copied the weights
    np.testing.assert_array_equal(eng(x)[0], y)


def run_with_env(env, code):
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_environment_forces_the_path():
    """FASTRNN_BF16_PATH / FASTRNN_INT8_PATH reach the engine (read once per process,
    hence subprocesses); a name this CPU cannot run raises ValueError listing what can."""
    code = ("import numpy as np, fastrnn\n"
            "l = fastrnn.LSTM(8, 40, seed=1)\n"
            "x = np.random.default_rng(2).standard_normal((5, 3, 8)).astype(np.float32)\n"
            "for p in ('bfloat16', 'int8'):\n"
            "    e = l.inference(p)\n"
            "    print(e.path, e(x)[0].tobytes().hex()[:64])\n")
    got = run_with_env({"FASTRNN_BF16_PATH": "scalar", "FASTRNN_INT8_PATH": "scalar"}, code)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.split()
    assert lines[0] == "scalar" and lines[2] == "scalar"
    layer = LSTM(8, 40, seed=1)
    x = np.random.default_rng(2).standard_normal((5, 3, 8)).astype(np.float32)
    assert InferenceEngine(layer, "int8", _path="scalar")(x)[0].tobytes().hex()[:64] == lines[3]
    bad = run_with_env({"FASTRNN_BF16_PATH": "amx_bf16"},
                       "import fastrnn\nfastrnn.LSTM(4, 4).inference('bfloat16')")
    assert "ValueError: FASTRNN_BF16_PATH='amx_bf16' is not one of avx512_bf16, avx2, scalar; " \
           "available here: " in bad.stderr


@pytest.mark.parametrize("precision", LOWP)
def test_against_a_numpy_model_of_the_quantised_cell(precision):
    """A SimpleRNN engine equals a NumPy model built from the GEMM model
    (fastrnn._lowp_reference: bf16 rounding / per-row int8 quantisation of x, in two
    terms, and of each h_t, per-output weight scales): h' = tanh(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh) with both
    products in the precision's scheme. Only the fp32 additions and tanh differ in order
    or implementation (≤ a few ulp per step, not amplified by |tanh'| ≤ 1), hence 1e-5;
    a mis-scaled row or misplaced unit would be off by ≥ 1e-3."""
    lowp_ref = pytest.importorskip("fastrnn._lowp_reference")
    if precision == "bfloat16":
        gemm_x = gemm_h = lowp_ref.bf16_gemm
    else:   # a SimpleRNN's x rows in two terms, h_t in one (docs/precision.md)
        gemm_x, gemm_h = (lambda a, w: lowp_ref.int8_gemm(a, w, terms=2)), lowp_ref.int8_gemm
    layer = SimpleRNN(20, 45, seed=13)
    p = layer.params
    x = np.random.default_rng(14).standard_normal((8, 3, 20)).astype(np.float32)
    h = np.zeros((3, 45), np.float32)
    want = []
    for t in range(8):
        pre = (gemm_x(x[t], p["weight_ih_l0"]) + p["bias_ih_l0"] + p["bias_hh_l0"]
               + gemm_h(h, p["weight_hh_l0"]))
        h = np.tanh(pre).astype(np.float32)
        want.append(h)
    y, _ = InferenceEngine(layer, precision, _path="scalar")(x)
    np.testing.assert_allclose(y, np.stack(want), rtol=0, atol=1e-5)


@pytest.mark.parametrize("precision", LOWP)
def test_empty_axes(precision):
    """T = 0 and B = 0 give empty results and unchanged states, as in float32."""
    eng = LSTM(4, 40, num_layers=2, seed=15).inference(precision)
    y, (h, c) = eng(np.zeros((0, 3, 4), np.float32))
    assert y.shape == (0, 3, 40) and not h.any() and not c.any()
    assert eng(np.zeros((5, 0, 4), np.float32))[0].shape == (5, 0, 40)
    assert eng.step(np.zeros((0, 4), np.float32))[0].shape == (0, 40)
