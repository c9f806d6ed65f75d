"""fastrnn.nn blocks and fastrnn.optim: finite-difference gradients, hand-computed updates."""
import math

import numpy as np
import pytest

from fastrnn import nn, optim
from _util import numeric_grad


def close(a, b, name):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=name)


class Param:
    """A bare params/grads holder for the optimiser tests."""

    def __init__(self, **arrays):
        self.params = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


# ----------------------------------------------------------------------------- Dense

@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4), (4,)])
def test_dense_gradients_fd(shape):
    rng = np.random.default_rng(0)
    layer = nn.Dense(4, 3, dtype=np.float64, seed=1)
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape[:-1] + (3,))     # loss = sum(r * y)

    def loss():
        return float(np.sum(r * layer(x, training=False)))

    layer(x)
    dx = layer.backward(r)
    close(dx, numeric_grad(loss, x), "dx")
    close(layer.grads["weight"], numeric_grad(loss, layer.params["weight"]), "dweight")
    close(layer.grads["bias"], numeric_grad(loss, layer.params["bias"]), "dbias")


def test_dense_time_distributed_equals_per_step():
    layer = nn.Dense(3, 2, seed=0)
    x = np.random.default_rng(1).standard_normal((6, 4, 3)).astype(np.float32)
    y = layer(x, training=False)
    for t in range(6):
        np.testing.assert_allclose(y[t], layer(x[t], training=False), rtol=1e-6)
    assert y.dtype == np.float32 and y.shape == (6, 4, 2)


def test_dense_grads_accumulate_until_zero_grad():
    layer = nn.Dense(3, 2, dtype=np.float64, seed=0)
    x = np.ones((2, 3))
    d = np.ones((2, 2))
    layer(x)
    layer.backward(d)
    once = {k: v.copy() for k, v in layer.grads.items()}
    layer(x)
    layer.backward(d)
    for k in once:
        close(layer.grads[k], 2 * once[k], k)
    layer.zero_grad()
    assert all(not g.any() for g in layer.grads.values())


def test_dense_no_bias_init_and_seed():
    a = nn.Dense(16, 8, bias=False, seed=np.random.default_rng(3))
    b = nn.Dense(16, 8, bias=False, seed=3)
    assert list(a.params) == ["weight"] and a.params["weight"].shape == (8, 16)
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])
    assert np.abs(a.params["weight"]).max() <= 1 / 4      # U(-1/sqrt(in), 1/sqrt(in))


def test_dense_backward_requires_training_forward():
    layer = nn.Dense(3, 2)
    x = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="no cached forward"):
        layer.backward(np.zeros((1, 2), np.float32))
    layer.requires_grad_(False)
    layer(x)
    with pytest.raises(ValueError, match="no cached forward"):
        layer.backward(np.zeros((1, 2), np.float32))
    layer.requires_grad_(True).eval()       # eval() only switches dropout: a cache is kept
    layer(x)
    layer.backward(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="no cached forward"):   # the cache is consumed
        layer.backward(np.zeros((1, 2), np.float32))


