"""Inference engine: a layer's weights packed once for this CPU (docs/engine.md).

    eng = layer.inference()                       # precision="float32"
    y, state = eng(x, state=None, lengths=None)   # the layer's contract in eval mode
    y_t, state = eng.step(x_t, state=None)        # one time step (unidirectional layers)

The engine snapshots the layer when it is made: every layer-direction's weights are
copied and packed into the layout of the kernels' micro-kernel (one C++ object each,
`_core.EngineLayer`), and the biases folded. Later changes to `layer.params` do not
reach the engine; make a new one. Calls release the GIL and share nothing mutable:
several Python threads may call one engine at once, with results bit-identical to
sequential calls.
"""
import numpy as np

from ._checks import check_layer_lengths, check_module_array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import _core             # the kernel modules' interface (_core.pyi)
else:
    from ._isa import core as _core

__all__ = ["InferenceEngine", "PRECISIONS"]

# Weight and GEMM formats an engine can run in (docs/precision.md). "float32": the layer's
# own floating dtype (float32 or float64), nothing reduced. "bfloat16": weights in bf16,
# activations rounded to bf16 per product, fp32 sums; "int8": dynamic quantisation (s8
# weights with a scale per output, activations quantised per row and step). Both keep
# inputs, outputs, states and gate math in float32, and need a float32 layer.
PRECISIONS = ("float32", "bfloat16", "int8")


