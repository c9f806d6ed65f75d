"""ONNX export and import (fastrnn.onnx, DESIGN §8) checked against ONNX Runtime.

The oracle is ONNX Runtime's CPU LSTM/GRU/RNN kernels: an exported layer must give the
layer's own outputs there, and a node built here with onnx.helper straight from the ONNX
operator spec (gate orders i,o,f,c / z,r,h written out below, not taken from the exporter)
must give ORT's Y and Y_h when imported. ORT runs float32 only.

Tolerance 1e-5 (float32): both sides compute the same float32 products in a different
summation order; with PyTorch's initialisation (|w| <= 1/sqrt(H)) and H <= 6 every output
is below 1 in magnitude (relu included) and the observed difference is under 1e-6.
"""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn import GRU, LSTM, SimpleRNN  # noqa: E402
from fastrnn.onnx import Sequential, export, from_onnx  # noqa: E402

T, B, I, H = 5, 3, 4, 6
ATOL = 1e-5
LENGTHS = np.array([5, 1, 3])           # >= 1 where ORT is compared with an initial state
CELLS = {"lstm": (LSTM, {}), "lstm_peephole": (LSTM, {"peephole": True}),
         "gru": (GRU, {}), "gru_reset_before": (GRU, {"reset_after": False}),
         "rnn_tanh": (SimpleRNN, {}), "rnn_relu": (SimpleRNN, {"nonlinearity": "relu"})}


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def state_tuple(hn):
    return list(hn) if isinstance(hn, tuple) else [hn]


def test_importing_fastrnn_imports_no_onnx():
    code = "import sys, fastrnn; print([m for m in ('onnx', 'onnxruntime', 'fastrnn.onnx') if m in sys.modules])"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.strip() == "[]"


# -- export against ONNX Runtime ---------------------------------------------------------------

STRUCTURES = [(1, False, False), (1, True, True), (2, False, True), (2, True, False)]
EXTRAS = [(True, False, False), (False, True, True), (True, True, True)]


