"""ONNX export and import of the recurrent layers (DESIGN §8; docs/interop.md).

    export(layer, path=None, *, opset=None, dynamic_axes=True, states=False, lengths=False)
        -> onnx.ModelProto: one standard LSTM / GRU / RNN node per layer, so ONNX Runtime
           runs its fused kernels
    from_onnx(model_or_path) -> the fastrnn layer (or a `Sequential` of layers) that
           computes the graph's chain of LSTM / GRU / RNN nodes

`onnx` is imported by these functions, never by `import fastrnn` (extra `[onnx]`).

Gate orders (rows of W and R, DESIGN §2 vs the ONNX operator specs): fastrnn LSTM i, f, g, o
is ONNX i, o, f, c; GRU r, z, n is ONNX z, r, h; peepholes fastrnn rows p_i, p_f, p_o are
ONNX P = [p_i, p_o, p_f]. ONNX B is [Wb; Rb] = [b_ih; b_hh]. GRU `linear_before_reset=1`
is reset_after=True; with 0, ONNX adds Rbh outside the reset gate as fastrnn's reset-before
GRU does. ONNX Y is (T, D, B, H) and Y_h (D, B, H); fastrnn's `out` is (T, B, D*H).
"""

import numbers
import os

import numpy as np

from ._checks import check_lengths
from .layers import GRU, LSTM, SimpleRNN

__all__ = ["export", "from_onnx", "Sequential"]

# fastrnn gate block k is ONNX block _TO_FASTRNN[op][k]; the inverse takes fastrnn to ONNX.
_TO_FASTRNN = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_TO_ONNX = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}
_PEEPHOLE = (0, 2, 1)             # [p_i, p_f, p_o] <-> [p_i, p_o, p_f], its own inverse
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_OPS = {LSTM: "LSTM", GRU: "GRU", SimpleRNN: "RNN"}
_DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh")}
_DEFAULT_OPSET = 17               # any onnxruntime >= 1.13 runs it
_MIN_OPSET = 14                   # LSTM/GRU/RNN-14 (the current versions), Squeeze axes input

# Options a layer may grow that no ONNX node expresses, with the value that exports: a layer
# where getattr(layer, name, default) differs is refused, never written as a wrong file.
_UNEXPORTABLE = {"layer_norm": False, "proj_size": 0, "zoneout": 0, "zoneout_prob": 0,
                 "activation": "tanh", "recurrent_activation": "sigmoid",
                 "gate_activation": "sigmoid", "cell_activation": "tanh", "cell_clip": None,
                 "forget_bias": 0, "input_forget": False, "leak_rate": 1.0,
                 "go_backwards": False, "merge_mode": "concat"}


def _onnx():
    try:
        import onnx
    except ImportError as err:
        raise ImportError("fastrnn.onnx needs the onnx package: pip install 'fastrnn[onnx]' "
                          "(or pip install onnx)") from err
    return onnx


# -- export ----------------------------------------------------------------------------------

def _check_exportable(layer):
    if type(layer) not in _OPS:
        raise TypeError(f"layer must be a fastrnn LSTM, GRU, SimpleRNN or "
                        f"fastrnn.onnx.Sequential, got {type(layer).__name__}")
    for name, default in _UNEXPORTABLE.items():
        value = getattr(layer, name, default)
        if value != default:
            raise ValueError(f"export: the layer has {name}={value!r}, which no ONNX "
                             f"LSTM/GRU/RNN node expresses (only {name}={default!r} exports)")
    if isinstance(layer, SimpleRNN) and layer.nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"export: nonlinearity={layer.nonlinearity!r} has no ONNX RNN "
                         "activation here (tanh and relu export)")
    # Every parameter must be one a node holds: a future option with weights of its own is
    # refused by name rather than dropped.
    known = {n for l in range(layer.num_layers) for d in range(layer.num_directions)
             for n in layer._names(l, d).values()}
    extra = sorted(set(layer.params) - known)
    if extra:
        raise ValueError(f"export: the layer has parameters {extra} that no ONNX "
                         "LSTM/GRU/RNN node holds")
    layer._check_params()


