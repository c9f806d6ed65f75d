"""Bit-identical results for every thread count (docs/numerics.md, issue #18).

Sizes are chosen so that 2–4 threads really share the work: B = 48 splits the
batch rows of each step, B = 4 (too few rows) splits the hidden units, and
the weight-gradient GEMMs span several output tiles. B = 20 splits rows 10/10
(2 threads) and 7/7/6 (3): with AVX-512 the shares start off the micro-kernel's
6-row blocks (csrc/time_loop.hpp), so rows sit in blocks of other sizes than on
one thread; one test checks the same against the batch size. Tolerance: none.
"""
import numpy as np
import pytest

import fastrnn

try:
    import fastrnn.functional as F
except ImportError:      # the C++ backend is not built
    F = None

pytestmark = [pytest.mark.skipif(F is None, reason="fastrnn.functional (C++) is not built"),
              pytest.mark.timeout(120)]

THREADS = (1, 2, 3, 4)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


@pytest.fixture
def restore_threads():
    old = F.get_num_threads()
    yield
    F.set_num_threads(old)


def arrays(result):
    """Every array of a forward or backward result, flattened to a list."""
    out = []
    for v in result:
        if isinstance(v, np.ndarray):
            out.append(v)
        elif isinstance(v, tuple):
            out += arrays(v)
    return out