@pytest.mark.parametrize("bias, states, lengths", EXTRAS, ids=["bias", "nobias_states_lengths", "bias_states_lengths"])
@pytest.mark.parametrize("L, bidirectional, batch_first", STRUCTURES, ids=["L1", "L1_bi_bf", "L2_bf", "L2_bi"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_export_matches_the_layer_in_onnxruntime(cell, L, bidirectional, batch_first, bias,
                                                 states, lengths):
    cls, opts = CELLS[cell]
    layer = cls(I, H, L, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
                seed=3, **opts).eval()
    model = export(layer, states=states, lengths=lengths)
    onnx.checker.check_model(model, full_check=True)
    op = {LSTM: "LSTM", GRU: "GRU", SimpleRNN: "RNN"}[cls]
    rec = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN", "Loop", "Scan")]
    assert [n.op_type for n in rec] == [op] * L          # one fused node per layer
    D = 2 if bidirectional else 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    feed, hx, lens = {"x": x}, None, None
    if states:
        hs = [rng.standard_normal((L * D, B, H)).astype(np.float32) for _ in layer._states]
        feed.update(zip(("h0", "c0"), hs))
        hx = hs[0] if len(hs) == 1 else tuple(hs)
    if lengths:
        lens = np.array([5, 0, 3])     # length 0: the exported graph keeps h0 as fastrnn does
        feed["lengths"] = lens.astype(np.int32)
    got = session(model).run(None, feed)
    out, hn = layer(x, hx, lengths=lens)
    want = [out] + state_tuple(hn)
    assert [o.name for o in model.graph.output] == ["y", "h_n", "c_n"][:len(want)]
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)


def test_export_float64_writes_double_and_the_onnx_reference_agrees():
    # ORT's CPU recurrent kernels are float32 only; onnx's own reference evaluator runs double.
    from onnx.reference import ReferenceEvaluator
    layer = LSTM(I, H, 2, bidirectional=True, dtype=np.float64, seed=0).eval()
    model = export(layer)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    x = np.random.default_rng(0).standard_normal((T, B, I))
    y, h, c = ReferenceEvaluator(model).run(None, {"x": x})
    out, (hn, cn) = layer(x)
    for g, w in ((y, out), (h, hn), (c, cn)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)   # float64 throughout


def test_export_options(tmp_path):
    layer = GRU(I, H, batch_first=True, seed=0)
    for opset in (14, onnx.defs.onnx_opset_version()):
        model = export(layer, opset=opset)
        assert model.opset_import[0].version == opset
        onnx.checker.check_model(model, full_check=True)
    dims = export(layer, dynamic_axes={"B": 1}).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == [1, "T", I]
    path = tmp_path / "gru.onnx"
    model = export(layer, path)
    assert onnx.load(str(path)) == model
    for bad, match in ((13, "opset must be an int in"), (1000, "opset must be"), ("17", "opset")):
        with pytest.raises(ValueError, match=match):
            export(layer, opset=bad)
    for bad in (False, {"N": 3}, {"B": 0}):
        with pytest.raises(ValueError, match="dynamic_axes"):
            export(layer, dynamic_axes=bad)


@pytest.mark.parametrize("option, value", [("layer_norm", True), ("proj_size", 4),
                                           ("recurrent_activation", "hard_sigmoid"),
                                           ("zoneout", 0.1), ("activation", "gelu")])
def test_export_refuses_options_onnx_nodes_lack(option, value):
    layer = LSTM(I, H)
    setattr(layer, option, value)         # as a future option would set it
    with pytest.raises(ValueError, match=f"{option}={value!r}"):
        export(layer)


def test_export_refuses_unknown_parameters_and_other_objects():
    layer = LSTM(I, H)
    layer.params["weight_hr_l0"] = np.zeros((H, H), np.float32)
    with pytest.raises(ValueError, match=r"parameters \['weight_hr_l0'\]"):
        export(layer)
    rnn = SimpleRNN(I, H)
    rnn.nonlinearity = "gelu"
    with pytest.raises(ValueError, match="nonlinearity='gelu'"):
        export(rnn)
    with pytest.raises(TypeError, match="layer must be a fastrnn LSTM, GRU, SimpleRNN or fastrnn.onnx.Sequential, got object"):
        export(object())


# -- nodes built from the ONNX spec, imported, against ONNX Runtime ----------------------------

def onnx_node_model(op, direction="forward", bias=True, peephole=False, lengths=False,
                    initial=(), layout=0, seed=0, **attrs):
    """One ONNX node with random weights in ONNX's layout; graph outputs Y and Y_h (and Y_c)."""
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]

    def w(*shape):
        return rng.uniform(-0.4, 0.4, shape).astype(np.float32)

    inits = [numpy_helper.from_array(w(D, G * H, I), "W"), numpy_helper.from_array(w(D, G * H, H), "R")]
    names = ["x", "W", "R", "", "", "", "", ""]
    if bias:
        inits.append(numpy_helper.from_array(w(D, 2 * G * H), "B"))
        names[3] = "B"
    seq = [B, T, I] if layout else [T, B, I]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, seq)]
    if lengths:
        names[4] = "lens"
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [B]))
    for slot, s in ((5, "initial_h"), (6, "initial_c")):
        if s in initial and (op == "LSTM" or s == "initial_h"):
            names[slot] = s
            shape = [B, D, H] if layout else [D, B, H]
            inputs.append(helper.make_tensor_value_info(s, TensorProto.FLOAT, shape))
    if peephole:
        inits.append(numpy_helper.from_array(w(D, 3 * H), "P"))
        names[7] = "P"
    names = names[:8 if op == "LSTM" else 6]
    while names[-1] == "":
        names.pop()
    outs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    attrs.setdefault("hidden_size", H)
    node = helper.make_node(op, names, outs, name="rec", direction=direction,
                            **({"layout": 1} if layout else {}), **attrs)
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def run_imported(layer, feed, lstm):
    """The imported layer called with the ORT feed's x, initial state and lengths."""
    state = (feed.get("initial_h"), feed.get("initial_c")) if lstm else feed.get("initial_h")
    if isinstance(layer, Sequential):
        out, states = layer(feed["x"], [state], lengths=feed.get("lens"))
        return out, state_tuple(states[0])
    out, hn = layer(feed["x"], state, lengths=feed.get("lens"))
    return out, state_tuple(hn)


