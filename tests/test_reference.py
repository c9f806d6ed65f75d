"""Tests of the oracle itself (fastrnn.reference): gradients against central finite
differences, forward against hand-computed scalar steps, and the sequence semantics of
DESIGN §3 / docs/functional.md."""
import math

import numpy as np
import pytest

from fastrnn import reference as ref
from _util import add_variant_arrays, cell_params, numeric_grad

# name -> (kind, extra forward kwargs, has peephole)
CELLS = {
    "lstm": ("lstm", {}, False),
    "lstm_peephole": ("lstm", {}, True),
    "gru": ("gru", {"reset_after": True}, False),
    "gru_reset_before": ("gru", {"reset_after": False}, False),
    "rnn_tanh": ("rnn", {"nonlinearity": "tanh"}, False),
    "rnn_relu": ("rnn", {"nonlinearity": "relu"}, False),
}
SCENARIOS = ["plain", "reverse", "lengths", "lengths_reverse"]


def make_params(cell, rng, T, B, I, H, dtype=np.float64):
    """Random arguments of one forward call (nonzero states, biases and peepholes)."""
    kind, _, peep = CELLS[cell]
    p = add_variant_arrays(cell_params(rng, kind, T, B, I, H), rng, kind,
                           {"peephole"} if peep else set(), T, B, H)
    return {k: v.astype(dtype) for k, v in p.items()}


def make_lengths(rng, T, B):
    """B >= 3: one empty sequence, one full one, the rest in between; shuffled."""
    lengths = np.concatenate([[0, T], rng.integers(1, T, size=B - 2)])
    return rng.permutation(lengths)


def forward(cell, p, **kw):
    """-> out, states (h_n,) or (h_n, c_n), cache."""
    kind, extra, _ = CELLS[cell]
    args = (p["x"], p["w_ih"], p["w_hh"], p.get("b_ih"), p.get("b_hh"), p.get("h0"))
    if kind == "lstm":
        out, h, c, cache = ref.lstm_forward(*args, p.get("c0"), peephole=p.get("peephole"), **kw)
        return out, (h, c), cache
    fn = ref.gru_forward if kind == "gru" else ref.rnn_forward
    out, h, cache = fn(*args, **extra, **kw)
    return out, (h,), cache


def backward(cell, cache, d_out, d_states):
    """-> dict argument name -> gradient (dpeephole only when present)."""
    kind = CELLS[cell][0]
    fn = {"lstm": ref.lstm_backward, "gru": ref.gru_backward, "rnn": ref.rnn_backward}[kind]
    g = fn(cache, d_out, *d_states)._asdict()
    return {k[1:]: v for k, v in g.items() if v is not None}


def random_upstream(rng, out, states):
    return rng.standard_normal(out.shape), tuple(rng.standard_normal(s.shape) for s in states)


def setup(cell, scenario, seed):
    """Draw a case; for relu, redraw until no live pre-activation is within 1e-3 of the
    kink (a finite difference with eps = 1e-6 must not cross it)."""
    rng = np.random.default_rng(seed)
    while True:
        T, B, I, H = rng.integers(3, 6), rng.integers(2, 4), rng.integers(2, 5), rng.integers(2, 4)
        if "lengths" in scenario:
            B = 3
        p = make_params(cell, rng, T, B, I, H)
        kw = dict(reverse="reverse" in scenario,
                  lengths=make_lengths(rng, T, B) if "lengths" in scenario else None)
        if cell != "rnn_relu" or relu_margin(p, forward(cell, p, **kw)[2]) > 1e-3:
            return rng, p, kw


def relu_margin(p, cache):
    """Smallest |pre-activation| over the live rows of every step (reads the cache)."""
    m = np.inf
    for t, (x, h, *_) in cache.steps:
        a = x @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]
        m = min(m, np.abs(a[cache.valid[t][:, 0]]).min(initial=np.inf))
    return m


# -- gradients against central finite differences --------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradients_match_finite_differences(cell, scenario):
    seed = 10 * list(CELLS).index(cell) + SCENARIOS.index(scenario)
    rng, p, kw = setup(cell, scenario, seed)
    out, states, cache = forward(cell, p, **kw)
    d_out, d_states = random_upstream(rng, out, states)
    grads = backward(cell, cache, d_out, d_states)
    assert set(grads) == set(p), "one gradient per argument"

    def loss(q):
        o, s, _ = forward(cell, q, training=False, **kw)
        return np.sum(d_out * o) + sum(np.sum(d * v) for d, v in zip(d_states, s))

    for name, value in p.items():
        numeric = numeric_grad(lambda: loss(p), value, eps=1e-6)
        assert grads[name].shape == value.shape and grads[name].dtype == value.dtype
        assert np.any(numeric != 0), f"d{name}: loss does not depend on {name}; vacuous check"
        # Central differences: truncation O(eps² f''') ~ 1e-12 and round-off
        # O(ulp(loss) / eps) ~ 1e-16 * 10 / 1e-6 = 1e-9 for a loss of magnitude ~10, so an
        # exact gradient agrees to ~1e-8; 1e-7 keeps a margin, while a wrong term is O(1e-2).
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-7, atol=1e-7,
                                   err_msg=f"{cell} {scenario}: d{name}")


