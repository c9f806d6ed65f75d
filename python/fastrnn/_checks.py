"""Argument checks shared by `functional` and `reference` (DESIGN §6).

Every check names the argument, what was expected and what was given. Arrays
that pass are returned C-contiguous in the computation dtype; inputs are never
modified (a copy is made where the layout has to change).
"""

import numpy as np

from ._errors import ArgumentError, ArgumentTypeError

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DTYPES = (np.float32, np.float64)
# Cell variants (docs/variants.md): the activations every cell accepts, and the epsilon
# of layer normalisation (haste's and PyTorch's LayerNorm default).
ACTIVATIONS = ("tanh", "sigmoid", "hard_sigmoid", "relu", "linear", "softsign")
LN_EPS = 1e-5


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


def check_module_array(name, a, dtype, shape, owner, what=""):
    """A module's array argument (layer, cell, engine): an ndarray of exactly `dtype` (nothing
    is converted silently, as in PyTorch) and `shape`; `owner` names whose dtype it is."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype {dtype.name}, "
                        f"got {type(a).__name__}")
    if a.dtype != dtype:
        raise ArgumentTypeError(f"{name} must have dtype {dtype.name} (the {owner}'s dtype), got "
                                f"{a.dtype}; convert with .astype(np.{dtype.name})")
    if a.shape != tuple(shape):
        raise ArgumentError(f"{name} must have shape {tuple(shape)}{' ' + what if what else ''}, "
                            f"got {a.shape}")
    return a


def check_layer_lengths(lengths, T, B, batch_first):
    """`check_lengths` for a layer's call, naming the time axis of the caller's layout."""
    try:
        return check_lengths(lengths, T, B)
    except ValueError as e:
        axis = f"x.shape[{int(batch_first)}]"
        raise ValueError(str(e).replace("x.shape[0]", axis)) from None


def check_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, lengths=None,
                  peephole=None, w_hr=None):
    """Validate a *_forward call; returns a dict of checked arrays and sizes. R is the
    size of h: H, or P for an LSTM with a projection w_hr (P, H) and w_hh (4*H, P)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray of shape (T, B, I), got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"x must have rank 3 (T, B, I), got shape {_shape(x)}")
    x = as_float_array("x", x)
    dtype = x.dtype
    T, B, I = x.shape
    G = GATES[cell]
    w_hh = as_float_array("w_hh", w_hh, dtype)
    if w_hr is None:
        if w_hh.ndim != 2 or w_hh.shape[0] % G or w_hh.shape[0] != G * w_hh.shape[1]:
            raise ValueError(f"w_hh must have shape ({G}*H, H) for {cell}, got {_shape(w_hh)}")
        H = R = w_hh.shape[1]
    else:
        if cell != "lstm":
            raise ValueError(f"w_hr (a projection, proj_size) exists for lstm only, not {cell}")
        if w_hh.ndim != 2 or w_hh.shape[0] % G or w_hh.shape[1] == 0:
            raise ValueError(f"w_hh must have shape (4*H, P) for lstm with w_hr, "
                             f"got {_shape(w_hh)}")
        H, R = w_hh.shape[0] // G, w_hh.shape[1]
        w_hr = check_shape("w_hr", as_float_array("w_hr", w_hr, dtype), (R, H))
    if H == 0:
        raise ValueError("w_hh must have H >= 1 hidden units, got shape "
                         f"{_shape(w_hh)}")
    w_ih = check_shape("w_ih", as_float_array("w_ih", w_ih, dtype), (G * H, I))
    check_size(T, B, G, H, dtype)
    out = dict(x=x, w_ih=w_ih, w_hh=w_hh, T=T, B=B, I=I, H=H, R=R, dtype=dtype,
               b_ih=optional("b_ih", b_ih, (G * H,), dtype),
               b_hh=optional("b_hh", b_hh, (G * H,), dtype),
               h0=optional("h0", h0, (B, R), dtype),
               lengths=check_lengths(lengths, T, B))
    if cell == "lstm":
        out["w_hr"] = w_hr
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


