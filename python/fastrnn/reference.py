"""Pure-NumPy reference of the functional API: the oracle every C++ kernel is tested against.

Same signatures, argument checks and results as `fastrnn.functional`
(docs/functional.md), plus the cell variants of docs/variants.md as keyword options
whose defaults give the plain cells. Written for clarity, not speed: one step function
per cell, a plain loop over time, the equations as comments (DESIGN §2).

Dimension key (time-major; rightmost axis fastest):
    T time steps, B batch, I input features, H hidden units, R recurrent size
    (R = H, or proj_size P for an LSTM with w_hr),
    G gates: LSTM 4 (i, f, g, o), GRU 3 (r, z, n), SimpleRNN 1.
    x (T, B, I)   w_ih (G*H, I)   w_hh (G*H, R)   b_ih, b_hh (G*H,)
    h0, h_n (B, R)   c0, c_n (B, H)   out (T, B, R)   peephole (3, H) rows p_i, p_f, p_o
    w_hr (P, H)   ln_gain (2, G*H) rows [input, recurrent]   ln_cell (2, H) rows [gain, shift]
    recurrent_mask (G, B, R)   zoneout_mask (T, B, R)   zoneout_mask_c (T, B, H)

Sequence semantics (DESIGN §3): a row b is updated only at time steps
t < lengths[b]; at t >= lengths[b] it keeps its state and outputs 0. Masking
each step per row gives exactly PyTorch's packed-sequence behaviour in both
directions: with reverse=True the loop runs t = T-1 .. 0, and a row keeps its
initial state until t = lengths[b]-1. Padded entries of x (t >= lengths[b])
are never read (they are zeroed first), so they may hold anything.

Masks are data, not randomness: the reference applies a mask whenever it is given
(training decides only whether a cache is kept); the layer draws them in training
(`fastrnn.masks`). Without a zoneout mask, zoneout=p applies its expectation.
"""
import numpy as np

from ._checks import (LN_EPS, check_activation, check_backward, check_flag,
                      check_forward, check_variants, require_cache)
from ._types import Grads, LSTMGrads


# -- activations; derivatives take the activation's output ---------------------------------

