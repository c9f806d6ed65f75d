"""The cell variants of the NumPy reference (docs/variants.md): layer norm, recurrent
dropout masks, zoneout, activations, leaky units and the LSTM projection (proj_size).

Gradients of every argument against central finite differences in float64; the LSTM
projection against torch.nn.LSTM(proj_size=...); activations, recurrent-dropout masks and
go_backwards against Keras 3 (torch backend); invariances the equations promise."""
import os

import numpy as np
import pytest

from fastrnn import reference as ref
from fastrnn._checks import ACTIVATIONS
from _util import GATES, add_variant_arrays, cell_params, numeric_grad

# name -> (cell, forward options, which optional arrays to draw)
#   arrays: "peephole", "w_hr" (proj), "ln" (ln_gain / ln_cell), "rmask", "zmask"
VARIANTS = {
    "lstm_ln": ("lstm", dict(layer_norm=True), {"ln"}),
    "lstm_ln_proj_peephole_masks": ("lstm", dict(layer_norm=True),
                                    {"ln", "w_hr", "peephole", "rmask", "zmask"}),
    "lstm_proj": ("lstm", {}, {"w_hr"}),
    "lstm_acts": ("lstm", dict(activation="softsign", recurrent_activation="hard_sigmoid"),
                  {"rmask"}),
    "lstm_relu_linear": ("lstm", dict(activation="relu", recurrent_activation="linear"), set()),
    "lstm_zoneout_expectation": ("lstm", dict(zoneout=0.3), set()),
    "gru_ln_masks": ("gru", dict(layer_norm=True), {"ln", "rmask", "zmask"}),
    "gru_leak_acts": ("gru", dict(leak_rate=0.3, activation="softsign",
                                  recurrent_activation="hard_sigmoid"), {"rmask"}),
    "gru_reset_before_masks": ("gru", dict(reset_after=False, leak_rate=0.6, zoneout=0.2),
                               {"rmask", "zmask"}),
    "gru_zoneout_expectation": ("gru", dict(zoneout=0.4, activation="relu"), set()),
    "rnn_leak_masks": ("rnn", dict(leak_rate=0.25), {"rmask", "zmask"}),
    "rnn_sigmoid_leak": ("rnn", dict(nonlinearity="sigmoid", leak_rate=0.5, zoneout=0.3), set()),
    "rnn_softsign": ("rnn", dict(nonlinearity="softsign"), {"rmask"}),
    "rnn_hard_sigmoid": ("rnn", dict(nonlinearity="hard_sigmoid"), set()),
    "rnn_linear": ("rnn", dict(nonlinearity="linear"), set()),
}
# arrays that get a gradient; masks are inputs without one
DIFFERENTIABLE = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "peephole", "w_hr",
                  "ln_gain", "ln_cell")


def make_case(variant, rng, T=4, B=3, I=3, H=3, P=2, dtype=np.float64):
    cell, opts, extra = VARIANTS[variant]
    R = P if "w_hr" in extra else H
    p = add_variant_arrays(cell_params(rng, cell, T, B, I, H, R=R), rng, cell, extra, T, B, H, P)
    return {k: v.astype(dtype) for k, v in p.items()}, dict(opts)


def forward(cell, p, **kw):
    fn = getattr(ref, f"{cell}_forward")
    args = [p["x"], p["w_ih"], p["w_hh"], p.get("b_ih"), p.get("b_hh"), p.get("h0")]
    named = {k: v for k, v in p.items() if k not in ("x", "w_ih", "w_hh", "b_ih", "b_hh",
                                                    "h0", "c0")}
    if cell == "lstm":
        out, h, c, cache = fn(*args, p.get("c0"), **named, **kw)
        return out, (h, c), cache
    out, h, cache = fn(*args, **named, **kw)
    return out, (h,), cache


def backward(cell, cache, d_out, d_states):
    g = getattr(ref, f"{cell}_backward")(cache, d_out, *d_states)._asdict()
    return {k[1:]: v for k, v in g.items() if v is not None}


