"""The layer-level cell variants (docs/variants.md, "Layer options"): activations, layer
norm, recurrent dropout, zoneout and leaky units on fastrnn.LSTM / GRU / SimpleRNN.

- each option, stacked and bidirectional with lengths and initial states, against an oracle
  stacked here from plain `fastrnn.reference` functional calls with the same masks;
- the C++ layer's backward against the reference layer's, every gradient (incl. the layer
  norm parameters);
- gradients by central finite differences in float64, one configuration per option;
- what training and eval do with the masks, parameter names and init, and the refusals
  (inference engine, PyTorch export).
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import GRU, LSTM, SimpleRNN, masks, no_grad, reference
from _util import numeric_grad

CLASSES = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
N_STATES = {"lstm": 2, "gru": 1, "rnn": 1}
T, B, I, H = 5, 3, 4, 3
LENGTHS = np.array([3, 5, 1])

# name -> (cell, layer options); every option of the layers, alone and together
VARIANTS = {
    "lstm_activations": ("lstm", dict(activation="softsign", recurrent_activation="hard_sigmoid")),
    "lstm_layer_norm": ("lstm", dict(layer_norm=True)),
    "lstm_recurrent_dropout": ("lstm", dict(recurrent_dropout=0.3)),
    "lstm_zoneout": ("lstm", dict(zoneout=0.25)),
    "lstm_everything": ("lstm", dict(layer_norm=True, recurrent_dropout=0.2, zoneout=0.2,
                                     activation="relu", peephole=True)),
    "gru_activations": ("gru", dict(activation="relu", recurrent_activation="hard_sigmoid")),
    "gru_layer_norm": ("gru", dict(layer_norm=True)),
    "gru_leak": ("gru", dict(leak_rate=0.4)),
    "gru_recurrent_dropout": ("gru", dict(recurrent_dropout=0.3)),
    "gru_reset_before_dropout_zoneout": ("gru", dict(reset_after=False, recurrent_dropout=0.2,
                                                     zoneout=0.3)),
    "gru_everything": ("gru", dict(layer_norm=True, leak_rate=0.7, recurrent_dropout=0.2,
                                   zoneout=0.1, activation="softsign")),
    "rnn_sigmoid": ("rnn", dict(nonlinearity="sigmoid")),
    "rnn_leak": ("rnn", dict(leak_rate=0.3)),
    "rnn_recurrent_dropout": ("rnn", dict(recurrent_dropout=0.3)),
    "rnn_zoneout": ("rnn", dict(zoneout=0.4, nonlinearity="linear")),
}

# float64: oracle and layer run the same reference operations batched alike, so they agree
# to a few ulps (1e-12 leaves room; a wrong term shows at 1e-3). C++ against the reference:
# other summation orders, float64 ~1e-14 (1e-10 as tests/test_layers.py), float32 1e-4.
TOL64 = dict(rtol=1e-12, atol=1e-12)
TOL_CPP = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-4)}


def make(name, backend=None, dtype=np.float64, seed=0, **kw):
    cell, opts = VARIANTS[name]
    return CLASSES[cell](I, H, **{**dict(num_layers=2, bidirectional=True), **opts, **kw},
                         dtype=dtype, seed=seed, _backend=backend)


def fixed_masks(layer, rng):
    """One draw of the variant masks per layer-direction, as the layer would draw them."""
    out = {}
    for k in range(layer.num_layers):
        for d in range(layer.num_directions):
            m = {}
            if layer.recurrent_dropout:
                m["recurrent_mask"] = masks.recurrent_dropout_mask(
                    rng, layer.recurrent_dropout, layer._gates, B, H, layer.dtype)
            if layer.zoneout:
                for n in ("zoneout_mask", "zoneout_mask_c")[:len(layer._states)]:
                    m[n] = masks.zoneout_mask(rng, layer.zoneout, T, B, H, layer.dtype)
            out[(k, d)] = m
    return out


def oracle(name, layer, x, states, lengths, variant_masks):
    """The layer stacked from reference functional calls: options spelled out here from
    VARIANTS, the layer-norm parameters read by their documented names."""
    cell, opts = VARIANTS[name]
    fn = getattr(reference, f"{cell}_forward")
    fixed = {k: v for k, v in opts.items() if k not in ("recurrent_dropout", "zoneout")}
    if "peephole" in fixed:
        fixed.pop("peephole")
    inp, finals = x, []
    for k in range(layer.num_layers):
        outs = []
        for d in range(layer.num_directions):
            sfx = f"l{k}" + ("_reverse" if d else "")
            p = layer.params
            kw = dict(fixed)
            if opts.get("layer_norm"):
                kw["ln_gain"] = p[f"ln_gain_{sfx}"]
                if cell == "lstm":
                    kw["ln_cell"] = p[f"ln_cell_{sfx}"]
            if opts.get("peephole"):
                kw["peephole"] = p[f"weight_peephole_{sfx}"]
            if variant_masks is None:
                kw["zoneout"] = opts.get("zoneout", 0.0)    # eval: the expectation
            else:
                kw.update(variant_masks[(k, d)])
            i = 2 * k + d
            out, *fin, _ = fn(inp, p[f"weight_ih_{sfx}"], p[f"weight_hh_{sfx}"],
                              p[f"bias_ih_{sfx}"], p[f"bias_hh_{sfx}"],
                              *(s[i] for s in states), lengths=lengths, reverse=bool(d),
                              training=False, **kw)
            outs.append(out)
            finals.append(fin)
        inp = np.concatenate(outs, axis=2)
    return inp, [np.stack([f[j] for f in finals]) for j in range(N_STATES[cell])]


def inputs(layer, rng):
    x = rng.standard_normal((T, B, I))
    states = [rng.standard_normal((4, B, H)) for _ in layer._states]
    return x, states


def as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


def hx(states):
    return tuple(states) if len(states) == 2 else states[0]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_layer_matches_stacked_reference_calls(name, backend, training):
    rng = np.random.default_rng(1)
    layer = make(name, reference if backend == "reference" else None)
    for pname in layer.params:              # move LN parameters off their init
        if pname.startswith("ln_"):
            layer.params[pname] += 0.3 * rng.standard_normal(layer.params[pname].shape)
    x, states = inputs(layer, rng)
    vm = fixed_masks(layer, rng) if training else None
    layer._variant_masks = vm
    out, fin = layer(x, hx(states), lengths=LENGTHS, training=training)
    want_out, want_fin = oracle(name, layer, x, states, LENGTHS, vm)
    tol = TOL64 if backend == "reference" else TOL_CPP[np.float64]
    np.testing.assert_allclose(out, want_out, **tol)
    for got, want in zip(as_tuple(fin), want_fin):
        np.testing.assert_allclose(got, want, **tol)


def run_with_grads(layer, x, states, d_out, d_fin):
    layer.zero_grad()
    out, fin = layer(x, hx(states), lengths=LENGTHS, training=True)
    dx, d0 = layer.backward(d_out, hx(d_fin))
    return out, dx, as_tuple(d0), {k: g.copy() for k, g in layer.grads.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_cpp_layer_backward_matches_reference_layer(name, dtype):
    rng = np.random.default_rng(2)
    ref_layer, cpp_layer = make(name, reference, dtype), make(name, None, dtype)
    x, states = inputs(ref_layer, rng)
    x, states = x.astype(dtype), [s.astype(dtype) for s in states]
    ref_layer._variant_masks = cpp_layer._variant_masks = fixed_masks(ref_layer, rng)
    d_out = rng.standard_normal((T, B, 2 * H)).astype(dtype)
    d_fin = [rng.standard_normal((4, B, H)).astype(dtype) for _ in states]
    want = run_with_grads(ref_layer, x, states, d_out, d_fin)
    got = run_with_grads(cpp_layer, x, states, d_out, d_fin)
    tol = TOL_CPP[dtype]
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g, w, **tol)
    for g, w in zip(got[2], want[2]):
        np.testing.assert_allclose(g, w, **tol)
    assert got[3].keys() == want[3].keys()
    for k in want[3]:
        np.testing.assert_allclose(got[3][k], want[3][k], err_msg=k, **tol)
        assert np.any(want[3][k] != 0), k          # every parameter gets a gradient


FD_CASES = ["lstm_activations", "lstm_layer_norm", "lstm_recurrent_dropout", "lstm_zoneout",
            "gru_layer_norm", "gru_leak", "gru_recurrent_dropout", "rnn_sigmoid", "rnn_leak",
            "rnn_zoneout"]


@pytest.mark.parametrize("name", FD_CASES)
def test_gradients_match_finite_differences(name):
    """Central differences, float64, eps 1e-6: truncation O(eps^2) and rounding
    O(1e-16 / eps) leave ~1e-9 on O(1) gradients; 1e-6 tolerance. Masks are fixed, so the
    training forward is a smooth function (relu/hard_sigmoid kinks are not hit by these
    random inputs)."""
    rng = np.random.default_rng(3)
    layer = make(name, None, num_layers=1, bidirectional=True)
    for pname in layer.params:
        if pname.startswith("ln_"):
            layer.params[pname] += 0.3 * rng.standard_normal(layer.params[pname].shape)
    layer._variant_masks = fixed_masks(layer, rng)
    x = rng.standard_normal((T, B, I))
    states = [rng.standard_normal((2, B, H)) for _ in layer._states]
    w = rng.standard_normal((T, B, 2 * H))

    def loss():
        with no_grad():
            out, _ = layer(x, hx(states), lengths=LENGTHS, training=True)
        return float((out * w).sum())

    layer.zero_grad()
    layer(x, hx(states), lengths=LENGTHS, training=True)
    dx, d0 = layer.backward(w)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-6)
    for got, s in zip(as_tuple(d0), states):
        np.testing.assert_allclose(got, numeric_grad(loss, s), rtol=1e-6, atol=1e-6)
    for pname, p in layer.params.items():
        np.testing.assert_allclose(layer.grads[pname], numeric_grad(loss, p), rtol=1e-6,
                                   atol=1e-6, err_msg=pname)


def test_layer_norm_parameters_names_and_init():
    lstm = LSTM(I, H, 2, bidirectional=True, layer_norm=True)
    gru = GRU(I, H, layer_norm=True)
    assert lstm.params["ln_gain_l1_reverse"].shape == (2, 4 * H)
    np.testing.assert_array_equal(lstm.params["ln_gain_l0"], 1)
    np.testing.assert_array_equal(lstm.params["ln_cell_l0"], [[1] * H, [0] * H])
    assert [n for n in gru.params if n.startswith("ln")] == ["ln_gain_l0"]
    assert gru.params["ln_gain_l0"].shape == (2, 3 * H)
    assert set(lstm.state_dict()) == set(lstm.params) == set(lstm.grads)
    assert repr(gru) == f"GRU({I}, {H}, layer_norm=True)"


def test_layer_norm_output_invariant_to_weight_scale():
    """docs/variants.md: with layer norm, rescaling W_ih or W_hh leaves the output unchanged
    up to eps = 1e-5 inside the square root. The weights are first scaled by 100, so the
    variances (~0.03 * 1e4) dwarf eps (relative effect ~1e-8); then 3x and 0.5x must agree
    to 1e-6, while without layer norm such a rescale changes the output at O(1)."""
    rng = np.random.default_rng(4)
    layer = LSTM(I, H, layer_norm=True, dtype=np.float64, seed=0)
    x = rng.standard_normal((T, B, I))
    h0 = (rng.standard_normal((1, B, H)), np.zeros((1, B, H)))
    for n in ("weight_ih_l0", "weight_hh_l0"):
        layer.params[n] *= 100
    out, _ = layer(x, h0)
    layer.params["weight_ih_l0"] *= 3.0
    layer.params["weight_hh_l0"] *= 0.5
    np.testing.assert_allclose(layer(x, h0)[0], out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_recurrent_dropout_training_only(cls):
    rng = np.random.default_rng(5)
    plain = cls(I, H, dtype=np.float64, seed=0)
    layer = cls(I, H, recurrent_dropout=0.5, dtype=np.float64, seed=0)
    x = rng.standard_normal((T, B, I))
    assert np.array_equal(layer(x, training=False)[0], plain(x, training=False)[0])
    layer.eval()
    assert np.array_equal(layer(x)[0], plain(x)[0])
    layer.train()
    a, b = layer(x)[0], layer(x)[0]          # a fresh mask per call
    assert not np.allclose(a, plain(x)[0]) and not np.allclose(a, b)
    # and reproducible by seed
    again = cls(I, H, recurrent_dropout=0.5, dtype=np.float64, seed=0)
    np.testing.assert_array_equal(again(x)[0], a)


def test_masks_are_drawn_with_the_documented_shapes_and_rates():
    layer = LSTM(I, H, recurrent_dropout=0.25, zoneout=0.5, dtype=np.float64, seed=0)
    m = layer._draw_masks(0, 0, 200, 50)
    assert m["recurrent_mask"].shape == (4, 50, H)
    assert set(np.unique(m["recurrent_mask"])) == {0.0, 1 / 0.75}
    assert abs((m["recurrent_mask"] == 0).mean() - 0.25) < 0.05   # 600 draws: 5 sigma 0.09
    for k in ("zoneout_mask", "zoneout_mask_c"):
        assert m[k].shape == (200, 50, H) and abs(m[k].mean() - 0.5) < 0.02   # 30000 draws


def test_zoneout_eval_is_the_expectation():
    rng = np.random.default_rng(6)
    layer = GRU(I, H, zoneout=0.3, dtype=np.float64, seed=0)
    x = rng.standard_normal((T, B, I))
    p = layer.params
    want = reference.gru_forward(x, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"],
                                 p["bias_hh_l0"], zoneout=0.3, training=False)[0]
    np.testing.assert_allclose(layer(x, training=False)[0], want, **TOL_CPP[np.float64])
    assert not np.allclose(layer(x, training=True)[0], want)


@pytest.mark.parametrize("kwargs, option", [
    (dict(layer_norm=True), "layer_norm=True"), (dict(zoneout=0.1), "zoneout=0.1"),
    (dict(activation="relu"), "activation='relu'"),
    (dict(recurrent_activation="hard_sigmoid"), "recurrent_activation='hard_sigmoid'"),
    (dict(go_backwards=True), "go_backwards=True"),
])
def test_inference_refuses_variant_layers(kwargs, option):
    with pytest.raises(ValueError, match=f"inference\\(\\): .*{option}"):
        LSTM(I, H, **kwargs).inference()
    with pytest.raises(ValueError, match=f"to_torch_state_dict: .*{option}"):
        fastrnn.to_torch_state_dict(LSTM(I, H, **kwargs))


def test_inference_accepts_recurrent_dropout_and_refuses_leak_and_nonlinearity():
    LSTM(I, H, recurrent_dropout=0.3).inference()          # eval = the plain cell
    # zero_output_for_mask acts on masked calls only, which the engine and PyTorch lack
    layer = GRU(I, H, zero_output_for_mask=True, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, I))
    np.testing.assert_allclose(layer.inference()(x)[0], layer(x, training=False)[0],
                               **TOL_CPP[np.float64])
    assert set(fastrnn.to_torch_state_dict(layer)) == set(layer.state_dict())
    with pytest.raises(ValueError, match="leak_rate=0.5"):
        GRU(I, H, leak_rate=0.5).inference()
    with pytest.raises(ValueError, match="nonlinearity='softsign'"):
        SimpleRNN(I, H, nonlinearity="softsign").inference()


# -- Keras options: go_backwards, merge_mode, mask, stateful (docs/variants.md) -------------

def gap_mask(kind):
    m = np.ones((B, T), dtype=bool)
    if kind == "gaps":
        m[0, [1, 2]] = m[1, [0, 3]] = m[2, 4] = False
    elif kind == "pre":
        m[0, :2] = m[2, :4] = False
    elif kind == "post":
        m[1, 3:] = m[2, 1:] = False
    return m


# (cell, bidirectional, merge_mode, mask kind or None, go_backwards)
KERAS_FD = [
    ("lstm", True, "mul", "gaps", False), ("gru", True, None, "pre", True),
    ("rnn", True, "ave", "gaps", True), ("lstm", True, "sum", "post", False),
    ("gru", True, "concat", None, True), ("gru", False, "concat", "gaps", False),
    ("lstm", False, "concat", "pre", True),
]


@pytest.mark.parametrize("cell, bi, merge, mask_kind, back", KERAS_FD,
                         ids=["-".join(map(str, c)) for c in KERAS_FD])
def test_keras_options_gradients_match_finite_differences(cell, bi, merge, mask_kind, back):
    """Central differences in float64 through the mask's gather/scatter, the merge and the
    time flip (tolerance as test_gradients_match_finite_differences)."""
    rng = np.random.default_rng(7)
    layer = CLASSES[cell](I, H, 2, bidirectional=bi, merge_mode=merge, go_backwards=back,
                          dtype=np.float64, seed=1)
    D = 2 if bi else 1
    x = rng.standard_normal((T, B, I))
    states = [rng.standard_normal((2 * D, B, H)) for _ in layer._states]
    mask = None if mask_kind is None else gap_mask(mask_kind)
    F = H if merge in ("sum", "mul", "ave") else D * H
    w = [rng.standard_normal((T, B, H)) for _ in range(2)] if merge is None and bi else \
        rng.standard_normal((T, B, F))
    v = [rng.standard_normal(s.shape) for s in states]

    def loss():
        with no_grad():
            out, fin = layer(x, hx(states), mask=mask)
        outs = out if isinstance(out, tuple) else (out,)
        ws = w if isinstance(w, list) else [w]
        return float(sum((o * a).sum() for o, a in zip(outs, ws)) +
                     sum((f * a).sum() for f, a in zip(as_tuple(fin), v)))

    layer.zero_grad()
    layer(x, hx(states), mask=mask)
    dx, d0 = layer.backward(tuple(w) if isinstance(w, list) else w, hx(v))
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-6)
    for got, s in zip(as_tuple(d0), states):
        np.testing.assert_allclose(got, numeric_grad(loss, s), rtol=1e-6, atol=1e-6)
    for pname in ("weight_ih_l0", "weight_hh_l1", "bias_hh_l0"):
        np.testing.assert_allclose(layer.grads[pname], numeric_grad(loss, layer.params[pname]),
                                   rtol=1e-6, atol=1e-6, err_msg=pname)


def test_post_padded_mask_is_lengths_with_carried_outputs():
    """A right-padded mask gives lengths' states; a unidirectional layer repeats the last
    valid output at padded steps (Keras), a bidirectional one outputs zeros there."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, I))
    mask = gap_mask("post")
    lengths = mask.sum(axis=1)
    for bi in (False, True):
        layer = GRU(I, H, bidirectional=bi, dtype=np.float64, seed=0)
        out_m, h_m = layer(x, mask=mask)
        out_l, h_l = layer(x, lengths=lengths)
        np.testing.assert_array_equal(h_m, h_l)
        for b, n in enumerate(lengths):
            np.testing.assert_array_equal(out_m[:n, b], out_l[:n, b])
            want = 0 if bi else out_l[n - 1, b]
            np.testing.assert_array_equal(out_m[n:, b], np.broadcast_to(want, out_m[n:, b].shape))


