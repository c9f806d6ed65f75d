"""One layer, one direction, on the C++ kernels (docs/functional.md).

Dimension key: T time steps, B batch, I input features, H hidden units,
G gates (LSTM 4: i, f, g, o; GRU 3: r, z, n; SimpleRNN 1). Time-major.

    out, h_n, c_n, cache = lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    grads = lstm_backward(cache, d_out, d_h_n, d_c_n)     # LSTMGrads

`fastrnn.reference` has the same functions in plain NumPy (the oracle).
Every kernel call releases the GIL.

`precision="bfloat16"` (float32 arrays only) runs every product of the forward and
the backward with bf16 operands and fp32 sums, everything else in fp32
(docs/precision.md, "Training"); pass the same precision to the backward.

The public functions check their arguments, then call the unchecked
`_*_forward` / `_*_backward` of the same signature, which `layers` calls
after its own checks (one check per boundary). The cache is the compiled
module's `LSTMCache` / `GRUCache` / `RNNCache`: it holds the forward's inputs
(references, not copies: changing x or the weights in place between forward
and backward changes the gradients), its options and the saved arrays.
"""
import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import _core             # the kernel modules' interface (_core.pyi)
else:
    from ._isa import core as _core
from ._checks import (GATES, check_activation, check_backward, check_flag, check_forward,
                      check_variants, require_cache)
from ._types import Grads, LSTMGrads

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "rnn_forward", "rnn_backward", "set_num_threads", "get_num_threads"]


# More threads than this is a mistake, not a configuration.
MAX_THREADS = 1024

# The formats a forward and backward run their products in (docs/precision.md, "Training").
PRECISIONS = ("float32", "bfloat16")

_CACHES = {"lstm": _core.LSTMCache, "gru": _core.GRUCache, "rnn": _core.RNNCache}


def set_num_threads(n):
    """Threads of fastrnn's pool for every kernel and nn.Dense, process-wide.

    Results are bit-identical for every thread count (docs/numerics.md)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be between 1 and {MAX_THREADS}, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads():
    """Threads the kernels use (unless set: OMP_NUM_THREADS, else the CPUs this
    process may run on)."""
    return _core.get_num_threads()


def check_precision(precision, dtype):
    """`precision` as given, checked against the arrays' dtype (bf16 needs float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "float32" and np.dtype(dtype) != np.float32:
        raise ValueError(f"precision={precision!r} needs float32 arrays (bf16 products of "
                         f"float32 master weights and gradients), got {np.dtype(dtype).name}; "
                         "use precision='float32' or float32 arrays")
    return precision


# -- checked, public ------------------------------------------------------------------------

def _forward_args(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training, precision,
                  peephole=None, w_hr=None):
    a = check_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, peephole, w_hr)
    return dict(x=a["x"], w_ih=a["w_ih"], w_hh=a["w_hh"], b_ih=a["b_ih"], b_hh=a["b_hh"], h0=a["h0"],
                lengths=a["lengths"], reverse=check_flag("reverse", reverse),
                training=check_flag("training", training),
                precision=check_precision(precision, a["x"].dtype)), a