def lengths_for(rng, T, B):
    return rng.permutation(np.concatenate([[0, T], rng.integers(1, T, size=B - 2)]))


# -- gradients of every argument against central finite differences (float64) ------------

@pytest.mark.parametrize("scenario", ["plain", "lengths_reverse"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_match_finite_differences(variant, scenario):
    cell = VARIANTS[variant][0]
    rng = np.random.default_rng(list(VARIANTS).index(variant) * 7 + len(scenario))
    p, kw = make_case(variant, rng)
    T, B = p["x"].shape[:2]
    if scenario == "lengths_reverse":
        kw.update(lengths=lengths_for(rng, T, B), reverse=True)
    out, states, cache = forward(cell, p, **kw)
    d_out = rng.standard_normal(out.shape)
    d_states = tuple(rng.standard_normal(s.shape) for s in states)
    grads = backward(cell, cache, d_out, d_states)
    assert set(grads) == {k for k in p if k in DIFFERENTIABLE}, "one gradient per parameter"

    def loss(q):
        o, s, _ = forward(cell, q, training=False, **kw)
        return np.sum(d_out * o) + sum(np.sum(d * v) for d, v in zip(d_states, s))

    for name in grads:
        value = p[name]
        numeric = numeric_grad(lambda: loss(p), value, eps=1e-6)
        assert grads[name].shape == value.shape and grads[name].dtype == value.dtype
        assert np.any(numeric != 0), f"d{name}: loss does not depend on {name}; vacuous check"
        # As tests/test_reference.py: central differences are exact to ~1e-8 here (round-off
        # ulp(loss)/eps ~ 1e-9, truncation ~1e-12); a wrong term is O(1e-2). The piecewise
        # activations (relu, hard_sigmoid) are linear on each side of their kinks, and no
        # pre-activation of these seeds lies within eps of a kink.
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-7, atol=1e-7,
                                   err_msg=f"{variant} {scenario}: d{name}")


# -- what each variant promises ----------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_norm_output_is_invariant_to_weight_scale(cell):
    variant = "lstm_ln" if cell == "lstm" else "gru_ln_masks"
    p, kw = make_case(variant, np.random.default_rng(1), T=5, B=4, I=4, H=5)
    out, states, _ = forward(cell, p, **kw)
    q = dict(p, w_ih=3.0 * p["w_ih"], w_hh=2.0 * p["w_hh"])
    out2, states2, _ = forward(cell, q, **kw)
    # Invariant up to eps: scaling v by α > 1 changes 1/sqrt(var + eps) by at most
    # eps / (2 var) relative. The smallest variance of any normalised vector in this run
    # is checked below (W_ih x; W_hh h at t = 0, the later h are O(0.3) like h0), so the
    # outputs (|h| < 1) move by less than 10 * eps / (2 * min var); without layer_norm
    # they differ by O(0.1).
    sx = p["x"].reshape(-1, p["x"].shape[2]) @ p["w_ih"].T
    min_var = min(sx.var(axis=1).min(), (p["h0"] @ p["w_hh"].T).var(axis=1).min())
    tol = 10 * 1e-5 / (2 * min_var)
    assert tol < 1e-3
    np.testing.assert_allclose(out2, out, rtol=0, atol=tol)
    for a, b in zip(states2, states):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    plain = {k: v for k, v in q.items() if not k.startswith("ln_")}
    out3, _, _ = forward(cell, plain, **{**kw, "layer_norm": False})
    assert np.abs(out3 - out).max() > 1e-2


def test_layer_norm_lstm_matches_hand_written_step():
    """One step written from haste's equations with its own layer norm (B=2, H=3)."""
    p, kw = make_case("lstm_ln", np.random.default_rng(2), T=1, B=2, I=3, H=3)

    x, h, c = p["x"][0], p["h0"], p["c0"]
    a = _ln(x @ p["w_ih"].T, p["ln_gain"][0]) + _ln(h @ p["w_hh"].T, p["ln_gain"][1]) \
        + p["b_ih"] + p["b_hh"]
    s = lambda v: 1 / (1 + np.exp(-v))            # noqa: E731
    i, f, g, o = s(a[:, :3]), s(a[:, 3:6]), np.tanh(a[:, 6:9]), s(a[:, 9:])
    c2 = f * c + i * g
    h2 = o * np.tanh(_ln(c2, p["ln_cell"][0], p["ln_cell"][1]))
    out, (h_n, c_n), _ = forward("lstm", p, **kw)
    np.testing.assert_allclose(h_n, h2, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c_n, c2, rtol=1e-13, atol=1e-14)   # c itself is not normalised


def _ln(v, g, b=0.0):
    mu, var = v.mean(1, keepdims=True), v.var(1, keepdims=True)
    return g * (v - mu) / np.sqrt(var + 1e-5) + b


def _hsig(v):
    return np.clip(v / 6 + 0.5, 0, 1)


def test_every_lstm_option_in_one_hand_written_step():
    """docs/variants.md's LSTM written out independently: per-gate recurrent masks, both
    norms, softsign / hard_sigmoid, projection, zoneout of h and c (h from the un-zoned c')."""
    p, kw = make_case("lstm_ln_proj_peephole_masks", np.random.default_rng(16), T=1, B=3,
                      I=3, H=4, P=2)
    p.pop("peephole")
    kw.update(activation="softsign", recurrent_activation="hard_sigmoid")
    H, m, zh, zc = 4, p["recurrent_mask"], p["zoneout_mask"][0], p["zoneout_mask_c"][0]
    x, h, c = p["x"][0], p["h0"], p["c0"]
    sh = np.concatenate([(h * m[k]) @ p["w_hh"][k * H:(k + 1) * H].T for k in range(4)], 1)
    a = _ln(x @ p["w_ih"].T, p["ln_gain"][0]) + p["b_ih"] + _ln(sh, p["ln_gain"][1]) + p["b_hh"]
    soft = lambda v: v / (1 + np.abs(v))          # noqa: E731
    i, f, g, o = _hsig(a[:, :H]), _hsig(a[:, H:2 * H]), soft(a[:, 2 * H:3 * H]), _hsig(a[:, 3 * H:])
    c_new = f * c + i * g
    h_new = (o * soft(_ln(c_new, p["ln_cell"][0], p["ln_cell"][1]))) @ p["w_hr"].T
    out, (h_n, c_n), _ = forward("lstm", p, **kw)
    np.testing.assert_allclose(h_n, zh * h + (1 - zh) * h_new, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c_n, zc * c + (1 - zc) * c_new, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(out[0], h_n)


@pytest.mark.parametrize("reset_after", [True, False])
def test_every_gru_option_in_one_hand_written_step(reset_after):
    """docs/variants.md's GRU written out independently: per-gate masks (r, z, n order),
    layer norm (reset_after only), relu / hard_sigmoid, leak, zoneout."""
    p, kw = make_case("gru_ln_masks", np.random.default_rng(17), T=1, B=3, I=3, H=4)
    kw.update(activation="relu", recurrent_activation="hard_sigmoid", leak_rate=0.35,
              reset_after=reset_after, layer_norm=reset_after)
    if not reset_after:
        p.pop("ln_gain")
    H, m, zh = 4, p["recurrent_mask"], p["zoneout_mask"][0]
    x, h = p["x"][0], p["h0"]
    W, b = p["w_hh"], p["b_hh"]
    sx = x @ p["w_ih"].T
    ax = (_ln(sx, p["ln_gain"][0]) if reset_after else sx) + p["b_ih"]
    if reset_after:
        sh = np.concatenate([(h * m[k]) @ W[k * H:(k + 1) * H].T for k in range(3)], 1)
        u = _ln(sh, p["ln_gain"][1]) + b
        r, z = _hsig(ax[:, :H] + u[:, :H]), _hsig(ax[:, H:2 * H] + u[:, H:2 * H])
        n = np.maximum(ax[:, 2 * H:] + r * u[:, 2 * H:], 0)
    else:
        r = _hsig(ax[:, :H] + (h * m[0]) @ W[:H].T + b[:H])
        z = _hsig(ax[:, H:2 * H] + (h * m[1]) @ W[H:2 * H].T + b[H:2 * H])
        n = np.maximum(ax[:, 2 * H:] + (r * (h * m[2])) @ W[2 * H:].T + b[2 * H:], 0)
    h_new = (1 - 0.35) * h + 0.35 * ((1 - z) * n + z * h)
    out, (h_n,), _ = forward("gru", p, **kw)
    np.testing.assert_allclose(h_n, zh * h + (1 - zh) * h_new, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("variant", ["lstm_ln_proj_peephole_masks", "gru_ln_masks",
                                     "rnn_leak_masks"])
def test_masks_of_ones_and_zeros_are_the_plain_cell(variant):
    """recurrent_mask = 1 and zoneout_mask = 0 change nothing; zoneout_mask = 1 freezes the
    state (out[t] = h0 at every step)."""
    cell = VARIANTS[variant][0]
    p, kw = make_case(variant, np.random.default_rng(3))
    plain = {k: v for k, v in p.items() if "mask" not in k}
    out, states, _ = forward(cell, plain, **kw)
    ones = dict(plain, recurrent_mask=np.ones_like(p["recurrent_mask"]),
                zoneout_mask=np.zeros_like(p["zoneout_mask"]))
    if cell == "lstm":
        ones["zoneout_mask_c"] = np.zeros_like(p["zoneout_mask_c"])
    out1, states1, _ = forward(cell, ones, **kw)
    # the masked path multiplies gate by gate: same products, summed in another order
    np.testing.assert_allclose(out1, out, rtol=1e-13, atol=1e-14)
    frozen = {k: (np.ones_like(v) if k.startswith("zoneout_mask") else v) for k, v in ones.items()}
    out2, states2, _ = forward(cell, frozen, **kw)
    assert np.array_equal(out2, np.broadcast_to(p["h0"], out2.shape))
    assert np.array_equal(states2[0], p["h0"])
    if cell == "lstm":
        assert np.array_equal(states2[1], p["c0"])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_zoneout_without_mask_is_its_expectation(cell):
    """zoneout=p with no mask (eval) = the mask filled with p; p = 0 is the plain cell."""
    variant = {"lstm": "lstm_zoneout_expectation", "gru": "gru_zoneout_expectation",
               "rnn": "rnn_sigmoid_leak"}[cell]
    p, kw = make_case(variant, np.random.default_rng(4))
    z = kw["zoneout"]
    out, states, _ = forward(cell, p, **kw)
    T, B = p["x"].shape[:2]
    masks = dict(zoneout_mask=np.full((T, B, p["h0"].shape[1]), z))
    if cell == "lstm":
        masks["zoneout_mask_c"] = np.full((T, B, p["c0"].shape[1]), z)
    out1, _, _ = forward(cell, dict(p, **masks), **{**kw, "zoneout": 0.0})
    assert np.array_equal(out1, out)
    out0, _, _ = forward(cell, p, **{**kw, "zoneout": 0.0})
    assert np.abs(out0 - out).max() > 1e-3


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_leak_rate(cell):
    """leak_rate = 1 is the plain cell bit for bit; otherwise each step is
    (1 - a) h + a * (plain step from h), checked one step at a time."""
    rng = np.random.default_rng(5)
    p, _ = make_case("gru_leak_acts" if cell == "gru" else "rnn_leak_masks", rng)
    p = {k: v for k, v in p.items() if "mask" not in k}
    out, _, _ = forward(cell, p)
    out1, _, _ = forward(cell, p, leak_rate=1.0)
    assert np.array_equal(out, out1)
    a = 0.3
    out_leak, (h_n,), _ = forward(cell, p, leak_rate=a)
    h = p["h0"]
    for t in range(p["x"].shape[0]):
        step, _, _ = forward(cell, dict(p, x=p["x"][t:t + 1], h0=h))
        h = (1 - a) * h + a * step[0]
        np.testing.assert_allclose(out_leak[t], h, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_derivatives_in_terms_of_the_output(name):
    f, df = ref.ACTIVATIONS[name]
    a = np.linspace(-5, 5, 1001)
    a = a[np.min(np.abs(a[:, None] - np.array([-3.0, 0.0, 3.0])), axis=1) > 1e-3]  # off kinks
    numeric = (f(a + 1e-6) - f(a - 1e-6)) / 2e-6
    np.testing.assert_allclose(df(f(a)), numeric, rtol=1e-6, atol=1e-8)
    expected = {"tanh": np.tanh(a), "sigmoid": 1 / (1 + np.exp(-a)),
                "hard_sigmoid": np.minimum(np.maximum(a + 3, 0), 6) / 6,
                "relu": np.maximum(a, 0), "linear": a, "softsign": a / (1 + np.abs(a))}[name]
    np.testing.assert_allclose(f(a), expected, rtol=1e-14, atol=1e-15)


def test_float32_agrees_with_float64():
    for variant in ("lstm_ln_proj_peephole_masks", "gru_ln_masks", "rnn_leak_masks"):
        cell = VARIANTS[variant][0]
        p64, kw = make_case(variant, np.random.default_rng(6))
        p32 = {k: v.astype(np.float32) for k, v in p64.items()}
        o64, s64, c64 = forward(cell, p64, **kw)
        o32, s32, c32 = forward(cell, p32, **kw)
        d = np.ones_like(o64)
        g64 = backward(cell, c64, d, tuple(np.ones_like(s) for s in s64))
        g32 = backward(cell, c32, d.astype(np.float32),
                       tuple(np.ones_like(s) for s in s32))
        # float32 round-off 6e-8 per op, through T = 4 steps and layer norms whose
        # 1/std amplifies it by at most ~10 here: well under 1e-4.
        for k in g64:
            assert g32[k].dtype == np.float32
            np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-4, err_msg=k)
        np.testing.assert_allclose(o32, o64, rtol=1e-5, atol=1e-5)


# -- bad options ----------------------------------------------------------------------------

def test_bad_options_raise_clear_errors():
    p, _ = make_case("gru_leak_acts", np.random.default_rng(7))
    x, w_ih, w_hh = p["x"], p["w_ih"], p["w_hh"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    cases = [
        (ref.gru_forward, dict(activation="gelu"), ValueError, "activation must be one of"),
        (ref.gru_forward, dict(recurrent_activation="hardsigmoid"), ValueError,
         "recurrent_activation must be one of"),
        (ref.gru_forward, dict(zoneout=1.0), ValueError, r"zoneout must lie in \[0, 1\)"),
        (ref.gru_forward, dict(zoneout=-0.1), ValueError, "zoneout must lie in"),
        (ref.gru_forward, dict(zoneout="0.1"), TypeError, "zoneout must be a float"),
        (ref.gru_forward, dict(leak_rate=0.0), ValueError, r"leak_rate must lie in \(0, 1\]"),
        (ref.gru_forward, dict(leak_rate=1.5), ValueError, "leak_rate must lie in"),
        (ref.gru_forward, dict(layer_norm=True, reset_after=False), ValueError,
         "layer_norm=True needs reset_after=True"),
        (ref.gru_forward, dict(ln_gain=np.ones((2, 3 * H))), ValueError,
         "ln_gain is given but layer_norm=False"),
        (ref.gru_forward, dict(layer_norm=True, ln_gain=np.ones((2, H))), ValueError,
         r"ln_gain must have shape \(2, %d\)" % (3 * H)),
        (ref.gru_forward, dict(recurrent_mask=np.ones((B, H))), ValueError,
         r"recurrent_mask must have shape \(3, %d, %d\)" % (B, H)),
        (ref.gru_forward, dict(zoneout_mask=np.ones((T, B, H + 1))), ValueError,
         "zoneout_mask must have shape"),
        (ref.gru_forward, dict(zoneout_mask=np.ones((T, B, H), np.float32)), TypeError,
         "zoneout_mask must have dtype float64"),
        (ref.gru_forward, dict(layer_norm=1), TypeError, "layer_norm must be a bool"),
    ]
    for fn, kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn(x, w_ih, w_hh, **kw)
    r = np.random.default_rng(0).standard_normal
    with pytest.raises(ValueError, match="layer_norm=True is supported for LSTM and GRU only"):
        ref.rnn_forward(x, r((H, x.shape[2])), r((H, H)), layer_norm=True)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        ref.rnn_forward(x, r((H, x.shape[2])), r((H, H)), nonlinearity="elu")
    with pytest.raises(ValueError, match=r"w_hr must have shape \(2, %d\)" % H):
        ref.lstm_forward(x, r((4 * H, x.shape[2])), r((4 * H, 2)), w_hr=r((3, H)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(%d, 2\)" % B):
        ref.lstm_forward(x, r((4 * H, x.shape[2])), r((4 * H, 2)), h0=r((B, H)), w_hr=r((2, H)))
    with pytest.raises(ValueError, match=r"zoneout_mask_c must have shape"):
        ref.lstm_forward(x, r((4 * H, x.shape[2])), r((4 * H, H)),
                         zoneout_mask_c=np.ones((T, B, 2)))


def test_inputs_are_not_modified():
    for variant in ("lstm_ln_proj_peephole_masks", "gru_ln_masks", "rnn_leak_masks"):
        cell = VARIANTS[variant][0]
        p, kw = make_case(variant, np.random.default_rng(14))
        keep = {k: v.copy() for k, v in p.items()}
        out, states, cache = forward(cell, p, **kw)
        g = backward(cell, cache, np.ones_like(out), tuple(np.ones_like(s) for s in states))
        for k in p:
            assert np.array_equal(p[k], keep[k]), k
        results = [out, *states, *g.values()]
        assert not any(np.shares_memory(r, a) for r in results for a in p.values())


# -- LSTM projection against torch.nn.LSTM(proj_size=...) (float64) ------------------------

@pytest.mark.torch
@pytest.mark.parametrize("lengths", [False, True])
def test_projection_matches_torch(lengths):
    torch = pytest.importorskip("torch")
    T, B, I, H, P = 5, 4, 3, 6, 2
    torch.manual_seed(0)
    m = torch.nn.LSTM(I, H, proj_size=P, bidirectional=True, dtype=torch.float64)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2, B, P)), rng.standard_normal((2, B, H))
    L = rng.permutation(np.array([T, 1, 3, 4])) if lengths else np.full(B, T)
    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(L), enforce_sorted=False)
    yp, (hn, cn) = m(packed, (h0t, c0t))
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=T)
    d_out = rng.standard_normal(y.shape)
    d_h, d_c = rng.standard_normal(hn.shape), rng.standard_normal(cn.shape)
    loss = (y * torch.tensor(d_out)).sum() + (hn * torch.tensor(d_h)).sum() \
        + (cn * torch.tensor(d_c)).sum()
    loss.backward()
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    named = dict(m.named_parameters())
    dx = 0
    for d, sfx in enumerate(["", "_reverse"]):
        w = {k: sd[f"{k}_l0{sfx}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                             "weight_hr")}
        out, h_n, c_n, cache = ref.lstm_forward(
            x, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"], h0[d], c0[d],
            lengths=L, reverse=bool(d), w_hr=w["weight_hr"])
        # float64 on both sides, the same operations in another order: ~1e-15 relative
        # per step; 1e-9 is the bar and leaves orders of magnitude.
        tol = dict(rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out, y.detach().numpy()[:, :, d * P:(d + 1) * P], **tol)
        np.testing.assert_allclose(h_n, hn.detach().numpy()[d], **tol)
        np.testing.assert_allclose(c_n, cn.detach().numpy()[d], **tol)
        g = ref.lstm_backward(cache, d_out[:, :, d * P:(d + 1) * P], d_h[d], d_c[d])
        for key, mine in (("weight_ih", g.dw_ih), ("weight_hh", g.dw_hh), ("bias_ih", g.db_ih),
                          ("bias_hh", g.db_hh), ("weight_hr", g.dw_hr)):
            np.testing.assert_allclose(mine, named[f"{key}_l0{sfx}"].grad.numpy(), **tol,
                                       err_msg=key + sfx)
        np.testing.assert_allclose(g.dh0, h0t.grad.numpy()[d], **tol)
        np.testing.assert_allclose(g.dc0, c0t.grad.numpy()[d], **tol)
        dx = dx + g.dx
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)


# -- Keras 3: activations, recurrent-dropout masks, go_backwards -------------------------

@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "torch"     # before the first import of keras
    return pytest.importorskip("keras")


def keras_test(f):
    f = pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")(f)
    return pytest.mark.keras(f)


# Keras 3.15 on torch with dtype="float64" still differs from an exact float64 loop by
# ~1.5e-7 (measured on a plain SimpleRNN: part of its computation runs in float32), so
# the comparison is at 1e-6; a wrong activation, gate order or mask differs by > 1e-2.
KERAS_TOL = dict(rtol=1e-6, atol=1e-6)

KERAS = {   # fastrnn cell, Keras class, Keras options (float64 layers)
    "lstm_hard_sigmoid_relu": ("lstm", "LSTM", dict(activation="relu",
                                                    recurrent_activation="hard_sigmoid")),
    "lstm_softsign_linear": ("lstm", "LSTM", dict(activation="softsign",
                                                  recurrent_activation="sigmoid")),
    "gru_hard_sigmoid": ("gru", "GRU", dict(recurrent_activation="hard_sigmoid",
                                            activation="softsign")),
    "gru_reset_before_relu": ("gru", "GRU", dict(reset_after=False, activation="relu")),
    "rnn_sigmoid": ("rnn", "SimpleRNN", dict(activation="sigmoid")),
    "rnn_softsign": ("rnn", "SimpleRNN", dict(activation="softsign")),
}


def keras_layer(keras, kind, opts, I, **more):
    layer = getattr(keras.layers, kind)(4, return_sequences=True, return_state=True,
                                        dtype="float64", **opts, **more)
    layer.build((None, None, I))
    rng = np.random.default_rng(9)
    layer.set_weights([0.5 * rng.standard_normal(w.shape) for w in layer.get_weights()])
    return layer


def reference_of(cell, kind, opts, layer, x, **kw):
    """The reference on the Keras layer's weights, x (B, T, I) batch-first."""
    from fastrnn.interop import _from_keras_weights
    o = {"bias": True, "reset_after": opts.get("reset_after", True)}
    w_ih, w_hh, b_ih, b_hh = _from_keras_weights(kind, layer.get_weights(), o)
    names = {}
    if cell == "rnn":
        names["nonlinearity"] = opts.get("activation", "tanh")
    else:
        names = dict(activation=opts.get("activation", "tanh"),
                     recurrent_activation=opts.get("recurrent_activation", "sigmoid"))
        if cell == "gru":
            names["reset_after"] = o["reset_after"]
    fn = getattr(ref, f"{cell}_forward")
    res = fn(np.ascontiguousarray(x.transpose(1, 0, 2)), w_ih, w_hh, b_ih, b_hh,
             **names, **kw)
    return res[0].transpose(1, 0, 2), res[1]


@keras_test
@pytest.mark.parametrize("name", list(KERAS))
def test_activations_and_eval_recurrent_dropout_match_keras(keras, name):
    """Keras with recurrent_dropout, called in inference (training=False), is the plain
    cell; both activations follow Keras 3's definitions (hard_sigmoid = relu6(x+3)/6)."""
    cell, kind, opts = KERAS[name]
    x = np.random.default_rng(10).standard_normal((3, 5, 2))
    layer = keras_layer(keras, kind, opts, 2, recurrent_dropout=0.4)
    y, h, *_ = (np.asarray(v.detach()) for v in layer(x, training=False))
    out, h_n = reference_of(cell, kind, opts, layer, x)
    np.testing.assert_allclose(out, y, **KERAS_TOL)
    np.testing.assert_allclose(h_n, h, **KERAS_TOL)


@keras_test
@pytest.mark.parametrize("cell, kind, opts", [("lstm", "LSTM", {}), ("gru", "GRU", {}),
                                              ("gru", "GRU", {"reset_after": False}),
                                              ("rnn", "SimpleRNN", {})])
def test_recurrent_mask_semantics_match_keras_training(keras, cell, kind, opts):
    """Keras in training with its recurrent-dropout mask replaced by ours: one mask per
    sequence, per gate for LSTM (i, f, c, o) and GRU (z, r, h), one for SimpleRNN. Our
    recurrent_mask is in fastrnn gate order (GRU: r, z, n)."""
    x = np.random.default_rng(11).standard_normal((3, 5, 2))
    layer = keras_layer(keras, kind, opts, 2, recurrent_dropout=0.5)
    G = GATES[cell]
    mask = (np.random.default_rng(12).random((G, 3, 4)) > 0.5) / 0.5
    keras_order = mask[[1, 0, 2]] if cell == "gru" else mask
    given = [keras.ops.convert_to_tensor(m) for m in keras_order]
    layer.cell.get_recurrent_dropout_mask = lambda h: given if G > 1 else given[0]
    y, h, *_ = (np.asarray(v.detach()) for v in layer(x, training=True))
    out, h_n = reference_of(cell, kind, opts, layer, x, recurrent_mask=mask)
    np.testing.assert_allclose(out, y, **KERAS_TOL)
    np.testing.assert_allclose(h_n, h, **KERAS_TOL)
    plain, _ = reference_of(cell, kind, opts, layer, x)
    assert np.abs(plain - out).max() > 1e-3, "the mask must matter"


@keras_test
def test_keras_go_backwards_is_reverse_with_outputs_in_processing_order(keras):
    """docs/variants.md: go_backwards=True returns outputs in processing order, i.e.
    Keras out[:, t] = fastrnn reverse=True out[:, T-1-t]; the final state is reverse's h_n."""
    x = np.random.default_rng(13).standard_normal((3, 5, 2))
    layer = keras_layer(keras, "GRU", {}, 2, go_backwards=True)
    y, h = (np.asarray(v.detach()) for v in layer(x))
    out, h_n = reference_of("gru", "GRU", {}, layer, x, reverse=True)
    np.testing.assert_allclose(y, out[:, ::-1], **KERAS_TOL)
    np.testing.assert_allclose(h, h_n, **KERAS_TOL)


# -- the mask draws the layer will use ----------------------------------------------------

def test_mask_draws():
    from fastrnn.masks import recurrent_dropout_mask, zoneout_mask
    rng = np.random.default_rng(15)
    m = recurrent_dropout_mask(rng, 0.25, 4, 50, 40, np.float64)
    assert m.shape == (4, 50, 40) and set(np.unique(m)) == {0.0, 1 / 0.75}
    # 8000 Bernoulli(0.75) draws: the kept fraction has std 0.005; 0.02 is 4 std
    assert abs(np.mean(m > 0) - 0.75) < 0.02
    assert np.all(recurrent_dropout_mask(rng, 0.0, 3, 2, 2) == 1)
    z = zoneout_mask(rng, 0.1, 20, 10, 40)
    assert z.shape == (20, 10, 40) and z.dtype == np.float32
    assert set(np.unique(z)) == {0.0, 1.0} and abs(z.mean() - 0.1) < 0.02
    assert not np.array_equal(z[0], z[1]), "a fresh mask per step"
    with pytest.raises(ValueError, match=r"zoneout must lie in \[0, 1\)"):
        zoneout_mask(rng, 1.0, 1, 1, 1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        recurrent_dropout_mask(rng, 0.1, 1, 1, 1, np.int64)