NODE_CASES = [
    ("LSTM", {}), ("LSTM", {"peephole": True}), ("LSTM", {"bias": False}),
    ("LSTM", {"activations": ["Sigmoid", "Tanh", "Tanh"]}),
    ("GRU", {"linear_before_reset": 1}), ("GRU", {"linear_before_reset": 0}), ("GRU", {}),
    ("RNN", {}), ("RNN", {"activations": ["Relu"]}), ("RNN", {"bias": False}),
]


@pytest.mark.parametrize("with_state, lengths", [(False, False), (True, True), (False, True)],
                         ids=["plain", "state_lengths", "lengths"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op, kw", NODE_CASES, ids=lambda v: v if isinstance(v, str) else "-".join(
    f"{k}{v[k] if not isinstance(v[k], list) else v[k][-1]}" for k in v) or "default")
def test_imported_spec_node_gives_onnxruntime_y_and_y_h(op, kw, direction, with_state, lengths):
    kw = dict(kw)
    if "activations" in kw:
        kw["activations"] = kw["activations"] * (2 if direction == "bidirectional" else 1)
    initial = ("initial_h", "initial_c") if with_state else ()
    model = onnx_node_model(op, direction, lengths=lengths, initial=initial, **kw)
    layer = from_onnx(model)
    if direction == "reverse":
        assert isinstance(layer, Sequential) and layer.reverse == [True]
    else:
        assert type(layer) is {"LSTM": LSTM, "GRU": GRU, "RNN": SimpleRNN}[op]
    D = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    feed = {"x": x}
    if lengths:
        feed["lens"] = LENGTHS.astype(np.int32)
    for s in initial:
        if s == "initial_c" and op != "LSTM":
            continue
        feed[s] = rng.standard_normal((D, B, H)).astype(np.float32)
    y, *states = session(model).run(None, feed)
    out, got_states = run_imported(layer, feed, op == "LSTM")
    np.testing.assert_allclose(out, y.transpose(0, 2, 1, 3).reshape(T, B, D * H), rtol=0, atol=ATOL)
    for g, w in zip(got_states, states):
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_imported_layout_1_node_is_batch_first(op):
    # ORT refuses layout=1, so the oracle is ORT on the same node with layout=0 and x
    # transposed: the ONNX spec defines layout 1 as exactly that transpose.
    kw = {"peephole": True} if op == "LSTM" else {}
    layer = from_onnx(onnx_node_model(op, "bidirectional", layout=1, lengths=True, **kw))
    assert layer.batch_first
    x = np.random.default_rng(2).standard_normal((T, B, I)).astype(np.float32)
    y, *states = session(onnx_node_model(op, "bidirectional", lengths=True, **kw)).run(
        None, {"x": x, "lens": LENGTHS.astype(np.int32)})
    out, hn = layer(np.ascontiguousarray(x.transpose(1, 0, 2)), lengths=LENGTHS)
    np.testing.assert_allclose(out, y.transpose(2, 0, 1, 3).reshape(B, T, 2 * H), rtol=0, atol=ATOL)
    np.testing.assert_allclose(state_tuple(hn)[0], states[0], rtol=0, atol=ATOL)


