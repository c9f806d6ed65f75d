"""Recurrent layers over NumPy arrays: `LSTM`, `GRU`, `SimpleRNN` (docs/layers.md).

They stack the one-layer, one-direction functional calls (docs/functional.md) into the
layer `torch.nn.LSTM/GRU/RNN` users know, with an explicit backward (DESIGN §3):

    out, h_n = gru(x, h_0=None, lengths=None, mask=None)  # SimpleRNN the same
    out, (h_n, c_n) = lstm(x, (h_0, c_0)=None, lengths=None, mask=None)
    dx, dh_0 = gru.backward(d_out, dh_n=None)            # LSTM: dx, (dh_0, dc_0)

x may also be unbatched (T, I), with states (L*D, H), or a packed batch
(`fastrnn.utils.rnn.PackedSequence` or torch's), as PyTorch takes them.

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

The cell variants and Keras options (docs/variants.md, "Layer options") are keyword-only
constructor options: activation, recurrent_activation, layer_norm (parameters
`ln_gain_l{k}`, `ln_cell_l{k}`), recurrent_dropout, zoneout, leak_rate, go_backwards,
merge_mode, stateful; `mask=` (B, T) bool is Keras's mask, run as a right-padded batch.
`precision="bfloat16"` (float32 layers) trains with bf16 products and fp32 everything else
(docs/precision.md, "Training"); the attribute `precision` may be changed between calls.

Layer conventions (shared with `fastrnn.nn`): arrays must already have the layer's dtype
(nothing is converted silently, as in PyTorch); a forward keeps the cache that one
`backward` consumes unless gradients are off (`fastrnn.no_grad()`, `requires_grad_(False)`);
`train()`/`eval()` switch dropout only; `backward` adds into `grads` until `zero_grad()`.
"""

import numbers
import warnings

import numpy as np

from . import functional, masks as _masks
from .engine import InferenceEngine
from ._checks import (check_activation, check_choice, check_flag, check_layer_lengths,
                      check_layer_norm, check_leak_rate, check_module_array, check_probability)
from .nn import IncompatibleKeys, Module, _check_dtype, _check_size, as_generator  # noqa: F401
from .utils import rnn as _rnn

__all__ = ["LSTM", "GRU", "SimpleRNN"]

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class _Form:
    """How a call's arguments map to the time-major batch the kernels run on, and back:
    "batched" (T, B, .) or (B, T, .) with batch_first, "unbatched" (T, .) with states
    (L*D, H), or "packed" (N, .) rows of a PackedSequence (`layout`)."""

    def __init__(self, kind, batch_first=False, layout=None):
        self.kind, self.batch_first, self.layout = kind, batch_first, layout

    def to_user(self, y):
        """A time-major (T, B, F) result in the caller's form."""
        if self.kind == "packed":
            return self.layout.wrap(self.layout.pack(y))
        if self.kind == "unbatched":
            return y[:, 0]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def state_to_user(self, s):
        return s[:, 0] if self.kind == "unbatched" else s