# -- forward against scalar steps computed by hand (H = I = B = 1) --------------------------

def _sig(v):
    return 1 / (1 + math.exp(-v))


def _by_hand(cell, xs, wi, wh, bi, bh, h, c, pp):
    """DESIGN §2 for one unit; w*, b* list the gates in their documented order."""
    kind, extra, _ = CELLS[cell]
    for x in xs:
        a = [wi[k] * x + bi[k] + wh[k] * h + bh[k] for k in range(len(wi))]
        if kind == "lstm":                                      # gates i, f, g, o
            i, f = _sig(a[0] + pp[0] * c), _sig(a[1] + pp[1] * c)
            c = f * c + i * math.tanh(a[2])
            h = _sig(a[3] + pp[2] * c) * math.tanh(c)
        elif kind == "gru":                                     # gates r, z, n
            r, z = _sig(a[0]), _sig(a[1])
            if extra["reset_after"]:
                n = math.tanh(wi[2] * x + bi[2] + r * (wh[2] * h + bh[2]))
            else:
                n = math.tanh(wi[2] * x + bi[2] + wh[2] * (r * h) + bh[2])
            h = (1 - z) * n + z * h
        else:
            h = math.tanh(a[0]) if extra["nonlinearity"] == "tanh" else max(a[0], 0.0)
    return h, c