def sigmoid(a):
    """Logistic function, computed through tanh so it never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))      # = 1 / (1 + exp(-a)), without overflow


def d_sigmoid(s):
    """Derivative of the sigmoid in terms of its output s."""
    return s * (1 - s)


def d_tanh(y):
    """Derivative of tanh in terms of its output y."""
    return 1 - y * y


# name -> (f, f' as a function of y = f(a)). Every f here is monotone, so y determines
# f'(a) except where f is flat: there y sits on the flat part's value, and the kink
# itself takes the one-sided derivative 0 (relu: a = 0 gives y = 0 -> 0;
# hard_sigmoid: a = ±3 gives y = 0 or 1 -> 0).
ACTIVATIONS = {
    "tanh": (np.tanh, d_tanh),
    "sigmoid": (sigmoid, d_sigmoid),
    # Keras 3: relu6(a + 3) / 6; slope 1/6 strictly inside (0, 1), 0 where clipped
    "hard_sigmoid": (lambda a: np.clip(a + 3, 0, 6) / 6, lambda y: ((y > 0) & (y < 1)) / 6),
    "relu": (lambda a: np.maximum(a, 0), lambda y: (y > 0).astype(y.dtype)),
    "linear": (lambda a: a, lambda y: np.ones_like(y)),
    # y = a / (1 + |a|)  =>  1 - |y| = 1 / (1 + |a|)  =>  f' = 1 / (1 + |a|)² = (1 - |y|)²
    "softsign": (lambda a: a / (1 + np.abs(a)), lambda y: (1 - np.abs(y)) ** 2),
}


def _act(name, a):
    return ACTIVATIONS[name][0](a)


def _d_act(name, y):
    return ACTIVATIONS[name][1](y)


# -- layer normalisation (over the feature axis, biased variance, eps = LN_EPS) -------------

def layer_norm(v, gain, shift=None):
    # v̂ = (v - mean(v)) / sqrt(var(v) + eps)      y = gain ⊙ v̂ (+ shift)
    """Layer normalisation over the last axis with gain (and shift); returns the result and what the backward needs."""
    d = v - v.mean(axis=1, keepdims=True)
    s = 1 / np.sqrt((d * d).mean(axis=1, keepdims=True) + LN_EPS)
    vh = d * s
    y = gain * vh if shift is None else gain * vh + shift
    return y, (vh, s)


def layer_norm_backward(dy, gain, saved):
    # dv̂ = dy ⊙ gain    dv = s ⊙ (dv̂ - mean(dv̂) - v̂ ⊙ mean(dv̂ ⊙ v̂))
    # dgain = Σ_b dy ⊙ v̂    dshift = Σ_b dy
    """Backward of `layer_norm`: gradients of its input, gain and shift."""
    vh, s = saved
    dvh = dy * gain
    dv = s * (dvh - dvh.mean(axis=1, keepdims=True)
              - vh * (dvh * vh).mean(axis=1, keepdims=True))
    return dv, (dy * vh).sum(0), dy.sum(0)


# -- recurrent dropout: gate k reads h ⊙ m_k (Keras: one mask per gate and sequence) --------

def _recurrent_inputs(h, rmask, G):
    """The G recurrent inputs: h ⊙ m_k, or h itself for every gate without a mask."""
    return [h] * G if rmask is None else [h * m for m in rmask]


def _recurrent_product(hs, w_hh):
    """[hs_k W_hh,kᵀ] over the gates k, concatenated: (B, G*H); one GEMM when every gate
    reads the same h (no mask), as the plain cell."""
    ws = np.split(w_hh, len(hs), axis=0)
    if all(h is hs[0] for h in hs):
        return hs[0] @ w_hh.T
    return np.concatenate([h @ w.T for h, w in zip(hs, ws)], axis=1)


def _recurrent_backward(dsh, hs, w_hh, rmask, grad_w):
    """Backward of _recurrent_product: adds dW_hh,k += dsh_kᵀ hs_k into grad_w and
    returns dh = Σ_k (dsh_k W_hh,k) ⊙ m_k."""
    G = len(hs)
    dks, ws = np.split(dsh, G, axis=1), np.split(w_hh, G, axis=0)
    H = w_hh.shape[0] // G
    dh = 0
    for k, (dk, hk, w) in enumerate(zip(dks, hs, ws)):
        grad_w[k * H:(k + 1) * H] += dk.T @ hk
        dh = dh + (dk @ w if rmask is None else (dk @ w) * rmask[k])
    return dh


# -- zoneout: a unit keeps its old value where m = 1 -----------------------------------------

def _zoneout(m, old, new):
    # s' = m ⊙ s + (1 - m) ⊙ s_new;  m = None: s' = s_new (zoneout off)
    return new if m is None else m * old + (1 - m) * new


def _zoneout_backward(m, ds):
    """-> (d s_new, d s through the kept part)."""
    return (ds, 0) if m is None else ((1 - m) * ds, m * ds)


# -- the cache: what training-mode forward keeps for backward ------------------------------

class _Cache:
    """Opaque to callers. `params` are the checked weights, `valid` (T, B, 1) marks
    t < lengths[b], `steps` is [(t, saved)] in processing order; never modified."""

    def __init__(self, params, valid, steps, **flags):
        self.params, self.valid, self.steps, self.flags = params, valid, steps, flags


class LSTMCache(_Cache):
    """Training cache of `lstm_forward` (opaque; consumed by `lstm_backward`)."""
    pass


class GRUCache(_Cache):
    """Training cache of `gru_forward` (opaque; consumed by `gru_backward`)."""
    pass


class RNNCache(_Cache):
    """Training cache of `rnn_forward` (opaque; consumed by `rnn_backward`)."""
    pass


# -- the sequence loop shared by all cells --------------------------------------------------

def _valid_mask(lengths, T, B):
    """(T, B, 1) bool: True where t < lengths[b]."""
    if lengths is None:
        return np.ones((T, B, 1), dtype=bool)
    return (np.arange(T)[:, None] < lengths[None, :])[:, :, None]


def _run(step, a, states, params, valid, reverse, training, per_step, **flags):
    """Forward loop. `states` is (h,) or (h, c); step(x_t, *states, *params,
    **per_step[t], **flags) returns (new_states, saved); `per_step` maps names to
    (T, ...) arrays read at t. Returns out, the final states and the steps to keep."""
    x = np.where(valid, a["x"], 0)                     # padded inputs are never read
    T, B, R = a["T"], a["B"], a["R"]
    states = tuple(s.copy() for s in states)           # never alias the caller's h0, c0
    out = np.zeros((T, B, R), dtype=a["dtype"])
    steps = []
    # No rows, nothing to compute: T may be huge when x holds no data.
    order = () if B == 0 else range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        m = valid[t]                                   # (B, 1): row b is live at t
        new, saved = step(x[t], *states, *params, **{k: v[t] for k, v in per_step.items()},
                          **flags)
        states = tuple(np.where(m, n, s) for n, s in zip(new, states))
        out[t] = np.where(m, new[0], 0)
        if training:
            steps.append((t, saved))
    return out, states, steps


def _forward(step, cache_type, a, v, states, params, reverse, training, **flags):
    """`_run` over the checked arguments `a` and variants `v` of one cell, with its valid
    mask and zoneout inputs -> out, the final states, the cache (None unless training)."""
    valid = _valid_mask(a["lengths"], a["T"], a["B"])
    out, states, steps = _run(step, a, states, params, valid, reverse, training,
                              _zoneout_inputs(v, a["T"], a["B"]), **flags)
    return out, states, (cache_type(params, valid, steps, **flags) if training else None)


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


def _zoneout_inputs(v, T, B):
    """per_step arrays of the zoneout masks: a given mask, else the constant p (the
    expectation), else nothing (zoneout off)."""
    out = {}
    for name, mask, size in v["zoneout_masks"]:
        if mask is not None:
            out[name] = mask
        elif v["zoneout"] > 0:
            out[name] = np.full((T, B, size), v["zoneout"], dtype=v["dtype"])
    return out


def _gate_inputs(x, h, w_ih, w_hh, ln_gain, rmask, G):
    """The two gate terms before the biases: sx = x W_ihᵀ and sh = Σ_k (h ⊙ m_k) W_hh,kᵀ,
    each layer-normalised with its own gain row when ln_gain is given."""
    hs = _recurrent_inputs(h, rmask, G)
    sx, sh = x @ w_ih.T, _recurrent_product(hs, w_hh)
    if ln_gain is None:
        return sx, sh, (hs, None, None)
    sx, lx = layer_norm(sx, ln_gain[0])
    sh, lh = layer_norm(sh, ln_gain[1])
    return sx, sh, (hs, lx, lh)


def _gate_inputs_backward(dsx, dsh, x, saved, w_ih, w_hh, ln_gain, rmask, grads, gw):
    """Backward of _gate_inputs: -> (dx, dh); adds dW_ih, dW_hh (and dln_gain into
    grads[gw]) into grads."""
    hs, lx, lh = saved
    if ln_gain is not None:
        dsx, dg0, _ = layer_norm_backward(dsx, ln_gain[0], lx)
        dsh, dg1, _ = layer_norm_backward(dsh, ln_gain[1], lh)
        grads[gw] += np.stack([dg0, dg1])
    grads[0] += dsx.T @ x
    return dsx @ w_ih, _recurrent_backward(dsh, hs, w_hh, rmask, grads[1])


# -- LSTM ------------------------------------------------------------------------------------

def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, p, w_hr, ln_gain, ln_cell,
              act, ract, rmask, zh=None, zc=None):
    # sx = x W_ihᵀ   sh = Σ_k (h ⊙ m_k) W_hh,kᵀ      (m_k: recurrent-dropout mask of gate k)
    # layer_norm: sx, sh = LN(sx; γ_x), LN(sh; γ_h), each over its G*H features
    # a = sx + b_ih + sh + b_hh, split into a_i, a_f, a_g, a_o  (each B, H)
    # i = ract(a_i + p_i ⊙ c)   f = ract(a_f + p_f ⊙ c)   g = act(a_g)
    # c' = f ⊙ c + i ⊙ g        o = ract(a_o + p_o ⊙ c')
    # layer_norm: ĉ = LN(c'; γ_c, β_c), else ĉ = c'
    # m = o ⊙ act(ĉ)            h' = m W_hrᵀ (proj_size), else m
    # zoneout: h' = z_h ⊙ h + (1 - z_h) ⊙ h'    c' = z_c ⊙ c + (1 - z_c) ⊙ c'
    # (p = 0 without peepholes; act = tanh, ract = σ by default)
    """One LSTM time step on a batch (every variant): the new (h, c) and what `lstm_step_backward` needs."""
    sx, sh, gsaved = _gate_inputs(x, h, w_ih, w_hh, ln_gain, rmask, 4)
    a_i, a_f, a_g, a_o = np.split(sx + b_ih + sh + b_hh, 4, axis=1)
    if p is not None:
        a_i, a_f = a_i + p[0] * c, a_f + p[1] * c
    i, f, g = _act(ract, a_i), _act(ract, a_f), _act(act, a_g)
    c2 = f * c + i * g
    o = _act(ract, a_o + p[2] * c2 if p is not None else a_o)
    cn, lc = (c2, None) if ln_cell is None else layer_norm(c2, ln_cell[0], ln_cell[1])
    tc = _act(act, cn)
    m = o * tc
    h2 = m if w_hr is None else m @ w_hr.T
    saved = (x, h, c, i, f, g, o, c2, tc, m, gsaved, lc, zh, zc)
    return (_zoneout(zh, h, h2), _zoneout(zc, c, c2)), saved


# dh', dc' arrive from later steps (on the zoned-out states):
#   zoneout: dh₂ = (1 - z_h) ⊙ dh'   dc₂ = (1 - z_c) ⊙ dc'   (z_h ⊙ dh', z_c ⊙ dc' go to h, c)
#   proj:    dm = dh₂ W_hr   dW_hr += dh₂ᵀ m;   else dm = dh₂
#   do   = dm ⊙ act(ĉ)                da_o = do ⊙ ract'(o)
#   dĉ   = dm ⊙ o ⊙ act'(act(ĉ));  layer_norm: dc' = LN backward of dĉ (dγ_c, dβ_c), else dĉ
#   dc'  = that + dc₂ + da_o ⊙ p_o
#   da_i = dc' ⊙ g ⊙ ract'(i)   da_f = dc' ⊙ c ⊙ ract'(f)   da_g = dc' ⊙ i ⊙ act'(g)
#   dc   = dc' ⊙ f + da_i ⊙ p_i + da_f ⊙ p_f
#   da = [da_i da_f da_g da_o]   db_ih += Σ_b da   db_hh += Σ_b da
#   layer_norm: dsx, dsh = LN backward of da through each norm (dγ_x, dγ_h), else da, da
#   dx = dsx W_ih   dW_ih += dsxᵀ x   dh = Σ_k (dsh_k W_hh,k) ⊙ m_k   dW_hh,k += dsh_kᵀ (h ⊙ m_k)
#   dp_i += Σ_b da_i ⊙ c   dp_f += Σ_b da_f ⊙ c   dp_o += Σ_b da_o ⊙ c'
def lstm_step_backward(d_new, saved, w_ih, w_hh, b_ih, b_hh, p, w_hr, ln_gain, ln_cell,
                       grads, act, ract, rmask):
    """Backward of one `lstm_step`: adds parameter gradients into `grads`, returns the gradients of its inputs."""
    x, h, c, i, f, g, o, c2, tc, m, gsaved, lc, zh, zc = saved
    dh2, dh_keep = _zoneout_backward(zh, d_new[0])
    dc_new, dc_keep = _zoneout_backward(zc, d_new[1])
    if w_hr is not None:
        grads[5] += dh2.T @ m
        dh2 = dh2 @ w_hr
    da_o = dh2 * tc * _d_act(ract, o)
    dcn = dh2 * o * _d_act(act, tc)
    if ln_cell is not None:
        dcn, dgc, dbc = layer_norm_backward(dcn, ln_cell[0], lc)
        grads[7] += np.stack([dgc, dbc])
    dc2 = dc_new + dcn
    if p is not None:
        dc2 = dc2 + da_o * p[2]
    da_i, da_f = dc2 * g * _d_act(ract, i), dc2 * c * _d_act(ract, f)
    da_g = dc2 * i * _d_act(act, g)
    dc = dc2 * f + dc_keep
    if p is not None:
        dc = dc + da_i * p[0] + da_f * p[1]
        grads[4] += np.stack([(da_i * c).sum(0), (da_f * c).sum(0), (da_o * c2).sum(0)])
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
    grads[2] += da.sum(0)
    grads[3] += da.sum(0)
    dx, dh = _gate_inputs_backward(da, da, x, gsaved, w_ih, w_hh, ln_gain, rmask, grads, 6)
    return dx, (dh + dh_keep, dc)


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *,
                 lengths=None, reverse=False, training=True, peephole=None, w_hr=None,
                 layer_norm=False, ln_gain=None, ln_cell=None, activation="tanh",
                 recurrent_activation="sigmoid", recurrent_mask=None, zoneout=0.0,
                 zoneout_mask=None, zoneout_mask_c=None):
    """-> out (T,B,R), h_n (B,R), c_n (B,H), cache (None when training=False).
    R = P with w_hr (P, H) (PyTorch's proj_size), else H; docs/variants.md for the rest."""
    a = check_forward("lstm", x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, peephole, w_hr)
    reverse, training = check_flag("reverse", reverse), check_flag("training", training)
    v = check_variants("lstm", a, layer_norm=layer_norm, ln_gain=ln_gain, ln_cell=ln_cell,
                       activation=activation, recurrent_activation=recurrent_activation,
                       recurrent_mask=recurrent_mask, zoneout=zoneout,
                       zoneout_mask=zoneout_mask, zoneout_mask_c=zoneout_mask_c)
    params = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["peephole"], a["w_hr"],
              v["ln_gain"], v["ln_cell"])
    flags = dict(act=v["activation"], ract=v["recurrent_activation"], rmask=v["recurrent_mask"])
    out, (h_n, c_n), cache = _forward(lstm_step, LSTMCache, a, v, (a["h0"], a["c0"]), params,
                                      reverse, training, **flags)
    return out, h_n, c_n, cache


