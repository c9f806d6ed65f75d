"""bf16 mixed-precision training (`run.py --precision float32,bfloat16 --modes training`;
docs/precision.md, "Training").

One training step of one layer-direction (forward with cache, then the backward of sum(out),
dx included), side by side in one process, in turns within each framework
(harness.measure_groups):
  fastrnn <p>      fastrnn.functional *_forward / *_backward with precision=p
  torch fp32       torch.nn.LSTM / GRU, out.sum().backward()
  torch autocast   the same module under torch.autocast("cpu", dtype=torch.bfloat16): its
                   GEMMs in bf16, fp32 master weights and gradients (PyTorch's mixed precision)
Every backend's gradients are compared with fastrnn fp32's before timing: the largest relative
Frobenius error over dx, dW_ih, dW_hh, db_ih, db_hh (the issue's bound is 3e-2).
"""
import numpy as np

import cases
import harness

GRADS = ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh")
BOUND = 3e-2


def _fastrnn_fn(fastrnn, p, precision):
    F = fastrnn.functional
    fwd, bwd = getattr(F, f"{p.cell}_forward"), getattr(F, f"{p.cell}_backward")

    def step():
        res = fwd(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, precision=precision)
        g = bwd(res[-1], d_out=p.d_out, precision=precision)
        return {k: getattr(g, k) for k in GRADS}
    return step


def _torch_fns(torch, p):
    s = p.shape
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[p.cell](s.I, s.H)
    params = dict(zip(GRADS[1:], (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0,
                                  module.bias_hh_l0)))
    with torch.no_grad():
        for key, w in zip(params, (p.w_ih, p.w_hh, p.b_ih, p.b_hh)):
            params[key].copy_(torch.from_numpy(w))
    x = torch.from_numpy(p.x).clone().requires_grad_()

    def step(autocast):
        def fn():
            module.zero_grad(set_to_none=True)
            x.grad = None
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = module(x)[0]
            out.float().sum().backward()
            return {"dx": x.grad.numpy(), **{k: w.grad.numpy() for k, w in params.items()}}
        return fn
    return {"torch fp32": step(False), "torch autocast": step(True)}


def _error(got, want):
    return max(float(np.linalg.norm(got[k] - want[k]) / np.linalg.norm(want[k])) for k in GRADS)


def rows(fastrnn, torch, precisions, cell_names, shapes, threads, warmup=1, repeats=7, budget=20.0):
    """One row per (cell, shape): median ms and the largest gradient error of every backend."""
    out = []
    for cell in cell_names:
        for shape in shapes:
            p = cases.make_problem(cell, shape)
            fns = {f"fastrnn {q}": _fastrnn_fn(fastrnn, p, q) for q in precisions}
            if torch is not None:
                fns.update(_torch_fns(torch, p))
            want = fns["fastrnn float32"]()
            errors = {k: _error(f(), want) for k, f in fns.items()}
            times = harness.measure_groups(fns, warmup, repeats, budget)
            out.append({"cell": cell, "shape": shape.name, "threads": threads, "errors": errors,
                        "ms": {k: t["median_ms"] for k, t in times.items()},
                        "n": min(t["n"] for t in times.values())})
    return out


def table(grid):
    """Markdown: median ms of a training step, then bf16's speedups and the errors."""
    names = list(dict.fromkeys(k for r in grid for k in r["ms"]))
    lines = ["| cell | shape | thr | " + " | ".join(f"{n} ms" for n in names) + " |",
             "|---" * (3 + len(names)) + "|"]
    for r in grid:
        lines.append(f"| {r['cell']} | {r['shape']} | {r['threads']} | "
                     + " | ".join(f"{r['ms'][n]:.3g}" for n in names) + " |")
    lines += ["", "| cell | shape | thr | bf16 × fastrnn fp32 | bf16 × torch autocast "
              "| autocast × torch fp32 | grad err bf16 | grad err autocast |",
              "|---|---|---|---|---|---|---|---|"]
    for r in grid:
        ms, err = r["ms"], r["errors"]
        me = ms.get("fastrnn bfloat16")
        if me is None:
            continue
        auto = ms.get("torch autocast")
        fmt = (lambda v: f"{v:.2f}×")
        lines.append(f"| {r['cell']} | {r['shape']} | {r['threads']} | {fmt(ms['fastrnn float32'] / me)} | "
                     f"{fmt(auto / me) if auto else '—'} | "
                     f"{fmt(ms['torch fp32'] / auto) if auto else '—'} | {err['fastrnn bfloat16']:.1e} | "
                     f"{err['torch autocast']:.1e} |" if auto else
                     f"| {r['cell']} | {r['shape']} | {r['threads']} | {fmt(ms['fastrnn float32'] / me)} "
                     f"| — | — | {err['fastrnn bfloat16']:.1e} | — |")
    return "\n".join(lines)