def test_dense_errors_name_the_argument():
    layer = nn.Dense(3, 2)
    with pytest.raises(ValueError, match="x must have shape"):
        layer(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        layer(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        layer([[0.0, 0.0, 0.0]])
    layer(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"d_y must have shape \(2, 2\)"):
        layer.backward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="in_features"):
        nn.Dense(0, 2)
    with pytest.raises(TypeError, match="dtype"):
        nn.Dense(2, 2, dtype=np.int32)
    with pytest.raises(TypeError, match="seed"):
        nn.Dense(2, 2, seed="x")


# ------------------------------------------------------------------------- Embedding

def test_embedding_gradients_fd_repeated_indices():
    rng = np.random.default_rng(0)
    emb = nn.Embedding(5, 3, dtype=np.float64, seed=0)
    idx = np.array([[0, 2, 2], [4, 0, 2]])
    r = rng.standard_normal((2, 3, 3))

    def loss():
        return float(np.sum(r * emb(idx, training=False)))

    y = emb(idx)
    np.testing.assert_array_equal(y[1, 0], emb.params["weight"][4])
    assert emb.backward(r) is None
    close(emb.grads["weight"], numeric_grad(loss, emb.params["weight"]), "dweight")
    close(emb.grads["weight"][2], r[0, 1] + r[0, 2] + r[1, 2], "row 2 sums its uses")


def test_embedding_padding_idx():
    emb = nn.Embedding(4, 2, padding_idx=0, dtype=np.float64, seed=0)
    assert not emb.params["weight"][0].any()
    idx = np.array([0, 1, 0])
    emb(idx)
    emb.backward(np.ones((3, 2)))
    assert not emb.grads["weight"][0].any()
    close(emb.grads["weight"][1], [1.0, 1.0], "row 1")


def test_embedding_errors():
    emb = nn.Embedding(4, 2)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        emb(np.array([1, 4]))
    with pytest.raises(TypeError, match="indices must be an integer array"):
        emb(np.array([1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)
    emb(np.array([1, 2]))
    with pytest.raises(ValueError, match="d_y must have shape"):
        emb.backward(np.zeros((3, 2), np.float32))


# ---------------------------------------------------------------------------- losses

def test_softmax_cross_entropy_value_and_fd():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 5))
    targets = rng.integers(0, 5, (4, 3))
    loss, d = nn.softmax_cross_entropy(logits, targets)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = -np.mean(np.log(np.take_along_axis(p, targets[..., None], -1)))
    assert math.isclose(loss, expected, rel_tol=1e-12)
    close(d, numeric_grad(lambda: nn.softmax_cross_entropy(logits, targets)[0], logits), "dlogits")
    # uniform logits: loss = log C
    assert math.isclose(nn.softmax_cross_entropy(np.zeros((2, 7)), np.array([0, 6]))[0],
                        math.log(7), rel_tol=1e-12)


def test_softmax_cross_entropy_mask_pads():
    rng = np.random.default_rng(1)
    T, B, C = 5, 3, 4
    logits = rng.standard_normal((T, B, C)) * 3
    lengths = np.array([5, 2, 0])
    mask = np.arange(T)[:, None] < lengths[None, :]
    targets = np.where(mask, rng.integers(0, C, (T, B)), -1)    # padding holds -1
    loss, d = nn.softmax_cross_entropy(logits, targets, mask=mask)
    # equals the unmasked loss over the valid positions only
    ref, _ = nn.softmax_cross_entropy(logits[mask], targets[mask])
    assert math.isclose(loss, ref, rel_tol=1e-12)
    assert not d[~mask].any()
    close(d, numeric_grad(lambda: nn.softmax_cross_entropy(logits, targets, mask)[0], logits),
          "dlogits (masked)")
    # all masked: zero loss and gradient, no division by zero
    loss0, d0 = nn.softmax_cross_entropy(logits, targets, mask=np.zeros((T, B), bool))
    assert loss0 == 0.0 and not d0.any()


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_float32_matches_float64_math(weighted):
    # The compiled loss against the same formula in float64 NumPy. float32
    # bound: exp and log rounded once each per element, a sum over C = 96
    # terms: relative error a few ulp of float32 (~1e-6) on values O(1).
    rng = np.random.default_rng(3)
    N, C = 300, 96
    logits = (rng.standard_normal((N, C)) * 4).astype(np.float32)
    targets = rng.integers(0, C, N)
    w = rng.uniform(0, 2, N).astype(np.float32) if weighted else None
    before = logits.copy()
    loss, d = nn.softmax_cross_entropy(logits, targets, mask=w)
    assert np.array_equal(logits, before)                       # input untouched
    x = logits.astype(np.float64)
    logp = x - x.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    ww = np.ones(N) if w is None else w.astype(np.float64)
    ref_loss = -(ww * logp[np.arange(N), targets]).sum() / ww.sum()
    ref_d = np.exp(logp)
    ref_d[np.arange(N), targets] -= 1
    ref_d *= (ww / ww.sum())[:, None]
    assert d.dtype == np.float32 and d.shape == (N, C)
    assert math.isclose(loss, ref_loss, rel_tol=1e-6)
    np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-9)


def test_softmax_cross_entropy_same_bits_for_every_thread_count():
    import fastrnn
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((64, 32, 96)).astype(np.float32)
    targets = rng.integers(0, 96, (64, 32))
    mask = rng.uniform(0, 1, (64, 32)) > 0.2
    saved = fastrnn.get_num_threads()
    try:
        out = []
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            out.append(nn.softmax_cross_entropy(logits, targets, mask=mask))
    finally:
        fastrnn.set_num_threads(saved)
    for loss, d in out[1:]:
        assert loss == out[0][0] and np.array_equal(d, out[0][1])


def test_softmax_cross_entropy_float32_extreme_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    loss, d = nn.softmax_cross_entropy(logits, np.array([1]))
    assert d.dtype == np.float32 and np.isfinite(d).all()
    assert math.isclose(loss, 1000.0, rel_tol=1e-6)


def test_softmax_cross_entropy_errors():
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\)"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="targets must be an integer array"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="mask must have shape"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), mask=np.ones(3))
    with pytest.raises(ValueError, match="mask must hold"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), mask=np.array([1, -1]))
    with pytest.raises(TypeError, match="logits must have dtype"):
        nn.softmax_cross_entropy(np.zeros((2, 3), int), np.array([0, 1]))


