"""PyTorch parity of the API around the kernels (issue #20; docs/layers.md): the one-step
cells, packed sequences (fastrnn.utils.rnn and torch's PackedSequence given to a layer),
unbatched input, eval()/no_grad semantics, the module surface, save/load, and argument
errors of the same exception type as torch's. Everything is checked against torch.nn run
on the same weights and inputs, in float64, with autograd supplying torch's gradients.

Tolerance: both sides compute in float64 and differ only in rounding order (BLAS
blocking, how sigmoid is evaluated, summation order): a few dozen operations along any
path give agreement near 1e-14; rtol 1e-9 (the issue's bound) leaves room for that, while
any wrong term shows at 1e-3 or more. atol 1e-12 only covers entries that are exactly 0 on
one side and a rounding residue on the other.
"""
import io
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import GRU, LSTM, GRUCell, LSTMCell, RNNCell, SimpleRNN, no_grad, reference
from fastrnn.utils import rnn as frnn

torch = pytest.importorskip("torch")
tnn = torch.nn
trnn = torch.nn.utils.rnn
pytestmark = pytest.mark.torch

TOL = dict(rtol=1e-9, atol=1e-12)
F64 = np.float64


@pytest.fixture(params=["reference", "functional"])
def backend(request):
    if request.param == "reference":
        return reference
    return pytest.importorskip("fastrnn.functional")  # the C++ backend, once it is built