def _check_dynamic_axes(dynamic_axes):
    if dynamic_axes is True:
        return {"T": "T", "B": "B"}
    if isinstance(dynamic_axes, dict) and set(dynamic_axes) <= {"T", "B"}:
        dims = {"T": "T", "B": "B"}
        for k, v in dynamic_axes.items():
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ValueError(f"dynamic_axes[{k!r}] must be a positive int (a fixed size), "
                                 f"got {v!r}")
            dims[k] = int(v)
        return dims
    raise ValueError("dynamic_axes must be True (time and batch axes named 'T' and 'B') or a "
                     "dict fixing some of them, e.g. {'B': 1}; got " + repr(dynamic_axes))


def _node_weights(layer, k, op):
    """ONNX W, R, B (or None), P (or None) of layer k, directions stacked on axis 0."""
    H, order = layer.hidden_size, _TO_ONNX[op]

    def gates(a):
        return np.concatenate([a[g * H:(g + 1) * H] for g in order])

    per_dir = [{key: layer.params[name] for key, name in layer._names(k, d).items()}
               for d in range(layer.num_directions)]
    W = np.stack([gates(p["w_ih"]) for p in per_dir])
    R = np.stack([gates(p["w_hh"]) for p in per_dir])
    B = (np.stack([np.concatenate([gates(p["b_ih"]), gates(p["b_hh"])]) for p in per_dir])
         if layer.bias else None)
    P = (np.stack([p["peephole"][list(_PEEPHOLE)].reshape(-1) for p in per_dir])
         if "peephole" in per_dir[0] else None)
    return W, R, B, P


