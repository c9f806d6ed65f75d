"""Recurrent layers over NumPy arrays: `LSTM`, `GRU`, `SimpleRNN` (docs/layers.md).

They stack the one-layer, one-direction functional calls (docs/functional.md) into the
layer `torch.nn.LSTM/GRU/RNN` users know, with an explicit backward (DESIGN §3):

    out, h_n = gru(x, h_0=None, lengths=None)            # SimpleRNN the same
    out, (h_n, c_n) = lstm(x, (h_0, c_0)=None, lengths=None)
    dx, dh_0 = gru.backward(d_out, dh_n=None)            # LSTM: dx, (dh_0, dc_0)

Dimension key: T time steps, B batch, I input_size, H hidden_size, L num_layers,
D directions (2 if bidirectional else 1), G gates (LSTM 4, GRU 3, SimpleRNN 1).
    x, dx     (T, B, I), or (B, T, I) with batch_first=True
    out       (T, B, D*H) / (B, T, D*H); bidirectional features are [forward, backward]
    h_*, c_*  (L*D, B, H) whatever batch_first; rows l0 forward, l0 backward, l1 forward, ...
    lengths   (B,) ints in [0, T]: PyTorch packed-sequence semantics (DESIGN §3)

Parameters (`params`, `state_dict()`) carry exactly `torch.nn.LSTM/GRU/RNN.state_dict()`
names and shapes: `weight_ih_l{k}` (G*H, in_k), `weight_hh_l{k}` (G*H, H), `bias_ih_l{k}`,
`bias_hh_l{k}` (G*H,), suffix `_reverse` for the backward direction, in_0 = I and
in_k = D*H above. A peephole LSTM adds `weight_peephole_l{k}` (3, H) (rows p_i, p_f, p_o),
which PyTorch has no equivalent of.

Layer conventions (shared with `fastrnn.nn`): arrays must already have the layer's dtype
(nothing is converted silently, as in PyTorch); training mode (the default) keeps the
cache that one `backward` consumes; `backward` adds into `grads` until `zero_grad()`.
"""

import numbers
import warnings
from typing import NamedTuple

import numpy as np

from . import functional
from .engine import InferenceEngine
from ._checks import check_flag, check_lengths
from .nn import Module, _check_dtype, _check_size, as_generator