def test_mse_value_and_fd():
    rng = np.random.default_rng(2)
    pred = rng.standard_normal((3, 4, 2))
    target = rng.standard_normal((3, 4, 2))
    loss, d = nn.mse(pred, target)
    assert math.isclose(loss, np.mean((pred - target) ** 2), rel_tol=1e-12)
    close(d, numeric_grad(lambda: nn.mse(pred, target)[0], pred), "dpred")
    assert nn.mse(np.array([1.0, 3.0]), np.array([0, 0]))[0] == 5.0
    with pytest.raises(ValueError, match="target must have shape"):
        nn.mse(pred, target[0])


# ------------------------------------------------------------------------ optimisers

def test_sgd_step_by_hand():
    m = Param(w=[1.0, 2.0])
    p_id = id(m.params["w"])
    m.grads["w"][:] = [0.5, -1.0]
    opt = optim.SGD(m, lr=0.1)
    opt.step()
    close(m.params["w"], [0.95, 2.1], "w after one step")
    assert id(m.params["w"]) == p_id                      # updated in place
    opt.zero_grad()
    assert not m.grads["w"].any()


def test_sgd_momentum_by_hand():
    m = Param(w=[1.0])
    opt = optim.SGD([m], lr=0.1, momentum=0.9)
    m.grads["w"][:] = 2.0
    opt.step()                      # v = 2,           w = 1 - 0.2 = 0.8
    close(m.params["w"], [0.8], "step 1")
    opt.step()                      # v = 1.8 + 2 = 3.8, w = 0.8 - 0.38 = 0.42
    close(m.params["w"], [0.42], "step 2")
    m.grads["w"][:] = 0.0
    opt.step()                      # v = 3.42,        w = 0.42 - 0.342 = 0.078
    close(m.params["w"], [0.078], "step 3 (coasting on momentum)")


def test_adam_first_step_is_lr_sign_g():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(20) * 10.0 ** rng.integers(-3, 3, 20)   # scale-free
    m = Param(w=np.zeros(20))
    m.grads["w"][:] = g
    optim.Adam(m, lr=0.01).step()
    np.testing.assert_allclose(m.params["w"], -0.01 * np.sign(g), rtol=1e-4)


def test_adam_two_steps_by_hand():
    # g1 = 1, g2 = -1, betas (0.9, 0.999):
    # m2 = 0.9*0.1 - 0.1 = -0.01, m_hat = -0.01 / (1 - 0.81) = -1/19
    # v2 = 0.999*0.001 + 0.001 = 0.001999, v_hat = 0.001999 / (1 - 0.998001) = 1
    # so step 2 moves w by +lr/19 (after step 1 moved it by -lr).
    m = Param(w=[0.0])
    opt = optim.Adam(m, lr=0.1, betas=(0.9, 0.999), eps=1e-12)
    m.grads["w"][:] = 1.0
    opt.step()
    close(m.params["w"], [-0.1], "step 1")
    m.grads["w"][:] = -1.0
    opt.step()
    close(m.params["w"], [-0.1 + 0.1 / 19], "step 2")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_compiled_step_equals_the_numpy_rule(dtype):
    """Adam runs in the compiled module for C-contiguous arrays and in NumPy
    otherwise (here: a Fortran-ordered parameter). Both must give exactly the
    bits of the documented rule written out in NumPy below, each factor rounded
    to the dtype as optim.py documents: the compiled loop does the same IEEE
    operations in the same order (the module is built without FMA contraction), and
    its square root is IEEE's in SIMD and scalar code alike, wherever the arrays lie."""
    rng = np.random.default_rng(1)
    lr, (b1, b2), eps = 0.003, (0.8, 0.99), 1e-7
    shape = (37, 251)                       # 9287 elements: several 4096-element chunks
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    f = np.dtype(dtype).type
    want, m, v = p0.copy(), np.zeros(shape, dtype), np.zeros(shape, dtype)
    for t, g in enumerate(grads, 1):
        m = m * f(b1) + f(1 - b1) * g
        v = v * f(b2) + f(1 - b2) * (g * g)
        want = want - f(lr / (1 - b1 ** t)) * m / (np.sqrt(v / f(1 - b2 ** t)) + f(eps))
    def placed(a, order, offset):
        """a copy of a in the given order, starting `offset` elements into a buffer:
        where SIMD heads and tails fall moves with the placement."""
        buf = np.empty(a.size + offset, dtype)[offset:].reshape(a.shape, order=order)
        buf[...] = a
        return buf

    for order, offset in (("C", 0), ("C", 1), ("C", 3), ("C", 5), ("F", 0)):
        mod = Param(w=[0.0])
        mod.params["w"] = placed(p0, order, offset)
        mod.grads["w"] = placed(np.zeros(shape, dtype), order, offset)
        opt = optim.Adam(mod, lr=lr, betas=(b1, b2), eps=eps)
        for g in grads:
            mod.grads["w"][...] = g
            opt.step()
        assert np.array_equal(mod.params["w"], want), (order, offset)