def chain_model(specs):
    """Nodes built by hand, node k reading node k-1's Y: (op, H_k, direction) per node."""
    rng = np.random.default_rng(7)
    nodes, inits, x, in_size = [], [], "x", I
    for k, (op, Hk, direction) in enumerate(specs):
        D = 2 if direction == "bidirectional" else 1
        G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        for name, shape in (("W", (D, G * Hk, in_size)), ("R", (D, G * Hk, Hk)), ("B", (D, 2 * G * Hk))):
            inits.append(numpy_helper.from_array(rng.uniform(-0.4, 0.4, shape).astype(np.float32), f"{name}{k}"))
        extra = {"linear_before_reset": 1} if op == "GRU" else {}
        nodes.append(helper.make_node(op, [x, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}", f"Yh{k}"],
                                      hidden_size=Hk, direction=direction, **extra))
        if D == 1:
            inits.append(numpy_helper.from_array(np.array([1], np.int64), f"ax{k}"))
            nodes.append(helper.make_node("Squeeze", [f"Y{k}", f"ax{k}"], [f"X{k + 1}"]))
        else:
            inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"shape{k}"))
            nodes += [helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [f"Yt{k}", f"shape{k}"], [f"X{k + 1}"])]
        x, in_size = f"X{k + 1}", D * Hk
    outs = [x] + [f"Yh{k}" for k in range(len(specs))]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("specs, kind", [
    ([("LSTM", H, "bidirectional"), ("LSTM", H, "bidirectional")], LSTM),
    ([("GRU", H, "forward"), ("GRU", H, "forward"), ("GRU", H, "forward")], GRU),
    ([("GRU", 5, "bidirectional"), ("LSTM", 3, "reverse"), ("RNN", 4, "forward")], Sequential),
], ids=["lstm_bi_x2", "gru_x3", "mixed"])
def test_imported_chains_give_onnxruntime_outputs(specs, kind):
    model = chain_model(specs)
    layer = from_onnx(model)
    assert type(layer) is kind
    x = np.random.default_rng(3).standard_normal((T, B, I)).astype(np.float32)
    y, *hs = session(model).run(None, {"x": x})
    if kind is Sequential:
        out, states = layer(x)
        got = [state_tuple(s)[0] for s in states]
    else:
        out, hn = layer(x)
        D = layer.num_directions
        got = [state_tuple(hn)[0][k * D:(k + 1) * D] for k in range(len(specs))]
    np.testing.assert_allclose(out, y, rtol=0, atol=ATOL)
    for g, w in zip(got, hs):
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)


def test_sequential_batch_first_and_lengths_match_its_layers():
    gru = GRU(I, H, bidirectional=True, seed=0).eval()
    rnn = SimpleRNN(2 * H, 3, seed=1).eval()
    seq = Sequential([gru, rnn], reverse=[False, True], batch_first=True)
    x = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
    out, states = seq(x, lengths=LENGTHS)
    # the reverse stage equals the backward half of a bidirectional layer with those weights
    y, _ = gru(np.ascontiguousarray(x.transpose(1, 0, 2)), lengths=LENGTHS)
    bi = SimpleRNN(2 * H, 3, bidirectional=True, seed=2).eval()
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        bi.params[name + "_reverse"][...] = rnn.params[name]
    want, hn = bi(y, lengths=LENGTHS)
    np.testing.assert_allclose(out, want[:, :, 3:].transpose(1, 0, 2), rtol=0, atol=1e-6)
    np.testing.assert_allclose(states[1], hn[1:], rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="hx must be None or a list of 2 states"):
        seq(x, [None])
    with pytest.raises(ValueError, match="reverse=True needs a unidirectional layer"):
        Sequential([gru], reverse=[True])


# -- malformed models ---------------------------------------------------------------------------

def edited(op="LSTM", edit=None, **kw):
    model = onnx_node_model(op, **kw)
    if edit:
        edit(model.graph)
    return model


def set_init(name, shape):
    def edit(graph):
        i = next(i for i in graph.initializer if i.name == name)
        i.CopyFrom(numpy_helper.from_array(np.zeros(shape, np.float32), name))
    return edit


def add_attr(**attrs):
    def edit(graph):
        graph.node[0].attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    return edit


def weights_as_input(graph):
    w = next(i for i in graph.initializer if i.name == "W")
    graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, list(w.dims)))
    graph.initializer.remove(w)


def drop_input(index):
    def edit(graph):
        graph.node[0].input[index] = ""
    return edit


def glue_relu(graph):
    graph.node.insert(0, helper.make_node("Relu", ["x"], ["x_relu"]))
    graph.node[1].input[0] = "x_relu"


def const_lengths(graph):
    graph.initializer.append(numpy_helper.from_array(np.full(B, T, np.int32), "lens"))