def lstm_backward(cache, d_out=None, d_h_n=None, d_c_n=None):
    """-> LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dpeephole, dw_hr, dln_gain,
    dln_cell); the last four are None where the forward had no such parameter."""
    cache = require_cache(cache, LSTMCache, "lstm_backward")
    w_ih, w_hh, _, _, p, w_hr, ln_gain, ln_cell = cache.params
    (T, B, _), H, R = cache.valid.shape, w_hh.shape[0] // 4, w_hh.shape[1]
    d = check_backward("lstm", T, B, H, w_ih.dtype, d_out, d_h_n, d_c_n, R=R)
    shapes = [w_ih.shape, w_hh.shape, (4 * H,), (4 * H,), (3, H), (R, H), (2, 4 * H), (2, H)]
    dx, (dh0, dc0), g = _bptt(lstm_step_backward, cache, d["d_out"],
                              (d["d_h_n"], d["d_c_n"]), shapes)
    given = [p, w_hr, ln_gain, ln_cell]
    return LSTMGrads(dx, dh0, dc0, *g[:4], *(None if q is None else gq
                                             for q, gq in zip(given, g[4:])))


# -- GRU -------------------------------------------------------------------------------------

def gru_step(x, h, w_ih, w_hh, b_ih, b_hh, ln_gain, reset_after, act, ract, rmask,
             leak_rate, zh=None):
    # h_k = h ⊙ m_k: the recurrent input of gate k (k = r, z, n; m_k = 1 without dropout)
    # sx = x W_ihᵀ; layer_norm: sx = LN(sx; γ_x)        a_r, a_z, a_n = split(sx + b_ih)
    # reset_after:     sh = [h_r W_hrᵀ, h_z W_hzᵀ, h_n W_hnᵀ]; layer_norm: sh = LN(sh; γ_h)
    #                  u_r, u_z, u_n = split(sh + b_hh)
    #                  r = ract(a_r + u_r)   z = ract(a_z + u_z)   n = act(a_n + r ⊙ u_n)
    # not reset_after: r = ract(a_r + h_r W_hrᵀ + b_hr)   z = ract(a_z + h_z W_hzᵀ + b_hz)
    #                  n = act(a_n + (r ⊙ h_n) W_hnᵀ + b_hn)
    # ĥ = (1 - z) ⊙ n + z ⊙ h        (the unmasked h, as Keras)
    # leak:    h' = (1 - α) ⊙ h + α ⊙ ĥ    (α = leak_rate = 1: h' = ĥ)
    # zoneout: h' = z_h ⊙ h + (1 - z_h) ⊙ h'
    """One GRU time step on a batch (either reset form, every variant): the new h and what `gru_step_backward` needs."""
    H = h.shape[1]
    if reset_after:
        sx, sh, gsaved = _gate_inputs(x, h, w_ih, w_hh, ln_gain, rmask, 3)
        a_r, a_z, a_n = np.split(sx + b_ih, 3, axis=1)
        u_r, u_z, u_n = np.split(sh + b_hh, 3, axis=1)
        r, z = _act(ract, a_r + u_r), _act(ract, a_z + u_z)
        n = _act(act, a_n + r * u_n)
    else:
        hs = _recurrent_inputs(h, rmask, 3)
        a_r, a_z, a_n = np.split(x @ w_ih.T + b_ih, 3, axis=1)
        u_r, u_z = np.split(_recurrent_product(hs[:2], w_hh[:2 * H]) + b_hh[:2 * H], 2, axis=1)
        r, z = _act(ract, a_r + u_r), _act(ract, a_z + u_z)
        u_n, gsaved = None, (hs, None, None)
        n = _act(act, a_n + (r * hs[2]) @ w_hh[2 * H:].T + b_hh[2 * H:])
    hc = (1 - z) * n + z * h
    h2 = hc if leak_rate == 1 else (1 - leak_rate) * h + leak_rate * hc
    return (_zoneout(zh, h, h2),), (x, h, r, z, n, u_n, gsaved, zh)


