"""Weights in and out of PyTorch and Keras 3 (DESIGN §8; docs/layers.md).

    from_torch(module)          torch.nn.LSTM / GRU / RNN  -> the equivalent fastrnn layer
    to_torch_state_dict(layer)  fastrnn layer -> dict for `module.load_state_dict`
    from_keras(layer)           keras LSTM / GRU / SimpleRNN / Bidirectional(...) -> fastrnn
                                layer with batch_first=True and the same outputs
    to_keras_weights(layer)     fastrnn layer -> list for the Keras layer's `set_weights`

No framework is imported when fastrnn is imported: these functions read the objects
they are given (`to_torch_state_dict` imports torch when it is installed, to return
tensors). A weight or option without an equivalent raises ValueError naming it.

Gate orders. PyTorch stacks gates along rows of (G*H, in) matrices, as fastrnn does
(LSTM i, f, g, o; GRU r, z, n). Keras stores transposed kernels (in, G*U) with LSTM gates
i, f, c, o (the same order) and GRU gates z, r, h (r and z swapped); Keras's GRU update
`h = z*h + (1-z)*n` is DESIGN §2's. Keras has a single bias per gate where PyTorch has
b_ih + b_hh, except the reset_after GRU, whose bias (2, 3U) holds [input; recurrent].
The reset-before GRU (reset_after=False) adds b_hn outside the reset gate, so there too
the Keras bias is b_ih + b_hh.
"""

import numpy as np

from ._checks import ACTIVATIONS
from .layers import GRU, LSTM, SimpleRNN

__all__ = ["from_torch", "to_torch_state_dict", "from_keras", "to_keras_weights"]

_TORCH_MODES = {"LSTM": (LSTM, {}), "GRU": (GRU, {}),
                "RNN_TANH": (SimpleRNN, {"nonlinearity": "tanh"}),
                "RNN_RELU": (SimpleRNN, {"nonlinearity": "relu"})}


def _layer_dtype(dtype, found):
    """The fastrnn dtype: `dtype` if given, else float64 for float64 weights, else float32."""
    if dtype is not None:
        return dtype
    return np.float64 if found == "float64" else np.float32


# -- PyTorch ---------------------------------------------------------------------------------

def from_torch(module, *, dtype=None, seed=None):
    """The fastrnn layer equivalent to `torch.nn.LSTM`, `GRU` or `RNN` `module`.

    Copies every option (num_layers, bias, batch_first, dropout, bidirectional,
    nonlinearity), the weights and the training flag. `dtype`: float64 when the module is
    float64, else float32 (half-precision weights are widened), unless given. `seed`
    seeds the layer's dropout masks. An LSTM's proj_size is copied too.
    """
    mode = getattr(module, "mode", None)
    if mode not in _TORCH_MODES or not hasattr(module, "state_dict"):
        raise TypeError("module must be a torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN, "
                        f"got {type(module).__name__}")
    cls, extra = _TORCH_MODES[mode]
    if getattr(module, "proj_size", 0):
        extra = dict(extra, proj_size=module.proj_size)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    found = str(next(iter(state.values())).dtype).replace("torch.", "")
    layer = cls(module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
                batch_first=module.batch_first, dropout=module.dropout,
                bidirectional=module.bidirectional,
                dtype=_layer_dtype(dtype, found),
                seed=seed, **extra)
    layer.load_state_dict({k: v.double().numpy() for k, v in state.items()})
    layer.train(bool(getattr(module, "training", True)))
    return layer


def to_torch_state_dict(layer):
    """`layer`'s parameters under PyTorch's names, for `module.load_state_dict(...)` of the
    matching torch.nn.LSTM/GRU/RNN (same sizes and options).

    Values are CPU torch tensors of the layer's dtype when torch is installed (PyTorch's
    load_state_dict copies and converts them into the module's dtype), else NumPy arrays.
    Always fresh copies. A peephole LSTM is refused: PyTorch has no peepholes.
    """
    _check_layer(layer)
    if getattr(layer, "peephole", False):
        raise ValueError("to_torch_state_dict: this LSTM has peephole=True; torch.nn.LSTM has "
                         "no peephole weights, so it has no PyTorch equivalent")
    changed = {k: v for k, v in layer._changed_options().items()
               if k != "zero_output_for_mask"}        # masks only: PyTorch has none
    if getattr(layer, "nonlinearity", "tanh") not in ("tanh", "relu"):
        changed["nonlinearity"] = layer.nonlinearity
    if changed:
        raise ValueError("to_torch_state_dict: this layer has " + ", ".join(
            f"{k}={v!r}" for k, v in changed.items()) + "; torch.nn.LSTM/GRU/RNN have no "
            "such option, so it has no PyTorch equivalent")
    state = layer.state_dict()
    try:
        import torch
    except ImportError:
        return state
    return {k: torch.from_numpy(v) for k, v in state.items()}