@pytest.mark.parametrize("model, match", [
    (lambda: edited(edit=set_init("W", (1, 4 * H, I, 1))), r"W has shape \(1, 24, 4, 1\); expected \(1, 24, input_size\)"),
    (lambda: edited(edit=set_init("R", (1, 4 * H, H + 1))), r"R has shape \(1, 24, 7\)"),
    (lambda: edited(edit=set_init("B", (1, 4 * H))), r"B has shape \(1, 24\); expected \(1, 48\)"),
    (lambda: edited(peephole=True, edit=set_init("P", (1, 2 * H))), r"P has shape \(1, 12\); expected \(1, 18\)"),
    (lambda: edited(edit=set_init("W", (2, 4 * H, I))), r"W has shape \(2, 24, 4\); expected \(1, 24"),
    (lambda: edited("GRU", hidden_size=H + 1), r"hidden_size=7 but R has shape"),
    (lambda: edited(edit=drop_input(1)), r"lacks its required input W"),
    (lambda: edited(edit=weights_as_input), r"input W \('W'\) is not an initializer or Constant"),
    (lambda: edited(lengths=True, edit=const_lengths), r"input sequence_lens is a constant"),
    (lambda: edited(clip=3.0), r"clip=3.0"),
    (lambda: edited(input_forget=1), r"input_forget=1"),
    (lambda: edited(activation_alpha=[0.5, 0.5, 0.5]), r"activation_alpha="),
    (lambda: edited(activation_beta=[0.5, 0.5, 0.5]), r"activation_beta="),
    (lambda: edited(activations=["HardSigmoid", "Tanh", "Tanh"]), r"activations=\['hardsigmoid', 'tanh', 'tanh'\]"),
    (lambda: edited("RNN", activations=["Sigmoid"]), r"activations=\['sigmoid'\]"),
    (lambda: edited("GRU", linear_before_reset=2), r"linear_before_reset=2"),
    (lambda: edited(direction="sideways"), r"direction='sideways'; expected forward, reverse"),
    (lambda: edited(edit=add_attr(foo=1)), r"attribute\(s\) \['foo'\], unknown"),
    (lambda: edited(edit=glue_relu), r"tensor 'x_relu' comes from Relu node"),
    (lambda: helper.make_model(helper.make_graph([], "empty", [], [])), r"no LSTM, GRU or RNN node"),
])
def test_malformed_models_raise_clear_errors(model, match):
    with pytest.raises(ValueError, match=match):
        from_onnx(model())


def test_from_onnx_rejects_other_objects_and_reads_paths(tmp_path):
    with pytest.raises(TypeError, match="model_or_path must be an onnx.ModelProto or a path"):
        from_onnx(3)
    layer = GRU(I, H, 2, seed=0)
    export(layer, tmp_path / "m.onnx")
    back = from_onnx(tmp_path / "m.onnx")
    assert all(np.array_equal(back.params[k], v) for k, v in layer.params.items())