def _variant_args(cell, a, **options):
    """The variant options (docs/variants.md) the kernels fuse, checked as the reference
    checks them; zoneout masks by their keyword names."""
    v = check_variants(cell, a, **options)
    kw = {name: mask for (_, mask, _), name in zip(v["zoneout_masks"],
                                                    ("zoneout_mask", "zoneout_mask_c"))}
    kw.update(zoneout=v["zoneout"], recurrent_mask=v["recurrent_mask"])
    if cell != "rnn":
        kw.update(activation=v["activation"], recurrent_activation=v["recurrent_activation"])
    if cell != "lstm":
        kw["leak_rate"] = v["leak_rate"]
    if v["layer_norm"]:
        kw["ln_gain"] = v["ln_gain"]
        if cell == "lstm":
            kw["ln_cell"] = v["ln_cell"]
    return kw


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *,
                 lengths=None, reverse=False, training=True, peephole=None, w_hr=None,
                 layer_norm=False, ln_gain=None, ln_cell=None, activation="tanh",
                 recurrent_activation="sigmoid", recurrent_mask=None, zoneout=0.0,
                 zoneout_mask=None, zoneout_mask_c=None, precision="float32"):
    """LSTM over x (T, B, I) -> out (T, B, R), h_n (B, R), c_n (B, H), cache; R = P with
    a projection w_hr (P, H) and w_hh (4H, P) (PyTorch's proj_size), else H.
    The variant options are the reference's (docs/variants.md); a projection does not
    combine with recurrent_mask or zoneout (ValueError). precision: "float32" or
    "bfloat16" (bf16 products, not with recurrent_mask)."""
    kw, a = _forward_args("lstm", x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training,
                          precision, peephole, w_hr)
    v = _variant_args("lstm", a, layer_norm=layer_norm, ln_gain=ln_gain, ln_cell=ln_cell,
                      activation=activation,
                      recurrent_activation=recurrent_activation, recurrent_mask=recurrent_mask,
                      zoneout=zoneout, zoneout_mask=zoneout_mask, zoneout_mask_c=zoneout_mask_c)
    if a["w_hr"] is not None and (recurrent_mask is not None or zoneout != 0
                                  or zoneout_mask is not None or zoneout_mask_c is not None):
        raise ValueError("w_hr (proj_size) cannot be combined with recurrent_mask or zoneout "
                         "in the kernels (fastrnn.reference has them)")
    return _lstm_forward(c0=a["c0"], peephole=a["peephole"], w_hr=a["w_hr"], **kw, **v)


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, reset_after=True,
                layer_norm=False, ln_gain=None, activation="tanh",
                recurrent_activation="sigmoid", recurrent_mask=None, zoneout=0.0,
                zoneout_mask=None, leak_rate=1.0, precision="float32"):
    """GRU over x (T, B, I) -> out (T, B, H), h_n (B, H), cache.
    The variant options are the reference's (docs/variants.md); precision as lstm_forward's."""
    kw, a = _forward_args("gru", x, w_ih, w_hh, b_ih, b_hh, h0, None, lengths, reverse, training,
                          precision)
    reset_after = check_flag("reset_after", reset_after)
    v = _variant_args("gru", a, layer_norm=layer_norm, ln_gain=ln_gain, activation=activation,
                      recurrent_activation=recurrent_activation, recurrent_mask=recurrent_mask,
                      zoneout=zoneout,
                      zoneout_mask=zoneout_mask, leak_rate=leak_rate, reset_after=reset_after)
    return _gru_forward(reset_after=reset_after, **kw, **v)


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, nonlinearity="tanh",
                layer_norm=False, recurrent_mask=None, zoneout=0.0, zoneout_mask=None,
                leak_rate=1.0, precision="float32"):
    """SimpleRNN (Elman) over x (T, B, I) -> out (T, B, H), h_n (B, H), cache.
    `nonlinearity` takes every activation of docs/variants.md (Keras's `activation`);
    precision as lstm_forward's."""
    kw, a = _forward_args("rnn", x, w_ih, w_hh, b_ih, b_hh, h0, None, lengths, reverse, training,
                          precision)
    nonlinearity = check_activation("nonlinearity", nonlinearity)
    v = _variant_args("rnn", a, layer_norm=layer_norm, recurrent_mask=recurrent_mask,
                      zoneout=zoneout,
                      zoneout_mask=zoneout_mask, leak_rate=leak_rate)
    return _rnn_forward(nonlinearity=nonlinearity, **kw, **v)


def _backward_args(cell, cache, d_out, d_h_n, d_c_n=None, precision="float32"):
    fn = f"{cell}_backward"
    if isinstance(cache, tuple(_CACHES.values())) and cache.cell != cell:
        raise TypeError(f"{fn}: cache comes from {cache.cell}_forward, not {cell}_forward")
    c = require_cache(cache, _CACHES[cell], fn)
    T, B, _ = c.x.shape
    H, R = c.w_hh.shape[0] // GATES[cell], c.w_hh.shape[1]   # R: P with a projection
    d = check_backward(cell, T, B, H, c.x.dtype, d_out, d_h_n, d_c_n, R=R)
    d["precision"] = check_precision(precision, c.x.dtype)
    return c, d


def lstm_backward(cache, d_out=None, d_h_n=None, d_c_n=None, *, precision="float32"):
    """BPTT through an LSTM forward; None gradients mean zero. -> LSTMGrads.
    precision: "float32" or "bfloat16" (bf16 products; gradients stay float32)."""
    c, d = _backward_args("lstm", cache, d_out, d_h_n, d_c_n, precision)
    return _lstm_backward(c, d["d_out"], d["d_h_n"], d["d_c_n"], precision=d["precision"])