def t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _np(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def close(a, b, what):
    np.testing.assert_allclose(_np(a), _np(b), **TOL, err_msg=what)


# -- cells ------------------------------------------------------------------------------------

CELL_KINDS = {
    "lstm": (LSTMCell, tnn.LSTMCell, {}),
    "gru": (GRUCell, tnn.GRUCell, {}),
    "rnn_tanh": (RNNCell, tnn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNNCell, tnn.RNNCell, {"nonlinearity": "relu"}),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", list(CELL_KINDS))
def test_cell_loop_matches_torch(kind, batched, bias, backend):
    """A decoder-style loop of K steps, the loss touching every step's states; BPTT by
    calling backward once per step in reverse (LIFO) and feeding dh (dc) back."""
    ours_cls, torch_cls, kw = CELL_KINDS[kind]
    rng = np.random.default_rng(list(CELL_KINDS).index(kind))
    I, H, B, K = 3, 5, 4, 4
    tc = torch_cls(I, H, bias=bias, dtype=torch.float64, **kw)
    cell = ours_cls(I, H, bias, **kw, dtype=F64, _backend=backend)
    cell.load_state_dict(tc.state_dict())
    bshape = (B,) if batched else ()
    n_states = 2 if kind == "lstm" else 1
    xs = [rng.standard_normal(bshape + (I,)) for _ in range(K)]
    s0 = [0.5 * rng.standard_normal(bshape + (H,)) for _ in range(n_states)]
    d = [[rng.standard_normal(bshape + (H,)) for _ in range(n_states)] for _ in range(K)]

    txs = [t(x, True) for x in xs]
    ts0 = [t(s, True) for s in s0]
    states, loss, touts = tuple(ts0), 0, []
    for k in range(K):
        states = tc(txs[k], states if n_states == 2 else states[0])
        states = states if n_states == 2 else (states,)
        touts.append(states)
        loss = loss + sum((t(dd) * s).sum() for dd, s in zip(d[k], states))
    loss.backward()

    states, outs = tuple(s0), []
    for k in range(K):
        states = cell(xs[k], states if n_states == 2 else states[0])
        states = states if n_states == 2 else (states,)
        outs.append(states)
    for k in range(K):
        for a, b in zip(outs[k], touts[k]):
            close(a, b, f"state at step {k}")
    carry = [np.zeros(bshape + (H,)) for _ in range(n_states)]
    for k in reversed(range(K)):
        dx, *carry = cell.backward(*[c + dd for c, dd in zip(carry, d[k])])
        close(dx, txs[k].grad, f"dx at step {k}")
    for a, b in zip(carry, ts0):
        close(a, b.grad, "d initial state")
    for name, p in tc.named_parameters():
        close(cell.grads[name], p.grad, f"d{name}")
    with pytest.raises(ValueError, match="no call is waiting"):
        cell.backward(carry[0])


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_cell_loop_equals_the_gru_layer(reset_after, backend):
    # reset_after=False has no torch cell: the layer (checked against torch and the
    # reference elsewhere) run over the same steps is the oracle.
    rng = np.random.default_rng(5)
    I, H, B, T = 3, 4, 2, 5
    layer = GRU(I, H, reset_after=reset_after, dtype=F64, seed=1, _backend=backend)
    cell = GRUCell(I, H, reset_after=reset_after, dtype=F64, _backend=backend)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = rng.standard_normal((T, B, I))
    d_out = rng.standard_normal((T, B, H))
    out, h_n = layer(x)
    dx, dh0 = layer.backward(d_out)
    h = None
    for k in range(T):
        h = cell(x[k], h)
        close(h, out[k], f"h at step {k}")
    dh = np.zeros((B, H))
    for k in reversed(range(T)):
        dxk, dh = cell.backward(dh + d_out[k])
        close(dxk, dx[k], f"dx at step {k}")
    close(dh, dh0[0], "dh0")
    for name in cell.grads:
        close(cell.grads[name], layer.grads[name + "_l0"], name)


def test_cell_defaults_and_init_match_torch():
    for ours, theirs, kw in CELL_KINDS.values():
        a, b = ours(7, 9, **kw, seed=0), theirs(7, 9, **kw)
        assert [(n, p.shape) for n, p in a.named_parameters()] == \
            [(n, tuple(p.shape)) for n, p in b.named_parameters()]
        bound = 1 / np.sqrt(9)                   # both draw U(-1/sqrt(H), 1/sqrt(H))
        for p in a.parameters():
            assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
        assert repr(a) == repr(b)
    assert repr(RNNCell(3, 2, False, "relu")) == repr(tnn.RNNCell(3, 2, False, "relu"))
    assert repr(LSTMCell(3, 2, bias=False)) == repr(tnn.LSTMCell(3, 2, bias=False))


def test_cell_zero_states_and_accumulation():
    rng = np.random.default_rng(0)
    cell = LSTMCell(3, 4, dtype=F64, seed=0)
    x = rng.standard_normal((2, 3))
    zeros = np.zeros((2, 4))
    h, c = cell(x)
    h2, c2 = cell(x, (zeros, zeros))
    np.testing.assert_array_equal(h, h2)         # None means zero states, as torch
    np.testing.assert_array_equal(c, c2)
    cell.backward(np.ones((2, 4)))
    once = {k: g.copy() for k, g in cell.grads.items()}
    cell.backward(np.ones((2, 4)))               # the same step twice: gradients add up
    for k in once:
        np.testing.assert_allclose(cell.grads[k], 2 * once[k], rtol=1e-15)
    cell.zero_grad()
    assert not any(g.any() for g in cell.grads.values())


# -- packed sequences -------------------------------------------------------------------------

LAYER_KINDS = {
    "lstm": (LSTM, tnn.LSTM, {}),
    "gru": (GRU, tnn.GRU, {}),
    "rnn_tanh": (SimpleRNN, tnn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (SimpleRNN, tnn.RNN, {"nonlinearity": "relu"}),
}


def torch_layer(kind, I, H, **kw):
    _, cls, extra = LAYER_KINDS[kind]
    torch.manual_seed(0)
    return cls(I, H, dtype=torch.float64, **extra, **kw)


def state_tuple(s):
    return s if isinstance(s, tuple) else (s,)


def assert_gradients_match(layer, mod, dx, tdx, d0, ts0):
    """dx, the initial states' gradients d0 and layer.grads against torch's, after both
    backward passes (ts0: torch's initial-state tensors)."""
    close(dx, tdx, "dx")
    for a, b in zip(state_tuple(d0), ts0):
        close(a, b.grad, "d initial state")
    for name, p in mod.named_parameters():
        close(layer.grads[name], p.grad, f"d{name}")


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("kind", list(LAYER_KINDS))
def test_packed_batch_matches_torch(kind, batch_first, backend):
    rng = np.random.default_rng(7)
    T, B, I, H = 6, 4, 3, 5
    mod = torch_layer(kind, I, H, num_layers=2, bidirectional=True, batch_first=batch_first)
    layer = fastrnn.from_torch(mod)
    layer._backend = backend
    lengths = np.array([3, 6, 1, 4])             # distinct: the sort order is unambiguous
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    n_states = 2 if kind == "lstm" else 1
    s0 = [rng.standard_normal((4, B, H)) for _ in range(n_states)]
    dh = [rng.standard_normal((4, B, H)) for _ in range(n_states)]

    tx, ts0 = t(x, True), [t(s, True) for s in s0]
    tpacked = trnn.pack_padded_sequence(tx, torch.from_numpy(lengths), batch_first=batch_first,
                                        enforce_sorted=False)
    tout, tst = mod(tpacked, tuple(ts0) if n_states == 2 else ts0[0])
    d_data = rng.standard_normal(tuple(tout.data.shape))
    loss = (t(d_data) * tout.data).sum() + sum((t(a) * b).sum()
                                               for a, b in zip(dh, state_tuple(tst)))
    loss.backward()

    packed = frnn.pack_padded_sequence(x, lengths, batch_first=batch_first,
                                       enforce_sorted=False)
    for f in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        np.testing.assert_array_equal(getattr(packed, f), getattr(tpacked, f).numpy(), f)
    close(packed.data, tpacked.data, "packed data")
    out, st = layer(packed, tuple(s0) if n_states == 2 else s0[0])
    assert isinstance(out, frnn.PackedSequence)
    np.testing.assert_array_equal(out.batch_sizes, packed.batch_sizes)
    close(out.data, tout.data, "out.data")
    for a, b in zip(state_tuple(st), state_tuple(tst)):
        close(a, b, "final state")
    dx, d0 = layer.backward(d_data, tuple(dh) if n_states == 2 else dh[0])
    assert isinstance(dx, frnn.PackedSequence)
    dx_pad, dx_len = frnn.pad_packed_sequence(dx, batch_first=batch_first, total_length=T)
    np.testing.assert_array_equal(dx_len, lengths)
    assert_gradients_match(layer, mod, dx_pad, tx.grad, d0, ts0)


def test_torch_packed_sequence_in_and_out():
    rng = np.random.default_rng(8)
    mod = torch_layer("gru", 3, 4, bidirectional=True)
    layer = fastrnn.from_torch(mod)
    x = torch.from_numpy(rng.standard_normal((5, 3, 3)))
    tpacked = trnn.pack_padded_sequence(x, torch.tensor([2, 5, 3]), enforce_sorted=False)
    out, h_n = layer(tpacked)
    assert isinstance(out, trnn.PackedSequence)   # the kind of object torch returns
    tout, th_n = mod(tpacked)
    for f in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(out, f), getattr(tout, f))
    close(out.data.numpy(), tout.data, "out.data")
    close(h_n, th_n, "h_n")
    # backward takes the gradient as a torch PackedSequence too, and answers in kind
    dx, _ = layer.backward(trnn.PackedSequence(torch.ones_like(out.data), out.batch_sizes,
                                               out.sorted_indices, out.unsorted_indices))
    assert isinstance(dx, trnn.PackedSequence) and tuple(dx.data.shape) == (10, 3)


def test_packed_equals_lengths_argument():
    rng = np.random.default_rng(9)
    layer = LSTM(3, 4, 2, bidirectional=True, dtype=F64, seed=0)
    lengths = np.array([4, 2, 5])
    x = rng.standard_normal((5, 3, 3))
    out, (h, c) = layer(x, lengths=lengths)
    pout, (ph, pc) = layer(frnn.pack_padded_sequence(x, lengths, enforce_sorted=False))
    # the same kernels on the same numbers: bit-identical
    np.testing.assert_array_equal(frnn.pad_packed_sequence(pout, total_length=5)[0], out)
    np.testing.assert_array_equal(ph, h)
    np.testing.assert_array_equal(pc, c)


@pytest.mark.parametrize("batch_first", [False, True])
def test_pack_pad_utilities_match_torch(batch_first):
    rng = np.random.default_rng(10)
    seqs = [rng.standard_normal((n, 2, 3)) for n in (3, 5, 1, 4)]
    ours = frnn.pad_sequence(seqs, batch_first=batch_first, padding_value=-1.5)
    theirs = trnn.pad_sequence([torch.from_numpy(s) for s in seqs], batch_first=batch_first,
                               padding_value=-1.5)
    np.testing.assert_array_equal(ours, theirs.numpy())
    left = frnn.pad_sequence(seqs, batch_first=batch_first, padding_side="left")
    tleft = trnn.pad_sequence([torch.from_numpy(s) for s in seqs], batch_first=batch_first,
                              padding_side="left")
    np.testing.assert_array_equal(left, tleft.numpy())
    for enforce in (False, True):
        use = sorted(seqs, key=len, reverse=True) if enforce else seqs
        p = frnn.pack_sequence(use, enforce_sorted=enforce)
        tp = trnn.pack_sequence([torch.from_numpy(s) for s in use], enforce_sorted=enforce)
        np.testing.assert_array_equal(p.data, tp.data.numpy())
        np.testing.assert_array_equal(p.batch_sizes, tp.batch_sizes.numpy())
        for f in ("sorted_indices", "unsorted_indices"):
            a, b = getattr(p, f), getattr(tp, f)
            assert (a is None and b is None) or np.array_equal(a, b.numpy()), f
        pad, lens = frnn.pad_packed_sequence(p, batch_first=batch_first, padding_value=2.0,
                                             total_length=7)
        tpad, tlens = trnn.pad_packed_sequence(tp, batch_first=batch_first, padding_value=2.0,
                                               total_length=7)
        np.testing.assert_array_equal(pad, tpad.numpy())
        np.testing.assert_array_equal(lens, tlens.numpy())


# -- unbatched input --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(LAYER_KINDS))
def test_unbatched_matches_torch(kind, backend):
    rng = np.random.default_rng(11)
    T, I, H = 5, 3, 4
    mod = torch_layer(kind, I, H, num_layers=2, bidirectional=True, batch_first=True)
    layer = fastrnn.from_torch(mod)
    layer._backend = backend
    n_states = 2 if kind == "lstm" else 1
    x = rng.standard_normal((T, I))                  # batch_first does not apply, as torch
    s0 = [rng.standard_normal((4, H)) for _ in range(n_states)]
    tx, ts0 = t(x, True), [t(s, True) for s in s0]
    tout, tst = mod(tx, tuple(ts0) if n_states == 2 else ts0[0])
    d_out = rng.standard_normal((T, 2 * H))
    dh = [rng.standard_normal((4, H)) for _ in range(n_states)]
    ((t(d_out) * tout).sum() + sum((t(a) * b).sum()
                                   for a, b in zip(dh, state_tuple(tst)))).backward()
    out, st = layer(x, tuple(s0) if n_states == 2 else s0[0])
    close(out, tout, "out")
    for a, b in zip(state_tuple(st), state_tuple(tst)):
        assert a.shape == (4, H)
        close(a, b, "final state")
    dx, d0 = layer.backward(d_out, tuple(dh) if n_states == 2 else dh[0])
    assert_gradients_match(layer, mod, dx, tx.grad, d0, ts0)


# -- eval() and gradients ---------------------------------------------------------------------

def test_eval_forward_backward_matches_torch_eval():
    rng = np.random.default_rng(12)
    mod = torch_layer("lstm", 3, 4, num_layers=3, dropout=0.5).eval()
    layer = fastrnn.from_torch(mod)
    assert not layer.training
    x = rng.standard_normal((5, 2, 3))
    tx = t(x, True)
    tout, _ = mod(tx)
    d_out = rng.standard_normal((5, 2, 4))
    (t(d_out) * tout).sum().backward()
    out, _ = layer(x)                                # eval: no dropout, a cache all the same
    close(out, tout, "out")
    dx, _ = layer.backward(d_out)
    close(dx, tx.grad, "dx")
    for name, p in mod.named_parameters():
        close(layer.grads[name], p.grad, f"d{name}")


def test_no_grad_and_requires_grad_keep_no_cache():
    x = np.ones((4, 2, 3))
    for module, arg in ((GRU(3, 4, dtype=F64), x), (GRUCell(3, 4, dtype=F64), x[0])):
        with no_grad():
            assert not fastrnn.is_grad_enabled()
            module(arg)
            with fastrnn.enable_grad():
                assert fastrnn.is_grad_enabled()
        assert fastrnn.is_grad_enabled()
        with pytest.raises(ValueError, match="no_grad|gradients off"):
            module.backward(None if isinstance(module, GRU) else np.ones((2, 4)))
        assert module.requires_grad_(False) is module
        module(arg)
        with pytest.raises(ValueError, match="requires_grad_"):
            module.backward(None if isinstance(module, GRU) else np.ones((2, 4)))
        module.requires_grad_(True)(arg)
        module.backward(None if isinstance(module, GRU) else np.ones((2, 4)))


def test_no_grad_is_thread_local_and_a_decorator():
    layer = GRU(3, 4, dtype=F64)
    seen = {}

    def other_thread():
        seen["enabled"] = fastrnn.is_grad_enabled()

    @no_grad()
    def serve():
        th = threading.Thread(target=other_thread)
        th.start()
        th.join()
        return fastrnn.is_grad_enabled()

    assert serve() is False
    assert seen["enabled"] is True                   # another thread keeps gradients on

    @no_grad()
    def depth(n):
        return depth(n - 1) if n else fastrnn.is_grad_enabled()
    assert depth(3) is False and fastrnn.is_grad_enabled()   # re-entered, then restored

    # one decorator instance entered by two threads whose settings differ: A (under
    # no_grad) enters, B (gradients on) enters, A leaves first and must get its own back
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    @no_grad()
    def step(entered, wait):
        entered.set()
        wait.wait(10)

    def thread_a():
        with no_grad():
            step(a_in, b_in)
            seen["a"] = fastrnn.is_grad_enabled()
        a_out.set()

    def thread_b():
        a_in.wait(10)
        step(b_in, a_out)
        seen["b"] = fastrnn.is_grad_enabled()

    threads = [threading.Thread(target=f) for f in (thread_a, thread_b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert seen["a"] is False and seen["b"] is True
    layer(np.ones((2, 1, 3)))
    layer.backward(None)


# -- module surface ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(num_layers=2, batch_first=True),
                                dict(bias=False, bidirectional=True),
                                dict(num_layers=3, dropout=0.25, bidirectional=True)])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_module_surface_matches_torch(kind, kw):
    mod = torch_layer(kind, 16, 32, **kw)
    layer = fastrnn.from_torch(mod)
    theirs = repr(mod).replace("RNN(", "SimpleRNN(")
    assert repr(layer).replace(", dtype=float64", "") == theirs
    assert [(n, p.shape) for n, p in layer.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in mod.named_parameters()]
    assert [[p.shape for p in group] for group in layer.all_weights] == \
        [[tuple(p.shape) for p in group] for group in mod.all_weights]
    assert all(a is b for a, b in zip(layer.parameters(), layer.params.values()))
    assert layer.flatten_parameters() is None
    assert repr(LSTM(16, 32, num_layers=2, batch_first=True)) == \
        "LSTM(16, 32, num_layers=2, batch_first=True)"


def test_dtype_conversion_and_zero_grad():
    layer = LSTM(3, 4, seed=0)
    before = layer.state_dict()
    layer(np.ones((2, 1, 3), np.float32))
    assert layer.double() is layer and layer.dtype == F64
    assert all(p.dtype == F64 and g.dtype == F64 for p, g in
               zip(layer.params.values(), layer.grads.values()))
    for k, v in before.items():
        np.testing.assert_array_equal(layer.params[k], v)     # float32 -> float64 is exact
    with pytest.raises(ValueError, match="no forward pass"):
        layer.backward(None)                     # the float32 cache was dropped
    out, _ = layer(np.ones((2, 1, 3)))
    layer.backward(np.ones_like(out))
    assert any(g.any() for g in layer.grads.values())
    layer.zero_grad()
    assert not any(g.any() for g in layer.grads.values())
    assert layer.to(np.float32).dtype == np.float32 and layer.float() is layer
    dense = fastrnn.nn.Dense(3, 2).double()
    assert [n for n, _ in dense.named_parameters()] == ["weight", "bias"]
    assert dense(np.ones((1, 3))).dtype == F64
    other = fastrnn.nn.Dense(3, 2, seed=1).double()
    other.load_state_dict(dense.state_dict())        # the blocks share the module surface
    np.testing.assert_array_equal(other(np.ones((1, 3))), dense(np.ones((1, 3))))


def test_save_load_round_trip_with_torch(tmp_path):
    mod = torch_layer("gru", 3, 4, num_layers=2)
    path = tmp_path / "gru.weights"              # the name is used as given
    fastrnn.save(mod.state_dict(), path)         # torch tensors are read as arrays
    loaded = fastrnn.load(path)
    assert list(loaded) == list(mod.state_dict())
    layer = GRU(3, 4, 2, dtype=F64)
    layer.load_state_dict(loaded)
    buf = io.BytesIO()
    fastrnn.save(layer, buf)                     # a module: its state_dict
    buf.seek(0)
    again = GRU(3, 4, 2, dtype=F64)
    again.load_state_dict(fastrnn.load(buf))
    other = torch_layer("gru", 3, 4, num_layers=2)
    other.load_state_dict({k: torch.from_numpy(v) for k, v in again.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    close(again(x)[0], mod(t(x))[0], "out after the round trip")
    close(other(t(x))[0], mod(t(x))[0], "torch module loaded back")
    with np.load(path, allow_pickle=False) as z:  # a plain .npz, no pickle inside
        assert sorted(z.files) == sorted(loaded)
    fastrnn.save({"file": np.ones(2)}, tmp_path / "f.npz")   # np.savez's own argument name
    np.testing.assert_array_equal(fastrnn.load(tmp_path / "f.npz")["file"], np.ones(2))


# -- argument errors alike --------------------------------------------------------------------

def _lstm_pair():
    mod = torch_layer("lstm", 3, 4)
    return mod, fastrnn.from_torch(mod)


def _cell_pair(kind="lstm"):
    ours, theirs, kw = CELL_KINDS[kind]
    return theirs(3, 4, dtype=torch.float64, **kw), ours(3, 4, dtype=F64, **kw)


def _packed_bad(module):
    data = np.zeros((5, 3))
    return module(frnn.PackedSequence(data, np.array([3, 3])))


ERROR_CASES = [
    # (id, torch call, fastrnn call, the argument the message must name)
    ("layer-x-rank4", lambda: _lstm_pair()[0](torch.zeros(2, 5, 3, 1, dtype=torch.float64)),
     lambda: _lstm_pair()[1](np.zeros((2, 5, 3, 1))), "x"),
    ("layer-x-features", lambda: _lstm_pair()[0](torch.zeros(2, 5, 2, dtype=torch.float64)),
     lambda: _lstm_pair()[1](np.zeros((2, 5, 2))), "x"),
    ("layer-x-dtype", lambda: _lstm_pair()[0](torch.zeros(2, 5, 3, dtype=torch.float32)),
     lambda: _lstm_pair()[1](np.zeros((2, 5, 3), np.float32)), "x"),
    ("layer-hx-batch", lambda: _lstm_pair()[0](torch.zeros(2, 5, 3, dtype=torch.float64),
                                               (torch.zeros(1, 4, 4, dtype=torch.float64),) * 2),
     lambda: _lstm_pair()[1](np.zeros((2, 5, 3)), (np.zeros((1, 4, 4)),) * 2), "h_0"),
    ("layer-unbatched-hx-3d", lambda: _lstm_pair()[0](
        torch.zeros(2, 3, dtype=torch.float64), (torch.zeros(1, 5, 4, dtype=torch.float64),) * 2),
     lambda: _lstm_pair()[1](np.zeros((2, 3)), (np.zeros((1, 5, 4)),) * 2), "h_0"),
    ("layer-packed-batch-sizes", lambda: _packed_bad_torch(),
     lambda: _packed_bad(_lstm_pair()[1]), "batch_sizes"),
    ("cell-x-rank3", lambda: _cell_pair()[0](torch.zeros(5, 3, 1, dtype=torch.float64)),
     lambda: _cell_pair()[1](np.zeros((5, 3, 1))), "x"),
    ("cell-hx-batch", lambda: _cell_pair()[0](torch.zeros(5, 3, dtype=torch.float64),
                                              (torch.zeros(4, 4, dtype=torch.float64),) * 2),
     lambda: _cell_pair()[1](np.zeros((5, 3)), (np.zeros((4, 4)),) * 2), "hx"),
    ("cell-hx-hidden", lambda: _cell_pair("gru")[0](torch.zeros(5, 3, dtype=torch.float64),
                                                    torch.zeros(5, 5, dtype=torch.float64)),
     lambda: _cell_pair("gru")[1](np.zeros((5, 3)), np.zeros((5, 5))), "hx"),
    ("cell-hx-one-state", lambda: _cell_pair()[0](torch.zeros(5, 3, dtype=torch.float64),
                                                  (torch.zeros(5, 4, dtype=torch.float64),)),
     lambda: _cell_pair()[1](np.zeros((5, 3)), (np.zeros((5, 4)),)), "states"),
    ("cell-x-dtype", lambda: _cell_pair("rnn_tanh")[0](torch.zeros(5, 3)),
     lambda: _cell_pair("rnn_tanh")[1](np.zeros((5, 3), np.float32)), "x"),
    ("cell-negative-size", lambda: tnn.LSTMCell(-1, 3), lambda: LSTMCell(-1, 3), "input_size"),
    ("cell-float-size", lambda: tnn.GRUCell(2.5, 3), lambda: GRUCell(2.5, 3), "input_size"),
    ("layer-zero-hidden", lambda: tnn.LSTM(2, 0), lambda: LSTM(2, 0), "hidden_size"),
    ("layer-dropout", lambda: tnn.GRU(2, 3, dropout=2), lambda: GRU(2, 3, dropout=2), "dropout"),
    ("pack-unsorted", lambda: trnn.pack_padded_sequence(torch.zeros(4, 3), [2, 3, 1]),
     lambda: frnn.pack_padded_sequence(np.zeros((4, 3)), [2, 3, 1]), "lengths"),
    ("pack-zero-length", lambda: trnn.pack_padded_sequence(torch.zeros(4, 3), [3, 2, 0]),
     lambda: frnn.pack_padded_sequence(np.zeros((4, 3)), [3, 2, 0]), "lengths"),
    ("pack-lengths-count", lambda: trnn.pack_padded_sequence(torch.zeros(4, 3), [3, 2]),
     lambda: frnn.pack_padded_sequence(np.zeros((4, 3)), [3, 2]), "lengths"),
    ("pad-total-length", lambda: trnn.pad_packed_sequence(
        trnn.pack_padded_sequence(torch.zeros(4, 3), [3, 2, 1]), total_length=2),
     lambda: frnn.pad_packed_sequence(
         frnn.pack_padded_sequence(np.zeros((4, 3)), [3, 2, 1]), total_length=2), "total_length"),
    ("pad-empty", lambda: trnn.pad_sequence([]), lambda: frnn.pad_sequence([]), "sequences"),
    ("pack-empty", lambda: trnn.pack_sequence([]), lambda: frnn.pack_sequence([]), "sequences"),
    ("pad-trailing", lambda: trnn.pad_sequence([torch.zeros(2, 3), torch.zeros(2, 4)]),
     lambda: frnn.pad_sequence([np.zeros((2, 3)), np.zeros((2, 4))]), "sequences"),
]


def _packed_bad_torch():
    mod = torch_layer("lstm", 3, 4)
    return mod(trnn.PackedSequence(torch.zeros(5, 3, dtype=torch.float64),
                                   torch.tensor([3, 3])))


@pytest.mark.parametrize("case, torch_call, our_call, name", ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_argument_errors_alike(case, torch_call, our_call, name):
    with pytest.raises(Exception) as theirs:
        torch_call()
    with pytest.raises(Exception) as ours:
        our_call()
    assert isinstance(ours.value, type(theirs.value)), \
        f"torch raised {type(theirs.value).__name__}, fastrnn {type(ours.value).__mro__}"
    assert isinstance(ours.value, (TypeError, ValueError))   # fastrnn's own contract
    assert name in str(ours.value)