# dh' arrives from later steps:
#   zoneout: dh₂ = (1 - z_h) ⊙ dh'  (z_h ⊙ dh' goes to h);   leak: dĥ = α dh₂ ((1 - α) dh₂ to h)
#   dn = dĥ ⊙ (1-z)   dz = dĥ ⊙ (h-n)   dh += dĥ ⊙ z
#   da_n = dn ⊙ act'(n)   da_z = dz ⊙ ract'(z)
#   reset_after:     da_r = da_n ⊙ u_n ⊙ ract'(r)   du = [da_r, da_z, da_n ⊙ r] (hidden side)
#                    layer_norm: dsh = LN backward of du (dγ_h), else du
#                    dh += Σ_k (dsh_k W_hh,k) ⊙ m_k   dW_hh,k += dsh_kᵀ h_k   db_hh += Σ_b du
#   not reset_after: d(r⊙h_n) = da_n W_hn   da_r = d(r⊙h_n) ⊙ h_n ⊙ ract'(r)
#                    dh += (d(r⊙h_n) ⊙ r) ⊙ m_n + Σ_{k=r,z} (da_k W_hh,k) ⊙ m_k
#                    dW_hn += da_nᵀ (r⊙h_n)   dW_hh,k += da_kᵀ h_k (k = r, z)
#                    db_hh += Σ_b [da_r, da_z, da_n]
#   dax = [da_r, da_z, da_n]   db_ih += Σ_b dax;  layer_norm: dsx = LN backward of dax (dγ_x)
#   dx = dsx W_ih   dW_ih += dsxᵀ x
def gru_step_backward(d_new, saved, w_ih, w_hh, b_ih, b_hh, ln_gain, grads, reset_after, act,
                      ract, rmask, leak_rate):
    """Backward of one `gru_step`: adds parameter gradients into `grads`, returns the gradients of its inputs."""
    x, h, r, z, n, u_n, gsaved, zh = saved
    H = h.shape[1]
    dh2, dh = _zoneout_backward(zh, d_new[0])
    dhc = dh2 if leak_rate == 1 else leak_rate * dh2
    dh = dh + (0 if leak_rate == 1 else (1 - leak_rate) * dh2)
    da_n = dhc * (1 - z) * _d_act(act, n)
    da_z = dhc * (h - n) * _d_act(ract, z)
    dh = dh + dhc * z
    if reset_after:
        da_r = da_n * u_n * _d_act(ract, r)
        du = np.concatenate([da_r, da_z, da_n * r], axis=1)
        grads[3] += du.sum(0)
        dax = np.concatenate([da_r, da_z, da_n], axis=1)
        grads[2] += dax.sum(0)
        dx, dhh = _gate_inputs_backward(dax, du, x, gsaved, w_ih, w_hh, ln_gain, rmask,
                                        grads, 4)
        return dx, (dh + dhh,)
    hs = gsaved[0]
    d_rh = da_n @ w_hh[2 * H:]
    da_r = d_rh * hs[2] * _d_act(ract, r)
    d_hn = d_rh * r
    dh = dh + (d_hn if rmask is None else d_hn * rmask[2])
    grads[1][2 * H:] += da_n.T @ (r * hs[2])
    dah_rz = np.concatenate([da_r, da_z], axis=1)
    dh = dh + _recurrent_backward(dah_rz, hs[:2], w_hh[:2 * H],
                                  None if rmask is None else rmask[:2], grads[1][:2 * H])
    dax = np.concatenate([da_r, da_z, da_n], axis=1)
    grads[0] += dax.T @ x
    grads[2] += dax.sum(0)
    grads[3] += dax.sum(0)
    return dax @ w_ih, (dh,)


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, reset_after=True,
                layer_norm=False, ln_gain=None, activation="tanh",
                recurrent_activation="sigmoid", recurrent_mask=None, zoneout=0.0,
                zoneout_mask=None, leak_rate=1.0):
    """-> out (T,B,H), h_n (B,H), cache (None when training=False); docs/variants.md."""
    a = check_forward("gru", x, w_ih, w_hh, b_ih, b_hh, h0, lengths=lengths)
    reverse, training = check_flag("reverse", reverse), check_flag("training", training)
    reset_after = check_flag("reset_after", reset_after)
    v = check_variants("gru", a, layer_norm=layer_norm, ln_gain=ln_gain,
                       activation=activation, recurrent_activation=recurrent_activation,
                       recurrent_mask=recurrent_mask, zoneout=zoneout,
                       zoneout_mask=zoneout_mask, leak_rate=leak_rate, reset_after=reset_after)
    params = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], v["ln_gain"])
    flags = dict(reset_after=reset_after, act=v["activation"],
                 ract=v["recurrent_activation"], rmask=v["recurrent_mask"],
                 leak_rate=v["leak_rate"])
    out, (h_n,), cache = _forward(gru_step, GRUCache, a, v, (a["h0"],), params, reverse,
                                  training, **flags)
    return out, h_n, cache


