"""Weights in and out of PyTorch and Keras 3 (fastrnn.interop, DESIGN §8).

PyTorch: from_torch / to_torch_state_dict for nn.LSTM, GRU, RNN with every option, in
float64 and float32. Keras: from_keras / to_keras_weights for LSTM, GRU (both
reset_after), SimpleRNN (tanh, relu), with and without bias, and Bidirectional(concat) of
each; Keras 3 runs on its torch backend (KERAS_BACKEND=torch). The conversions are
backend-independent, so the layers run on the reference backend here; the C++ layer
equals the reference layer by tests/test_layers.py.
"""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from fastrnn import GRU, LSTM, SimpleRNN, reference
from fastrnn.interop import from_keras, from_torch, to_keras_weights, to_torch_state_dict

B, T, I, H = 3, 6, 4, 5


def test_importing_fastrnn_imports_no_framework():
    code = ("import sys, fastrnn, fastrnn.interop; "
            "print(sorted(m for m in ('torch', 'keras', 'tensorflow', 'jax') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out.strip() == "[]"


def test_wrong_objects_are_refused():
    with pytest.raises(TypeError, match="torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN"):
        from_torch(object())
    with pytest.raises(TypeError, match="Keras 3 LSTM, GRU, SimpleRNN or Bidirectional"):
        from_keras(object())
    with pytest.raises(TypeError, match="fastrnn LSTM, GRU or SimpleRNN"):
        to_keras_weights(object())
    with pytest.raises(ValueError, match="peephole=True.*no PyTorch equivalent"):
        to_torch_state_dict(LSTM(2, 3, peephole=True))
    with pytest.raises(ValueError, match="peephole=True.*no peephole"):
        to_keras_weights(LSTM(2, 3, peephole=True))
    with pytest.raises(ValueError, match="num_layers=2; a Keras recurrent layer holds one"):
        to_keras_weights(GRU(2, 3, 2))


# -- PyTorch -------------------------------------------------------------------------------

TORCH_MODULES = [("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "tanh"}),
                 ("RNN", {"nonlinearity": "relu"})]
TORCH_IDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def torch_forward(torch, module, x, lengths):
    xt = torch.from_numpy(x)
    with torch.no_grad():
        if lengths is None:
            out, hn = module(xt)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.from_numpy(lengths), batch_first=module.batch_first,
                enforce_sorted=False)
            out, hn = module(packed)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(
                out, batch_first=module.batch_first, total_length=T)
    hn = hn if isinstance(hn, tuple) else (hn,)
    return out.numpy(), [h.numpy() for h in hn]


@pytest.mark.torch
@pytest.mark.parametrize("opts", list(itertools.product([1, 2], [False, True], [False, True],
                                                        [True, False])),
                         ids=lambda o: "L{}-{}-{}-{}".format(*o))
@pytest.mark.parametrize("spec", TORCH_MODULES, ids=TORCH_IDS)
def test_from_torch_gives_the_same_layer(spec, opts):
    torch = pytest.importorskip("torch")
    L, bi, bf, bias = opts
    torch.manual_seed(0)
    name, extra = spec
    module = getattr(torch.nn, name)(I, H, num_layers=L, bias=bias, batch_first=bf,
                                     bidirectional=bi, dropout=0.3 if L > 1 else 0.0,
                                     dtype=torch.float64, **extra).eval()
    layer = from_torch(module)
    layer._backend = reference
    expected_cls = {"LSTM": LSTM, "GRU": GRU, "RNN": SimpleRNN}[name]
    assert type(layer) is expected_cls and layer.dtype == np.float64
    assert (layer.num_layers, layer.bidirectional, layer.batch_first, layer.bias) == opts
    assert layer.dropout == module.dropout and layer.training is False
    if name == "RNN":
        assert layer.nonlinearity == extra["nonlinearity"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I) if bf else (T, B, I))
    lengths = np.array([T, 2, 4])
    t_out, t_st = torch_forward(torch, module, x, lengths)
    out, st = layer(x, lengths=lengths)
    st = st if isinstance(st, tuple) else (st,)
    # float64 on both sides, rounding order only: see tests/test_layers.py TORCH_TOL
    np.testing.assert_allclose(out, t_out, rtol=1e-10, atol=1e-10)
    for a, e in zip(st, t_st):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)

    # and back: a fresh module loaded from the layer computes the same
    other = getattr(torch.nn, name)(I, H, num_layers=L, bias=bias, batch_first=bf,
                                    bidirectional=bi, dtype=torch.float64, **extra)
    sd = to_torch_state_dict(layer)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    other.load_state_dict(sd)
    for (k, v), (k2, v2) in zip(other.state_dict().items(), module.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


@pytest.mark.torch
def test_from_torch_dtypes_training_flag_and_refusals():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m32 = torch.nn.GRU(I, H, 2)
    layer = from_torch(m32, seed=3)
    assert layer.dtype == np.float32 and layer.training is True
    assert from_torch(m32, dtype=np.float64).dtype == np.float64
    layer._backend = reference
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    with torch.no_grad():
        t_out, _ = m32(torch.from_numpy(x))
    # float32 on both sides: ~1e-7 relative per op, O(1) values two layers deep
    np.testing.assert_allclose(layer(x)[0], t_out.numpy(), rtol=1e-5, atol=1e-5)
    half = torch.nn.LSTM(I, H).half()            # half precision is widened to float32
    assert from_torch(half).dtype == np.float32
    np.testing.assert_array_equal(from_torch(half).params["weight_ih_l0"],
                                  half.weight_ih_l0.detach().float().numpy())
    assert from_torch(torch.nn.LSTM(I, H, proj_size=2)).proj_size == 2  # tests/test_projection.py
    with pytest.raises(TypeError, match="got Linear"):
        from_torch(torch.nn.Linear(2, 3))
    # a projected LSTM's state dict names the problem too
    proj = torch.nn.LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match="proj_size > 0: build the layer with that proj_size"):
        LSTM(I, H).load_state_dict({k: v.detach().numpy() for k, v in proj.state_dict().items()})