def _check_layer(layer):
    if not isinstance(layer, (LSTM, GRU, SimpleRNN)):
        raise TypeError(f"layer must be a fastrnn LSTM, GRU or SimpleRNN, "
                        f"got {type(layer).__name__}")


# -- Keras 3 ---------------------------------------------------------------------------------

def _swap_zr(a, axis):
    """GRU gate blocks z, r, h (Keras) <-> r, z, n (fastrnn): swap the first two blocks."""
    a = np.asarray(a)
    z, r, n = np.split(a, 3, axis=axis)
    return np.concatenate([r, z, n], axis=axis)


def _keras_kind(obj):
    """'LSTM' | 'GRU' | 'SimpleRNN' | 'Bidirectional' from the class (or a base class)."""
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("keras") and cls.__name__ in (
                "LSTM", "GRU", "SimpleRNN", "Bidirectional"):
            return cls.__name__
    return None


def _keras_options(cfg, kind, ignore_dropout):
    """Check a Keras LSTM/GRU/SimpleRNN's config; returns units and the fastrnn options."""
    name = cfg.get("name", kind)
    if not ignore_dropout and cfg.get("dropout"):
        raise ValueError(f"Keras layer {name!r} has dropout={cfg.get('dropout')}: fastrnn has "
                         "no input dropout of Keras's kind; pass ignore_dropout=True to "
                         "convert it for inference (where Keras applies no dropout either)")
    for key in ("activation", "recurrent_activation"):
        if key in cfg and cfg[key] not in ACTIVATIONS:
            raise ValueError(f"Keras layer {name!r} has {key}={cfg[key]!r}; fastrnn supports "
                             f"{', '.join(map(repr, ACTIVATIONS))}")
    opts = {"bias": bool(cfg.get("use_bias", True)),
            "recurrent_dropout": float(cfg.get("recurrent_dropout", 0.0)),
            "go_backwards": bool(cfg.get("go_backwards", False)),
            "stateful": bool(cfg.get("stateful", False)),
            "zero_output_for_mask": bool(cfg.get("zero_output_for_mask", False))}
    if kind == "SimpleRNN":
        opts["nonlinearity"] = cfg["activation"]
    else:
        opts.update(activation=cfg["activation"],
                    recurrent_activation=cfg["recurrent_activation"])
    if kind == "GRU":
        opts["reset_after"] = bool(cfg.get("reset_after", True))
    return cfg["units"], opts


def _from_keras_weights(kind, weights, opts):
    """One direction's Keras weights -> fastrnn (w_ih, w_hh, b_ih, b_hh) in float64."""
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    kernel, recurrent = weights[0], weights[1]
    swap = (lambda a, axis: _swap_zr(a, axis)) if kind == "GRU" else (lambda a, axis: a)
    w_ih, w_hh = swap(kernel, 1).T, swap(recurrent, 1).T
    if not opts["bias"]:
        return w_ih, w_hh, None, None
    bias = weights[2]
    if kind == "GRU" and opts["reset_after"]:
        return w_ih, w_hh, swap(bias[0], 0), swap(bias[1], 0)
    return w_ih, w_hh, swap(bias, 0), np.zeros_like(bias)


