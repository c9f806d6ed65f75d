"""Pure-NumPy reference of the functional API: the oracle every C++ kernel is tested against.

Same signatures, argument checks and results as `fastrnn.functional`
(docs/functional.md). Written for clarity, not speed: one step function per
cell, a plain loop over time, the equations as comments (DESIGN §2).

Dimension key (time-major; rightmost axis fastest):
    T time steps, B batch, I input features, H hidden units,
    G gates: LSTM 4 (i, f, g, o), GRU 3 (r, z, n), SimpleRNN 1.
    x (T, B, I)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)
    h0, c0, h_n, c_n (B, H)   out (T, B, H)   peephole (3, H) rows p_i, p_f, p_o

Sequence semantics (DESIGN §3): a row b is updated only at time steps
t < lengths[b]; at t >= lengths[b] it keeps its state and outputs 0. Masking
each step per row gives exactly PyTorch's packed-sequence behaviour in both
directions: with reverse=True the loop runs t = T-1 .. 0, and a row keeps its
initial state until t = lengths[b]-1. Padded entries of x (t >= lengths[b])
are never read (they are zeroed first), so they may hold anything.
"""
import numpy as np

from ._checks import check_backward, check_choice, check_flag, check_forward, require_cache
from ._types import Grads, LSTMGrads


# -- activations; derivatives take the activation's output ---------------------------------

def sigmoid(a):
    """σ(a) = 1 / (1 + exp(−a)), computed through tanh so that it never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))      # = 1 / (1 + exp(-a)), without overflow


def d_sigmoid(s):
    """σ'(a) written in terms of the output s = σ(a): s (1 − s)."""
    return s * (1 - s)


def d_tanh(y):
    """tanh'(a) written in terms of the output y = tanh(a): 1 − y²."""
    return 1 - y * y


# -- the cache: what training-mode forward keeps for backward ------------------------------

class _Cache:
    """Opaque to callers. `params` are the checked weights, `valid` (T, B, 1) marks
    t < lengths[b], `steps` is [(t, saved)] in processing order; never modified."""

    def __init__(self, params, valid, steps, **flags):
        self.params, self.valid, self.steps, self.flags = params, valid, steps, flags


class LSTMCache(_Cache):
    """What `lstm_forward(training=True)` keeps for `lstm_backward`; opaque."""


class GRUCache(_Cache):
    """What `gru_forward(training=True)` keeps for `gru_backward`; opaque."""


class RNNCache(_Cache):
    """What `rnn_forward(training=True)` keeps for `rnn_backward`; opaque."""


# -- the sequence loop shared by all cells --------------------------------------------------

def _valid_mask(lengths, T, B):
    """(T, B, 1) bool: True where t < lengths[b]."""
    if lengths is None:
        return np.ones((T, B, 1), dtype=bool)
    return (np.arange(T)[:, None] < lengths[None, :])[:, :, None]


def _run(step, a, states, params, valid, reverse, training, **flags):
    """Forward loop. `states` is (h,) or (h, c); step(x_t, *states, *params, **flags)
    returns (new_states, saved). Returns out, the final states and the steps to keep."""
    x = np.where(valid, a["x"], 0)                     # padded inputs are never read
    T, B, H = a["T"], a["B"], a["H"]
    states = tuple(s.copy() for s in states)           # never alias the caller's h0, c0
    out = np.zeros((T, B, H), dtype=a["dtype"])
    steps = []
    # No rows, nothing to compute: T may be huge when x holds no data.
    order = () if B == 0 else range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        m = valid[t]                                   # (B, 1): row b is live at t
        new, saved = step(x[t], *states, *params, **flags)
        states = tuple(np.where(m, n, s) for n, s in zip(new, states))
        out[t] = np.where(m, new[0], 0)
        if training:
            steps.append((t, saved))
    return out, states, steps


