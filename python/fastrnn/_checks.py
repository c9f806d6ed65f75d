"""Argument checks shared by `functional` and `reference` (DESIGN §6).

Every check names the argument, what was expected and what was given. Arrays
that pass are returned C-contiguous in the computation dtype; inputs are never
modified (a copy is made where the layout has to change).
"""

import numpy as np

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DTYPES = (np.float32, np.float64)


def _shape(a):
    return tuple(a.shape)


def as_float_array(name, a, dtype=None):
    """`a` as a C-contiguous float32/float64 ndarray; `dtype` (if given) must match exactly."""
    if not isinstance(a, np.ndarray):
        if dtype is None:
            raise TypeError(f"{name} must be a numpy.ndarray of float32 or float64, "
                            f"got {type(a).__name__}")
        a = np.asarray(a)
        if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
        a = a.astype(dtype)
    if a.dtype not in DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name} (the dtype of x), "
                        f"got {a.dtype}")
    return np.asarray(a, order="C")      # unlike ascontiguousarray, keeps 0-d as 0-d


def check_shape(name, a, expected):
    if _shape(a) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {_shape(a)}")
    return a


def optional(name, a, shape, dtype):
    """A float argument that may be None (meaning zeros)."""
    if a is None:
        return np.zeros(shape, dtype=dtype)
    return check_shape(name, as_float_array(name, a, dtype), shape)


def check_lengths(lengths, T, B):
    """Lengths as int64 (B,) in [0, T], or None when absent."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) \
                and np.all(arr == np.round(arr)):
            hint = " (convert with .astype(int))"
        else:
            hint = ""
        raise TypeError(f"lengths must be an integer array, got dtype {arr.dtype}{hint}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one per batch entry), "
                         f"got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"lengths must lie in [0, {T}] (T = x.shape[0]), "
                         f"got values from {arr.min()} to {arr.max()}")
    return arr.astype(np.int64)


def check_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, lengths=None,
                  peephole=None):
    """Validate a *_forward call; returns a dict of checked arrays and sizes."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray of shape (T, B, I), got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"x must have rank 3 (T, B, I), got shape {_shape(x)}")
    x = as_float_array("x", x)
    dtype = x.dtype
    T, B, I = x.shape
    G = GATES[cell]
    w_hh = as_float_array("w_hh", w_hh, dtype)
    if w_hh.ndim != 2 or w_hh.shape[0] % G or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(f"w_hh must have shape ({G}*H, H) for {cell}, got {_shape(w_hh)}")
    H = w_hh.shape[1]
    if H == 0:
        raise ValueError("w_hh must have H >= 1 hidden units, got shape "
                         f"{_shape(w_hh)}")
    w_ih = check_shape("w_ih", as_float_array("w_ih", w_ih, dtype), (G * H, I))
    check_size(T, B, G, H, dtype)
    out = dict(x=x, w_ih=w_ih, w_hh=w_hh, T=T, B=B, I=I, H=H, dtype=dtype,
               b_ih=optional("b_ih", b_ih, (G * H,), dtype),
               b_hh=optional("b_hh", b_hh, (G * H,), dtype),
               h0=optional("h0", h0, (B, H), dtype),
               lengths=check_lengths(lengths, T, B))
    if cell == "lstm":
        out["c0"] = optional("c0", c0, (B, H), dtype)
        out["peephole"] = None if peephole is None else check_shape(
            "peephole", as_float_array("peephole", peephole, dtype), (3, H))
    return out


def check_size(T, B, G, H, dtype):
    """Refuse sizes whose outputs and caches cannot even be addressed. x may hold no
    data (I = 0) whatever T and B are, but out, the states and the training cache
    scale with T * B * G * H; a clean MemoryError beats an overflow deeper down."""
    need = (T + 1) * B * (G + 2) * H * np.dtype(dtype).itemsize   # Python ints: exact
    if need > np.iinfo(np.intp).max:
        raise MemoryError(f"x of shape (T={T}, B={B}, I) with H={H} hidden units needs "
                          f"{need} bytes for its outputs and cache; that cannot be allocated")


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_backward(kind, T, B, H, dtype, d_out, d_h_n, d_c_n=None):
    """Validate the incoming gradients of a *_backward call (None means zeros)."""
    d = dict(d_out=optional("d_out", d_out, (T, B, H), dtype),
             d_h_n=optional("d_h_n", d_h_n, (B, H), dtype))
    if kind == "lstm":
        d["d_c_n"] = optional("d_c_n", d_c_n, (B, H), dtype)
    return d


def require_cache(cache, cls, fn):
    if cache is None:
        raise ValueError(f"{fn}: cache is None; run the forward pass with training=True "
                         "to get a cache for backward")
    if not isinstance(cache, cls):
        raise TypeError(f"{fn}: cache must be the cache returned by the matching forward "
                        f"function ({cls.__module__}.{cls.__qualname__}), "
                        f"got {type(cache).__name__}")
    return cache