def gru_backward(cache, d_out=None, d_h_n=None):
    """-> Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dln_gain); dln_gain is None
    without layer_norm."""
    cache = require_cache(cache, GRUCache, "gru_backward")
    return _backward_h_only(gru_step_backward, cache, "gru", d_out, d_h_n)


# -- SimpleRNN -------------------------------------------------------------------------------

def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity, rmask, leak_rate, zh=None):
    # ĥ = act(x W_ihᵀ + b_ih + (h ⊙ m) W_hhᵀ + b_hh),  act = nonlinearity (tanh, relu, ...)
    # leak:    h' = (1 - α) ⊙ h + α ⊙ ĥ      zoneout: h' = z_h ⊙ h + (1 - z_h) ⊙ h'
    """One SimpleRNN time step on a batch (every variant): the new h and what `rnn_step_backward` needs."""
    hm = h if rmask is None else h * rmask[0]
    hc = _act(nonlinearity, x @ w_ih.T + b_ih + hm @ w_hh.T + b_hh)
    h2 = hc if leak_rate == 1 else (1 - leak_rate) * h + leak_rate * hc
    return (_zoneout(zh, h, h2),), (x, h, hc, hm, zh)


# zoneout and leak as in the GRU: dh₂ = (1 - z_h) ⊙ dh', dĥ = α dh₂, the rest goes to h
# da = dĥ ⊙ act'(ĥ)   (tanh: 1 - ĥ²; relu: 1 where ĥ > 0, else 0; docs/variants.md)
# dx = da W_ih   dh += (da W_hh) ⊙ m   dW_ih += daᵀ x   dW_hh += daᵀ (h ⊙ m)
# db_ih, db_hh += Σ_b da
def rnn_step_backward(d_new, saved, w_ih, w_hh, b_ih, b_hh, grads, nonlinearity, rmask,
                      leak_rate):
    """Backward of one `rnn_step`: adds parameter gradients into `grads`, returns the gradients of its inputs."""
    x, h, hc, hm, zh = saved
    dh2, dh = _zoneout_backward(zh, d_new[0])
    dhc = dh2 if leak_rate == 1 else leak_rate * dh2
    dh = dh + (0 if leak_rate == 1 else (1 - leak_rate) * dh2)
    da = dhc * _d_act(nonlinearity, hc)
    grads[0] += da.T @ x
    grads[1] += da.T @ hm
    grads[2] += da.sum(0)
    grads[3] += da.sum(0)
    dhm = da @ w_hh
    return da @ w_ih, (dh + (dhm if rmask is None else dhm * rmask[0]),)


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, nonlinearity="tanh",
                layer_norm=False, recurrent_mask=None, zoneout=0.0, zoneout_mask=None,
                leak_rate=1.0):
    """-> out (T,B,H), h_n (B,H), cache (None when training=False). `nonlinearity` takes
    every activation of docs/variants.md (Keras's `activation`); layer_norm is refused."""
    a = check_forward("rnn", x, w_ih, w_hh, b_ih, b_hh, h0, lengths=lengths)
    reverse, training = check_flag("reverse", reverse), check_flag("training", training)
    nonlinearity = check_activation("nonlinearity", nonlinearity)
    v = check_variants("rnn", a, layer_norm=layer_norm, recurrent_mask=recurrent_mask,
                       zoneout=zoneout, zoneout_mask=zoneout_mask, leak_rate=leak_rate)
    params = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    flags = dict(nonlinearity=nonlinearity, rmask=v["recurrent_mask"],
                 leak_rate=v["leak_rate"])
    out, (h_n,), cache = _forward(rnn_step, RNNCache, a, v, (a["h0"],), params, reverse,
                                  training, **flags)
    return out, h_n, cache


def rnn_backward(cache, d_out=None, d_h_n=None):
    """-> Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    cache = require_cache(cache, RNNCache, "rnn_backward")
    return _backward_h_only(rnn_step_backward, cache, "rnn", d_out, d_h_n)


def _backward_h_only(step_backward, cache, kind, d_out, d_h_n):
    """Backward of the cells whose only state is h (GRU, SimpleRNN)."""
    w_ih, w_hh = cache.params[:2]
    ln_gain = cache.params[4] if kind == "gru" else None
    (T, B, _), H = cache.valid.shape, w_hh.shape[1]
    d = check_backward(kind, T, B, H, w_ih.dtype, d_out, d_h_n)
    G = w_hh.shape[0]
    shapes = [w_ih.shape, w_hh.shape, (G,), (G,), (2, G)]
    dx, (dh0,), g = _bptt(step_backward, cache, d["d_out"], (d["d_h_n"],), shapes)
    return Grads(dx, dh0, *g[:4], None if ln_gain is None else g[4])