def _bptt(step_backward, cache, d_out, d_states, shapes):
    """Backward loop over the kept steps in reverse processing order.
    step_backward(d_new_states, saved, *params, grads, **flags) returns (dx_t, d_states)
    and adds its parameter gradients into `grads`. Upstream gradients of rows that were
    not live at t are zeroed, so those rows add nothing and pass d_states through."""
    valid, params = cache.valid, cache.params
    T, B, _ = valid.shape
    dx = np.zeros((T, B, params[0].shape[1]), dtype=d_out.dtype)
    d_states = tuple(d.copy() for d in d_states)
    grads = [np.zeros(s, dtype=d_out.dtype) for s in shapes]
    for t, saved in reversed(cache.steps):
        m = valid[t]
        up = (d_states[0] + d_out[t],) + tuple(d_states[1:])   # d_out at padded t ignored
        up = tuple(np.where(m, u, 0) for u in up)
        dx_t, d_prev = step_backward(up, saved, *params, grads, **cache.flags)
        dx[t] = np.where(m, dx_t, 0)
        d_states = tuple(np.where(m, dp, ds) for dp, ds in zip(d_prev, d_states))
    return dx, d_states, grads


# -- LSTM ------------------------------------------------------------------------------------

def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, p):
    """One LSTM time step (DESIGN §2) on a batch: returns the new (h, c) and what
    `lstm_step_backward` needs."""
    # a = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh, split into a_i, a_f, a_g, a_o  (each B, H)
    # i = σ(a_i + p_i ⊙ c)   f = σ(a_f + p_f ⊙ c)   g = tanh(a_g)
    # c' = f ⊙ c + i ⊙ g     o = σ(a_o + p_o ⊙ c')   h' = o ⊙ tanh(c')
    # (p = 0 without peepholes)
    a_i, a_f, a_g, a_o = np.split(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4, axis=1)
    if p is not None:
        a_i, a_f = a_i + p[0] * c, a_f + p[1] * c
    i, f, g = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g)
    c2 = f * c + i * g
    o = sigmoid(a_o + p[2] * c2 if p is not None else a_o)
    tc = np.tanh(c2)
    h2 = o * tc
    return (h2, c2), (x, h, c, i, f, g, o, c2, tc)


# dh', dc' arrive from later steps (dc' only through the cell path so far):
#   do   = dh' ⊙ tanh(c')                 da_o = do ⊙ o(1-o)
#   dc' += dh' ⊙ o ⊙ (1 - tanh²(c')) + da_o ⊙ p_o
#   da_i = dc' ⊙ g ⊙ i(1-i)   da_f = dc' ⊙ c ⊙ f(1-f)   da_g = dc' ⊙ i ⊙ (1-g²)
#   dc   = dc' ⊙ f + da_i ⊙ p_i + da_f ⊙ p_f
#   da = [da_i da_f da_g da_o]   dx = da W_ih   dh = da W_hh
#   dW_ih += daᵀ x   dW_hh += daᵀ h   db_ih += Σ_b da   db_hh += Σ_b da
#   dp_i += Σ_b da_i ⊙ c   dp_f += Σ_b da_f ⊙ c   dp_o += Σ_b da_o ⊙ c'
def lstm_step_backward(d_new, saved, w_ih, w_hh, b_ih, b_hh, p, grads):
    """Backward of one `lstm_step`: takes the gradients of its new (h, c), adds the
    parameter gradients into `grads`, returns the gradients of its inputs."""
    dh2, dc2 = d_new
    x, h, c, i, f, g, o, c2, tc = saved
    da_o = dh2 * tc * d_sigmoid(o)
    dc2 = dc2 + dh2 * o * d_tanh(tc)
    if p is not None:
        dc2 = dc2 + da_o * p[2]
    da_i, da_f, da_g = dc2 * g * d_sigmoid(i), dc2 * c * d_sigmoid(f), dc2 * i * d_tanh(g)
    dc = dc2 * f
    if p is not None:
        dc = dc + da_i * p[0] + da_f * p[1]
        grads[4] += np.stack([(da_i * c).sum(0), (da_f * c).sum(0), (da_o * c2).sum(0)])
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
    grads[0] += da.T @ x
    grads[1] += da.T @ h
    grads[2] += da.sum(0)
    grads[3] += da.sum(0)
    return da @ w_ih, (da @ w_hh, dc)


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *,
                 lengths=None, reverse=False, training=True, peephole=None):
    """-> out (T,B,H), h_n (B,H), c_n (B,H), cache (None when training=False)."""
    a = check_forward("lstm", x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, peephole)
    reverse, training = check_flag("reverse", reverse), check_flag("training", training)
    params = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["peephole"])
    valid = _valid_mask(a["lengths"], a["T"], a["B"])
    out, (h_n, c_n), steps = _run(lstm_step, a, (a["h0"], a["c0"]), params, valid,
                                  reverse, training)
    return out, h_n, c_n, (LSTMCache(params, valid, steps) if training else None)


