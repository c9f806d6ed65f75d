"""One layer, one direction, on the C++ kernels (docs/functional.md).

Dimension key: T time steps, B batch, I input features, H hidden units,
G gates (LSTM 4: i, f, g, o; GRU 3: r, z, n; SimpleRNN 1). Time-major.

    out, h_n, c_n, cache = lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    grads = lstm_backward(cache, d_out, d_h_n, d_c_n)     # LSTMGrads

`fastrnn.reference` has the same functions in plain NumPy (the oracle).
Every kernel call releases the GIL.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ._isa import core as _core
from ._checks import check_backward, check_choice, check_flag, check_forward, require_cache
from ._types import Grads, LSTMGrads

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "rnn_forward", "rnn_backward", "set_num_threads", "get_num_threads"]


# More threads than this is a mistake, not a configuration.
MAX_THREADS = 1024


@dataclass(frozen=True)
class Cache:
    """What backward needs from a training-mode forward (opaque to users).

    Holds references to the forward's inputs (not copies): changing x or the
    weights in place between forward and backward changes the gradients.
    """
    cell: str
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: Optional[np.ndarray]
    reverse: bool
    option: object          # peephole (LSTM), reset_after (GRU), relu (SimpleRNN)
    arrays: tuple           # the kernel's saved tensors, in step order


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


def _cache_or_none(training, cell, a, option, arrays):
    if not training:
        return None
    return Cache(cell, a["x"], a["w_ih"], a["w_hh"], a["lengths"], a["reverse"], option, arrays)


def _forward_args(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training, peephole=None):
    a = check_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, peephole)
    a["reverse"] = check_flag("reverse", reverse)
    a["training"] = check_flag("training", training)
    return a


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *,
                 lengths=None, reverse=False, training=True, peephole=None):
    """LSTM over x (T, B, I) -> out (T, B, H), h_n (B, H), c_n (B, H), cache."""
    a = _forward_args("lstm", x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training,
                      peephole)
    out, h_n, c_n, *arrays = _core.lstm_forward(
        a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"], a["c0"], a["peephole"],
        a["lengths"], a["reverse"], a["training"])
    return out, h_n, c_n, _cache_or_none(a["training"], "lstm", a, a["peephole"], tuple(arrays))


def lstm_backward(cache, d_out=None, d_h_n=None, d_c_n=None):
    """BPTT through an LSTM forward; None gradients mean zero. -> LSTMGrads."""
    c = require_cache(cache, Cache, "lstm_backward")
    _check_cell(c, "lstm", "lstm_backward")
    T, B, _ = c.x.shape
    H = c.w_hh.shape[1]
    d = check_backward("lstm", T, B, H, c.x.dtype, d_out, d_h_n, d_c_n)
    dx, dh0, dc0, dw_ih, dw_hh, db, dp = _core.lstm_backward(
        c.x, c.w_ih, c.w_hh, c.option, c.lengths, c.reverse, *c.arrays,
        d["d_out"], d["d_h_n"], d["d_c_n"])
    return LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db, db.copy(), dp)


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, reset_after=True):
    """GRU over x (T, B, I) -> out (T, B, H), h_n (B, H), cache."""
    a = _forward_args("gru", x, w_ih, w_hh, b_ih, b_hh, h0, None, lengths, reverse, training)
    reset_after = check_flag("reset_after", reset_after)
    out, h_n, gates, hs, hn = _core.gru_forward(
        a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"], a["lengths"],
        a["reverse"], a["training"], reset_after)
    return out, h_n, _cache_or_none(a["training"], "gru", a, reset_after, (gates, hs, hn))


def gru_backward(cache, d_out=None, d_h_n=None):
    """BPTT through a GRU forward; None gradients mean zero. -> Grads."""
    return _backward_h_only("gru", cache, d_out, d_h_n)


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *,
                lengths=None, reverse=False, training=True, nonlinearity="tanh"):
    """SimpleRNN (Elman) over x (T, B, I) -> out (T, B, H), h_n (B, H), cache."""
    a = _forward_args("rnn", x, w_ih, w_hh, b_ih, b_hh, h0, None, lengths, reverse, training)
    relu = check_choice("nonlinearity", nonlinearity, ("tanh", "relu")) == "relu"
    out, h_n, hs = _core.rnn_forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"],
                                     a["lengths"], a["reverse"], a["training"], relu)
    return out, h_n, _cache_or_none(a["training"], "rnn", a, relu, (hs,))


def rnn_backward(cache, d_out=None, d_h_n=None):
    """BPTT through a SimpleRNN forward; None gradients mean zero. -> Grads."""
    return _backward_h_only("rnn", cache, d_out, d_h_n)


def _backward_h_only(cell, cache, d_out, d_h_n):
    """Backward of the cells whose only state is h (GRU, SimpleRNN)."""
    fn = f"{cell}_backward"
    c = require_cache(cache, Cache, fn)
    _check_cell(c, cell, fn)
    T, B, _ = c.x.shape
    d = check_backward(cell, T, B, c.w_hh.shape[1], c.x.dtype, d_out, d_h_n)
    kernel = _core.gru_backward if cell == "gru" else _core.rnn_backward
    return Grads(*kernel(c.x, c.w_ih, c.w_hh, c.lengths, c.reverse, c.option, *c.arrays,
                         d["d_out"], d["d_h_n"]))


def _check_cell(cache, cell, fn):
    if cache.cell != cell:
        raise TypeError(f"{fn}: cache comes from {cache.cell}_forward, not {cell}_forward")
