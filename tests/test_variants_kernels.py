"""The cell variants fused in the kernels (docs/variants.md) against the NumPy reference:
gate activations, leaky units, recurrent dropout masks and zoneout (masks, or the
expectation),
forward and backward, float64 and float32, with lengths and reverse, on one thread and on
two (both thread splits: by batch rows and by hidden units)."""
import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as ref
from fastrnn._checks import ACTIVATIONS
from _util import add_variant_arrays, cell_params

# name -> (cell, options, arrays to draw: "peephole", "zmask", "rmask", "ln")
VARIANTS = {
    # the fused pairs (recurrent activation, activation) of kernels.cpp, and the generic path
    "lstm_hard_sigmoid": ("lstm", dict(recurrent_activation="hard_sigmoid"), set()),
    "lstm_relu_softsign": ("lstm", dict(activation="relu", recurrent_activation="softsign"),
                           set()),
    "lstm_linear_sigmoid_peephole": ("lstm", dict(activation="linear"), {"peephole"}),
    "lstm_zoneout_masks_peephole": ("lstm", dict(recurrent_activation="hard_sigmoid"),
                                    {"zmask", "peephole"}),
    "lstm_zoneout_expectation_peephole": ("lstm", dict(zoneout=0.3), {"peephole"}),
    "gru_hard_sigmoid_leak": ("gru", dict(recurrent_activation="hard_sigmoid", leak_rate=0.4),
                              set()),
    "gru_softsign_tanh_zoneout_masks": ("gru", dict(activation="softsign",
                                                    recurrent_activation="tanh"), {"zmask"}),
    "gru_reset_before_leak_zoneout": ("gru", dict(reset_after=False, leak_rate=0.6,
                                                  zoneout=0.2, activation="relu"), set()),
    "gru_reset_before_masks": ("gru", dict(reset_after=False, leak_rate=0.7), {"zmask"}),
    "lstm_recurrent_dropout": ("lstm", {}, {"rmask"}),
    "lstm_everything": ("lstm", dict(activation="softsign", recurrent_activation="hard_sigmoid"),
                        {"rmask", "zmask", "peephole"}),
    "gru_recurrent_dropout": ("gru", {}, {"rmask"}),
    "gru_reset_before_recurrent_dropout": ("gru", dict(reset_after=False, leak_rate=0.8),
                                           {"rmask", "zmask"}),
    "gru_everything": ("gru", dict(activation="relu", recurrent_activation="hard_sigmoid",
                                   leak_rate=0.5), {"rmask", "zmask"}),
    "rnn_recurrent_dropout": ("rnn", {}, {"rmask"}),
    "rnn_everything": ("rnn", dict(nonlinearity="softsign", leak_rate=0.3), {"rmask", "zmask"}),
    "lstm_layer_norm": ("lstm", dict(layer_norm=True), {"ln"}),
    "lstm_layer_norm_default_gains": ("lstm", dict(layer_norm=True), set()),
    "lstm_layer_norm_everything": ("lstm", dict(layer_norm=True, activation="softsign",
                                                recurrent_activation="hard_sigmoid"),
                                   {"ln", "rmask", "zmask", "peephole"}),
    "gru_layer_norm": ("gru", dict(layer_norm=True), {"ln"}),
    "gru_layer_norm_everything": ("gru", dict(layer_norm=True, leak_rate=0.5, activation="relu"),
                                  {"ln", "rmask", "zmask"}),
    "rnn_leak": ("rnn", dict(leak_rate=0.25), set()),
    "rnn_relu_leak_zoneout_masks": ("rnn", dict(nonlinearity="relu", leak_rate=0.5), {"zmask"}),
    "rnn_sigmoid_zoneout_expectation": ("rnn", dict(nonlinearity="sigmoid", zoneout=0.3),
                                        set()),
    **{f"rnn_{a}": ("rnn", dict(nonlinearity=a), set()) for a in ACTIVATIONS},
}

# (B, H) per thread split with 2 threads (time_loop.hpp: a step needs 2^16 flops for a
# team; 12 rows split by rows, 4 rows by hidden units), T steps
SPLITS = {"rows": (12, 48), "units": (4, 96)}
T, I = 6, 5


def make_case(variant, rng, B, H, dtype):
    cell, opts, extra = VARIANTS[variant]
    # small recurrent weights keep every activation (relu, linear) bounded over T steps
    p = cell_params(rng, cell, T, B, I, H, w_ih=0.4, w_hh=0.8 / np.sqrt(H))
    p = add_variant_arrays(p, rng, cell, extra, T, B, H)
    return {k: v.astype(dtype) for k, v in p.items()}, dict(opts)


