"""Low-precision inference (`run.py --precision float32,bfloat16,int8`; docs/precision.md).

Side by side in one process, one layer's weights; in turns within each framework
(harness.measure_groups: fastrnn's engines with each other, torch's with each other, ORT's
with each other, so that no peer's spinning workers hold the cores during fastrnn's calls):
  fastrnn <p>      `layer.inference(precision=p)(x)` for each precision asked
  torch fp32       torch.nn.LSTM / GRU under no_grad
  torch bf16       the same module `.to(torch.bfloat16)` (input bf16, output widened)
  torch int8       `torch.ao.quantization.quantize_dynamic` (qint8 weights, dynamic activations)
  ort fp32         ONNX Runtime on the model `fastrnn.onnx.export` writes
  ort int8         that model through `onnxruntime.quantization.quantize_dynamic` (QInt8),
                   only where it converts the node (DynamicQuantizeLSTM: LSTM only)
Every output is compared with fastrnn's float32 engine (max |y - y_fp32|) before timing.
The one-step table times `eng.step(x_t, state)` at B = 1, I = H = 512 per precision.
"""
import os
import tempfile

import numpy as np

import harness

PEER_OF = {"bfloat16": ("torch bf16",), "int8": ("torch int8", "ort int8")}
STEP_H = 512


def _torch_module(torch, cell, layer):
    s = layer.input_size, layer.hidden_size
    m = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](*s)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(m, name + "_l0").copy_(torch.from_numpy(layer.params[f"{name}_l0"]))
    return m.eval()


def _torch_fns(torch, cell, layer, x):
    m = _torch_module(torch, cell, layer)
    mb = _torch_module(torch, cell, layer).to(torch.bfloat16)
    # quantize_dynamic swaps a model's children, never the model itself: wrap the layer
    mq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(_torch_module(torch, cell, layer)),
                                                {torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8)[0]
    tx = torch.from_numpy(x)
    txb = tx.to(torch.bfloat16)

    def run(module, inp):
        def fn():
            with torch.no_grad():
                return module(inp)[0].float().numpy()
        return fn
    return {"torch fp32": run(m, tx), "torch bf16": run(mb, txb), "torch int8": run(mq, tx)}


def _ort_fns(fastrnn, cell, layer, x, threads, tmp):
    import logging
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import fastrnn.onnx
    logging.getLogger().setLevel(logging.ERROR)   # its advice to pre-process CNN models
    T, B = x.shape[:2]
    model = fastrnn.onnx.export(layer, dynamic_axes={"T": T, "B": B})
    src, dst = os.path.join(tmp, f"{cell}.onnx"), os.path.join(tmp, f"{cell}.int8.onnx")
    with open(src, "wb") as f:
        f.write(model.SerializeToString())
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    converted = any(n.op_type.startswith("DynamicQuantize") for n in onnx.load(dst).graph.node)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    fns = {}
    for name, path in (("ort fp32", src), ("ort int8", dst)):
        if name == "ort int8" and not converted:
            continue            # quantize_dynamic left the node in fp32: not an int8 peer
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        fns[name] = (lambda s=sess: s.run(["y"], {"x": x})[0])
    return fns


def rows(fastrnn, torch, precisions, cells, shapes, threads, warmup=1, repeats=7, budget=20.0):
    """One row per (cell, shape): median ms and max |y - y_fp32| of every backend."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in cells:
            for shape in shapes:
                T, B, I, H = shape.T, shape.B, shape.I, shape.H
                layer = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[cell](I, H, seed=0).eval()
                x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
                fns = {f"fastrnn {p}": (lambda e=layer.inference(p): e(x)[0]) for p in precisions}
                if torch is not None:
                    fns.update(_torch_fns(torch, cell, layer, x))
                try:
                    fns.update(_ort_fns(fastrnn, cell, layer, x, threads, tmp))
                except ImportError:
                    pass
                want = layer.inference()(x)[0]
                errors = {k: float(np.abs(f() - want).max()) for k, f in fns.items()}
                times = harness.measure_groups(fns, warmup, repeats, budget)
                out.append({"cell": cell, "shape": shape.name, "threads": threads, "errors": errors,
                            "ms": {k: t["median_ms"] for k, t in times.items()},
                            "n": min(t["n"] for t in times.values())})
    return out


def step_rows(fastrnn, precisions, threads, warmup=100, repeats=3000, budget=3.0):
    """eng.step at B = 1, I = H = STEP_H per precision, in turns: median µs."""
    out = []
    for cell in ("lstm", "gru"):
        layer = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[cell](STEP_H, STEP_H, seed=0).eval()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, STEP_H)).astype(np.float32)
        h = 0.1 * rng.standard_normal((1, 1, STEP_H)).astype(np.float32)
        state = (h, h.copy()) if cell == "lstm" else h
        fns = {p: (lambda e=layer.inference(p): e.step(x, state)[0]) for p in precisions}
        times = harness.measure_interleaved(fns, warmup, repeats, budget)
        out.append({"cell": cell, "H": STEP_H, "threads": threads,
                    "us": {k: t["median_ms"] * 1e3 for k, t in times.items()}})
    return out


def table(grid, steps, precisions):
    """Markdown: median ms, then speedups over fastrnn fp32 and over each peer."""
    lines = []
    names = list(dict.fromkeys(k for r in grid for k in r["ms"]))   # ort int8: LSTM only
    if grid:
        lines.append("| cell | shape | thr | " + " | ".join(f"{n} ms" for n in names) + " |")
        lines.append("|---" * (3 + len(names)) + "|")
        for r in grid:
            lines.append(f"| {r['cell']} | {r['shape']} | {r['threads']} | "
                         + " | ".join(f"{r['ms'][n]:.3g}" if n in r["ms"] else "—" for n in names)
                         + " |")
        lines.append("")
        lines.append("| cell | shape | thr | precision | × fastrnn fp32 | × peers (peer ms / fastrnn ms) "
                     "| max abs err vs fastrnn fp32 |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in grid:
            base = r["ms"].get("fastrnn float32")
            for p in precisions:
                me = r["ms"][f"fastrnn {p}"]
                peers = {"float32": ("torch fp32", "ort fp32")}.get(p, PEER_OF.get(p, ()))
                vs = ", ".join(f"{q} {r['ms'][q] / me:.2f}×" for q in peers if q in r["ms"]) or "—"
                errs = ", ".join(f"{k.replace('fastrnn ', '')} {v:.1e}" for k, v in r["errors"].items()
                                 if k == f"fastrnn {p}" or k in peers)
                lines.append(f"| {r['cell']} | {r['shape']} | {r['threads']} | {p} | "
                             f"{base / me:.2f}× | {vs} | {errs} |")
    if steps:
        lines.append("")
        lines.append(f"| cell | H | thr | " + " | ".join(f"{p} step µs" for p in precisions)
                     + " | " + " | ".join(f"{p} × fp32" for p in precisions if p != "float32") + " |")
        lines.append("|---" * (3 + len(precisions) + len(precisions) - 1) + "|")
        for r in steps:
            u = r["us"]
            lines.append(f"| {r['cell']} | {r['H']} | {r['threads']} | "
                         + " | ".join(f"{u[p]:.1f}" for p in precisions) + " | "
                         + " | ".join(f"{u['float32'] / u[p]:.2f}×" for p in precisions
                                      if p != "float32") + " |")
    return "\n".join(lines)
