"""The functional API against PyTorch: outputs, final states and every gradient of
torch.nn.LSTM / GRU / RNN with the same weights, in float64 (skipped without torch).

GRU reset_after=False and peephole LSTMs have no PyTorch equivalent; they are covered
by tests/test_reference.py (finite differences and hand-computed steps)."""
import numpy as np
import pytest

from fastrnn import reference
from _util import cell_params

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

# name -> (torch module class, its kwargs, fastrnn kind, fastrnn forward kwargs)
CELLS = {
    "lstm": (torch.nn.LSTM, {}, "lstm", {}),
    "gru": (torch.nn.GRU, {}, "gru", {"reset_after": True}),
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}, "rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}, "rnn", {"nonlinearity": "relu"}),
}
SCENARIOS = ["plain", "reverse", "lengths", "lengths_reverse"]
WEIGHTS = ["w_ih", "w_hh", "b_ih", "b_hh"]
TORCH_NAME = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0",
              "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}

# Both sides compute in float64 and differ only in rounding order (BLAS blocking, how
# sigmoid is evaluated, summation order of dW over B*T rows): each of the few dozen
# operations along a path adds ~1e-16 relative error, so agreement is ~1e-14. 1e-10 leaves
# room for a kernel's own reduction order, while any wrong term shows at 1e-3 or more.
TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(params=["reference", "functional"])
def backend(request):
    if request.param == "reference":
        return reference
    return pytest.importorskip("fastrnn.functional")  # the C++ backend, once it is built


def run_torch(cell, p, d_out, d_states, lengths, reverse):
    """out, final states and all gradients of torch's loss
    sum(d_out*out) + sum(d_h_n*h_n) (+ sum(d_c_n*c_n)) for one direction of the module."""
    cls, kwargs, kind, _ = CELLS[cell]
    T, B, I = p["x"].shape
    H = p["w_hh"].shape[1]
    D = 2 if reverse else 1            # the reverse direction is the `_reverse` half of a
    mod = cls(I, H, bidirectional=reverse, dtype=torch.float64, **kwargs)   # bidirectional module
    sfx = "_reverse" if reverse else ""
    with torch.no_grad():
        for k in WEIGHTS:
            getattr(mod, TORCH_NAME[k] + sfx).copy_(torch.from_numpy(p[k]))
    x = torch.tensor(p["x"], requires_grad=True)
    init = ["h0", "c0"] if kind == "lstm" else ["h0"]
    s0 = {k: torch.zeros(D, B, H, dtype=torch.float64) for k in init}
    for k in init:
        s0[k][D - 1] = torch.from_numpy(p[k])
        s0[k].requires_grad_(True)
    hx = (s0["h0"], s0["c0"]) if kind == "lstm" else s0["h0"]
    if lengths is None:
        out, hn = mod(x, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(lengths),
                                                         enforce_sorted=False)
        out, hn = mod(packed, hx)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    out = out[..., (D - 1) * H:]
    states = [s[D - 1] for s in (hn if kind == "lstm" else (hn,))]
    loss = (torch.from_numpy(d_out) * out).sum()
    for d, s in zip(d_states, states):
        loss = loss + (torch.from_numpy(d) * s).sum()
    loss.backward()
    grads = {"x": x.grad.numpy()}
    grads.update({k: s0[k].grad[D - 1].numpy() for k in init})
    grads.update({k: getattr(mod, TORCH_NAME[k] + sfx).grad.numpy() for k in WEIGHTS})
    return out.detach().numpy(), [s.detach().numpy() for s in states], grads


def run_fastrnn(backend, cell, p, d_out, d_states, lengths, reverse):
    _, _, kind, extra = CELLS[cell]
    args = (p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"])
    kw = dict(lengths=lengths, reverse=reverse)
    if kind == "lstm":
        out, h, c, cache = backend.lstm_forward(*args, p["c0"], **kw)
        states = [h, c]
        g = backend.lstm_backward(cache, d_out, *d_states)
        assert g.dpeephole is None
    else:
        fwd, bwd = {"gru": (backend.gru_forward, backend.gru_backward),
                    "rnn": (backend.rnn_forward, backend.rnn_backward)}[kind]
        out, h, cache = fwd(*args, **extra, **kw)
        states = [h]
        g = bwd(cache, d_out, *d_states)
    grads = {k[1:]: v for k, v in g._asdict().items() if v is not None}
    return out, states, grads


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_torch(backend, cell, scenario):
    rng = np.random.default_rng(100 + 10 * list(CELLS).index(cell) + SCENARIOS.index(scenario))
    T, B, I, H = 6, 4, 3, 5
    kind = CELLS[cell][2]
    p = cell_params(rng, kind, T, B, I, H, w_ih=0.5, w_hh=0.5)
    # PyTorch refuses length-0 sequences; one full-length, the others shorter, unsorted
    lengths = rng.permutation([T, 1, 3, 4]) if "lengths" in scenario else None
    reverse = "reverse" in scenario
    d_out = rng.standard_normal((T, B, H))
    d_states = [rng.standard_normal((B, H)) for _ in range(2 if kind == "lstm" else 1)]

    t_out, t_states, t_grads = run_torch(cell, p, d_out, d_states, lengths, reverse)
    out, states, grads = run_fastrnn(backend, cell, p, d_out, d_states, lengths, reverse)
    np.testing.assert_allclose(out, t_out, **TOL, err_msg="out")
    for name, a, b in zip(["h_n", "c_n"], states, t_states):
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)
    assert set(grads) == set(t_grads)
    for k in t_grads:
        assert grads[k].shape == t_grads[k].shape, k
        np.testing.assert_allclose(grads[k], t_grads[k], **TOL, err_msg=f"d{k}")