def lstm_backward(cache, d_out=None, d_h_n=None, d_c_n=None):
    """-> LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dpeephole)."""
    cache = require_cache(cache, LSTMCache, "lstm_backward")
    w_ih, w_hh, _, _, p = cache.params
    (T, B, _), H = cache.valid.shape, w_hh.shape[1]
    d = check_backward("lstm", T, B, H, w_ih.dtype, d_out, d_h_n, d_c_n)
    shapes = [w_ih.shape, w_hh.shape, (4 * H,), (4 * H,), (3, H)]
    dx, (dh0, dc0), g = _bptt(lstm_step_backward, cache, d["d_out"],
                              (d["d_h_n"], d["d_c_n"]), shapes)
    return LSTMGrads(dx, dh0, dc0, g[0], g[1], g[2], g[3], None if p is None else g[4])


# -- GRU -------------------------------------------------------------------------------------

def gru_step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after):
    """One GRU time step (DESIGN §2, either reset form) on a batch: returns the new h and
    what `gru_step_backward` needs."""
    # x-side a_r, a_z, a_n = split(x W_ihᵀ + b_ih);  W_hr, W_hz, W_hn = split(W_hh) (and b_hh)
    # r = σ(a_r + h W_hrᵀ + b_hr)   z = σ(a_z + h W_hzᵀ + b_hz)
    # reset_after:     n = tanh(a_n + r ⊙ (h W_hnᵀ + b_hn))
    # not reset_after: n = tanh(a_n + (r ⊙ h) W_hnᵀ + b_hn)
    # h' = (1 - z) ⊙ n + z ⊙ h
    H = h.shape[1]
    a_r, a_z, a_n = np.split(x @ w_ih.T + b_ih, 3, axis=1)
    h_r, h_z = np.split(h @ w_hh[:2 * H].T + b_hh[:2 * H], 2, axis=1)
    r, z = sigmoid(a_r + h_r), sigmoid(a_z + h_z)
    if reset_after:
        h_n = h @ w_hh[2 * H:].T + b_hh[2 * H:]
        n = np.tanh(a_n + r * h_n)
    else:
        h_n = None
        n = np.tanh(a_n + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
    h2 = (1 - z) * n + z * h
    return (h2,), (x, h, r, z, n, h_n)


# dh' arrives from later steps:
#   dn = dh' ⊙ (1-z)   dz = dh' ⊙ (h-n)   dh = dh' ⊙ z
#   da_n = dn ⊙ (1-n²)   da_z = dz ⊙ z(1-z)
#   reset_after:     da_r = da_n ⊙ (h W_hnᵀ + b_hn) ⊙ r(1-r)
#                    hidden-side gradient dah = [da_r, da_z, da_n ⊙ r] against h for all gates
#   not reset_after: d(r⊙h) = da_n W_hn   da_r = d(r⊙h) ⊙ h ⊙ r(1-r)   dh += d(r⊙h) ⊙ r
#                    dah = [da_r, da_z, da_n] against h for r, z and against r⊙h for n
#   dax = [da_r, da_z, da_n]   dx = dax W_ih   dh += dah W_hh (the W_hn part only if reset_after)
#   dW_ih += daxᵀ x   db_ih += Σ_b dax   dW_hh += dahᵀ (h or r⊙h)   db_hh += Σ_b dah
def gru_step_backward(d_new, saved, w_ih, w_hh, b_ih, b_hh, grads, reset_after):
    """Backward of one `gru_step`: adds the parameter gradients into `grads`, returns the
    gradients of its inputs."""
    (dh2,) = d_new
    x, h, r, z, n, h_n = saved
    H = h.shape[1]
    da_n = dh2 * (1 - z) * d_tanh(n)
    da_z = dh2 * (h - n) * d_sigmoid(z)
    dh = dh2 * z
    if reset_after:
        da_r = da_n * h_n * d_sigmoid(r)
        dah_n, h_in_n = da_n * r, h
        dh = dh + dah_n @ w_hh[2 * H:]
    else:
        d_rh = da_n @ w_hh[2 * H:]
        da_r = d_rh * h * d_sigmoid(r)
        dah_n, h_in_n = da_n, r * h
        dh = dh + d_rh * r
    dax = np.concatenate([da_r, da_z, da_n], axis=1)
    dah_rz = np.concatenate([da_r, da_z], axis=1)
    dh = dh + dah_rz @ w_hh[:2 * H]
    grads[0] += dax.T @ x
    grads[1][:2 * H] += dah_rz.T @ h
    grads[1][2 * H:] += dah_n.T @ h_in_n
    grads[2] += dax.sum(0)
    grads[3] += np.concatenate([dah_rz.sum(0), dah_n.sum(0)])
    return dax @ w_ih, (dh,)


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, reset_after=True):
    """-> out (T,B,H), h_n (B,H), cache (None when training=False)."""
    a = check_forward("gru", x, w_ih, w_hh, b_ih, b_hh, h0, lengths=lengths)
    reverse, training = check_flag("reverse", reverse), check_flag("training", training)
    reset_after = check_flag("reset_after", reset_after)
    params = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    valid = _valid_mask(a["lengths"], a["T"], a["B"])
    out, (h_n,), steps = _run(gru_step, a, (a["h0"],), params, valid, reverse, training,
                              reset_after=reset_after)
    cache = GRUCache(params, valid, steps, reset_after=reset_after) if training else None
    return out, h_n, cache