class _Steps:
    """Keras's masked and reversed steps (docs/variants.md) as a right-padded batch.

    A masked step carries the state unchanged, so a row's states are those of its valid
    steps run back to back: the valid steps are gathered to the front (stable), run with
    `lengths` = their count, and the outputs are put back; pre-, post-padded and gapped masks
    all cost what `lengths` costs. `valid` (T, B) is in processing order (go_backwards: the
    time-reversed input). At a masked step the output is the previous step's (zeros before
    the first), or zeros with `zero_output` (Keras's Bidirectional)."""

    def __init__(self, valid, flip, zero_output):
        T, B = valid.shape
        self.flip = flip
        self.lengths = valid.sum(axis=0).astype(np.int64)
        # order[r, b]: the time of row b's r-th valid step (then its masked steps)
        self.order = np.argsort(~valid, axis=0, kind="stable")
        self.identity = bool((self.order == np.arange(T)[:, None]).all())
        rank = np.cumsum(valid, axis=0) - 1           # last valid step at or before t
        self.src = np.where(valid, rank, -1 if zero_output else rank)
        self.cols = np.arange(B)[None, :]

    def gather(self, x):
        """x (T, B, I) in input order -> the compacted batch the layer runs on."""
        if self.flip:
            x = x[::-1]
        return x if self.identity else x[self.order, self.cols]

    def scatter(self, y):
        """Compacted outputs (T, B, F) -> outputs at every step, in processing order."""
        out = y[np.maximum(self.src, 0), self.cols]
        out[self.src < 0] = 0
        return out

    def scatter_grad(self, d):
        """The adjoint of `scatter`: d_out (T, B, F) -> gradient w.r.t. the compacted y."""
        g = np.zeros_like(d)
        b = self.cols[0]
        for t in range(d.shape[0]):       # within one step each (src, b) is distinct
            keep = self.src[t] >= 0
            g[self.src[t, keep], b[keep]] += d[t, keep]
        return g

    def gather_grad(self, dx):
        """The adjoint of `gather`: dx of the compacted batch -> dx in input order."""
        if not self.identity:
            out = np.empty_like(dx)
            out[self.order, self.cols] = dx
            dx = out
        return np.ascontiguousarray(dx[::-1]) if self.flip else dx