def check_backward(kind, T, B, H, dtype, d_out, d_h_n, d_c_n=None, R=None):
    """Validate the incoming gradients of a *_backward call (None means zeros);
    R is the size of h where it differs from H (an LSTM's proj_size)."""
    R = H if R is None else R
    d = dict(d_out=optional("d_out", d_out, (T, B, R), dtype),
             d_h_n=optional("d_h_n", d_h_n, (B, R), dtype))
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


# -- cell variants (docs/variants.md) --------------------------------------------------------

def check_activation(name, value):
    return check_choice(name, value, ACTIVATIONS)


def check_probability(name, p):
    """A dropout/zoneout rate: a real number in [0, 1)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer,
                                                              np.floating)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(p).__name__}")
    if not 0 <= p < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {p}")
    return float(p)


def check_leak_rate(a):
    """A leaky unit's rate α in h' = (1 - α) h + α cell(x, h): a real number in (0, 1]."""
    if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, float, np.integer,
                                                              np.floating)):
        raise TypeError(f"leak_rate must be a float in (0, 1], got {type(a).__name__}")
    if not 0 < a <= 1:
        raise ValueError(f"leak_rate must lie in (0, 1] (1 = no leak), got {a}")
    return float(a)


def check_layer_norm(cell, layer_norm, reset_after=True):
    layer_norm = check_flag("layer_norm", layer_norm)
    if layer_norm and cell == "rnn":
        raise ValueError("layer_norm=True is supported for LSTM and GRU only, not SimpleRNN")
    if layer_norm and not reset_after:
        raise ValueError("layer_norm=True needs reset_after=True for a GRU (haste's "
                         "LayerNormGRU normalises W_hh h, which reset_after=False never forms)")
    return layer_norm


def check_variants(cell, a, *, layer_norm=False, ln_gain=None, ln_cell=None,
                   activation="tanh", recurrent_activation="sigmoid", recurrent_mask=None,
                   zoneout=0.0, zoneout_mask=None, zoneout_mask_c=None, leak_rate=1.0,
                   reset_after=True):
    """Validate the variant options of a *_forward call; `a` is check_forward's result.
    Returns them checked, with the layer-norm parameters' defaults filled in (gains 1,
    shift 0) and `zoneout_masks` = [(step name, mask or None, feature size)]."""
    G, B, T, H, R, dt = GATES[cell], a["B"], a["T"], a["H"], a["R"], a["dtype"]
    layer_norm = check_layer_norm(cell, layer_norm, reset_after)
    out = dict(layer_norm=layer_norm, dtype=dt,
               activation=check_activation("activation", activation),
               recurrent_activation=check_activation("recurrent_activation",
                                                     recurrent_activation),
               zoneout=check_probability("zoneout", zoneout),
               leak_rate=check_leak_rate(leak_rate))
    for name, value in (("ln_gain", ln_gain), ("ln_cell", ln_cell)):
        if value is not None and not layer_norm:
            raise ValueError(f"{name} is given but layer_norm=False; pass layer_norm=True")
    out["ln_gain"] = out["ln_cell"] = None
    if layer_norm:
        out["ln_gain"] = optional("ln_gain", ln_gain, (2, G * H), dt) if ln_gain is not None \
            else np.ones((2, G * H), dtype=dt)
        if cell == "lstm":
            out["ln_cell"] = optional("ln_cell", ln_cell, (2, H), dt) if ln_cell is not None \
                else np.stack([np.ones(H, dtype=dt), np.zeros(H, dtype=dt)])
    out["recurrent_mask"] = None if recurrent_mask is None else check_shape(
        "recurrent_mask", as_float_array("recurrent_mask", recurrent_mask, dt), (G, B, R))
    out["zoneout_masks"] = [("zh", zoneout_mask, R)] + ([("zc", zoneout_mask_c, H)]
                                                        if cell == "lstm" else [])
    out["zoneout_masks"] = [(k, None if m is None else check_shape(
        name, as_float_array(name, m, dt), (T, B, n)), n)
        for (k, m, n), name in zip(out["zoneout_masks"], ("zoneout_mask", "zoneout_mask_c"))]
    return out