def export(layer, path=None, *, opset=None, dynamic_axes=True, states=False, lengths=False):
    """An ONNX model computing `layer` in inference mode (dropout is training-only).

    Graph inputs: `x` in the layer's layout ((T, B, I), or (B, T, I) with batch_first);
    with `states=True` also `h0` (and `c0` for an LSTM), (L*D, B, H); with `lengths=True`
    also `lengths` (B,) int32 (fastrnn's `lengths`, ONNX `sequence_lens`). Outputs: `y` in
    the layer's layout ((T, B, D*H) / (B, T, D*H)), `h_n` (and `c_n`), (L*D, B, H).
    The element type is the layer's dtype (ONNX Runtime's CPU nodes run float32 only).
    A `Sequential` exports too, its states per layer j as `h0_j`/`c0_j` and `h_n_j`/`c_n_j`.

    opset: the ai.onnx opset (default 17, at least 14). dynamic_axes: True leaves T and B
    symbolic; a dict such as {"B": 1} fixes those given. `path`: also written there.
    An option no ONNX node expresses raises ValueError naming it.
    """
    if isinstance(layer, Sequential):
        parts = list(zip(layer.layers, layer.reverse, (f"_{j}" for j in range(len(layer.layers)))))
        batch_first = layer.batch_first
    else:
        parts, batch_first = [(layer, False, "")], getattr(layer, "batch_first", False)
    for part, _, _ in parts:
        _check_exportable(part)
    if len({part.dtype for part, _, _ in parts}) != 1:
        raise ValueError("export: the layers of the Sequential have different dtypes; one ONNX "
                         "graph chains them in one element type")
    onnx = _onnx()
    helper, numpy_helper, TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    if opset is None:
        opset = _DEFAULT_OPSET
    latest = onnx.defs.onnx_opset_version()
    if (not isinstance(opset, numbers.Integral) or isinstance(opset, bool)
            or not _MIN_OPSET <= opset <= latest):
        raise ValueError(f"opset must be an int in [{_MIN_OPSET}, {latest}] (this onnx "
                         f"package's newest), got {opset!r}")
    dims = _check_dynamic_axes(dynamic_axes)
    states, lengths = bool(states), bool(lengths)

    elem = TP.DOUBLE if parts[0][0].dtype == np.float64 else TP.FLOAT
    T_, B_ = dims["T"], dims["B"]
    seq = [B_, T_] if batch_first else [T_, B_]
    nodes, inits, inputs, outputs = [], [], [], []

    def const(values):
        """An int64 initializer holding `values`, named by them (so written once)."""
        name = "i64_" + "_".join(str(v) for v in values).replace("-", "m")
        if name not in {i.name for i in inits}:
            inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    inputs.append(helper.make_tensor_value_info("x", elem, seq + [parts[0][0].input_size]))
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TP.INT32, [B_]))
    x = "x"
    if batch_first:                 # ONNX Runtime refuses layout=1: transpose once each way
        nodes.append(helper.make_node("Transpose", ["x"], ["x_tbi"], perm=[1, 0, 2]))
        x = "x_tbi"
    if states and lengths:
        # fastrnn's state after a length-0 sequence is its initial state; ONNX Runtime gives
        # zeros there (the ONNX spec leaves it open), so each h_n/c_n picks h0/c0 explicitly.
        inits.append(numpy_helper.from_array(np.zeros((), np.int32), "zero"))
        nodes += [helper.make_node("Equal", ["lengths", "zero"], ["empty"]),
                  helper.make_node("Unsqueeze", ["empty", const([0, 2])], ["empty_1b1"])]
    n, total = 0, sum(part.num_layers for part, _, _ in parts)
    for part, reverse, sfx in parts:
        op = _OPS[type(part)]
        L, D, H = part.num_layers, part.num_directions, part.hidden_size
        state_names = [f"{s}0{sfx}" for s in ("h", "c")[:len(part._states)]]
        final_names = [f"{s}_n{sfx}" for s in ("h", "c")[:len(part._states)]]
        state_shape = [L * D, B_, H]
        if states:
            inputs += [helper.make_tensor_value_info(s, elem, state_shape) for s in state_names]
        outputs += [helper.make_tensor_value_info(s, elem, state_shape) for s in final_names]
        attrs = {"hidden_size": H,
                 "direction": "reverse" if reverse else ("bidirectional" if D == 2 else "forward")}
        if op == "GRU":
            attrs["linear_before_reset"] = int(part.reset_after)
        if op == "RNN":
            attrs["activations"] = [part.nonlinearity.capitalize()] * D
        finals = [[] for _ in state_names]
        for k in range(L):
            W, R, B, P = _node_weights(part, k, op)
            inits += [numpy_helper.from_array(W, f"W_{n}"), numpy_helper.from_array(R, f"R_{n}")]
            if B is not None:
                inits.append(numpy_helper.from_array(B, f"B_{n}"))
            node_in = [x, f"W_{n}", f"R_{n}", f"B_{n}" if B is not None else "",
                       "lengths" if lengths else ""]
            state_in = [""] * len(state_names)          # this node's rows of h0 (and c0)
            if states:
                state_in = state_names if L == 1 else [f"{s}_{k}" for s in state_names]
            if states and L > 1:
                nodes += [helper.make_node("Slice", [s, const([k * D]), const([k * D + D]),
                                                     const([0])], [sliced])
                          for s, sliced in zip(state_names, state_in)]
            node_in += state_in
            if P is not None:
                inits.append(numpy_helper.from_array(P, f"P_{n}"))
                node_in.append(f"P_{n}")
            while node_in[-1] == "":
                node_in.pop()
            outs = [f"Y_{n}"] + [f"{s}_{n}" for s in final_names]
            nodes.append(helper.make_node(op, node_in, outs, name=f"{op.lower()}_{n}", **attrs))
            for f, o, s0 in zip(finals, outs[1:], state_in):
                if states and lengths:
                    nodes.append(helper.make_node("Where", ["empty_1b1", s0, o], [o + "_kept"]))
                    o += "_kept"
                f.append(o)
            # Y (T, D, B, H) -> (T, B, D*H), features [forward, backward]; the last node's
            # output goes straight to the layout of x.
            last = n == total - 1
            out = "y" if last else f"x_{n + 1}"
            if D == 1 and not (last and batch_first):
                nodes.append(helper.make_node("Squeeze", [f"Y_{n}", const([1])], [out]))
            else:
                perm = [2, 0, 1, 3] if last and batch_first else [0, 2, 1, 3]
                nodes += [helper.make_node("Transpose", [f"Y_{n}"], [f"Yt_{n}"], perm=perm),
                          helper.make_node("Reshape", [f"Yt_{n}", const([0, 0, D * H])], [out])]
            x, n = out, n + 1
        for s, f in zip(final_names, finals):
            nodes.append(helper.make_node("Concat", f, [s], axis=0) if L > 1
                         else helper.make_node("Identity", f, [s]))

    last = parts[-1][0]
    outputs.insert(0, helper.make_tensor_value_info("y", elem, seq + [last.num_directions
                                                                       * last.hidden_size]))
    graph = helper.make_graph(nodes, "fastrnn", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastrnn",
                              ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string=repr(layer))
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