__all__ = ["LSTM", "GRU", "SimpleRNN"]


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict(..., strict=False)` did not load (as PyTorch's result)."""
    missing_keys: list
    unexpected_keys: list


class _RNNBase(Module):
    """What the three layers share; a subclass names its cell (`_kind`, `_gates`), its states
    and the per-call options of its functional pair (`_cell_options`)."""

    _kind = None            # "lstm" | "gru" | "rnn": the functional pair *_forward / *_backward
    _gates = None           # G
    _states = ("h",)        # the recurrent states, in the order of the functional signature

    def __init__(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                 bidirectional, dtype, seed, backend):
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.num_layers = _check_size("num_layers", num_layers)
        self.bias = check_flag("bias", bias)
        self.batch_first = check_flag("batch_first", batch_first)
        self.bidirectional = check_flag("bidirectional", bidirectional)
        if (not isinstance(dropout, numbers.Real) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout acts between stacked layers (never after the last), so "
                          f"dropout={self.dropout} with num_layers=1 does nothing",
                          UserWarning, stacklevel=3)
        self.dtype = _check_dtype(dtype)
        self._rng = as_generator(seed)      # initialisation, then the dropout masks
        # Private: the functional backend (a module with *_forward / *_backward); None means
        # fastrnn.functional's unchecked path (the layer checks). Tests pass fastrnn.reference.
        self._backend = backend
        # Private test hook: a list of L-1 dropout multipliers, time-major (T, B, D*H), used
        # instead of drawing masks (already scaled, e.g. keep / (1 - p)).
        self._dropout_masks = None
        self._cache = None
        self._cache_status = "none"         # "none" | "train" | "eval" | "consumed"
        self.training = True
        # PyTorch's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)).
        k = 1.0 / np.sqrt(self.hidden_size)
        self.params = {name: self._rng.uniform(-k, k, shape).astype(self.dtype)
                       for name, shape in self._param_shapes()}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    # -- structure ----------------------------------------------------------------------------

    @property
    def num_directions(self):
        """D: 2 if the layer is bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def _names(self, layer, direction):
        """Parameter names of one layer-direction: w_ih, w_hh, b_ih, b_hh (+ extras)."""
        sfx = f"l{layer}" + ("_reverse" if direction else "")
        names = {"w_ih": f"weight_ih_{sfx}", "w_hh": f"weight_hh_{sfx}"}
        if self.bias:
            names.update(b_ih=f"bias_ih_{sfx}", b_hh=f"bias_hh_{sfx}")
        return names

    def _param_shapes(self):
        """(name, shape) in PyTorch's state_dict order: layer, direction, then parameter."""
        GH, H, D = self._gates * self.hidden_size, self.hidden_size, self.num_directions
        shapes = {"w_hh": (GH, H), "b_ih": (GH,), "b_hh": (GH,), "peephole": (3, H)}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * H
            for direction in range(D):
                for key, name in self._names(layer, direction).items():
                    yield name, (GH, in_size) if key == "w_ih" else shapes[key]

    def _cell_options(self, layer, direction):
        """Keyword arguments of the functional calls beyond the common ones."""
        return {}

    def _fn(self, what):
        if self._backend is None:       # arguments checked here: functional's unchecked path
            return getattr(functional, f"_{self._kind}_{what}")
        return getattr(self._backend, f"{self._kind}_{what}")

    def __repr__(self):
        opts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            opts.append(f"num_layers={self.num_layers}")
        opts += [f"{k}={v!r}" for k, v in self._extra_repr().items()]
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                opts.append(f"{name}={getattr(self, name)!r}")
        opts.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(opts)})"

    def _extra_repr(self):
        return {}

    # -- argument checks ----------------------------------------------------------------------

    def _check_array(self, name, a, shape, what):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray of dtype {self.dtype.name}, "
                            f"got {type(a).__name__}")
        if a.dtype != self.dtype:
            raise TypeError(f"{name} must have dtype {self.dtype.name} (the layer's dtype), "
                            f"got {a.dtype}; convert with .astype(np.{self.dtype.name})")
        if a.shape != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)} {what}, got {a.shape}")
        return a

    def _check_states(self, pattern, value, B):
        """`value` as a tuple with one entry per state, each (L*D, B, H) or None;
        `pattern` makes the argument names ("{}_0" -> h_0, c_0)."""
        names = [pattern.format(s) for s in self._states]
        if len(self._states) == 1:
            values = (value,)
            if isinstance(value, (tuple, list)):
                raise TypeError(f"{names[0]} must be a numpy.ndarray or None (a "
                                f"{type(self).__name__} has one state), got a "
                                f"{type(value).__name__}")
        elif value is None:
            values = (None,) * len(names)
        elif isinstance(value, (tuple, list)) and len(value) == len(names):
            values = tuple(value)
        else:
            raise TypeError(f"the {type(self).__name__} states must be a tuple "
                            f"({', '.join(names)}) or None, got {type(value).__name__}")
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        what = "(num_layers * num_directions, batch, hidden_size)"
        return tuple(None if v is None else self._check_array(n, v, shape, what)
                     for n, v in zip(names, values))

    def _check_params(self):
        """The parameters as used (users may replace entries of `params`), checked by name."""
        for name, shape in self._param_shapes():
            p = self.params.get(name)
            if p is None:
                raise ValueError(f"params[{name!r}] is missing")
            self._check_array(f"params[{name!r}]", p, shape, "(its state_dict shape)")

    def _dropout_mask(self, layer, shape):
        """Inverted dropout: keep with probability 1 - p, scale kept values by 1 / (1 - p)."""
        if self._dropout_masks is not None:
            m = self._dropout_masks[layer]
            return self._check_array(f"_dropout_masks[{layer}]", m, shape, "(layer output)")
        p = self.dropout
        if p == 1:
            return np.zeros(shape, dtype=self.dtype)
        keep = self._rng.random(shape) < 1 - p
        return keep.astype(self.dtype) * self.dtype.type(1 / (1 - p))

    # -- forward ------------------------------------------------------------------------------

    def __call__(self, x, hx=None, lengths=None, training=None):
        """Run the layer; see the class docstring for shapes. `training` (None = the
        `training` attribute) keeps the backward cache and applies dropout."""
        training = self._is_training(training)
        order = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray {order} of dtype {self.dtype.name}, "
                            f"got {type(x).__name__}")
        if x.ndim != 3:
            raise ValueError(f"x must be a rank-3 numpy.ndarray {order}, got shape {x.shape} "
                             "(for one sequence add a batch axis of 1)")
        T, B = (x.shape[1], x.shape[0]) if self.batch_first else x.shape[:2]
        order = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        x = self._check_array("x", x, x.shape[:2] + (self.input_size,), order)
        if lengths is not None:
            try:
                lengths = check_lengths(lengths, T, B)
            except ValueError as e:          # name the time axis the caller used
                axis = f"x.shape[{int(self.batch_first)}]"
                raise ValueError(str(e).replace("x.shape[0]", axis)) from None
        states0 = self._check_states("{}_0", hx, B)
        self._check_params()

        forward = self._fn("forward")
        L, D = self.num_layers, self.num_directions
        inp = np.ascontiguousarray(x.transpose(1, 0, 2)) if self.batch_first else x
        caches, masks = [], []
        finals = [[] for _ in self._states]          # per state: the L*D (B, H) rows
        for layer in range(L):
            outs, layer_caches = [], []
            for direction in range(D):
                i = layer * D + direction
                names = self._names(layer, direction)
                out, *state_n, cache = forward(
                    inp, self.params[names["w_ih"]], self.params[names["w_hh"]],
                    self.params.get(names.get("b_ih")), self.params.get(names.get("b_hh")),
                    *(None if s is None else s[i] for s in states0),
                    lengths=lengths, reverse=bool(direction), training=training,
                    **self._cell_options(layer, direction))
                outs.append(out)
                layer_caches.append(cache)
                for f, s in zip(finals, state_n):
                    f.append(s)
            y = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            mask = None
            dropout = self.dropout > 0 or self._dropout_masks is not None
            if training and dropout and layer < L - 1:
                mask = self._dropout_mask(layer, y.shape)
                y = y * mask
            caches.append(layer_caches)
            masks.append(mask)
            inp = y
        out = np.ascontiguousarray(inp.transpose(1, 0, 2)) if self.batch_first else inp
        state_n = tuple(np.stack(f) for f in finals)
        if training:
            self._cache = dict(caches=caches, masks=masks, T=T, B=B)
            self._cache_status = "train"
        else:
            self._cache, self._cache_status = None, "eval"
        return out, self._pack(state_n)

    forward = __call__

    def _pack(self, states):
        return states[0] if len(states) == 1 else states

    def inference(self, precision="float32"):
        """An `InferenceEngine` (docs/engine.md) of this layer as it is now: its weights are
        copied and packed once, so later changes to `params` do not reach the engine."""
        return InferenceEngine(self, precision)

    # -- backward -----------------------------------------------------------------------------

    def _take_cache(self):
        cache = self._cache
        if cache is None:
            why = {"none": "no forward pass has run yet",
                   "eval": "the last forward pass ran in inference mode (training=False or "
                           ".eval()), which keeps no cache",
                   "consumed": "the cache of the last forward pass was consumed by a previous "
                               "backward (one backward per training-mode forward)"}
            raise ValueError(f"{type(self).__name__}.backward: {why[self._cache_status]}; run "
                             "the layer in training mode (.train()) before each backward")
        return cache

    def backward(self, d_out, dh_n=None):
        """Backpropagate through the last training-mode forward pass and consume its cache.

        d_out: gradient of the loss w.r.t. `out` (its shape), or None for zero;
        dh_n: w.r.t. the final states (LSTM: a tuple (dh_n, dc_n)), None entries for zero.
        Adds the parameter gradients into `grads`; returns dx (x's shape) and the gradients
        w.r.t. the initial states (LSTM: a tuple), (L*D, B, H), also when none were given.
        """
        cache = self._take_cache()
        T, B = cache["T"], cache["B"]
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        if d_out is not None:
            shape = (B, T, D * H) if self.batch_first else (T, B, D * H)
            d_out = self._check_array("d_out", d_out, shape, "(the shape of out)")
            if self.batch_first:
                d_out = d_out.transpose(1, 0, 2)
        d_states = self._check_states("d{}_n", dh_n, B)
        self._cache, self._cache_status = None, "consumed"

        backward = self._fn("backward")
        d_states0 = [np.zeros((L * D, B, H), dtype=self.dtype) for _ in self._states]
        d_y = d_out
        for layer in reversed(range(L)):
            d_in = None
            for direction in range(D):
                i = layer * D + direction
                d_half = d_y if d_y is None or D == 1 else d_y[:, :, direction * H:][:, :, :H]
                g = backward(cache["caches"][layer][direction], d_half,
                             *(None if d is None else d[i] for d in d_states))
                d_in = g.dx if d_in is None else d_in + g.dx
                for d0, name in zip(d_states0, self._states):
                    d0[i] = getattr(g, f"d{name}0")
                self._accumulate(layer, direction, g)
            mask = cache["masks"][layer - 1] if layer else None
            d_y = d_in * mask if mask is not None else d_in
        dx = np.ascontiguousarray(d_y.transpose(1, 0, 2)) if self.batch_first else d_y
        return dx, self._pack(tuple(d_states0))

    def _accumulate(self, layer, direction, g):
        names = self._names(layer, direction)
        for key, field in (("w_ih", "dw_ih"), ("w_hh", "dw_hh"), ("b_ih", "db_ih"),
                           ("b_hh", "db_hh"), ("peephole", "dpeephole")):
            if key in names:
                self.grads[names[key]] += getattr(g, field)

    # -- parameters ---------------------------------------------------------------------------

    def state_dict(self):
        """A copy of the parameters: name -> ndarray, PyTorch's names, shapes and order."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters in place from `state_dict` (name -> array-like, e.g. NumPy arrays
        or CPU torch tensors), converted to the layer's dtype.

        strict=True: the names must equal the layer's exactly (else ValueError listing the
        missing and unexpected names). strict=False loads the names both have and returns
        IncompatibleKeys(missing_keys, unexpected_keys). Shapes must match in both modes.
        Nothing is changed when an error is raised.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict must be a mapping name -> array, "
                            f"got {type(state_dict).__name__}")
        expected = dict(self._param_shapes())
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in expected]
        if strict and (missing or unexpected):
            msg = [f"load_state_dict: the names do not match this {self!r}."]
            if missing:
                msg.append(f"Missing: {missing}.")
            if unexpected:
                msg.append(f"Unexpected: {unexpected}.")
            if any(str(k).startswith("weight_hr_") for k in unexpected):
                msg.append("(weight_hr_* comes from an LSTM with proj_size > 0, which fastrnn "
                           "does not support.)")
            raise ValueError(" ".join(msg))
        loaded = {}
        for name, shape in expected.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if hasattr(value, "detach"):             # a torch tensor: read it, never import torch
                value = value.detach().cpu().numpy()
            a = np.asarray(value)
            if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
                raise TypeError(f"state_dict[{name!r}] must hold real numbers, got dtype {a.dtype}")
            if a.shape != shape:
                raise ValueError(f"state_dict[{name!r}] must have shape {shape}, got {a.shape}")
            with np.errstate(over="ignore"):
                converted = a.astype(self.dtype)
            if np.any(np.isinf(converted) & np.isfinite(a)):
                raise ValueError(f"state_dict[{name!r}] has finite values beyond the range of "
                                 f"{self.dtype.name} (largest magnitude {np.abs(a).max():g})")
            loaded[name] = converted
        for name, a in loaded.items():
            self.params[name][...] = a
        return IncompatibleKeys(missing, unexpected)


class LSTM(_RNNBase):
    """Long short-term memory layer (DESIGN §2; gate order i, f, g, o as PyTorch).

        out, (h_n, c_n) = lstm(x, (h_0, c_0)=None, lengths=None)
        dx, (dh_0, dc_0) = lstm.backward(d_out, (dh_n, dc_n)=None)

    `peephole=True` adds Gers & Schmidhuber peepholes (docs/functional.md): parameters
    `weight_peephole_l{k}[_reverse]` (3, H), rows p_i, p_f, p_o; not convertible to PyTorch.
    """

    _kind, _gates, _states = "lstm", 4, ("h", "c")

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, peephole=False, dtype=np.float32,
                 seed=None, _backend=None):
        self.peephole = check_flag("peephole", peephole)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, _backend)

    def _names(self, layer, direction):
        names = super()._names(layer, direction)
        if self.peephole:
            names["peephole"] = f"weight_peephole_l{layer}" + ("_reverse" if direction else "")
        return names

    def _cell_options(self, layer, direction):
        name = self._names(layer, direction).get("peephole")
        return {"peephole": None if name is None else self.params[name]}

    def _extra_repr(self):
        return {"peephole": True} if self.peephole else {}


class GRU(_RNNBase):
    """Gated recurrent unit layer (DESIGN §2; gate order r, z, n as PyTorch).

        out, h_n = gru(x, h_0=None, lengths=None)
        dx, dh_0 = gru.backward(d_out, dh_n=None)

    `reset_after=True` (PyTorch, cuDNN, Keras default) applies the reset gate after the
    recurrent product; `reset_after=False` is Cho et al. 2014 (Keras `reset_after=False`).
    """

    _kind, _gates = "gru", 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, reset_after=True, dtype=np.float32,
                 seed=None, _backend=None):
        self.reset_after = check_flag("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, _backend)

    def _cell_options(self, layer, direction):
        return {"reset_after": self.reset_after}

    def _extra_repr(self):
        return {} if self.reset_after else {"reset_after": False}


class SimpleRNN(_RNNBase):
    """Elman recurrent layer, `h' = act(W_ih x + b_ih + W_hh h + b_hh)`, act tanh or relu
    (`torch.nn.RNN`; the arguments keep its positional order, nonlinearity fourth).

        out, h_n = rnn(x, h_0=None, lengths=None)
        dx, dh_0 = rnn.backward(d_out, dh_n=None)
    """

    _kind, _gates = "rnn", 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype=np.float32,
                 seed=None, _backend=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, _backend)

    def _cell_options(self, layer, direction):
        return {"nonlinearity": self.nonlinearity}

    def _extra_repr(self):
        return {"nonlinearity": self.nonlinearity} if self.nonlinearity != "tanh" else {}