def assert_same_for_every_thread_count(compute):
    F.set_num_threads(THREADS[0])
    base = compute()
    for n in THREADS[1:]:
        F.set_num_threads(n)
        got = compute()
        assert len(got) == len(base)
        for i, (g, b) in enumerate(zip(got, base)):
            assert np.array_equal(g, b, equal_nan=True), \
                f"{n} threads vs 1: array {i} differs by {np.max(np.abs(g - b))}"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_bits_do_not_depend_on_the_batch(restore_threads, cell, dtype):
    """A row's outputs are the same bits whatever rows share its step: the
    recurrent product splits B rows into micro-kernel blocks of 3–6 rows
    (7 → 4 + 3, 8 → 4 + 4, 14 → 6 + 4 + 4; csrc/packed_gemm.hpp), and 1 or 2
    rows take several panels per call, yet every output element is one FMA
    chain over k in the same order. B = 1 … 16 covers every split."""
    F.set_num_threads(1)
    rng = np.random.default_rng(5)
    T, I, H, G = 4, 12, 40, GATES[cell]
    x = rng.standard_normal((T, 16, I)).astype(dtype)
    w_ih = (rng.standard_normal((G * H, I)) / np.sqrt(I)).astype(dtype)
    w_hh = (rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(dtype)
    b = (0.1 * rng.standard_normal(G * H)).astype(dtype)
    fw = getattr(F, f"{cell}_forward")
    full = fw(x, w_ih, w_hh, b, b, training=False)[0]
    for B in range(1, 16):
        got = fw(np.ascontiguousarray(x[:, :B]), w_ih, w_hh, b, b, training=False)[0]
        assert np.array_equal(got, full[:, :B]), f"B = {B}: max difference {np.max(np.abs(got - full[:, :B]))}"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("T,B,I,H", [(10, 48, 24, 40), (10, 20, 24, 40), (8, 4, 16, 136)],
                         ids=["rows", "rows20", "units"])
def test_functional_forward_and_backward(restore_threads, cell, dtype, lengths, T, B, I, H):
    rng = np.random.default_rng(3)
    G = GATES[cell]
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w_ih = (rng.standard_normal((G * H, I)) / np.sqrt(I)).astype(dtype)
    w_hh = (rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(dtype)
    b = (0.1 * rng.standard_normal(G * H)).astype(dtype)
    lens = rng.integers(0, T + 1, B) if lengths else None
    d_out = rng.standard_normal((T, B, H)).astype(dtype)
    fw, bw = getattr(F, f"{cell}_forward"), getattr(F, f"{cell}_backward")

    def compute():
        fwd = fw(x, w_ih, w_hh, b, b, lengths=lens)
        inference = fw(x, w_ih, w_hh, b, b, lengths=lens, reverse=True, training=False)
        return arrays(fwd[:-1]) + arrays(inference[:-1]) + arrays(bw(fwd[-1], d_out))

    assert_same_for_every_thread_count(compute)


def test_issue_example_weight_ih_gradient(restore_threads):
    """The report: LSTM T=30, B=48, I=64, H=96; weight_ih's gradient differed
    by 6e-5 between 1 and 2 threads."""
    rng = np.random.default_rng(0)
    layer = fastrnn.LSTM(64, 96, seed=0)
    x = rng.standard_normal((30, 48, 64)).astype(np.float32)

    def compute():
        layer.zero_grad()
        out, _ = layer(x)
        layer.backward(np.ones_like(out))
        return [layer.grads["weight_ih_l0"], out]

    assert_same_for_every_thread_count(compute)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bidirectional_stacked_layer(restore_threads, kind, dtype):
    rng = np.random.default_rng(5)
    layer = getattr(fastrnn, kind)(24, 48, num_layers=2, bidirectional=True, dtype=dtype, seed=2)
    x = rng.standard_normal((12, 20, 24)).astype(dtype)
    lengths = rng.integers(1, 13, 20)

    def compute():
        layer.zero_grad()
        out, h = layer(x, lengths=lengths)
        back = layer.backward(np.cos(out))
        grads = [layer.grads[k] for k in sorted(layer.grads)]
        return [out] + arrays(back if isinstance(back, tuple) else (back,)) \
            + arrays(h if isinstance(h, tuple) else (h,)) + grads

    assert_same_for_every_thread_count(compute)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_on_the_pool(restore_threads, dtype):
    """nn.Dense runs its GEMMs on fastrnn's pool (csrc/dense.hpp): same bits for
    every thread count, and equal to NumPy's matmul to round-off (float32:
    sums of 300 products of size ~1, rtol 1e-5; float64 1e-12)."""
    from fastrnn import nn
    rng = np.random.default_rng(9)
    layer = nn.Dense(300, 200, dtype=dtype, seed=3)
    x = rng.standard_normal((7, 90, 300)).astype(dtype)
    d_y = rng.standard_normal((7, 90, 200)).astype(dtype)

    def compute():
        layer.zero_grad()
        y = layer(x)
        dx = layer.backward(d_y)
        return [y, dx, layer.grads["weight"], layer.grads["bias"]]

    assert_same_for_every_thread_count(compute)
    y, dx, dw, db = compute()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    w, b = layer.params["weight"], layer.params["bias"]
    np.testing.assert_allclose(y, x @ w.T + b, rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(dx, d_y @ w, rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(dw, d_y.reshape(-1, 200).T @ x.reshape(-1, 300), rtol=rtol,
                               atol=rtol * 100)
    np.testing.assert_allclose(db, d_y.reshape(-1, 200).sum(0), rtol=rtol, atol=rtol * 100)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("O, I, N", [(1, 1, 1), (7, 33, 5), (13, 65, 700), (100, 31, 2500)])
def test_weight_gradient_gemm_edges(restore_threads, dtype, O, I, N):
    """The weight-gradient GEMM (csrc/grad_gemm.hpp) through Dense's backward, on
    shapes that leave partial tiles (O not a multiple of its 6- or 8-row strips, I not of
    its panels) and k = N below and above its k block: same bits for every thread
    count, and dW = d_yᵀ x, db = Σ d_y to round-off against float64 (float32: sums
    of N products of size ~1, error ~√N·2⁻²⁴ relative, rtol 1e-5; float64 1e-12)."""
    from fastrnn import nn
    rng = np.random.default_rng(O * 1000 + I)
    layer = nn.Dense(I, O, dtype=dtype, seed=1)
    x = rng.standard_normal((N, I)).astype(dtype)
    d_y = rng.standard_normal((N, O)).astype(dtype)

    def compute():
        layer.zero_grad()
        layer(x)
        layer.backward(d_y)
        return [layer.grads["weight"].copy(), layer.grads["bias"].copy()]

    assert_same_for_every_thread_count(compute)
    dw, db = compute()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    x64, d64 = x.astype(np.float64), d_y.astype(np.float64)
    scale = np.sqrt(N)   # the sums' size: N products of size ~1
    np.testing.assert_allclose(dw, d64.T @ x64, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(db, d64.sum(0), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("T, B, I, H", [(7, 3, 3, 37), (50, 14, 40, 20)])
def test_joint_weight_gradient_pass(restore_threads, cell, T, B, I, H):
    """An LSTM's and an RNN's dW_hh and dW_ih run as one pass over dG without lengths
    (grad_gemm's two outputs, each with partial panels here; T·B = 700 spans k blocks),
    and as two with lengths: same bits for every thread count, and both within float64
    round-off of the NumPy reference (float64: rtol 1e-10 on sums of T·B products)."""
    from fastrnn import reference as R
    rng = np.random.default_rng(T + H)
    G = GATES[cell]
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((G * H, I)) * 0.3, rng.standard_normal((G * H, H)) * 0.3
    b = rng.standard_normal(G * H) * 0.1
    d_out = rng.standard_normal((T, B, H))
    full = np.full(B, T)
    for lengths in (None, full - np.arange(B) % 3):
        def compute(fn=F):
            res = getattr(fn, f"{cell}_forward")(x, w_ih, w_hh, b, b, lengths=lengths)
            g = getattr(fn, f"{cell}_backward")(res[-1], d_out=d_out)
            return [g.dw_ih, g.dw_hh, g.db_ih, g.dx]
        assert_same_for_every_thread_count(compute)
        for got, want in zip(compute(), compute(R)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimiser_on_the_pool(restore_threads, dtype):
    """Adam's step and clipping's norm run on the pool (csrc/optim.hpp): same bits
    for every thread count, over sizes that span several of their chunks."""
    from fastrnn import optim

    class Params:
        def __init__(self):
            rng = np.random.default_rng(5)
            self.params = {"a": rng.standard_normal((70, 300)).astype(dtype),
                           "b": rng.standard_normal(4097).astype(dtype)}
            self.grads = {k: rng.standard_normal(v.shape).astype(dtype)
                          for k, v in self.params.items()}

    def compute():
        m = Params()
        opt = optim.Adam(m, lr=0.01)
        norms = []
        for _ in range(3):
            norms.append(np.array(optim.clip_grad_norm(m, 1.0)))
            opt.step()
        return norms + list(m.params.values())

    assert_same_for_every_thread_count(compute)