def run(module, cell, p, d, **kw):
    """Forward then backward of `module` -> (outputs, gradients) as a flat dict."""
    args = [p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"]]
    named = {k: v for k, v in p.items() if k not in ("x", "w_ih", "w_hh", "b_ih", "b_hh",
                                                    "h0", "c0")}
    if cell == "lstm":
        out, h, c, cache = module.lstm_forward(*args, p["c0"], **named, **kw)
        g = module.lstm_backward(cache, d["out"], d["h"], d["c"])
        res = dict(out=out, h_n=h, c_n=c)
    else:
        out, h, cache = getattr(module, f"{cell}_forward")(*args, **named, **kw)
        g = getattr(module, f"{cell}_backward")(cache, d["out"], d["h"])
        res = dict(out=out, h_n=h)
    res.update({k: v for k, v in g._asdict().items() if v is not None})
    return res


@pytest.fixture
def threads():
    old = F.get_num_threads()
    yield F.set_num_threads
    F.set_num_threads(old)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_matches_reference(threads, variant, nt, split, dtype):
    threads(nt)
    cell = VARIANTS[variant][0]
    B, H = SPLITS[split]
    index = list(VARIANTS).index(variant)
    rng = np.random.default_rng(index)
    p, kw = make_case(variant, rng, B, H, dtype)
    # lengths with an empty and a full sequence; every other variant in reverse
    kw.update(lengths=rng.permutation(np.concatenate([[0, T, 1], rng.integers(1, T, B - 3)])),
              reverse=index % 2 == 1)
    d = dict(out=rng.standard_normal((T, B, H)).astype(dtype),
             h=rng.standard_normal((B, H)).astype(dtype), c=rng.standard_normal((B, H)).astype(dtype))
    got = run(F, cell, p, d, **kw)
    # the oracle in float64 whatever the kernel's dtype
    want = run(ref, cell, {k: v.astype(np.float64) for k, v in p.items()},
               {k: v.astype(np.float64) for k, v in d.items()}, **kw)
    assert set(got) == set(want)
    # float64: round-off of sums over at most T·B·max(I, H) terms (~1e-13 seen); float32:
    # relative eps 6e-8 grows through T steps and the weight-gradient sums over T·B rows
    # (~1e-5 seen), with the bound relative to each array's largest entry
    tol = 1e-10 if dtype == np.float64 else 2e-4
    for k in want:
        scale = max(1.0, np.abs(want[k]).max())
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=tol * scale, err_msg=k)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_both_directions_and_no_lengths(cell):
    """reverse=False/True without lengths (the identity schedule) for one variant each."""
    variant = {"lstm": "lstm_zoneout_masks_peephole", "gru": "gru_hard_sigmoid_leak",
               "rnn": "rnn_relu_leak_zoneout_masks"}[cell]
    rng = np.random.default_rng(5)
    p, kw = make_case(variant, rng, 3, 7, np.float64)
    d = dict(out=rng.standard_normal((T, 3, 7)), h=rng.standard_normal((3, 7)),
             c=rng.standard_normal((3, 7)))
    for reverse in (False, True):
        got, want = (run(m, cell, p, d, reverse=reverse, **kw) for m in (F, ref))
        for k in want:   # float64 round-off, as above
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_zoneout_eval_is_the_expectation(cell):
    """Without masks zoneout=p is the expectation, in training and in inference alike: the
    same outputs either way, and not the plain cell's."""
    rng = np.random.default_rng(3)
    variant = {"lstm": "lstm_hard_sigmoid", "gru": "gru_hard_sigmoid_leak", "rnn": "rnn_tanh"}
    p, _ = make_case(variant[cell], rng, 3, 5, np.float64)
    args = [p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"]] + \
        ([p["c0"]] if cell == "lstm" else [])
    fwd = getattr(F, f"{cell}_forward")
    train, infer, plain = (fwd(*args, zoneout=z, training=t)[0]
                           for z, t in ((0.4, True), (0.4, False), (0.0, False)))
    np.testing.assert_array_equal(train, infer)
    assert np.abs(train - plain).max() > 1e-3


def test_default_options_are_the_plain_cell():
    """Every option at its default gives bit for bit the plain kernels' results."""
    rng = np.random.default_rng(4)
    p, _ = make_case("lstm_hard_sigmoid", rng, 3, 5, np.float64)
    args = [p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"]]
    a = F.lstm_forward(*args)
    b = F.lstm_forward(*args, activation="tanh", recurrent_activation="sigmoid", zoneout=0.0,
                       zoneout_mask=None, zoneout_mask_c=None)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)


def test_masks_of_ones_keep_the_state():
    """A zoneout mask of ones keeps h (and c) at h0 (c0) through every step."""
    rng = np.random.default_rng(6)
    p, _ = make_case("lstm_zoneout_masks_peephole", rng, 3, 5, np.float64)
    ones = np.ones((T, 3, 5))
    out, h, c, _ = F.lstm_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"],
                                  p["c0"], zoneout_mask=ones, zoneout_mask_c=ones)
    np.testing.assert_array_equal(h, p["h0"])
    np.testing.assert_array_equal(c, p["c0"])
    np.testing.assert_array_equal(out, np.broadcast_to(p["h0"], out.shape))