# -- import ----------------------------------------------------------------------------------

class Sequential:
    """Recurrent layers run one after another, inference only: what `from_onnx` returns for
    a chain of nodes that one fastrnn layer cannot hold (nodes of different kinds, sizes or
    options, or an ONNX `direction="reverse"` node).

        out, states = seq(x, hx=None, lengths=None)

    `layers`: fastrnn layers with batch_first=False; layer k reads layer k-1's output.
    `reverse[k]`: layer k (unidirectional) runs backward in time only, from lengths[b]-1 down
    to 0, its output kept in time order (ONNX `direction="reverse"`). `batch_first`: x and
    out are (B, T, .) instead of (T, B, .). `hx` and the returned `states` are lists with one
    entry per layer, each what that layer takes and returns (an array, or (h, c) for an LSTM;
    None for zeros).
    """

    def __init__(self, layers, reverse=None, batch_first=False):
        self.layers = list(layers)
        if not self.layers or not all(type(l) in _OPS for l in self.layers):
            raise TypeError("layers must be a non-empty list of fastrnn LSTM, GRU or SimpleRNN")
        if any(l.batch_first for l in self.layers):
            raise ValueError("the layers of a Sequential must have batch_first=False (the "
                             "container's batch_first sets the layout of x and out)")
        self.reverse = [False] * len(self.layers) if reverse is None else [bool(r) for r in reverse]
        if len(self.reverse) != len(self.layers):
            raise ValueError(f"reverse must have one flag per layer ({len(self.layers)}), "
                             f"got {len(self.reverse)}")
        for layer, rev in zip(self.layers, self.reverse):
            if rev and layer.num_directions != 1:
                raise ValueError("reverse=True needs a unidirectional layer")
        self.batch_first = bool(batch_first)

    def __repr__(self):
        return (f"Sequential({self.layers!r}, reverse={self.reverse!r}, "
                f"batch_first={self.batch_first})")

    def __call__(self, x, hx=None, lengths=None):
        order = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray {order}, got {type(x).__name__}")
        if x.ndim != 3:
            raise ValueError(f"x must be a rank-3 numpy.ndarray {order}, got shape {x.shape}")
        n = len(self.layers)
        if hx is None:
            hx = [None] * n
        if not isinstance(hx, (list, tuple)) or len(hx) != n:
            raise TypeError(f"hx must be None or a list of {n} states (one per layer), got "
                            f"{type(hx).__name__}" + (f" of {len(hx)}" if isinstance(
                                hx, (list, tuple)) else ""))
        y = x.transpose(1, 0, 2) if self.batch_first else x
        T, B = y.shape[:2]
        lengths = check_lengths(lengths, T, B)
        flip = None
        states = []
        for layer, rev, h in zip(self.layers, self.reverse, hx):
            if rev:
                if flip is None:
                    flip = _flip_index(T, B, lengths)
                y = np.take_along_axis(y, flip, axis=0)
            y, state = layer(y, h, lengths=lengths, training=False)
            if rev:                  # the same permutation undoes itself; padding stays zero
                y = np.take_along_axis(y, flip, axis=0)
            states.append(state)
        out = np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y
        return out, states


def _flip_index(T, B, lengths):
    """(T, B, 1) time index reversing each sequence's first lengths[b] steps."""
    t = np.arange(T)[:, None]
    n = np.full(B, T) if lengths is None else lengths
    return np.where(t < n, n - 1 - t, t)[:, :, None]


_INPUTS = {"LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
           "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
           "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h")}
_ATTRS = {"activation_alpha", "activation_beta", "activations", "clip", "direction",
          "hidden_size", "layout"}
_OP_ATTRS = {"LSTM": {"input_forget"}, "GRU": {"linear_before_reset"}, "RNN": set()}
_GLUE = ("Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze")