class _RNNBase(Module):
    """What the three layers share; a subclass names its cell (`_kind`, `_gates`), its states
    and the per-call options of its functional pair (`_cell_options`)."""

    _kind = None            # "lstm" | "gru" | "rnn": the functional pair *_forward / *_backward
    _gates = None           # G
    _states = ("h",)        # the recurrent states, in the order of the functional signature

    # The variant and Keras options (docs/variants.md, "Layer options") each class takes, with
    # their defaults; a value equal to the default runs the plain layer.
    _options = dict(recurrent_dropout=0.0, zoneout=0.0, go_backwards=False,
                    merge_mode="concat", stateful=False, zero_output_for_mask=False)
    # Options of the call semantics only (masks, carried states), not of the cell's math:
    # the engine and PyTorch run such a layer's cells as they are.
    _call_options = ("recurrent_dropout", "zero_output_for_mask")

    def __init__(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                 bidirectional, dtype, seed, backend, **options):
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
        self.precision = options.pop("precision", "float32")
        self._set_options(options)
        self._rng = as_generator(seed)      # initialisation, then the dropout masks
        # Private: the functional backend (a module with *_forward / *_backward); None means
        # fastrnn.functional's unchecked path (the layer checks). Tests pass fastrnn.reference.
        self._backend = backend
        # Private test hook: a list of L-1 dropout multipliers, time-major (T, B, D*H), used
        # instead of drawing masks (already scaled, e.g. keep / (1 - p)).
        self._dropout_masks = None
        # Private test hook: {(layer, direction): {"recurrent_mask": ..., "zoneout_mask": ...,
        # "zoneout_mask_c": ...}} used in training instead of drawing the variant masks.
        self._variant_masks = None
        self._carried = None                # a stateful layer's final states, time-major
        self._cache = None
        self._cache_status = "none"         # "none" | "train" | "nograd" | "consumed"
        self.training = True
        # PyTorch's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)).
        # Layer-norm gains start at 1 and the shift of LN(c) at 0 (haste, torch.nn.LayerNorm).
        k = 1.0 / np.sqrt(self.hidden_size)
        self.params = {name: self._rng.uniform(-k, k, shape).astype(self.dtype)
                       for name, shape in self._param_shapes()}
        for name in self.params:
            if name.startswith(("ln_gain_", "ln_cell_")):
                self.params[name][...] = 1
                if name.startswith("ln_cell_"):
                    self.params[name][1] = 0
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    # -- structure ----------------------------------------------------------------------------

    @property
    def precision(self):
        """"float32" or "bfloat16": the format of the products of forward and backward
        (docs/precision.md, "Training"); parameters, states and gradients stay float32."""
        return self._precision

    @precision.setter
    def precision(self, value):
        self._precision = functional.check_precision(value, self.dtype)

    def _precision_kw(self):
        """precision= for the functional calls; none for float32 (other backends, e.g. the
        reference, have no such argument)."""
        if self.precision == "float32":
            return {}
        functional.check_precision(self.precision, self.dtype)   # after a .to(float64)
        return {"precision": self.precision}

    @property
    def num_directions(self):
        """D: 2 if the layer is bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def _set_options(self, options):
        """Check and store the variant and Keras options (each a ValueError naming it)."""
        for name in options:
            if name not in self._options:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                                f"{name!r}")
        opts = {**self._options, **options}
        for name in ("activation", "recurrent_activation"):
            if name in opts:
                opts[name] = check_activation(name, opts[name])
        for name in ("recurrent_dropout", "zoneout"):
            opts[name] = check_probability(name, opts[name])
        if "leak_rate" in opts:
            opts["leak_rate"] = check_leak_rate(opts["leak_rate"])
        if "layer_norm" in opts:
            opts["layer_norm"] = check_layer_norm(self._kind, opts["layer_norm"],
                                                  getattr(self, "reset_after", True))
        for name in ("go_backwards", "stateful", "zero_output_for_mask"):
            opts[name] = check_flag(name, opts[name])
        check_choice("merge_mode", opts["merge_mode"], MERGE_MODES)
        if opts["merge_mode"] != "concat" and not self.bidirectional:
            raise ValueError(f"merge_mode={opts['merge_mode']!r} needs bidirectional=True (it "
                             "merges the forward and backward outputs)")
        self.__dict__.update(opts)

    def _changed_options(self):
        """{option: value} of the options that differ from their defaults."""
        return {n: getattr(self, n) for n, d in self._options.items() if getattr(self, n) != d}

    def _names(self, layer, direction):
        """Parameter names of one layer-direction: w_ih, w_hh, b_ih, b_hh (+ extras)."""
        sfx = f"l{layer}" + ("_reverse" if direction else "")
        names = {"w_ih": f"weight_ih_{sfx}", "w_hh": f"weight_hh_{sfx}"}
        if self.bias:
            names.update(b_ih=f"bias_ih_{sfx}", b_hh=f"bias_hh_{sfx}")
        if getattr(self, "layer_norm", False):
            names["ln_gain"] = f"ln_gain_{sfx}"
            if self._kind == "lstm":
                names["ln_cell"] = f"ln_cell_{sfx}"
        return names

    def _param_shapes(self):
        """(name, shape) in PyTorch's state_dict order: layer, direction, then parameter."""
        GH, H, D = self._gates * self.hidden_size, self.hidden_size, self.num_directions
        R = self._state_size("h")           # an LSTM's proj_size, else H
        shapes = {"w_hh": (GH, R), "b_ih": (GH,), "b_hh": (GH,), "peephole": (3, H),
                  "ln_gain": (2, GH), "ln_cell": (2, H), "w_hr": (R, H)}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * R
            for direction in range(D):
                for key, name in self._names(layer, direction).items():
                    yield name, (GH, in_size) if key == "w_ih" else shapes[key]

    def _cell_options(self, layer, direction):
        """Keyword arguments of the functional calls beyond the common ones (the plain
        cell's; the engine reads these too)."""
        return {}

    def _variant_options(self, layer, direction, training, T, B):
        """The variant keywords of one layer-direction's functional call: the fixed options,
        the layer-norm parameters, and in training the random masks (docs/variants.md)."""
        kw = {n: getattr(self, n) for n in ("activation", "recurrent_activation", "leak_rate")
              if n in self._options}
        kw["zoneout"] = self.zoneout
        names = self._names(layer, direction)
        if self.__dict__.get("layer_norm"):
            if self._backend is not None:    # the checked signature; the kernels infer it
                kw["layer_norm"] = True
            kw.update({k: self.params[names[k]] for k in ("ln_gain", "ln_cell") if k in names})
        if training:
            kw.update(self._draw_masks(layer, direction, T, B))
        return kw

    def _draw_masks(self, layer, direction, T, B):
        if self._variant_masks is not None:
            return self._variant_masks[(layer, direction)]
        H, rng, dt, out = self.hidden_size, self._rng, self.dtype, {}
        if self.recurrent_dropout > 0:
            out["recurrent_mask"] = _masks.recurrent_dropout_mask(
                rng, self.recurrent_dropout, self._gates, B, H, dt)
        if self.zoneout > 0:
            for name in ("zoneout_mask", "zoneout_mask_c")[:len(self._states)]:
                out[name] = _masks.zoneout_mask(rng, self.zoneout, T, B, H, dt)
        return out

    def _state_size(self, state):
        """Features of a state ("h", "c"); h is also the size of each direction's output."""
        return self.hidden_size

    def _fn(self, what):
        if self._backend is None:       # arguments checked here: functional's unchecked path
            return getattr(functional, f"_{self._kind}_{what}")
        return getattr(self._backend, f"{self._kind}_{what}")

    def __repr__(self):
        """PyTorch's repr (options that differ from the defaults, in its order), then the
        fastrnn-only options and a dtype other than float32."""
        opts = [f"{self.input_size}, {self.hidden_size}"]
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                opts.append(f"{name}={getattr(self, name)!r}")
        opts += [f"{k}={v!r}" for k, v in {**self._extra_repr(),
                                             **self._changed_options()}.items()]
        if self.dtype != np.float32:
            opts.append(f"dtype={self.dtype.name}")
        if self.precision != "float32":
            opts.append(f"precision={self.precision!r}")
        return f"{type(self).__name__}({', '.join(opts)})"

    def _extra_repr(self):
        return {}

    # -- argument checks ----------------------------------------------------------------------

    def _check_array(self, name, a, shape, what):
        return check_module_array(name, a, self.dtype, shape, "layer", what)

    def _check_states(self, pattern, value, B):
        """`value` as a tuple with one entry per state, each (L*D, B, H) or None; B None
        means unbatched: (L*D, H) given, (L*D, 1, H) returned. `pattern` makes the
        argument names ("{}_0" -> h_0, c_0)."""
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
        LD = self.num_layers * self.num_directions

        def check(name, v, state):
            size, what = self._state_size(state), "proj_size" if self._state_size(state) != \
                self.hidden_size else "hidden_size"
            if B is None:
                return self._check_array(name, v, (LD, size), f"(num_layers * num_directions, "
                                         f"{what}) for unbatched x")
            return self._check_array(name, v, (LD, B, size),
                                     f"(num_layers * num_directions, batch, {what})")
        checked = (None if v is None else check(n, v, s)
                   for n, v, s in zip(names, values, self._states))
        return tuple(v if v is None or B is not None else v[:, None] for v in checked)

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

    def __call__(self, x, hx=None, lengths=None, training=None, mask=None):
        """Run the layer; see the class docstring for shapes. `training` (None = the
        `training` attribute) applies dropout and the variants' masks; the backward cache
        is kept unless gradients are off (`fastrnn.no_grad()`, `requires_grad_(False)`).
        `mask` (B, T) bool: Keras's mask (docs/variants.md), instead of `lengths`."""
        training = self._is_training(training)
        keep = self._keeps_cache()
        inp, lengths, form = self._time_major(x, lengths)
        T, B = inp.shape[:2]
        steps = self._steps(mask, lengths, form, T, B)
        if steps is not None:
            inp, lengths = steps.gather(inp), steps.lengths
        states0 = self._check_states("{}_0", hx, None if form.kind == "unbatched" else B)
        if hx is None and self.stateful and self._carried is not None:
            states0 = self._carried_states(B)
        self._check_params()

        forward = self._fn("forward")
        precision = self._precision_kw()        # the backward runs in the forward's
        L, D = self.num_layers, self.num_directions
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
                    lengths=lengths, reverse=bool(direction), training=keep,
                    **precision, **self._cell_options(layer, direction),
                    **self._variant_options(layer, direction, training, T, B))
                outs.append(out)
                layer_caches.append(cache)
                for f, s in zip(finals, state_n):
                    f.append(s)
            caches.append(layer_caches)
            if layer == L - 1:
                break
            y = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            mask = None
            dropout = self.dropout > 0 or self._dropout_masks is not None
            if training and dropout:
                mask = self._dropout_mask(layer, y.shape)
                y = y * mask
            masks.append(mask)
            inp = y
        state_n = tuple(np.stack(f) for f in finals)
        if self.stateful:
            self._carried = tuple(s.copy() for s in state_n)
        merged = self._merge(outs)
        if steps is not None:
            merged = [steps.scatter(y) for y in merged]
        if keep:
            self._cache = dict(caches=caches, masks=masks, T=T, B=B, form=form, steps=steps,
                               outs=outs, precision=precision)
            self._cache_status = "train"
        else:
            self._cache, self._cache_status = None, "nograd"
        out = [form.to_user(y) for y in merged]
        state_n = tuple(form.state_to_user(s) for s in state_n)
        return (out[0] if self.merge_mode is not None else tuple(out)), self._pack(state_n)

    def _merge(self, outs):
        """The last layer's direction outputs -> the list of outputs returned (one array,
        or two for merge_mode=None), as Keras's Bidirectional merges them."""
        if len(outs) == 1:
            return outs
        f, b = outs
        mode = self.merge_mode
        if mode is None:
            return [f, b]
        return [{"concat": lambda: np.concatenate(outs, axis=2), "sum": lambda: f + b,
                 "ave": lambda: (f + b) * self.dtype.type(0.5), "mul": lambda: f * b}[mode]()]

    def _unmerge(self, d_outs, outs):
        """The adjoint of `_merge`: per direction gradient (or None)."""
        if len(outs) == 1:
            return d_outs
        mode, H = self.merge_mode, self._state_size("h")
        if mode is None:
            return d_outs
        d = d_outs[0]
        if d is None:
            return [None, None]
        if mode == "concat":
            return [d[:, :, :H], d[:, :, H:]]
        if mode == "sum":
            return [d, d]
        if mode == "ave":
            return [d * self.dtype.type(0.5)] * 2
        return [d * outs[1], d * outs[0]]

    def _steps(self, mask, lengths, form, T, B):
        """The _Steps of a call with `mask` or go_backwards, else None (checks `mask`)."""
        if mask is None and not self.go_backwards:
            return None
        if form.kind == "packed":
            raise ValueError("mask and go_backwards need a padded x, not a PackedSequence")
        if mask is not None:
            if lengths is not None:
                raise ValueError("pass either lengths or mask, not both")
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
                raise TypeError("mask must be a numpy.ndarray of dtype bool (B, T), got "
                                f"{getattr(mask, 'dtype', type(mask).__name__)}")
            want = (T,) if form.kind == "unbatched" else (B, T)
            if mask.shape != want:
                raise ValueError(f"mask must have shape {want} (batch, time), got {mask.shape}")
            valid = mask.reshape(B, T).T
        elif lengths is not None:
            valid = np.arange(T)[:, None] < lengths[None, :]
        else:
            valid = np.ones((T, B), dtype=bool)
        if self.go_backwards:
            valid = valid[::-1]
        return _Steps(valid, self.go_backwards,
                      zero_output=self.bidirectional or self.zero_output_for_mask)

    def _carried_states(self, B):
        if self._carried[0].shape[1] != B:
            raise ValueError(f"this stateful layer carries states of batch "
                             f"{self._carried[0].shape[1]}, got a batch of {B}; call "
                             "reset_states() to start new sequences")
        return self._carried

    def reset_states(self):
        """Forget the final states a stateful layer carries into its next call."""
        self._carried = None

    def _time_major(self, x, lengths):
        """x checked and made time-major (T, B, I) -> (x, lengths, _Form)."""
        if _rnn.is_packed(x):
            if lengths is not None:
                raise ValueError("lengths must be None when x is a PackedSequence (its "
                                 "batch_sizes hold the lengths)")
            layout, data = _rnn.layout_of("x", x)
            data = self._check_array("x.data", data, (data.shape[0], self.input_size),
                                     "(N, input_size)")
            return layout.pad(data), layout.lengths, _Form("packed", layout=layout)
        order = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray {order} or (T, I) of dtype "
                            f"{self.dtype.name}, or a PackedSequence, got {type(x).__name__}")
        if x.ndim == 2:
            if lengths is not None:
                raise ValueError("lengths must be None for unbatched (T, I) x (one "
                                 "sequence of x.shape[0] steps)")
            x = self._check_array("x", x, (x.shape[0], self.input_size), "(T, input_size)")
            return x[:, None], None, _Form("unbatched")
        if x.ndim != 3:
            raise ValueError(f"x must be a rank-3 numpy.ndarray {order} or a rank-2 (T, I) "
                             f"one (unbatched), got shape {x.shape}")
        T, B = (x.shape[1], x.shape[0]) if self.batch_first else x.shape[:2]
        order = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        x = self._check_array("x", x, x.shape[:2] + (self.input_size,), order)
        if lengths is not None:
            lengths = check_layer_lengths(lengths, T, B, self.batch_first)
        inp = np.ascontiguousarray(x.transpose(1, 0, 2)) if self.batch_first else x
        return inp, lengths, _Form("batched", self.batch_first)

    forward = __call__

    def _pack(self, states):
        return states[0] if len(states) == 1 else states

    def inference(self, precision="float32"):
        """An `InferenceEngine` (docs/engine.md) of this layer as it is now: its weights are
        copied and packed once, so later changes to `params` do not reach the engine.
        The engine runs the plain cells: a variant option other than recurrent_dropout (a
        no-op at inference) or zero_output_for_mask (masks only) is refused."""
        changed = {k: v for k, v in self._changed_options().items()
                   if k not in self._call_options}
        if getattr(self, "nonlinearity", "tanh") not in ("tanh", "relu"):
            changed["nonlinearity"] = self.nonlinearity
        if changed:
            opts = ", ".join(f"{k}={v!r}" for k, v in changed.items())
            raise ValueError(f"inference(): the engine runs the plain cells, and this layer has "
                             f"{opts}; run the layer itself (under fastrnn.no_grad()) instead")
        return InferenceEngine(self, precision)

    # -- backward -----------------------------------------------------------------------------

    def _take_cache(self):
        cache = self._cache
        if cache is None:
            why = {"none": "no forward pass has run yet",
                   "nograd": "the last forward pass ran with gradients off (inside "
                             "fastrnn.no_grad() or after requires_grad_(False)), which keeps "
                             "no cache",
                   "consumed": "the cache of the last forward pass was consumed by a previous "
                               "backward (one backward per forward)"}
            raise ValueError(f"{type(self).__name__}.backward: {why[self._cache_status]}; run "
                             "the layer with gradients on before each backward")
        return cache

    def backward(self, d_out, dh_n=None):
        """Backpropagate through the last forward pass and consume its cache.

        d_out: gradient of the loss w.r.t. `out` (its shape; for a packed forward a
        PackedSequence or the (N, D*H) array of out.data), or None for zero;
        dh_n: w.r.t. the final states (LSTM: a tuple (dh_n, dc_n)), None entries for zero.
        Adds the parameter gradients into `grads`; returns dx (in x's form) and the gradients
        w.r.t. the initial states (LSTM: a tuple), the states' shape, also when none were given.
        """
        cache = self._take_cache()
        T, B, form = cache["T"], cache["B"], cache["form"]
        L, D, H = self.num_layers, self.num_directions, self._state_size("h")
        d_out = self._time_major_grad(d_out, T, B, form)
        d_states = self._check_states("d{}_n", dh_n, None if form.kind == "unbatched" else B)
        self._cache, self._cache_status = None, "consumed"

        backward = self._fn("backward")
        precision = cache["precision"]
        d_states0 = [np.zeros((L * D, B, self._state_size(s)), dtype=self.dtype)
                     for s in self._states]
        steps = cache["steps"]
        if steps is not None:
            d_out = [None if d is None else steps.scatter_grad(d) for d in d_out]
        d_y = self._unmerge(d_out, cache["outs"])
        for layer in reversed(range(L)):
            d_in = None
            for direction in range(D):
                i = layer * D + direction
                d_half = d_y[direction]
                g = backward(cache["caches"][layer][direction], d_half,
                             *(None if d is None else d[i] for d in d_states), **precision)
                d_in = g.dx if d_in is None else d_in + g.dx
                for d0, name in zip(d_states0, self._states):
                    d0[i] = getattr(g, f"d{name}0")
                self._accumulate(layer, direction, g)
            mask = cache["masks"][layer - 1] if layer else None
            d_in = d_in * mask if mask is not None else d_in
            d_y = [d_in] if D == 1 else [d_in[:, :, :H], d_in[:, :, H:]]
        dx = d_in
        if steps is not None:
            dx = steps.gather_grad(dx)
        return form.to_user(dx), self._pack(tuple(form.state_to_user(d) for d in d_states0))

    def _time_major_grad(self, d_out, T, B, form):
        """d_out checked against the forward's form: a list of time-major (T, B, F) or None,
        one per returned output (two for merge_mode=None)."""
        F = self._state_size("h") * (self.num_directions if self.merge_mode == "concat" else 1)
        if self.bidirectional and self.merge_mode is None:
            if d_out is None:
                return [None, None]
            if not isinstance(d_out, (tuple, list)) or len(d_out) != 2:
                raise TypeError("d_out must be a pair (d_forward, d_backward) or None for "
                                f"merge_mode=None, got {type(d_out).__name__}")
            return [self._one_grad(f"d_out[{k}]", d, T, B, F, form) for k, d in enumerate(d_out)]
        return [self._one_grad("d_out", d_out, T, B, F, form)]

    def _one_grad(self, name, d_out, T, B, F, form):
        if d_out is None:
            return None
        if form.kind == "packed":
            data = _rnn.layout_of(name, d_out)[1] if _rnn.is_packed(d_out) else d_out
            rows = len(form.layout.rows[0])
            data = self._check_array(name, data, (rows, F), "(the shape of out.data)")
            return form.layout.pad(data)
        if form.kind == "unbatched":
            return self._check_array(name, d_out, (T, F), "(the shape of out)")[:, None]
        shape = (B, T, F) if form.batch_first else (T, B, F)
        d_out = self._check_array(name, d_out, shape, "(the shape of out)")
        return d_out.transpose(1, 0, 2) if form.batch_first else d_out

    def _accumulate(self, layer, direction, g):
        names = self._names(layer, direction)
        for key, field in (("w_ih", "dw_ih"), ("w_hh", "dw_hh"), ("b_ih", "db_ih"),
                           ("b_hh", "db_hh"), ("peephole", "dpeephole"),
                           ("ln_gain", "dln_gain"), ("ln_cell", "dln_cell"), ("w_hr", "dw_hr")):
            if key in names:
                self.grads[names[key]] += getattr(g, field)

    # -- parameters ---------------------------------------------------------------------------

    def _unexpected_hint(self, unexpected):
        if any(str(k).startswith("weight_hr_") for k in unexpected):
            return ("(weight_hr_* comes from an LSTM with proj_size > 0: build the layer "
                    "with that proj_size.)")
        return ""

    @property
    def all_weights(self):
        """PyTorch's nested list: per layer-direction [w_ih, w_hh(, b_ih, b_hh)(, peephole)],
        the parameter arrays themselves."""
        return [[self.params[n] for n in self._names(layer, direction).values()]
                for layer in range(self.num_layers) for direction in range(self.num_directions)]

    def flatten_parameters(self):
        """A no-op, as on PyTorch's CPU (the kernels take the parameters as they are)."""

    def _drop_cache(self):
        """After a dtype change: no cache, and no carried states of the old dtype."""
        self._cache, self._cache_status, self._carried = None, "none", None


