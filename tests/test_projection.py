"""LSTM projections (PyTorch's proj_size, LSTMP) in the kernels and the layers.

The kernels run h' = (o ⊙ tanh c') W_hrᵀ inside the time loop (csrc/core/driver.hpp:
ForwardStep::project, BackwardStep::project_back). Oracles: the NumPy reference
(float64, 1e-10: the same arithmetic in another summation order, errors ~1e-15 per
step, a few orders of magnitude through T steps and the weight-gradient sums) and
torch.nn.LSTM(proj_size=...) (float64, 1e-9 relative, the issue's bar).
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import reference as ref
from fastrnn.interop import from_torch, to_torch_state_dict

try:
    import fastrnn.functional as F
except ImportError:      # the C++ backend is not built
    F = None

pytestmark = [pytest.mark.skipif(F is None, reason="fastrnn.functional (C++) is not built"),
              pytest.mark.timeout(120)]

T, B, I, H, P = 6, 7, 5, 12, 3
LENGTHS = np.array([6, 0, 3, 6, 1, 2, 5])


def case(rng, dtype=np.float64, B=B, H=H, P=P, peephole=False):
    n = lambda *s: rng.standard_normal(s).astype(dtype)
    a = dict(x=n(T, B, I), w_ih=0.5 * n(4 * H, I), w_hh=0.5 * n(4 * H, P),
             b_ih=0.1 * n(4 * H), b_hh=0.1 * n(4 * H), h0=n(B, P), c0=n(B, H))
    kw = dict(w_hr=0.5 * n(P, H))
    if peephole:
        kw["peephole"] = 0.3 * n(3, H)
    return a, kw


def run(mod, a, kw, rng_seed=1, **opts):
    out, h_n, c_n, cache = mod.lstm_forward(*a.values(), **kw, **opts)
    rng = np.random.default_rng(rng_seed)
    d_out, d_h, d_c = (rng.standard_normal(s).astype(out.dtype)
                       for s in (out.shape, h_n.shape, c_n.shape))
    return (out, h_n, c_n), mod.lstm_backward(cache, d_out, d_h, d_c)


def assert_close(got, want, rtol, atol=0.0):
    (gf, gg), (wf, wg) = got, want
    for g, w in zip(gf, wf):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    for name, g, w in zip(wg._fields, gg, wg):
        assert (g is None) == (w is None), name
        if g is not None:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("opts", [{}, dict(lengths=LENGTHS), dict(lengths=LENGTHS, reverse=True),
                                  dict(peephole=True), dict(layer_norm=True),
                                  dict(activation="softsign", recurrent_activation="hard_sigmoid")],
                         ids=["plain", "lengths", "reverse", "peephole", "layer_norm", "activations"])
def test_kernels_match_the_reference(opts):
    opts = dict(opts)
    a, kw = case(np.random.default_rng(2), peephole=opts.pop("peephole", False))
    got, want = run(F, a, kw, **opts), run(ref, a, kw, **opts)
    assert got[1].dw_hr.shape == (P, H) and got[0][0].shape == (T, B, P)
    assert_close(got, want, rtol=1e-10, atol=1e-12)   # see the module docstring


def test_float32_matches_the_reference():
    a, kw = case(np.random.default_rng(3), np.float32)
    got = run(F, a, kw, lengths=LENGTHS)
    a64 = {k: v.astype(np.float64) for k, v in a.items()}
    want = run(ref, a64, {k: v.astype(np.float64) for k, v in kw.items()}, lengths=LENGTHS)
    assert got[0][0].dtype == np.float32 and got[1].dw_hr.dtype == np.float32
    # float32 rounding (6e-8) grown through 6 steps and sums of ~40 terms
    assert_close(got, want, rtol=2e-4, atol=2e-5)


@pytest.fixture
def restore_threads():
    old = F.get_num_threads()
    yield
    F.set_num_threads(old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("Bsz, Hsz", [(48, 40), (4, 136)], ids=["rows", "few-rows"])
def test_bit_identical_for_one_and_two_threads(restore_threads, dtype, Bsz, Hsz):
    """B = 48 splits rows; B = 4 would take the unit split, which a projection replaces
    by the row split (every unit of m feeds each h). Tolerance: none."""
    a, kw = case(np.random.default_rng(4), dtype, B=Bsz, H=Hsz, P=Hsz // 4)
    lengths = np.random.default_rng(5).integers(0, T + 1, Bsz)
    results = []
    for n in (1, 2):
        F.set_num_threads(n)
        (fwd, g) = run(F, a, kw, lengths=lengths)
        results.append(list(fwd) + [v for v in g if v is not None])
    for i, (x1, x2) in enumerate(zip(*results)):
        assert np.array_equal(x1, x2), f"array {i} differs between 1 and 2 threads"


def test_inference_equals_training_forward():
    a, kw = case(np.random.default_rng(6))
    train = F.lstm_forward(*a.values(), **kw, lengths=LENGTHS)
    infer = F.lstm_forward(*a.values(), **kw, lengths=LENGTHS, training=False)
    assert infer[3] is None
    for t, i in zip(train[:3], infer[:3]):
        assert np.array_equal(t, i)


# -- torch.nn.LSTM(proj_size) -------------------------------------------------------------

torch = pytest.importorskip("torch") if F is not None else None


@pytest.mark.torch
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_layer_matches_torch_lstm_with_proj_size(bidirectional, num_layers):
    """Outputs, states and every parameter and input gradient, float64 to 1e-9 relative."""
    torch.manual_seed(0)
    tl = torch.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional,
                       proj_size=P).double()
    layer = from_torch(tl)
    D = 2 if bidirectional else 1
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((num_layers * D, B, P)), rng.standard_normal((num_layers * D, B, H))
    out, (h_n, c_n) = layer(x, (h0, c0))
    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = (torch.tensor(v, requires_grad=True) for v in (h0, c0))
    ot, (hnt, cnt) = tl(xt, (h0t, c0t))
    assert out.shape == (T, B, D * P) and h_n.shape == (num_layers * D, B, P)
    for g, w in ((out, ot), (h_n, hnt), (c_n, cnt)):
        np.testing.assert_allclose(g, w.detach().numpy(), rtol=1e-9, atol=1e-12)
    d_out, d_h, d_c = (rng.standard_normal(s) for s in (out.shape, h_n.shape, c_n.shape))
    dx, (dh0, dc0) = layer.backward(d_out, (d_h, d_c))
    torch.autograd.backward([ot, hnt, cnt], [torch.tensor(v) for v in (d_out, d_h, d_c)])
    for g, w in ((dx, xt.grad), (dh0, h0t.grad), (dc0, c0t.grad)):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-9, atol=1e-12)
    assert list(layer.grads) == [name for name, _ in tl.named_parameters()]  # torch's order
    for name, p in tl.named_parameters():
        np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)


@pytest.mark.torch
def test_state_dict_round_trip_and_names():
    tl = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P)
    layer = from_torch(tl)
    want = {k: tuple(v.shape) for k, v in tl.state_dict().items()}
    assert {k: v.shape for k, v in layer.state_dict().items()} == want
    assert list(layer.state_dict()) == list(want)
    back = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P)
    back.load_state_dict(to_torch_state_dict(layer))
    for k, v in tl.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


# -- the layer without torch --------------------------------------------------------------

def test_layer_shapes_and_reference_backend():
    """A 2-layer bidirectional proj layer on the kernels equals the same layer on
    fastrnn.reference (float64, 1e-10: see the module docstring); states (L·D, B, P)."""
    kw = dict(num_layers=2, bidirectional=True, proj_size=P, dtype=np.float64, seed=3)
    fast, slow = fastrnn.LSTM(I, H, **kw), fastrnn.LSTM(I, H, **kw, _backend=ref)
    assert fast.params["weight_hh_l1_reverse"].shape == (4 * H, P)
    assert fast.params["weight_ih_l1"].shape == (4 * H, 2 * P)
    assert fast.params["weight_hr_l0_reverse"].shape == (P, H)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, I))
    (o1, (h1, c1)), (o2, (h2, c2)) = fast(x, lengths=LENGTHS), slow(x, lengths=LENGTHS)
    assert o1.shape == (T, B, 2 * P) and h1.shape == (4, B, P) and c1.shape == (4, B, H)
    for g, w in ((o1, o2), (h1, h2), (c1, c2)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    d_out = rng.standard_normal(o1.shape)
    (dx1, (dh1, _)), (dx2, (dh2, _)) = fast.backward(d_out), slow.backward(d_out)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-10, atol=1e-12)
    assert dh1.shape == dh2.shape == (4, B, P)
    for name in fast.grads:
        np.testing.assert_allclose(fast.grads[name], slow.grads[name], rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_inference_engine_and_onnx_refuse_proj_size_by_name():
    layer = fastrnn.LSTM(I, H, proj_size=P)
    with pytest.raises(ValueError, match="proj_size=3"):
        layer.inference()
    with fastrnn.no_grad():           # the cache-free forward the message points to
        out, _ = layer(np.zeros((T, B, I), np.float32))
    assert out.shape == (T, B, P)
    from fastrnn.interop import to_keras_weights
    with pytest.raises(ValueError, match="proj_size=3"):
        to_keras_weights(layer)
    pytest.importorskip("onnx")
    from fastrnn.onnx import export
    with pytest.raises(ValueError, match="proj_size"):
        export(layer)


def test_benchmark_row_runs():
    """benchmarks/projection.py (the grid row of docs/variants.md) on a tiny shape: it
    prints both modes' measured ratio beside the GEMM-flop prediction."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, str(root / "benchmarks" / "projection.py"), "--shape",
                          "4,3,8,16", "--budget", "0"], capture_output=True, text=True,
                         timeout=60, env={**__import__("os").environ,     # the fastrnn under test
                                          "PYTHONPATH": str(Path(fastrnn.__file__).resolve().parents[1])})
    assert run.returncode == 0, run.stderr
    import re
    # by hand, per row and step (I=8, H=16, P=4, 4H=64): forward 2·8·64 + 2·16·64 = 3072 vs
    # 2·8·64 + 2·4·64 + 2·16·4 = 1664; training adds 4·64·8 + 4·64·16 = 6144 vs
    # 4·64·8 + 4·64·4 + 4·16·4 = 3328: both 1664/3072 = 4992/9216 = 0.5417
    for mode in ("training", "inference"):
        assert re.search(rf"{mode} +proj/plain x[0-9.]+, GEMM flops predict x0\.542", run.stdout)