class _Graph:
    """Constants, graph inputs and producers of an ONNX graph."""

    def __init__(self, onnx, graph):
        self.onnx = onnx
        to_array = onnx.numpy_helper.to_array
        self.consts = {i.name: to_array(i) for i in graph.initializer}
        for n in graph.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = to_array(a.t)
        self.inputs = [i.name for i in graph.input if i.name not in self.consts]
        self.producer = {o: n for n in graph.node for o in n.output if o}

    def attrs(self, node):
        get = self.onnx.helper.get_attribute_value
        return {a.name: get(a) for a in node.attribute}


def _where(node):
    return f"{node.op_type} node {node.name or '(unnamed)'!r}"


def _read_node(g, node):
    """One recurrent node -> its options and fastrnn-ordered weights per direction."""
    op, where = node.op_type, _where(node)
    attrs = g.attrs(node)
    unknown = sorted(set(attrs) - _ATTRS - _OP_ATTRS[op])
    if unknown:
        raise ValueError(f"{where} has attribute(s) {unknown}, unknown to the ONNX {op} spec")
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            raise ValueError(f"{where} has attribute {name}={attrs[name]!r}: fastrnn has no "
                             f"{'cell clipping' if name == 'clip' else 'activation parameters'}"
                             " (remove the attribute or keep it unconverted)")
    if attrs.get("input_forget", 0):
        raise ValueError(f"{where} has input_forget={attrs['input_forget']}: coupled input "
                         "and forget gates have no fastrnn equivalent")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"{where} has direction={direction!r}; expected forward, reverse or "
                         "bidirectional")
    D = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{where} has layout={layout}; expected 0 or 1")

    opts = {}
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    acts = [a.lower() for a in acts]
    if op == "RNN":
        acts = acts or ["tanh"] * D
        if len(acts) != D or acts[0] not in ("tanh", "relu") or len(set(acts)) != 1:
            raise ValueError(f"{where} has activations={acts}; fastrnn's SimpleRNN takes one "
                             "of Tanh or Relu, the same in both directions")
        opts["nonlinearity"] = acts[0]
    elif acts and acts != list(_DEFAULT_ACTIVATIONS[op]) * D:
        raise ValueError(f"{where} has activations={acts}; fastrnn's {op} has the default "
                         f"{list(_DEFAULT_ACTIVATIONS[op]) * D} only")
    if op == "GRU":
        lbr = attrs.get("linear_before_reset", 0)
        if lbr not in (0, 1):
            raise ValueError(f"{where} has linear_before_reset={lbr}; expected 0 or 1")
        opts["reset_after"] = bool(lbr)

    names = _INPUTS[op]
    given = dict(zip(names, node.input))
    if len(node.input) > len(names):
        raise ValueError(f"{where} has {len(node.input)} inputs; ONNX {op} has at most "
                         f"{len(names)} ({', '.join(names)})")
    for name in ("X", "W", "R"):
        if not given.get(name):
            raise ValueError(f"{where} lacks its required input {name}")

    def weight(name):
        if not given.get(name):
            return None
        if given[name] not in g.consts:
            raise ValueError(f"{where}: input {name} ({given[name]!r}) is not an initializer "
                             "or Constant; from_onnx needs the weights as constants")
        a = g.consts[given[name]]
        if a.dtype not in (np.float16, np.float32, np.float64):
            raise ValueError(f"{where}: input {name} has dtype {a.dtype}; expected float32, "
                             "float64 or float16")
        return a

    for name in ("sequence_lens", "initial_h", "initial_c"):
        if given.get(name) in g.consts:
            raise ValueError(f"{where}: input {name} is a constant; from_onnx maps it to a "
                             "call argument, so it must be a graph input (or computed from one)")
    W, R, Bias, P = weight("W"), weight("R"), weight("B"), weight("P")
    G = _GATES[op]
    if R.ndim != 3 or R.shape[0] != D or R.shape[1] != G * R.shape[2] or R.shape[2] < 1:
        raise ValueError(f"{where}: R has shape {R.shape}; expected (num_directions={D}, "
                         f"{G}*hidden_size, hidden_size)")
    H = R.shape[2]
    if attrs.get("hidden_size", H) != H:
        raise ValueError(f"{where}: hidden_size={attrs['hidden_size']} but R has shape "
                         f"{R.shape}")
    if W.ndim != 3 or W.shape[:2] != (D, G * H) or W.shape[2] < 1:
        raise ValueError(f"{where}: W has shape {W.shape}; expected ({D}, {G * H}, input_size)")
    if Bias is not None and Bias.shape != (D, 2 * G * H):
        raise ValueError(f"{where}: B has shape {Bias.shape}; expected ({D}, {2 * G * H})")
    if P is not None and P.shape != (D, 3 * H):
        raise ValueError(f"{where}: P has shape {P.shape}; expected ({D}, {3 * H})")
    if P is not None:
        opts["peephole"] = True
    dtype = np.float64 if W.dtype == np.float64 else np.float32

    order = _TO_FASTRNN[op]

    def gates(a):
        return np.concatenate([a[k * H:(k + 1) * H] for k in order]).astype(dtype)

    params = []
    for d in range(D):
        p = {"w_ih": gates(W[d]), "w_hh": gates(R[d])}
        if Bias is not None:
            p["b_ih"], p["b_hh"] = gates(Bias[d, :G * H]), gates(Bias[d, G * H:])
        if P is not None:
            p["peephole"] = P[d].reshape(3, H)[list(_PEEPHOLE)].astype(dtype)
        params.append(p)
    return dict(node=node, op=op, D=D, reverse=direction == "reverse", layout=layout, H=H,
                I=W.shape[2], bias=Bias is not None, opts=opts, dtype=dtype, params=params,
                lengths=bool(given.get("sequence_lens")))


