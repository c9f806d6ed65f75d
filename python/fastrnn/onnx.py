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

from .layers import GRU, LSTM, SimpleRNN

__all__ = ["export", "from_onnx", "Sequential"]

# fastrnn gate block k is ONNX block _TO_FASTRNN[op][k]; the inverse takes fastrnn to ONNX.
_TO_FASTRNN = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_TO_ONNX = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}
_PEEPHOLE = (0, 2, 1)             # [p_i, p_f, p_o] <-> [p_i, p_o, p_f], its own inverse
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_OPS = {LSTM: "LSTM", GRU: "GRU", SimpleRNN: "RNN"}
_DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh")}
_DEFAULT_OPSET = 17               # any onnxruntime >= 1.13 runs it; layout needs >= 14
_MIN_OPSET = 14

# Options a layer may grow that no ONNX node expresses, with the value that exports: a layer
# where getattr(layer, name, default) differs is refused, never written as a wrong file.
_UNEXPORTABLE = {"layer_norm": False, "proj_size": 0, "zoneout": 0, "zoneout_prob": 0,
                 "activation": "tanh", "recurrent_activation": "sigmoid",
                 "gate_activation": "sigmoid", "cell_activation": "tanh", "cell_clip": None,
                 "forget_bias": 0, "input_forget": False}


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
        raise TypeError(f"layer must be a fastrnn LSTM, GRU or SimpleRNN, got "
                        f"{type(layer).__name__}")
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

    opset: the ai.onnx opset (default 17, at least 14). dynamic_axes: True leaves T and B
    symbolic; a dict such as {"B": 1} fixes those given. `path`: also written there.
    An option no ONNX node expresses raises ValueError naming it.
    """
    onnx = _onnx()
    helper, numpy_helper, TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    _check_exportable(layer)
    if opset is None:
        opset = _DEFAULT_OPSET
    latest = onnx.defs.onnx_opset_version()
    if (not isinstance(opset, numbers.Integral) or isinstance(opset, bool)
            or not _MIN_OPSET <= opset <= latest):
        raise ValueError(f"opset must be an int in [{_MIN_OPSET}, {latest}] (this onnx "
                         f"package's newest), got {opset!r}")
    dims = _check_dynamic_axes(dynamic_axes)
    states, lengths = bool(states), bool(lengths)

    op = _OPS[type(layer)]
    L, D, H, G = layer.num_layers, layer.num_directions, layer.hidden_size, _GATES[op]
    elem = TP.DOUBLE if layer.dtype == np.float64 else TP.FLOAT
    lstm = op == "LSTM"
    T_, B_ = dims["T"], dims["B"]
    seq = [B_, T_] if layer.batch_first else [T_, B_]
    state_shape = [L * D, B_, H]

    nodes, inits, consts = [], [], set()

    def const(name, values):
        if name not in consts:
            consts.add(name)
            inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    inputs = [helper.make_tensor_value_info("x", elem, seq + [layer.input_size])]
    state_names = ["h0", "c0"] if lstm else ["h0"]
    if states:
        inputs += [helper.make_tensor_value_info(n, elem, state_shape) for n in state_names]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TP.INT32, [B_]))

    x = "x"
    if layer.batch_first:           # ONNX Runtime refuses layout=1: transpose once each way
        nodes.append(helper.make_node("Transpose", ["x"], ["x_tbi"], perm=[1, 0, 2]))
        x = "x_tbi"
    direction = "bidirectional" if D == 2 else "forward"
    attrs = {"hidden_size": H, "direction": direction}
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.reset_after)
    if op == "RNN":
        attrs["activations"] = [layer.nonlinearity.capitalize()] * D
    finals = [[] for _ in state_names]
    if states and lengths:
        # fastrnn's state after a length-0 sequence is its initial state; ONNX Runtime gives
        # zeros there (the ONNX spec leaves it open), so each h_n/c_n picks h0/c0 explicitly.
        inits.append(numpy_helper.from_array(np.zeros((), np.int32), "zero"))
        nodes += [helper.make_node("Equal", ["lengths", "zero"], ["empty"]),
                  helper.make_node("Unsqueeze", ["empty", const("axes02", [0, 2])], ["empty_1b1"])]
    for k in range(L):
        W, R, B, P = _node_weights(layer, k, op)
        names = [f"W_{k}", f"R_{k}"]
        inits += [numpy_helper.from_array(W, names[0]), numpy_helper.from_array(R, names[1])]
        if B is not None:
            inits.append(numpy_helper.from_array(B, f"B_{k}"))
        node_in = [x, *names, f"B_{k}" if B is not None else "",
                   "lengths" if lengths else ""]
        state_in = [""] * len(state_names)          # this node's rows of h0 (and c0)
        if states:
            state_in = state_names if L == 1 else [f"{s}_{k}" for s in state_names]
        if states and L > 1:
            nodes += [helper.make_node("Slice", [s, const(f"start_{k}", [k * D]),
                                                 const(f"end_{k}", [k * D + D]),
                                                 const("axis0", [0])], [sliced])
                      for s, sliced in zip(state_names, state_in)]
        node_in += state_in
        if P is not None:
            inits.append(numpy_helper.from_array(P, f"P_{k}"))
            node_in.append(f"P_{k}")
        while node_in[-1] == "":
            node_in.pop()
        outs = [f"Y_{k}"] + [f"{s}_n_{k}" for s in ("h", "c")[:len(state_names)]]
        nodes.append(helper.make_node(op, node_in, outs, name=f"{op.lower()}_{k}", **attrs))
        for f, o, s0 in zip(finals, outs[1:], state_in):
            if states and lengths:
                nodes.append(helper.make_node("Where", ["empty_1b1", s0, o], [o + "_kept"]))
                o += "_kept"
            f.append(o)
        # Y (T, D, B, H) -> (T, B, D*H), features [forward, backward]; the last layer's
        # output goes straight to the layer's layout.
        last = k == L - 1
        out = "y" if last else f"x_{k + 1}"
        if D == 1 and not (last and layer.batch_first):
            nodes.append(helper.make_node("Squeeze", [f"Y_{k}", const("axis1", [1])], [out]))
        else:
            perm = [2, 0, 1, 3] if last and layer.batch_first else [0, 2, 1, 3]
            nodes += [helper.make_node("Transpose", [f"Y_{k}"], [f"Yt_{k}"], perm=perm),
                      helper.make_node("Reshape", [f"Yt_{k}", const("features", [0, 0, D * H])],
                                       [out])]
        x = out
    for s, f in zip(("h_n", "c_n"), finals):
        nodes.append(helper.make_node("Concat", f, [s], axis=0) if L > 1
                     else helper.make_node("Identity", f, [s]))

    outputs = [helper.make_tensor_value_info("y", elem, seq + [D * H])]
    outputs += [helper.make_tensor_value_info(s, elem, state_shape)
                for s in ("h_n", "c_n")[:len(state_names)]]
    graph = helper.make_graph(nodes, f"fastrnn_{op.lower()}", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastrnn",
                              ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string=repr(layer))
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