def test_clip_norm_in_double():
    """clip_grad_norm's sum of squares (compiled, in float64) against math.fsum of
    the exact squares: rel 1e-12 (float64 rounding over ~1e4 terms of one sign)."""
    rng = np.random.default_rng(2)
    a = Param(w=np.zeros(10001))
    a.params["w"] = a.params["w"].astype(np.float32)
    a.grads["w"] = (rng.standard_normal(10001) * 1e3).astype(np.float32)
    want = math.sqrt(math.fsum(float(x) ** 2 for x in a.grads["w"]))
    assert math.isclose(optim.clip_grad_norm(a, 1e9), want, rel_tol=1e-12)


def test_adam_minimises_quadratic_float32():
    m = Param()
    m.params["w"] = np.array([3.0, -2.0], np.float32)
    m.grads["w"] = np.zeros(2, np.float32)
    opt = optim.Adam(m, lr=0.05)
    for _ in range(400):
        m.grads["w"][:] = 2 * m.params["w"]           # d/dw |w|^2
        opt.step()
    assert m.params["w"].dtype == np.float32
    assert np.abs(m.params["w"]).max() < 0.05


@pytest.mark.torch
def test_optimisers_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    for ours, theirs in [
            (lambda m: optim.SGD(m, lr=0.1, momentum=0.9),
             lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9)),
            (lambda m: optim.Adam(m, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
             lambda p: torch.optim.Adam([p], lr=0.01, betas=(0.8, 0.99), eps=1e-6))]:
        m = Param(w=w0)
        tp = torch.nn.Parameter(torch.tensor(w0))
        o, to = ours(m), theirs(tp)
        for g in grads:
            m.grads["w"][:] = g
            tp.grad = torch.tensor(g)
            o.step()
            to.step()
        np.testing.assert_allclose(m.params["w"], tp.detach().numpy(), rtol=1e-10,
                                   err_msg=type(o).__name__)


def test_optimiser_errors():
    m = Param(w=[1.0])
    with pytest.raises(ValueError, match="lr must be"):
        optim.SGD(m, lr=-1)
    with pytest.raises(ValueError, match="momentum must be"):
        optim.SGD(m, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match=r"betas\[1\] must be"):
        optim.Adam(m, lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.Adam(m, lr=0.1, betas=0.9)
    with pytest.raises(TypeError, match="modules must be"):
        optim.SGD(3, lr=0.1)
    with pytest.raises(TypeError, match=r"modules\[0\] \(object\) must have dict"):
        optim.Adam([object()], lr=0.1)
    bad = Param(w=[1.0, 2.0])
    bad.grads["w"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"grads\['w'\] must have the shape"):
        optim.SGD([m, bad], lr=0.1)


# -------------------------------------------------------------------------- clipping

def test_clip_grad_norm_global():
    a, b = Param(w=[0.0, 0.0]), Param(v=[0.0])
    a.grads["w"][:] = [3.0, 0.0]
    b.grads["v"][:] = [4.0]                      # global norm 5 across both modules
    norm = optim.clip_grad_norm([a, b], max_norm=1.0)
    assert norm == 5.0
    close(a.grads["w"], [0.6, 0.0], "w scaled by 1/5")
    close(b.grads["v"], [0.8], "v scaled by 1/5")
    assert math.isclose(optim.clip_grad_norm([a, b], 1.0), 1.0)   # now at the limit
    norm = optim.clip_grad_norm([a, b], max_norm=10.0)            # below: unchanged
    close(b.grads["v"], [0.8], "unchanged below max_norm")
    with pytest.raises(ValueError, match="max_norm must be"):
        optim.clip_grad_norm(a, 0)


def test_clip_grad_norm_nonfinite_left_alone():
    a = Param(w=[0.0, 0.0])
    a.grads["w"][:] = [np.inf, 1.0]
    assert math.isinf(optim.clip_grad_norm(a, 1.0))
    assert a.grads["w"][1] == 1.0


def test_clip_grad_norm_on_dense_float32():
    layer = nn.Dense(4, 3, seed=0)
    layer(np.ones((2, 4), np.float32))
    layer.backward(np.full((2, 3), 100.0, np.float32))
    optim.clip_grad_norm(layer, 2.0)
    total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2))
                          for g in layer.grads.values()))
    assert math.isclose(total, 2.0, rel_tol=1e-5)
    assert all(g.dtype == np.float32 for g in layer.grads.values())


def test_clip_grad_value():
    a = Param(w=[-3.0, 0.5, 2.0])
    a.grads["w"][:] = [-3.0, 0.5, 2.0]
    optim.clip_grad_value(a, 1.0)
    close(a.grads["w"], [-1.0, 0.5, 1.0], "clipped")
    with pytest.raises(ValueError, match="clip must be"):
        optim.clip_grad_value(a, -1)