def gru_backward(cache, d_out=None, d_h_n=None, *, precision="float32"):
    """BPTT through a GRU forward; None gradients mean zero. -> Grads. precision as
    lstm_backward's."""
    c, d = _backward_args("gru", cache, d_out, d_h_n, precision=precision)
    return _gru_backward(c, d["d_out"], d["d_h_n"], precision=d["precision"])


def rnn_backward(cache, d_out=None, d_h_n=None, *, precision="float32"):
    """BPTT through a SimpleRNN forward; None gradients mean zero. -> Grads. precision as
    lstm_backward's."""
    c, d = _backward_args("rnn", cache, d_out, d_h_n, precision=precision)
    return _rnn_backward(c, d["d_out"], d["d_h_n"], precision=d["precision"])


# -- unchecked: arguments already checked (shapes, dtypes, lengths as int64) -----------------
# Only what the kernels need is done here: None -> zeros, C order.

def _c(a):
    return np.ascontiguousarray(a)


def _or_zeros(a, shape, dtype):
    return np.zeros(shape, dtype) if a is None else np.ascontiguousarray(a)


def _common(x, w_ih, w_hh, b_ih, b_hh, h0):
    x, w_hh = _c(x), _c(w_hh)
    GH, (_, B, _), H = w_hh.shape[0], x.shape, w_hh.shape[1]
    return (x, _c(w_ih), w_hh, _or_zeros(b_ih, (GH,), x.dtype), _or_zeros(b_hh, (GH,), x.dtype),
            _or_zeros(h0, (B, H), x.dtype))


def _lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *,
                  lengths=None, reverse=False, training=True, peephole=None, w_hr=None,
                  **variants):
    args = _common(x, w_ih, w_hh, b_ih, b_hh, h0)
    c0 = _or_zeros(c0, (x.shape[1], w_hh.shape[0] // 4), args[0].dtype)
    if w_hr is not None:
        variants["w_hr"] = _c(w_hr)
    r = _core.lstm_forward(*args, c0, None if peephole is None else _c(peephole), lengths,
                           reverse, training, **variants)
    return r.out, r.h_n, r.c_n, r.cache


def _gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                 lengths=None, reverse=False, training=True, reset_after=True, **variants):
    r = _core.gru_forward(*_common(x, w_ih, w_hh, b_ih, b_hh, h0), lengths, reverse, training,
                          reset_after, **variants)
    return r.out, r.h_n, r.cache


def _rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                 lengths=None, reverse=False, training=True, nonlinearity="tanh", **variants):
    r = _core.rnn_forward(*_common(x, w_ih, w_hh, b_ih, b_hh, h0), lengths, reverse, training,
                          nonlinearity == "relu", activation=nonlinearity, **variants)
    return r.out, r.h_n, r.cache


def _grads_args(cache, d_out, d_h_n):
    T, B, _ = cache.x.shape
    R, dtype = cache.w_hh.shape[1], cache.x.dtype     # R: the size of h
    return _or_zeros(d_out, (T, B, R), dtype), _or_zeros(d_h_n, (B, R), dtype)


def _lstm_backward(cache, d_out=None, d_h_n=None, d_c_n=None, precision="float32"):
    d_out, d_h_n = _grads_args(cache, d_out, d_h_n)
    B, H = d_h_n.shape[0], cache.w_hh.shape[0] // 4
    g = _core.lstm_backward(cache, d_out, d_h_n, _or_zeros(d_c_n, (B, H), d_h_n.dtype),
                            precision=precision)
    return LSTMGrads(g.dx, g.dh0, g.dc0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, g.dpeephole,
                     dw_hr=g.dw_hr, dln_gain=g.dln_gain, dln_cell=g.dln_cell)


def _gru_backward(cache, d_out=None, d_h_n=None, precision="float32"):
    g = _core.gru_backward(cache, *_grads_args(cache, d_out, d_h_n), precision=precision)
    return Grads(g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, g.dln_gain)


def _rnn_backward(cache, d_out=None, d_h_n=None, precision="float32"):
    g = _core.rnn_backward(cache, *_grads_args(cache, d_out, d_h_n), precision=precision)
    return Grads(g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh)