def gru_backward(cache, d_out=None, d_h_n=None):
    """-> Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    cache = require_cache(cache, GRUCache, "gru_backward")
    return _backward_h_only(gru_step_backward, cache, "gru", d_out, d_h_n)


# -- SimpleRNN -------------------------------------------------------------------------------

def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    """One SimpleRNN time step (DESIGN §2) on a batch: returns the new h and what
    `rnn_step_backward` needs."""
    # h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh),  act = tanh or relu
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    h2 = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return (h2,), (x, h, h2)


# da = dh' ⊙ act'(h')  (tanh: 1 - h'²; relu: 1 where h' > 0, else 0)
# dx = da W_ih   dh = da W_hh   dW_ih += daᵀ x   dW_hh += daᵀ h   db_ih, db_hh += Σ_b da
def rnn_step_backward(d_new, saved, w_ih, w_hh, b_ih, b_hh, grads, nonlinearity):
    """Backward of one `rnn_step`: adds the parameter gradients into `grads`, returns the
    gradients of its inputs."""
    (dh2,) = d_new
    x, h, h2 = saved
    da = dh2 * (d_tanh(h2) if nonlinearity == "tanh" else (h2 > 0))
    grads[0] += da.T @ x
    grads[1] += da.T @ h
    grads[2] += da.sum(0)
    grads[3] += da.sum(0)
    return da @ w_ih, (da @ w_hh,)


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, nonlinearity="tanh"):
    """-> out (T,B,H), h_n (B,H), cache (None when training=False)."""
    a = check_forward("rnn", x, w_ih, w_hh, b_ih, b_hh, h0, lengths=lengths)
    reverse, training = check_flag("reverse", reverse), check_flag("training", training)
    nonlinearity = check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    params = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    valid = _valid_mask(a["lengths"], a["T"], a["B"])
    out, (h_n,), steps = _run(rnn_step, a, (a["h0"],), params, valid, reverse, training,
                              nonlinearity=nonlinearity)
    cache = RNNCache(params, valid, steps, nonlinearity=nonlinearity) if training else None
    return out, h_n, cache


def rnn_backward(cache, d_out=None, d_h_n=None):
    """-> Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    cache = require_cache(cache, RNNCache, "rnn_backward")
    return _backward_h_only(rnn_step_backward, cache, "rnn", d_out, d_h_n)


def _backward_h_only(step_backward, cache, kind, d_out, d_h_n):
    """Backward of the cells whose only state is h (GRU, SimpleRNN)."""
    w_ih, w_hh = cache.params[:2]
    (T, B, _), H = cache.valid.shape, w_hh.shape[1]
    d = check_backward(kind, T, B, H, w_ih.dtype, d_out, d_h_n)
    shapes = [w_ih.shape, w_hh.shape, (w_hh.shape[0],), (w_hh.shape[0],)]
    dx, (dh0,), g = _bptt(step_backward, cache, d["d_out"], (d["d_h_n"],), shapes)
    return Grads(dx, dh0, *g)
