"""One-step recurrent cells: `LSTMCell`, `GRUCell`, `RNNCell` (docs/layers.md, "Cells").

PyTorch's `torch.nn.LSTMCell/GRUCell/RNNCell` over NumPy, with an explicit backward for a
Python loop of steps (backpropagation through time, as decoders are written):

    h, c = lstm_cell(x, (h, c)=None)         # x (B, I) or (I,); h, c (B, H) or (H,)
    h = gru_cell(x, h=None)                  # RNNCell the same
    dx, dh, dc = lstm_cell.backward(dh, dc=None)     # GRUCell / RNNCell: dx, dh

Every call made with gradients on (not under `fastrnn.no_grad()`, not after
`requires_grad_(False)`) pushes its cache on a stack; `backward` pops the most recent one,
so a loop of calls is differentiated by calling backward in the reverse order, feeding each
returned dh (dc) into the gradient of the step before (LIFO). Parameter gradients add
into `grads` until `zero_grad()`, as the layers'.

Parameters as PyTorch's: `weight_ih` (G*H, I), `weight_hh` (G*H, H), `bias_ih`, `bias_hh`
(G*H,), G = 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN); init U(-1/sqrt(H), 1/sqrt(H)).
"""

import numpy as np

from . import functional
from ._checks import check_flag, check_module_array
from ._errors import ArgumentError
from .nn import Module, _check_dtype, _check_size, as_generator

__all__ = ["LSTMCell", "GRUCell", "RNNCell"]