class LSTM(_RNNBase):
    """Long short-term memory layer (DESIGN §2; gate order i, f, g, o as PyTorch).

        out, (h_n, c_n) = lstm(x, (h_0, c_0)=None, lengths=None)
        dx, (dh_0, dc_0) = lstm.backward(d_out, (dh_n, dc_n)=None)

    `peephole=True` adds Gers & Schmidhuber peepholes (docs/functional.md): parameters
    `weight_peephole_l{k}[_reverse]` (3, H), rows p_i, p_f, p_o; not convertible to PyTorch.
    `proj_size=P > 0` is PyTorch's LSTMP: h = (o ⊙ tanh c) W_hrᵀ with `weight_hr_l{k}`
    (P, H), `weight_hh_l{k}` (4H, P), h states (L*D, B, P), outputs D*P features.
    """

    _kind, _gates, _states = "lstm", 4, ("h", "c")
    _options = dict(_RNNBase._options, activation="tanh", recurrent_activation="sigmoid",
                    layer_norm=False)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, peephole=False,
                 dtype=np.float32, seed=None, _backend=None, **options):
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size must be an int, got {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError(f"proj_size must be >= 0 (0: no projection), got {proj_size}")
        self.proj_size = int(proj_size)
        self.peephole = check_flag("peephole", peephole)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, _backend, **options)
        if self.proj_size >= self.hidden_size:     # as PyTorch
            raise ValueError(f"proj_size ({proj_size}) must be smaller than hidden_size "
                             f"({hidden_size})")

    def _names(self, layer, direction):
        names = super()._names(layer, direction)
        sfx = f"l{layer}" + ("_reverse" if direction else "")
        if self.peephole:
            names["peephole"] = f"weight_peephole_{sfx}"
        if self.proj_size:
            names["w_hr"] = f"weight_hr_{sfx}"
        return names

    def _state_size(self, state):
        return self.proj_size if state == "h" and self.proj_size else self.hidden_size

    def _cell_options(self, layer, direction):
        names = self._names(layer, direction)
        return {k: None if k not in names else self.params[names[k]] for k in ("peephole", "w_hr")}

    def _extra_repr(self):
        extra = {"proj_size": self.proj_size} if self.proj_size else {}
        return {**extra, **({"peephole": True} if self.peephole else {})}