@pytest.mark.parametrize("cell", list(CELLS))
def test_forward_matches_hand_computed_scalar_steps(cell):
    rng = np.random.default_rng(7)
    p = make_params(cell, rng, 3, 1, 1, 1)
    p["b_hh"] += 1.0                    # make reset-before and reset-after differ clearly
    pp = p["peephole"][:, 0] if "peephole" in p else [0, 0, 0]
    h, c = _by_hand(cell, p["x"][:, 0, 0], p["w_ih"][:, 0], p["w_hh"][:, 0], p["b_ih"],
                    p["b_hh"], p["h0"][0, 0], p["c0"][0, 0] if "c0" in p else 0.0, pp)
    out, states, _ = forward(cell, p)
    np.testing.assert_allclose(states[0][0, 0], h, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(out[-1, 0, 0], h, rtol=1e-13, atol=1e-14)
    if len(states) == 2:
        np.testing.assert_allclose(states[1][0, 0], c, rtol=1e-13, atol=1e-14)


# -- sequence semantics --------------------------------------------------------------------

def case(cell, seed=0, T=5, B=4, I=3, H=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    p = make_params(cell, rng, T, B, I, H, dtype)
    lengths = rng.permutation(np.array([0, T, 2, 3][:B]))
    return rng, p, lengths


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_padded_steps(cell, reverse):
    """Padded outputs and dx are exactly 0; a length-0 sequence returns its initial state
    and passes d_h_n (d_c_n) straight to dh0 (dc0); padded x and d_out are never read."""
    rng, p, lengths = case(cell)
    out, states, cache = forward(cell, p, lengths=lengths, reverse=reverse)
    d_out, d_states = random_upstream(rng, out, states)
    g = backward(cell, cache, d_out, d_states)
    pad = np.arange(len(out))[:, None] >= lengths[None, :]           # (T, B)
    assert np.all(out[pad] == 0) and np.all(g["x"][pad] == 0)
    assert cell == "rnn_relu" or np.all(out[~pad] != 0)        # relu outputs may be 0
    e = np.flatnonzero(lengths == 0)[0]
    init = [p["h0"], p["c0"]] if "c0" in p else [p["h0"]]
    for s, s0, d, ds0 in zip(states, init, d_states, [g["h0"], g.get("c0")]):
        assert np.array_equal(s[e], s0[e]) and np.array_equal(ds0[e], d[e])

    q = dict(p, x=np.where(pad[:, :, None], np.nan, p["x"]))          # NaN padding
    out2, states2, cache2 = forward(cell, q, lengths=lengths, reverse=reverse)
    g2 = backward(cell, cache2, np.where(pad[:, :, None], np.nan, d_out), d_states)
    assert np.array_equal(out2, out)
    for a, b in zip(states2, states):
        assert np.array_equal(a, b)
    for k in g:
        assert np.array_equal(g2[k], g[k]), k


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_each_sequence_equals_running_it_alone(cell, reverse):
    """Row b with lengths[b] = L gives what running x[:L, b] alone gives (outputs, final
    states, dx, dh0); the weight gradients are the sums over the rows run alone."""
    rng, p, lengths = case(cell, seed=1)
    out, states, cache = forward(cell, p, lengths=lengths, reverse=reverse)
    d_out, d_states = random_upstream(rng, out, states)
    g = backward(cell, cache, d_out, d_states)
    wsum = {k: 0 for k in g if k not in ("x", "h0", "c0")}
    for b, L in enumerate(lengths):
        q = dict(p, x=p["x"][:L, b:b + 1], h0=p["h0"][b:b + 1])
        if "c0" in p:
            q["c0"] = p["c0"][b:b + 1]
        o1, s1, c1 = forward(cell, q, reverse=reverse)
        g1 = backward(cell, c1, d_out[:L, b:b + 1], tuple(d[b:b + 1] for d in d_states))
        np.testing.assert_allclose(out[:L, b], o1[:, 0], rtol=1e-12, atol=1e-14)
        for s, v in zip(states, s1):
            np.testing.assert_allclose(s[b], v[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g["x"][:L, b], g1["x"][:, 0], rtol=1e-12, atol=1e-14)
        for k in ("h0", "c0"):
            if k in g:
                np.testing.assert_allclose(g[k][b], g1[k][0], rtol=1e-12, atol=1e-14)
        for k in wsum:
            wsum[k] = wsum[k] + g1[k]
    for k, v in wsum.items():
        np.testing.assert_allclose(g[k], v, rtol=1e-12, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("cell", list(CELLS))
def test_reverse_equals_forward_on_flipped_sequences(cell):
    """reverse=True on x equals reverse=False on each sequence flipped within its length,
    outputs and dx mapped back to the time index they belong to."""
    rng, p, lengths = case(cell, seed=2)
    T, B = p["x"].shape[:2]
    flip = np.array([[(L - 1 - t if t < L else t) for L in lengths] for t in range(T)])
    cols = np.arange(B)[None, :]
    out_r, states_r, cache_r = forward(cell, p, lengths=lengths, reverse=True)
    out_f, states_f, cache_f = forward(cell, dict(p, x=p["x"][flip, cols]), lengths=lengths)
    np.testing.assert_allclose(out_r, out_f[flip, cols], rtol=1e-12, atol=1e-14)
    for a, b in zip(states_r, states_f):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    d_out, d_states = random_upstream(rng, out_r, states_r)
    g_r = backward(cell, cache_r, d_out, d_states)
    g_f = backward(cell, cache_f, d_out[flip, cols], d_states)
    g_f["x"] = g_f["x"][flip, cols]
    for k in g_r:
        np.testing.assert_allclose(g_r[k], g_f[k], rtol=1e-12, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("cell", list(CELLS))
def test_inference_mode_and_cache_reuse(cell):
    rng, p, lengths = case(cell, seed=3)
    out, states, cache = forward(cell, p, lengths=lengths)
    out0, states0, cache0 = forward(cell, p, lengths=lengths, training=False)
    assert cache0 is None and np.array_equal(out0, out)
    for a, b in zip(states0, states):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="cache is None"):
        backward(cell, None, None, ())
    d_out, d_states = random_upstream(rng, out, states)
    g1, g2 = backward(cell, cache, d_out, d_states), backward(cell, cache, d_out, d_states)
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), f"backward twice differs in d{k}"
    # all upstream gradients None = zero gradients of the right shapes
    for k, v in backward(cell, cache, None, (None,) * len(states)).items():
        assert v.shape == p[k].shape and not np.any(v)


@pytest.mark.parametrize("cell", list(CELLS))
def test_inputs_are_not_modified(cell):
    rng, p, lengths = case(cell, seed=4)
    p["x"] = np.asfortranarray(p["x"])                      # non-contiguous input accepted
    p["w_hh"] = np.asfortranarray(p["w_hh"])
    keep = {k: v.copy() for k, v in p.items()}
    lengths_keep = lengths.copy()
    out, states, cache = forward(cell, p, lengths=lengths, reverse=True)
    d_out, d_states = random_upstream(rng, out, states)
    d_keep = [d_out.copy()] + [d.copy() for d in d_states]
    g = backward(cell, cache, d_out, d_states)
    for k in p:
        assert np.array_equal(p[k], keep[k]), k
    assert np.array_equal(lengths, lengths_keep)
    for a, b in zip([d_out, *d_states], d_keep):
        assert np.array_equal(a, b)
    # no result shares memory with an argument, even where it equals one (length 0, T = 0)
    args = list(p.values()) + [d_out, *d_states]
    results = [out, *states, *g.values()]
    assert not any(np.shares_memory(r, a) for r in results for a in args)
    out, states, cache = forward(cell, dict(p, x=p["x"][:0]))
    results = [out, *states, *backward(cell, cache, None, d_states).values()]
    assert not any(np.shares_memory(r, a) for r in results for a in args + list(d_states))


@pytest.mark.parametrize("cell", list(CELLS))
def test_float32_agrees_with_float64(cell):
    rng, p64, lengths = case(cell, seed=5, T=6, B=4, I=4, H=5)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    out64, s64, c64 = forward(cell, p64, lengths=lengths, reverse=True)
    out32, s32, c32 = forward(cell, p32, lengths=lengths, reverse=True)
    d_out, d_states = random_upstream(rng, out64, s64)
    g64 = backward(cell, c64, d_out, d_states)
    g32 = backward(cell, c32, d_out.astype(np.float32),
                   tuple(d.astype(np.float32) for d in d_states))
    # float32 rounding is 6e-8 per operation; a few dozen operations deep (T=6, sums over
    # B*T <= 24 terms of O(1) values) keeps the error well under 1e-5.
    for a, b, name in [(out32, out64, "out"), *zip(s32, s64, ["h_n", "c_n"]),
                       *((g32[k], g64[k], "d" + k) for k in g64)]:
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("cell", list(CELLS))
def test_defaults(cell):
    """No lengths = all lengths T; None biases/states = zeros (gradients still returned)."""
    rng, p, _ = case(cell, seed=6)
    T, B = p["x"].shape[:2]
    out, states, cache = forward(cell, p)
    out2, states2, _ = forward(cell, p, lengths=np.full(B, T))
    assert np.array_equal(out, out2) and all(np.array_equal(a, b) for a, b in zip(states, states2))
    zero = {k: np.zeros_like(p[k]) for k in ("b_ih", "b_hh", "h0", "c0") if k in p}
    none = {k: None for k in zero}
    (o1, s1, c1), (o2, s2, c2) = forward(cell, dict(p, **zero)), forward(cell, dict(p, **none))
    assert np.array_equal(o1, o2)
    d_out, d_states = random_upstream(rng, o1, s1)
    g1, g2 = backward(cell, c1, d_out, d_states), backward(cell, c2, d_out, d_states)
    assert set(g1) == set(g2)
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), k


def test_zero_peephole_equals_plain_lstm():
    rng, p, lengths = case("lstm_peephole", seed=8)
    out, states, cache = forward("lstm_peephole", dict(p, peephole=np.zeros_like(p["peephole"])),
                                 lengths=lengths)
    q = {k: v for k, v in p.items() if k != "peephole"}
    out2, states2, cache2 = forward("lstm", q, lengths=lengths)
    assert np.array_equal(out, out2)
    d_out, d_states = random_upstream(rng, out, states)
    g, g2 = backward("lstm", cache, d_out, d_states), backward("lstm", cache2, d_out, d_states)
    assert "peephole" in g and "peephole" not in g2
    for k in g2:
        assert np.array_equal(g[k], g2[k]), k


def test_errors():
    rng, p, lengths = case("gru", seed=9)
    _, _, gru_cache = forward("gru", p)
    with pytest.raises(TypeError, match="cache"):
        ref.lstm_backward(gru_cache)
    with pytest.raises(TypeError, match="cache"):
        ref.rnn_backward(gru_cache)
    with pytest.raises(ValueError, match="d_out"):
        ref.gru_backward(gru_cache, d_out=np.zeros((1, 1, 1)))
    with pytest.raises(TypeError, match="d_h_n"):
        ref.gru_backward(gru_cache, d_h_n=np.zeros(p["h0"].shape, np.float32))
    with pytest.raises(ValueError, match="nonlinearity"):
        ref.rnn_forward(p["x"], p["w_ih"][:3], p["w_hh"][:3], nonlinearity="gelu")
    with pytest.raises(TypeError, match="reverse"):
        forward("gru", p, reverse="yes")
    with pytest.raises(TypeError, match="reset_after"):
        ref.gru_forward(p["x"], p["w_ih"], p["w_hh"], reset_after=1)
    with pytest.raises(TypeError, match="w_ih"):
        forward("gru", dict(p, w_ih=p["w_ih"].astype(np.float32)))
    with pytest.raises(ValueError, match="lengths"):
        forward("gru", p, lengths=np.full(p["x"].shape[1], p["x"].shape[0] + 1))
    with pytest.raises(ValueError, match="peephole"):
        forward("lstm_peephole", dict(make_params("lstm_peephole", rng, 2, 2, 2, 2),
                                      peephole=np.zeros((4, 2))))