def from_keras(layer, *, dtype=None, seed=None, ignore_dropout=False):
    """A fastrnn layer (batch_first=True) with the outputs of Keras 3 `layer`.

    `layer`: a built `keras.layers.LSTM`, `GRU` (reset_after True or False), `SimpleRNN`
    or `Bidirectional` of one of those (any merge_mode). Activations (the six of
    docs/variants.md), `recurrent_dropout`, `go_backwards`, `stateful` and `merge_mode`
    become the same fastrnn options. With `x` (B, T, I) and Keras's `mask` passed as
    `mask=`, fastrnn's `out` equals Keras's `return_sequences=True` output and `h_n[-1]`
    (or the two directions' rows) its final states; `return_sequences`/`return_state` do not
    matter. `dtype` defaults to the weights' (float64 stays float64, else float32). Keras's
    input `dropout` acts only in training and has no fastrnn equivalent: refused unless
    `ignore_dropout=True`.
    """
    kind = _keras_kind(layer)
    if kind is None:
        raise TypeError("layer must be a Keras 3 LSTM, GRU, SimpleRNN or Bidirectional, "
                        f"got {type(layer).__name__}")
    configs = [layer.get_config()]
    merge = {}
    if kind == "Bidirectional":
        merge = {"merge_mode": layer.merge_mode}
        fwd, bwd = layer.forward_layer, layer.backward_layer
        kind = _keras_kind(fwd)
        if kind in (None, "Bidirectional") or _keras_kind(bwd) != kind:
            raise ValueError("Bidirectional must wrap an LSTM, GRU or SimpleRNN, with a "
                             f"backward layer of the same kind; got {type(fwd).__name__} and "
                             f"{type(bwd).__name__}")
        configs = [fwd.get_config(), bwd.get_config()]
        if configs[0].get("go_backwards") or not configs[1].pop("go_backwards", False):
            raise ValueError("Bidirectional's forward layer must have go_backwards=False and "
                             "its backward_layer go_backwards=True")
    H, opts = _keras_options(configs[0], kind, ignore_dropout)
    for cfg in configs[1:]:
        if _keras_options(cfg, kind, ignore_dropout) != (H, opts):
            raise ValueError("Bidirectional's forward and backward layers differ in units, "
                             "activation, use_bias, reset_after or recurrent_dropout; fastrnn "
                             "needs them equal")
    weights = layer.get_weights()
    per_dir = (3 if opts["bias"] else 2)
    if len(weights) != per_dir * len(configs):
        raise ValueError(f"the Keras layer has {len(weights)} weight arrays, expected "
                         f"{per_dir * len(configs)} for a built {kind} (build the layer "
                         "first, e.g. by calling it on an input)")
    I = np.shape(weights[0])[0]
    cls = {"LSTM": LSTM, "GRU": GRU, "SimpleRNN": SimpleRNN}[kind]
    fr = cls(I, H, 1, batch_first=True, bidirectional=len(configs) == 2,
             dtype=_layer_dtype(dtype, np.asarray(weights[0]).dtype.name), seed=seed,
             **opts, **merge)
    state = {}
    for d in range(len(configs)):
        w = _from_keras_weights(kind, weights[d * per_dir:(d + 1) * per_dir], opts)
        for key, value in zip(("w_ih", "w_hh", "b_ih", "b_hh"), w):
            if key in fr._names(0, d):
                state[fr._names(0, d)[key]] = value
    fr.load_state_dict(state)
    return fr


def to_keras_weights(layer):
    """`layer`'s weights as the list the matching Keras 3 layer's `set_weights` accepts.

    The Keras layer: LSTM / GRU (same `reset_after`) / SimpleRNN (same activation) with
    `units=hidden_size` and `use_bias=bias`, wrapped in `Bidirectional(merge_mode='concat')`
    when the layer is bidirectional (forward weights then backward, as Keras lists them).
    One Keras layer holds one fastrnn layer, so num_layers must be 1; peepholes and
    proj_size are refused.
    """
    _check_layer(layer)
    if layer.num_layers != 1:
        raise ValueError(f"to_keras_weights: layer has num_layers={layer.num_layers}; a Keras "
                         "recurrent layer holds one layer (stack one Keras layer per fastrnn "
                         "layer, each converted from a num_layers=1 layer)")
    if getattr(layer, "peephole", False):
        raise ValueError("to_keras_weights: this LSTM has peephole=True; Keras 3's LSTM has "
                         "no peephole weights")
    for name, default in (("layer_norm", False), ("zoneout", 0.0), ("leak_rate", 1.0)):
        if getattr(layer, name, default) != default:
            raise ValueError(f"to_keras_weights: this layer has {name}="
                             f"{getattr(layer, name)!r}; Keras 3's layers have no such option")
    if getattr(layer, "proj_size", 0):
        raise ValueError(f"to_keras_weights: this LSTM has proj_size={layer.proj_size}; Keras "
                         "3's LSTM has no projection")
    gru = isinstance(layer, GRU)
    swap = (lambda a, axis: _swap_zr(a, axis)) if gru else (lambda a, axis: a)
    out = []
    for d in range(layer.num_directions):
        names = layer._names(0, d)
        p = {key: layer.params[name] for key, name in names.items()}
        out += [swap(p["w_ih"].T, 1).copy(), swap(p["w_hh"].T, 1).copy()]
        if layer.bias:
            if gru and layer.reset_after:
                out.append(np.stack([swap(p["b_ih"], 0), swap(p["b_hh"], 0)]))
            else:
                out.append(swap(p["b_ih"] + p["b_hh"], 0))
    return out