class _CellBase(Module):
    """What the three cells share; a subclass names its functional pair (`_kind`), gates
    and states, and the per-call options (`_options`)."""

    _kind = None            # "lstm" | "gru" | "rnn": fastrnn.functional.*_forward / _backward
    _gates = None
    _states = ("h",)
    _hx_names = ("hx",)     # the states' names in messages

    def __init__(self, input_size, hidden_size, bias, dtype, seed, backend):
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.bias = check_flag("bias", bias)
        self.dtype = _check_dtype(dtype)
        rng = as_generator(seed)
        self._backend = backend     # private: a functional module (tests pass reference)
        self._steps = []            # (cache, B, unbatched) of the calls not backpropagated yet
        k = 1.0 / np.sqrt(self.hidden_size)
        self.params = {name: rng.uniform(-k, k, shape).astype(self.dtype)
                       for name, shape in self._param_shapes()}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def _param_shapes(self):
        GH = self._gates * self.hidden_size
        yield "weight_ih", (GH, self.input_size)
        yield "weight_hh", (GH, self.hidden_size)
        if self.bias:
            yield "bias_ih", (GH,)
            yield "bias_hh", (GH,)

    def _options(self):
        return {}

    def _fn(self, what):
        if self._backend is None:       # arguments checked here: functional's unchecked path
            return getattr(functional, f"_{self._kind}_{what}")
        return getattr(self._backend, f"{self._kind}_{what}")

    def __repr__(self):
        opts = [f"{self.input_size}, {self.hidden_size}"]
        if not self.bias:
            opts.append("bias=False")
        opts += self._extra_repr()
        if self.dtype != np.float32:
            opts.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(opts)})"

    def _extra_repr(self):
        return []

    # -- argument checks ----------------------------------------------------------------------

    def _check_array(self, name, a, shape):
        return check_module_array(name, a, self.dtype, shape, "cell")

    def _check_states(self, names, value, shape):
        """`value` as a tuple with one (B, H) entry (or None) per state; `shape` is that of
        the call's states, (B, H) or (H,) unbatched."""
        if len(names) == 1:
            if isinstance(value, (tuple, list)):
                raise TypeError(f"{names[0]} must be a numpy.ndarray or None (a "
                                f"{type(self).__name__} has one state), got a "
                                f"{type(value).__name__}")
            values = (value,)
        elif value is None:
            values = (None,) * len(names)
        elif isinstance(value, (tuple, list)) and len(value) == len(names):
            values = tuple(value)
        else:
            got = (f"a {type(value).__name__} of {len(value)}"
                   if isinstance(value, (tuple, list)) else type(value).__name__)
            raise ArgumentError(f"the {type(self).__name__} states must be a tuple "
                                f"({', '.join(names)}) or None, got {got}")
        return tuple(None if v is None else self._check_array(n, v, shape).reshape(-1, shape[-1])
                     for n, v in zip(names, values))

    def _check_params(self):
        for name, shape in self._param_shapes():
            p = self.params.get(name)
            if p is None:
                raise ValueError(f"params[{name!r}] is missing")
            self._check_array(f"params[{name!r}]", p, shape)

    # -- forward ------------------------------------------------------------------------------

    def __call__(self, x, hx=None):
        """One step: x (B, I) or (I,); hx the states of x's batch, None for zeros.
        Returns the new states in hx's form (LSTMCell: a tuple (h, c))."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray (B, I) or (I,) of dtype "
                            f"{self.dtype.name}, got {type(x).__name__}")
        if x.ndim not in (1, 2):
            raise ValueError(f"x must be 1-D (I,) or 2-D (B, I), got shape {x.shape}")
        unbatched = x.ndim == 1
        x = self._check_array("x", x, x.shape[:-1] + (self.input_size,))
        shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
        states = self._check_states(self._hx_names, hx, shape)
        self._check_params()
        keep = self._keeps_cache()
        new, cache = self._step(x.reshape(1, -1, self.input_size), states, keep)
        if keep:
            self._steps.append((cache, x.reshape(-1, self.input_size).shape[0], unbatched))
        new = tuple(s[0] if unbatched else s for s in new)
        return new if len(new) > 1 else new[0]

    forward = __call__

    def _step(self, x, states, keep):
        """One time step in one binding call: x (1, B, I), states (B, H) or None -> (the new
        states, the cache or None). This is the seam for the prepacked engine's `step`
        (DESIGN §10), which can serve the calls that keep no cache without repacking."""
        p = self.params
        _, *new, cache = self._fn("forward")(
            x, p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"), *states,
            training=keep, **self._options())
        return new, cache

    # -- backward -----------------------------------------------------------------------------

    def backward(self, dh, dc=None):
        """Backpropagate through the most recent call not yet backpropagated (LIFO) and pop it.

        dh (dc, LSTMCell only): gradients w.r.t. that call's returned states, their shape,
        None for zero. Adds the parameter gradients into `grads`; returns (dx, dh_prev) or,
        for LSTMCell, (dx, dh_prev, dc_prev): gradients w.r.t. that call's x and hx.
        """
        if not self._steps:
            raise ValueError(f"{type(self).__name__}.backward: no call is waiting for its "
                             "backward (each call with gradients on pushes one, each "
                             "backward pops the most recent; calls under fastrnn.no_grad() "
                             "or after requires_grad_(False) push nothing)")
        cache, B, unbatched = self._steps[-1]
        shape = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        grads = [dh] if len(self._states) == 1 else [dh, dc]
        if len(self._states) == 1 and dc is not None:
            raise TypeError(f"dc must be None: a {type(self).__name__} has one state")
        d_new = [None if g is None else self._check_array(n, g, shape).reshape(B, -1)
                 for n, g in zip(("dh", "dc"), grads)]
        self._steps.pop()
        g = self._fn("backward")(cache, None, *d_new)
        for name, field in (("weight_ih", "dw_ih"), ("weight_hh", "dw_hh"),
                            ("bias_ih", "db_ih"), ("bias_hh", "db_hh")):
            if name in self.grads:
                self.grads[name] += getattr(g, field)
        out = (g.dx[0],) + tuple(getattr(g, f"d{s}0") for s in self._states)
        return tuple(a[0] for a in out) if unbatched else out

    def clear_cache(self):
        """Drop the caches of every call not yet backpropagated (e.g. after a generation
        loop that ran with gradients on)."""
        self._steps.clear()

    def _drop_cache(self):
        self.clear_cache()


class LSTMCell(_CellBase):
    """`torch.nn.LSTMCell`: one LSTM step (DESIGN §2, gates i, f, g, o).

        h, c = cell(x, (h, c)=None)
        dx, dh, dc = cell.backward(dh, dc=None)
    """

    _kind, _gates, _states = "lstm", 4, ("h", "c")
    _hx_names = ("hx[0]", "hx[1]")

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, seed=None,
                 _backend=None):
        super().__init__(input_size, hidden_size, bias, dtype, seed, _backend)


class GRUCell(_CellBase):
    """`torch.nn.GRUCell`: one GRU step (DESIGN §2, gates r, z, n); `reset_after=False` is
    Cho et al. 2014 (as the GRU layer).

        h = cell(x, h=None)
        dx, dh = cell.backward(dh)
    """

    _kind, _gates = "gru", 3

    def __init__(self, input_size, hidden_size, bias=True, *, reset_after=True,
                 dtype=np.float32, seed=None, _backend=None):
        self.reset_after = check_flag("reset_after", reset_after)
        super().__init__(input_size, hidden_size, bias, dtype, seed, _backend)

    def _options(self):
        return {"reset_after": self.reset_after}

    def _extra_repr(self):
        return [] if self.reset_after else ["reset_after=False"]


class RNNCell(_CellBase):
    """`torch.nn.RNNCell`: one Elman step, `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.

        h = cell(x, h=None)
        dx, dh = cell.backward(dh)
    """

    _kind, _gates = "rnn", 1

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype=np.float32, seed=None, _backend=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, dtype, seed, _backend)

    def _options(self):
        return {"nonlinearity": self.nonlinearity}

    def _extra_repr(self):
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity}"]