@pytest.mark.torch
def test_load_state_dict_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(I, H, bidirectional=True)
    layer = LSTM(I, H, bidirectional=True, dtype=np.float64)
    layer.load_state_dict(module.state_dict())
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(layer.params[k], v.numpy().astype(np.float64))


# -- Keras 3 -------------------------------------------------------------------------------

def keras_test(f):
    """Mark a Keras test; Keras 3.15 on the torch backend with NumPy 2 emits a
    DeprecationWarning about __array__(copy=...) inside get_weights, not ours."""
    f = pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")(f)
    return pytest.mark.keras(f)


KERAS_CELLS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {"reset_after": True}),
    "gru_reset_before": ("GRU", {"reset_after": False}),
    "rnn_tanh": ("SimpleRNN", {"activation": "tanh"}),
    "rnn_relu": ("SimpleRNN", {"activation": "relu"}),
}


def keras_layer(keras, cell, bidirectional, use_bias, **kw):
    name, opts = KERAS_CELLS[cell]
    rnn = getattr(keras.layers, name)(H, use_bias=use_bias, return_sequences=True,
                                      return_state=True, **opts, **kw)
    return keras.layers.Bidirectional(rnn) if bidirectional else rnn


def randomise(layer, rng):
    """Keras initialises biases to zero; random weights and biases test every slot."""
    layer.set_weights([0.5 * rng.standard_normal(w.shape).astype(w.dtype)
                       for w in layer.get_weights()])