def test_go_backwards_is_the_reversed_sequence():
    """go_backwards runs x[::-1] and returns outputs in processing order (Keras)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((T, B, I))
    back = LSTM(I, H, go_backwards=True, dtype=np.float64, seed=0)
    plain = LSTM(I, H, dtype=np.float64, seed=0)
    out, (h, c) = back(x)
    want, (wh, wc) = plain(x[::-1].copy())
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(h, wh)


def test_merge_modes_combine_the_concat_halves():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((T, B, I))
    cat = GRU(I, H, bidirectional=True, dtype=np.float64, seed=0)(x)[0]
    f, b = cat[..., :H], cat[..., H:]
    for mode, want in (("sum", f + b), ("mul", f * b), ("ave", (f + b) / 2)):
        got = GRU(I, H, bidirectional=True, merge_mode=mode, dtype=np.float64, seed=0)(x)[0]
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)   # one op each
    pair = GRU(I, H, bidirectional=True, merge_mode=None, dtype=np.float64, seed=0)(x)[0]
    assert isinstance(pair, tuple)
    np.testing.assert_array_equal(pair[0], f)
    np.testing.assert_array_equal(pair[1], b)


def test_stateful_layer_carries_state_until_reset():
    rng = np.random.default_rng(11)
    x1, x2 = rng.standard_normal((2, T, B, I))
    layer = LSTM(I, H, 2, stateful=True, dtype=np.float64, seed=0)
    plain = LSTM(I, H, 2, dtype=np.float64, seed=0)
    _, s1 = plain(x1)
    layer(x1)
    np.testing.assert_array_equal(layer(x2)[0], plain(x2, s1)[0])
    layer.reset_states()
    np.testing.assert_array_equal(layer(x2)[0], plain(x2)[0])
    assert repr(layer) == f"LSTM({I}, {H}, num_layers=2, stateful=True, dtype=float64)"


@pytest.mark.parametrize("kwargs", [dict(leak_rate=0.5), dict(go_backwards=True),
                                    dict(bidirectional=True, merge_mode="sum")])
def test_onnx_export_refuses_keras_and_leak_options(kwargs):
    onnx = pytest.importorskip("fastrnn.onnx")
    option = [k for k in kwargs if k != "bidirectional"][0]
    with pytest.raises(ValueError, match=f"export: the layer has {option}="):
        onnx.export(GRU(I, H, **kwargs))


@pytest.mark.parametrize("kwargs", [dict(layer_norm=True), dict(zoneout=0.2),
                                    dict(leak_rate=0.5)])
def test_to_keras_weights_refuses_options_keras_lacks(kwargs):
    with pytest.raises(ValueError, match=f"to_keras_weights: this layer has {list(kwargs)[0]}="):
        fastrnn.to_keras_weights(GRU(I, H, **kwargs))