def _glue_path(g, name, sources):
    """The shape-only nodes from one of `sources` to tensor `name`, in the order they run."""
    path = []
    while name not in sources:
        node = g.producer.get(name)
        if node is None or node.op_type not in _GLUE:
            what = "a graph input" if node is None else _where(node)
            raise ValueError(f"from_onnx reads a chain of LSTM/GRU/RNN nodes, each reading the "
                             f"previous one's Y (or the graph input) through {', '.join(_GLUE)} "
                             f"only; tensor {name!r} comes from {what}")
        path.append(node)
        name = node.input[0]
    return name, path[::-1]


def _run_glue(g, path, a):
    """`path` applied to array `a` (the shape ops only need their constant operands)."""
    for node in path:
        attrs, op = g.attrs(node), node.op_type
        operand = g.consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if len(node.input) > 1 and node.input[1] and operand is None:
            return None                                   # a shape computed at run time
        if op == "Transpose":
            a = a.transpose(attrs.get("perm"))
        elif op == "Squeeze":
            axes = operand if operand is not None else attrs.get("axes")
            a = np.squeeze(a, axis=None if axes is None else tuple(int(v) for v in axes))
        elif op == "Unsqueeze":
            axes = operand if operand is not None else attrs["axes"]
            rank = a.ndim + len(axes)
            for ax in sorted(int(v) % rank for v in axes):
                a = np.expand_dims(a, ax)
        elif op == "Reshape":
            shape = [int(v) for v in operand]
            if not attrs.get("allowzero", 0):
                shape = [a.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            a = a.reshape(shape)
    return a


def _check_glue(g, path, source, expected):
    try:
        got = _run_glue(g, path, source)
    except (ValueError, IndexError, KeyError, TypeError):
        got = None
    return got is not None and got.shape == expected.shape and np.array_equal(got, expected)


def from_onnx(model_or_path):
    """The fastrnn layer computing the chain of LSTM/GRU/RNN nodes of an ONNX model.

    `model_or_path`: an onnx.ModelProto or a path to a .onnx file. Node k must read node
    k-1's Y (node 0 the graph input) through shape-only nodes (Transpose, Reshape, Squeeze,
    Unsqueeze, Identity) that lay it out as (T, B, D*H); other nodes of the graph are not
    imported. Returns one layer (num_layers = the number of nodes, in inference mode) when the
    nodes share kind, sizes and options, else a `Sequential`; a `direction="reverse"` node
    also makes a `Sequential`. batch_first follows the graph input's layout.

    `layer(x, state, lengths=...)` then gives the nodes' Y as (T, B, D*H) (zeros past each
    length) and their Y_h, rows stacked in node order (L*D, B, H): sequence_lens,
    initial_h and initial_c of the nodes become the call's `lengths` and state.
    Refused with ValueError naming it: clip, input_forget, activation_alpha/beta, other
    activations than the defaults (RNN: Tanh or Relu), non-constant weights, wrong shapes.
    """
    onnx = _onnx()
    if isinstance(model_or_path, (str, os.PathLike)):
        model = onnx.load(os.fspath(model_or_path))
    elif isinstance(model_or_path, onnx.ModelProto):
        model = model_or_path
    else:
        raise TypeError("model_or_path must be an onnx.ModelProto or a path to an .onnx file, "
                        f"got {type(model_or_path).__name__}")
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 7:
            raise ValueError(f"the model imports ai.onnx opset {opset.version}; from_onnx "
                             "reads opset 7 and newer")
    g = _Graph(onnx, model.graph)
    nodes = [n for n in model.graph.node
             if n.op_type in _INPUTS and n.domain in ("", "ai.onnx")]
    if not nodes:
        raise ValueError("the model has no LSTM, GRU or RNN node")
    stages = [_read_node(g, n) for n in nodes]
    if len({s["lengths"] for s in stages}) != 1:
        raise ValueError("some recurrent nodes have sequence_lens and some do not; fastrnn's "
                         "lengths apply to every layer")
    batch_first = _check_chain(g, stages)

    first = stages[0]
    same = all(s["op"] == first["op"] and s["H"] == first["H"] and s["D"] == first["D"]
               and s["bias"] == first["bias"] and s["opts"] == first["opts"]
               and s["dtype"] == first["dtype"] and not s["reverse"] for s in stages)
    if same:
        return _build(first, first["I"], len(stages), batch_first, stages)
    return Sequential([_build(s, s["I"], 1, False, [s]) for s in stages],
                      [s["reverse"] for s in stages], batch_first)


def _build(s, input_size, num_layers, batch_first, stages):
    cls = {"LSTM": LSTM, "GRU": GRU, "RNN": SimpleRNN}[s["op"]]
    layer = cls(input_size, s["H"], num_layers, bias=s["bias"], batch_first=batch_first,
                bidirectional=s["D"] == 2, dtype=s["dtype"], **s["opts"])
    layer.load_state_dict({layer._names(k, d)[key]: value
                           for k, st in enumerate(stages)
                           for d, p in enumerate(st["params"]) for key, value in p.items()})
    return layer.eval()


def _check_chain(g, stages):
    """Check that each node reads the previous node's output (node 0 the graph input) laid
    out as (T, B, D*H); returns batch_first, the graph input's layout."""
    T, B = 5, 3                          # distinct sizes, so no transpose passes for another
    batch_first = None
    for k, s in enumerate(stages):
        x_name = s["node"].input[0]
        if k == 0:
            source, path = _glue_path(g, x_name, set(g.inputs))
            x_tm = np.arange(T * B * s["I"]).reshape(T, B, s["I"])
            want = x_tm if s["layout"] == 0 else x_tm.transpose(1, 0, 2)
            for bf in (False, True):
                if _check_glue(g, path, x_tm.transpose(1, 0, 2) if bf else x_tm, want):
                    batch_first = bf
                    break
            else:
                raise ValueError(f"the input of {_where(s['node'])} is graph input {source!r} "
                                 "rearranged in a way that is neither (T, B, I) nor (B, T, I)")
            continue
        prev = stages[k - 1]
        y_name = prev["node"].output[0] if prev["node"].output else ""
        if not y_name:
            raise ValueError(f"{_where(prev['node'])} has no Y output, yet "
                             f"{_where(s['node'])} follows it")
        _, path = _glue_path(g, x_name, {y_name})
        D, H = prev["D"], prev["H"]
        y = np.arange(T * D * B * H).reshape(T, D, B, H)        # ONNX Y, layout 0
        x_tm = y.transpose(0, 2, 1, 3).reshape(T, B, D * H)     # fastrnn's (T, B, D*H)
        source = y if prev["layout"] == 0 else y.transpose(2, 0, 1, 3)
        want = x_tm if s["layout"] == 0 else x_tm.transpose(1, 0, 2)
        if s["I"] != D * H or not _check_glue(g, path, source, want):
            raise ValueError(f"{_where(s['node'])} does not read {_where(prev['node'])}'s "
                             f"output laid out as (T, B, D*H) = (T, B, {D * H}) (input_size "
                             f"{s['I']})")
    return batch_first