class GRU(_RNNBase):
    """Gated recurrent unit layer (DESIGN §2; gate order r, z, n as PyTorch).

        out, h_n = gru(x, h_0=None, lengths=None)
        dx, dh_0 = gru.backward(d_out, dh_n=None)

    `reset_after=True` (PyTorch, cuDNN, Keras default) applies the reset gate after the
    recurrent product; `reset_after=False` is Cho et al. 2014 (Keras `reset_after=False`).
    """

    _kind, _gates = "gru", 3
    _options = dict(_RNNBase._options, activation="tanh", recurrent_activation="sigmoid",
                    layer_norm=False, leak_rate=1.0)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, reset_after=True, dtype=np.float32,
                 seed=None, _backend=None, **options):
        self.reset_after = check_flag("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, _backend, **options)

    def _cell_options(self, layer, direction):
        return {"reset_after": self.reset_after}

    def _extra_repr(self):
        return {} if self.reset_after else {"reset_after": False}


class SimpleRNN(_RNNBase):
    """Elman recurrent layer, `h' = act(W_ih x + b_ih + W_hh h + b_hh)` (`torch.nn.RNN`; the
    arguments keep its positional order, nonlinearity fourth): act = nonlinearity, one of
    the six activations of docs/variants.md (PyTorch has tanh and relu).

        out, h_n = rnn(x, h_0=None, lengths=None)
        dx, dh_0 = rnn.backward(d_out, dh_n=None)
    """

    _kind, _gates = "rnn", 1
    _options = dict(_RNNBase._options, layer_norm=False, leak_rate=1.0)

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype=np.float32,
                 seed=None, _backend=None, **options):
        self.nonlinearity = check_activation("nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, _backend, **options)

    def _cell_options(self, layer, direction):
        return {"nonlinearity": self.nonlinearity}

    def _extra_repr(self):
        return {"nonlinearity": self.nonlinearity} if self.nonlinearity != "tanh" else {}
