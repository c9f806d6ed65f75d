"""from_keras of the Keras 3 options (docs/variants.md, "Keras layer semantics"): activations,
recurrent_dropout (inference), go_backwards, Bidirectional merge modes, masks (pre, post,
gaps) and stateful layers, each against the Keras layer's own outputs and final states
(KERAS_BACKEND=torch). Masks and merge modes also get finite-difference gradients in
tests/test_layer_variants.py (no Keras needed there)."""

import numpy as np
import pytest

from fastrnn import from_keras

from _util import keras_numpy as np_

B, T, I, H = 3, 6, 4, 5
# float32 on both sides with a different operation order (Keras adds one combined bias,
# fastrnn b_ih + b_hh; other GEMM blocking): ~1e-7 relative per op over six O(1) steps.
# The issue asks for <= 5e-5; this is the bound asserted.
TOL = dict(rtol=5e-5, atol=5e-5)

pytestmark = [pytest.mark.keras, pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")]


CELLS = {
    "lstm_hard_sigmoid_relu": ("LSTM", dict(recurrent_activation="hard_sigmoid",
                                            activation="relu")),
    "lstm_softsign_recurrent_dropout": ("LSTM", dict(activation="softsign",
                                                     recurrent_dropout=0.3)),
    "gru_hard_sigmoid": ("GRU", dict(recurrent_activation="hard_sigmoid")),
    "gru_reset_before_linear": ("GRU", dict(reset_after=False, activation="linear",
                                            recurrent_activation="tanh")),
    "gru_recurrent_dropout": ("GRU", dict(recurrent_dropout=0.2)),
    "rnn_sigmoid": ("SimpleRNN", dict(activation="sigmoid")),
    "rnn_softsign_recurrent_dropout": ("SimpleRNN", dict(activation="softsign",
                                                         recurrent_dropout=0.4)),
}
N_STATES = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}


def build(keras, cell, wrap=None, go_backwards=False, **kw):
    name, opts = CELLS[cell]
    k = getattr(keras.layers, name)(H, return_sequences=True, return_state=True,
                                    go_backwards=go_backwards, **opts, **kw)
    if wrap is not False and wrap is not None:
        k = keras.layers.Bidirectional(k, merge_mode=wrap[1])
    return k


def randomise(k, x, seed):
    k(x)
    rng = np.random.default_rng(seed)
    k.set_weights([0.5 * rng.standard_normal(w.shape).astype(w.dtype) for w in k.get_weights()])


def run_keras(keras, k, x, mask, n_out, n_states):
    kw = {} if mask is None else {"mask": keras.ops.convert_to_tensor(mask)}
    res = [np_(r) for r in k(x, **kw)]
    return res[:n_out], res[n_out:]


def check(layer, x, mask, k_outs, k_states, n_states):
    out, st = layer(x, mask=mask)
    outs = list(out) if isinstance(out, tuple) else [out]
    assert len(outs) == len(k_outs)
    for o, ko in zip(outs, k_outs):
        np.testing.assert_allclose(o, ko, **TOL, err_msg="out")
    st = st if isinstance(st, tuple) else (st,)
    for d in range(layer.num_directions):
        for i in range(n_states):
            np.testing.assert_allclose(st[i][d], k_states[d * n_states + i], **TOL,
                                       err_msg=f"direction {d} state {i}")


def masks(kind):
    m = np.ones((B, T), dtype=bool)
    if kind == "post":
        for b, n in enumerate([6, 3, 1]):
            m[b, n:] = False
    elif kind == "pre":
        for b, n in enumerate([6, 2, 4]):
            m[b, :T - n] = False
    elif kind == "gaps":
        m[0, [1, 2]] = m[1, [0, 3, 5]] = m[2, 4] = False
    else:
        return None
    return m


@pytest.mark.parametrize("mask_kind", ["none", "post", "pre", "gaps"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "go_backwards"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_keras_layer_options_and_masks(keras, cell, go_backwards, mask_kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    k = build(keras, cell, go_backwards=go_backwards)
    randomise(k, x, 1)
    mask = masks(mask_kind)
    n = N_STATES[CELLS[cell][0]]
    k_outs, k_states = run_keras(keras, k, x, mask, 1, n)
    layer = from_keras(k)
    assert layer.go_backwards == go_backwards
    layer.eval()                      # Keras called without training=True: no dropout
    check(layer, x, mask, k_outs, k_states, n)


MERGES = ["concat", "sum", "mul", "ave", None]


@pytest.mark.parametrize("mask_kind", ["none", "post", "pre", "gaps"])
@pytest.mark.parametrize("merge", MERGES, ids=[str(m) for m in MERGES])
@pytest.mark.parametrize("cell", ["lstm_hard_sigmoid_relu", "gru_hard_sigmoid",
                                  "gru_reset_before_linear", "rnn_sigmoid"])
def test_keras_bidirectional_merge_modes_and_masks(keras, cell, merge, mask_kind):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    k = build(keras, cell, wrap=(True, merge))
    randomise(k, x, 3)
    mask = masks(mask_kind)
    n = N_STATES[CELLS[cell][0]]
    k_outs, k_states = run_keras(keras, k, x, mask, 2 if merge is None else 1, n)
    layer = from_keras(k)
    assert layer.merge_mode == merge and layer.bidirectional
    check(layer, x, mask, k_outs, k_states, n)


def test_keras_stateful_layer_carries_its_state(keras):
    rng = np.random.default_rng(4)
    x1, x2 = (rng.standard_normal((B, T, I)).astype(np.float32) for _ in range(2))
    k = keras.layers.LSTM(H, return_sequences=True, stateful=True)
    randomise(k, x1, 5)
    k.reset_states()
    want1, want2 = np_(k(x1)), np_(k(x2))
    layer = from_keras(k)
    assert layer.stateful
    np.testing.assert_allclose(layer(x1)[0], want1, **TOL)
    np.testing.assert_allclose(layer(x2)[0], want2, **TOL)     # starts from x1's final state
    layer.reset_states()
    k.reset_states()
    np.testing.assert_allclose(layer(x2)[0], np_(k(x2)), **TOL)
    with pytest.raises(ValueError, match="carries states of batch 3"):
        layer(x1[:2])


def test_keras_refusals(keras):
    L = keras.layers
    x = np.zeros((1, 2, I), np.float32)

    def built(layer):
        layer(x)
        return layer

    with pytest.raises(ValueError, match="activation='gelu'"):
        from_keras(built(L.LSTM(H, activation="gelu")))
    with pytest.raises(ValueError, match="dropout=0.1.*ignore_dropout=True"):
        from_keras(built(L.GRU(H, dropout=0.1)))
    assert from_keras(built(L.GRU(H, dropout=0.1)), ignore_dropout=True).recurrent_dropout == 0