class InferenceEngine:
    """Packed, read-only inference copy of a `LSTM`, `GRU` or `SimpleRNN` layer.

    Shapes as the layer (docs/layers.md): x (T, B, I) or (B, T, I) with batch_first; the
    state is h (L*D, B, H), or for an LSTM a tuple (h, c). Arrays must have the layer's dtype.
    """

    def __init__(self, layer, precision="float32", *, _path=None):
        # _path (private, for tests): the lowp kernel path to run, instead of the process's
        # default (FASTRNN_BF16_PATH / FASTRNN_INT8_PATH, or the best this CPU has).
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if getattr(layer, "proj_size", 0):
            raise ValueError(f"the InferenceEngine does not support an LSTM with proj_size="
                             f"{layer.proj_size} yet; call the layer inside fastrnn.no_grad() "
                             "for a forward that keeps no cache")
        layer._check_params()
        if precision != "float32":
            if layer.dtype != np.float32:
                raise ValueError(f"precision={precision!r} needs a float32 layer, this one is "
                                 f"{layer.dtype.name}; use precision='float32' or a float32 copy")
            if precision == "int8":
                self._check_finite(layer)
        self.precision, self._path = precision, _path
        self.kind = layer._kind
        self.states = layer._states
        self.input_size, self.hidden_size = layer.input_size, layer.hidden_size
        self.num_layers, self.num_directions = layer.num_layers, layer.num_directions
        self.batch_first, self.dtype = layer.batch_first, layer.dtype
        self._layer_name = type(layer).__name__
        self._layers = [[self._pack(layer, i, d) for d in range(self.num_directions)]
                        for i in range(self.num_layers)]
        # step(): every layer advanced in one C++ call (unidirectional engines only)
        self._stack = _core.EngineStack([ls[0] for ls in self._layers]) \
            if self.num_directions == 1 else None

    def _pack(self, layer, i, direction):
        names, p = layer._names(i, direction), layer.params
        opts = layer._cell_options(i, direction)
        GH = layer._gates * self.hidden_size

        def arr(key):
            a = p.get(names.get(key))
            return np.zeros(GH, self.dtype) if a is None else np.ascontiguousarray(a)
        peephole = opts.get("peephole")
        option = bool(opts.get("reset_after", False)) or opts.get("nonlinearity") == "relu"
        return _core.EngineLayer(self.kind, option, arr("w_ih"), arr("w_hh"), arr("b_ih"),
                                 arr("b_hh"), None if peephole is None else
                                 np.ascontiguousarray(peephole), bool(direction),
                                 self.precision, self._path)

    @staticmethod
    def _check_finite(layer):
        """int8 scales follow each output's largest weight: NaN/Inf would poison them."""
        for i in range(layer.num_layers):
            for d in range(layer.num_directions):
                names = layer._names(i, d)
                for key in ("w_ih", "w_hh"):
                    name = names.get(key)
                    if name is not None and not np.isfinite(layer.params[name]).all():
                        raise ValueError(f"precision='int8' needs finite weights: {name} has "
                                         "NaN or Inf")

    @property
    def path(self):
        """The kernel path of a bfloat16/int8 engine (e.g. 'avx512_bf16'), None for float32."""
        return self._layers[0][0].path

    def __repr__(self):
        return (f"InferenceEngine({self._layer_name}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, directions={self.num_directions}, "
                f"dtype={self.dtype.name}), precision={self.precision!r}"
                + (f", path={self.path!r})" if self.path else ")"))

    # -- checks -------------------------------------------------------------------------------

    def _array(self, name, a, shape, what):
        return check_module_array(name, a, self.dtype, shape, "engine", what)

    def _state(self, name, state, shape, what, writable=False):
        """`state` as one array per cell state (None: zeros), each checked against shape;
        `writable`: arrays the engine writes into, which must be C-contiguous (never copied)."""
        names = [f"{name}[{k}] ({s})" for k, s in enumerate(self.states)] \
            if len(self.states) > 1 else (name,)
        if state is None:
            return [np.zeros(shape, self.dtype) for _ in self.states]
        if len(self.states) == 1:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{name} must be a numpy.ndarray or None (a {self._layer_name} "
                                f"has one state h), got a {type(state).__name__}")
            values = (state,)
        elif isinstance(state, (tuple, list)) and len(state) == len(self.states):
            values = tuple(state)
        else:
            raise TypeError(f"{name} must be a tuple (h, c) or None for an LSTM, "
                            f"got {type(state).__name__}")
        checked = [self._array(n, v, shape, what) for n, v in zip(names, values)]
        if writable:
            for n, v in zip(names, checked):
                if not (v.flags.c_contiguous and v.flags.writeable):
                    raise ValueError(f"{n} must be a writeable C-contiguous array (written in place)")
            return checked
        return [np.ascontiguousarray(v) for v in checked]

    def _pack_states(self, states):
        return states[0] if len(states) == 1 else tuple(states)

    # -- a whole sequence ---------------------------------------------------------------------

    def __call__(self, x, state=None, lengths=None):
        """y, state = eng(x, state=None, lengths=None): the layer's eval-mode forward."""
        order = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray {order} of dtype {self.dtype.name}, "
                            f"got {type(x).__name__}")
        if x.ndim != 3:
            raise ValueError(f"x must be a rank-3 numpy.ndarray {order}, got shape {x.shape} "
                             "(for one time step use step())")
        T, B = (x.shape[1], x.shape[0]) if self.batch_first else x.shape[:2]
        x = self._array("x", x, x.shape[:2] + (self.input_size,), order)
        if lengths is not None:
            lengths = check_layer_lengths(lengths, T, B, self.batch_first)
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        s0 = self._state("state", state, (L * D, B, H), "(num_layers * num_directions, batch, "
                         "hidden_size)")
        inp = np.ascontiguousarray(x.transpose(1, 0, 2) if self.batch_first else x)
        finals = [np.empty((L * D, B, H), self.dtype) for _ in self.states]
        for i, directions in enumerate(self._layers):
            outs = []
            for d, e in enumerate(directions):
                k = i * D + d
                c0 = s0[1][k] if len(s0) > 1 else None
                out, *_ = e.run(inp, s0[0][k], c0, lengths, None, finals[0][k],
                                finals[1][k] if len(finals) > 1 else None)
                outs.append(out)
            inp = outs[0] if D == 1 else np.concatenate(outs, axis=2)
        y = np.ascontiguousarray(inp.transpose(1, 0, 2)) if self.batch_first else inp
        return y, self._pack_states(finals)

    # -- one time step ------------------------------------------------------------------------

    def step(self, x_t, state=None, *, out=None):
        """y_t, state = eng.step(x_t, state=None): one time step of a unidirectional engine.

        x_t (B, I), or (I,) for one sequence (then y_t is (H,) and the state (L, H)); the
        state as the layer's, (L, B, H) (LSTM: a tuple (h, c)). Never repacks; allocates
        only the returned arrays. `out=(y_t, state)` writes into arrays of those shapes and
        allocates nothing; `state` may be the input state itself (updated in place).
        Stepping T times equals one call on the sequence to round-off.
        """
        # One C++ call for every layer (_core.EngineStack): it checks what protects memory
        # and returns None, building no message, where an argument needs the checks below
        # (a wrong one, or one to make C-contiguous first). A step is a few µs of kernel
        # at small sizes: each µs of Python here would show (docs/engine.md).
        if self._stack is not None:
            done = self._stack.step(x_t, state, out)
            if done is not None:
                return done
        checked = self._step_arguments(x_t, state, out)  # raises first on a bidirectional engine
        done = self._stack.step(*checked)
        if done is None:  # the checks above pass only what EngineStack.step takes
            raise RuntimeError("fastrnn: internal error: the checked step arguments were declined")
        return done

    def _step_arguments(self, x_t, state, out):
        """(x_t, state, out) checked, with user-facing messages, and in the form
        `EngineStack.step` takes: C-contiguous arrays, the state None, an array or a tuple."""
        if self._stack is None:
            raise ValueError("step() needs a unidirectional engine: the backward direction of a "
                             "bidirectional layer starts from the last time step, so it cannot "
                             "advance one step at a time; call the engine on the whole sequence")
        if not isinstance(x_t, np.ndarray):
            raise TypeError(f"x_t must be a numpy.ndarray (B, input_size) or (input_size,) of "
                            f"dtype {self.dtype.name}, got {type(x_t).__name__}")
        if x_t.ndim not in (1, 2):
            raise ValueError(f"x_t must have rank 2 (B, input_size) or 1 (input_size,) (one "
                             f"time step), got shape {x_t.shape}")
        batched = x_t.ndim == 2
        L, H = self.num_layers, self.hidden_size
        lead = x_t.shape[:1] if batched else ()
        x_t = self._array("x_t", x_t, lead + (self.input_size,),
                          "(B, input_size)" if batched else "(input_size,)")
        sshape, swhat = (L,) + lead + (H,), "(num_layers, batch, hidden_size)" if batched \
            else "(num_layers, hidden_size)"
        if state is not None:
            state = self._pack_states(self._state("state", state, sshape, swhat))
        if out is not None:
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError("out must be a tuple (y_t, state) of preallocated arrays")
            y = self._array("out[0]", out[0], lead + (H,), "(the shape of y_t)")
            if not (y.flags.c_contiguous and y.flags.writeable):
                raise ValueError("out[0] must be a writeable C-contiguous array (written in place)")
            if out[1] is None:
                raise TypeError("out[1] must be the state arrays to write, not None")
            out = (y, self._pack_states(self._state("out[1]", out[1], sshape, swhat, writable=True)))
        return np.ascontiguousarray(x_t), state, out