@keras_test
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", list(KERAS_CELLS))
def test_keras_round_trip(keras, cell, bidirectional, use_bias):
    rng = np.random.default_rng(list(KERAS_CELLS).index(cell))
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    k = keras_layer(keras, cell, bidirectional, use_bias)
    k(x)
    randomise(k, rng)
    res = [np.asarray(r.detach().cpu()) for r in k(x)]
    k_out, k_states = res[0], res[1:]

    layer = from_keras(k)
    layer._backend = reference
    assert layer.batch_first and layer.bidirectional == bidirectional
    assert layer.bias == use_bias and layer.dtype == np.float32
    out, st = layer(x)
    st = st if isinstance(st, tuple) else (st,)
    # float32 on both sides, different operation order (Keras adds the combined bias
    # once, fastrnn b_ih + b_hh): ~1e-7 relative per op over six O(1) steps
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, k_out, **tol, err_msg="out")
    # Keras returns the final states: [h, (c)] or [h_fwd, (c_fwd), h_bwd, (c_bwd)]
    n = len(st)
    for d in range(layer.num_directions):
        for i in range(n):
            np.testing.assert_allclose(st[i][d], k_states[d * n + i], **tol,
                                       err_msg=f"direction {d} state {i}")

    weights = to_keras_weights(layer)
    assert [w.shape for w in weights] == [w.shape for w in k.get_weights()]
    for a, e in zip(weights, k.get_weights()):
        # exact where no sum is involved; b_ih + b_hh (b_hh = 0 after import) is exact too
        np.testing.assert_array_equal(a, e)
    fresh = keras_layer(keras, cell, bidirectional, use_bias)
    fresh(x)
    fresh.set_weights(weights)
    np.testing.assert_array_equal(np.asarray(fresh(x)[0].detach().cpu()), k_out)


@keras_test
@pytest.mark.parametrize("cell", list(KERAS_CELLS))
def test_to_keras_from_a_fastrnn_layer_with_both_biases(keras, cell):
    """A layer trained in fastrnn has b_ih and b_hh; Keras gets their sum (or both rows of
    the reset_after GRU bias) and computes the same."""
    name, opts = KERAS_CELLS[cell]
    cls = {"LSTM": LSTM, "GRU": GRU, "SimpleRNN": SimpleRNN}[name]
    extra = {"reset_after": opts["reset_after"]} if name == "GRU" else \
        {"nonlinearity": opts["activation"]} if name == "SimpleRNN" else {}
    layer = cls(I, H, bidirectional=True, batch_first=True, seed=5, _backend=reference, **extra)
    x = np.random.default_rng(5).standard_normal((B, T, I)).astype(np.float32)
    k = keras_layer(keras, cell, True, True)
    k(x)
    k.set_weights(to_keras_weights(layer))
    np.testing.assert_allclose(np.asarray(k(x)[0].detach().cpu()), layer(x)[0],
                               rtol=1e-5, atol=1e-5)


@keras_test
def test_keras_float64_layer(keras):
    rng = np.random.default_rng(9)
    k = keras.layers.GRU(H, return_sequences=True, dtype="float64")
    x = rng.standard_normal((B, T, I))
    k(x)
    randomise(k, rng)
    layer = from_keras(k)
    layer._backend = reference
    assert layer.dtype == np.float64
    # float64 both sides: rounding order only
    np.testing.assert_allclose(layer(x)[0], np.asarray(k(x).detach().cpu()),
                               rtol=1e-10, atol=1e-10)


@keras_test
def test_keras_unsupported_options(keras):
    L = keras.layers
    x = np.zeros((1, 2, I), np.float32)

    def built(layer):
        layer(x)
        return layer

    # the options of docs/variants.md convert (tests/test_keras_variants.py checks outputs)
    assert from_keras(built(L.Bidirectional(L.LSTM(H), merge_mode="sum"))).merge_mode == "sum"
    assert from_keras(built(L.GRU(H, go_backwards=True))).go_backwards
    assert from_keras(built(L.LSTM(H, recurrent_dropout=0.2))).recurrent_dropout == 0.2
    with pytest.raises(ValueError, match="activation='gelu'"):
        from_keras(built(L.LSTM(H, activation="gelu")))
    with pytest.raises(ValueError, match="recurrent_activation='gelu'"):
        from_keras(built(L.GRU(H, recurrent_activation="gelu")))
    with pytest.raises(ValueError, match="dropout=0.1.*ignore_dropout=True"):
        from_keras(built(L.LSTM(H, dropout=0.1)))
    assert isinstance(from_keras(built(L.LSTM(H, dropout=0.1)), ignore_dropout=True), LSTM)
    with pytest.raises(ValueError, match="build the layer first"):
        from_keras(L.LSTM(H))
    with pytest.raises(ValueError, match="forward and backward layers differ"):
        from_keras(built(L.Bidirectional(
            L.LSTM(H), backward_layer=L.LSTM(H + 1, go_backwards=True))))
    with pytest.raises(TypeError, match="got Dense"):
        from_keras(L.Dense(3))