# -- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("L, bidirectional, batch_first, bias", list(itertools.product((1, 2), (False, True), (False, True), (True, False))))
@pytest.mark.parametrize("cell", list(CELLS))
def test_fastrnn_onnx_fastrnn_is_exact(cell, L, bidirectional, batch_first, bias):
    cls, opts = CELLS[cell]
    layer = cls(I, H, L, bias=bias, batch_first=batch_first, bidirectional=bidirectional, seed=4, **opts)
    before = layer.state_dict()
    back = from_onnx(export(layer, states=True, lengths=True))
    assert all(np.array_equal(before[k], v) for k, v in layer.params.items())   # unmodified
    assert type(back) is cls and repr(back) == repr(layer) and not back.training
    assert list(back.params) == list(layer.params)
    for k, v in layer.params.items():
        assert np.array_equal(back.params[k], v), k


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_relu"])
def test_torch_to_fastrnn_to_onnx_agrees_with_torch(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    name, _, act = kind.partition("_")
    extra = {"nonlinearity": act} if act else {}
    module = getattr(torch.nn, name)(I, H, num_layers=2, bidirectional=True, batch_first=True, **extra).eval()
    model = export(fastrnn.from_torch(module), lengths=True)
    x = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
    y, hn, *_ = session(model).run(None, {"x": x, "lengths": LENGTHS.astype(np.int32)})
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(LENGTHS), batch_first=True, enforce_sorted=False)
        out, h = module(packed)
        out = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)[0]
    h = h[0] if isinstance(h, tuple) else h
    np.testing.assert_allclose(y, out.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(hn, h.numpy(), rtol=0, atol=ATOL)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore")          # the legacy exporter's deprecation notes
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_pytorch_exported_graph_imports_as_the_torch_module(kind, batch_first):
    # A third party's graph: PyTorch's TorchScript exporter writes Transpose/Reshape glue,
    # initial states expanded from zeros and (batch_first) transposes around the chain.
    torch = pytest.importorskip("torch")
    import io
    torch.manual_seed(1)
    module = getattr(torch.nn, kind)(I, H, num_layers=2, bidirectional=True,
                                     batch_first=batch_first).eval()
    x = torch.randn((B, T, I) if batch_first else (T, B, I))
    buf = io.BytesIO()
    torch.onnx.export(module, (x,), buf, dynamo=False)
    layer = from_onnx(onnx.load_from_string(buf.getvalue()))
    assert type(layer) is {"LSTM": LSTM, "GRU": GRU, "RNN": SimpleRNN}[kind]
    assert layer.batch_first == batch_first and layer.num_layers == 2
    out, hn = layer(x.numpy())
    with torch.no_grad():
        want, h = module(x)
    h = h[0] if isinstance(h, tuple) else h
    np.testing.assert_allclose(out, want.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(state_tuple(hn)[0], h.numpy(), rtol=0, atol=ATOL)


def test_hidden_size_may_be_absent_and_weights_may_be_constant_nodes():
    # Both are legal ONNX: hidden_size is optional (R's shape gives it; ORT itself insists
    # on it, so ORT runs the node before the edit), and weights may come from Constant nodes.
    model = onnx_node_model("GRU", "bidirectional", linear_before_reset=1)
    x = np.random.default_rng(4).standard_normal((T, B, I)).astype(np.float32)
    y, yh = session(model).run(None, {"x": x})
    graph = model.graph
    node = graph.node[0]
    keep = [a for a in node.attribute if a.name != "hidden_size"]
    del node.attribute[:]
    node.attribute.extend(keep)
    w = next(i for i in graph.initializer if i.name == "W")
    graph.initializer.remove(w)
    graph.node.insert(0, helper.make_node("Constant", [], ["W"], value=w))
    out, hn = from_onnx(model)(x)
    np.testing.assert_allclose(out, y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H), rtol=0, atol=ATOL)
    np.testing.assert_allclose(hn, yh, rtol=0, atol=ATOL)


@pytest.mark.parametrize("batch_first", [False, True])
def test_sequential_exports_and_round_trips(batch_first):
    # What from_onnx returns for a reverse node or a mixed chain exports back: ORT on the
    # exported graph equals the Sequential (states and lengths, one length 0), and importing
    # the export gives the same stages and parameters.
    seq = from_onnx(chain_model([("GRU", 5, "bidirectional"), ("LSTM", 3, "reverse"), ("RNN", 4, "forward")]))
    seq.batch_first = batch_first
    model = export(seq, states=True, lengths=True)
    directions = [helper.get_attribute_value(a) for n in model.graph.node
                  if n.op_type in ("GRU", "LSTM", "RNN") for a in n.attribute if a.name == "direction"]
    assert directions == [b"bidirectional", b"reverse", b"forward"]
    rng = np.random.default_rng(6)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    lens = np.array([5, 0, 2])
    h = [rng.standard_normal((2, B, 5)).astype(np.float32),
         (rng.standard_normal((1, B, 3)).astype(np.float32), rng.standard_normal((1, B, 3)).astype(np.float32)),
         rng.standard_normal((1, B, 4)).astype(np.float32)]
    feed = {"x": x, "lengths": lens.astype(np.int32), "h0_0": h[0], "h0_1": h[1][0], "c0_1": h[1][1], "h0_2": h[2]}
    y, *finals = session(model).run(None, feed)
    out, states = seq(x, h, lengths=lens)
    assert [o.name for o in model.graph.output] == ["y", "h_n_0", "h_n_1", "c_n_1", "h_n_2"]
    for g, w in zip([y] + finals, [out, states[0], *states[1], states[2]]):
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)
    back = from_onnx(model)
    assert isinstance(back, Sequential) and back.reverse == seq.reverse and back.batch_first == batch_first
    for a, b in zip(back.layers, seq.layers):
        assert repr(a) == repr(b) and all(np.array_equal(a.params[k], v) for k, v in b.params.items())
