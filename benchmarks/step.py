"""One-step latency (`run.py --step`): B = 1, I = H, float32, one call = one time step.

Side by side in one process, in turns: each round runs every backend for a block of
BLOCK consecutive calls (as a streaming caller would: its weights warm in cache, and
no backend pays for the one before it evicting them), and a backend's time is the
median over rounds of its block time / BLOCK.
  eng.step       fastrnn's inference engine, `eng.step(x_t, state)` (allocates the results)
  eng.step out=  the same writing into preallocated arrays
  layer T=1      the fastrnn layer called on a sequence of one step (eval mode)
  torch cell     torch.nn.LSTMCell / GRUCell under no_grad
  torch T=1      torch.nn.LSTM / GRU on a sequence of one step under no_grad
Every column computes the same step from the same weights; the outputs are checked
against the layer's before timing.
"""
import time

import numpy as np

import harness

BLOCK = 20

SIZES = (128, 256, 512)
CELLS = ("lstm", "gru")


def _torch_modules(torch, cell, layer, H):
    cell_cls, seq_cls = {"lstm": (torch.nn.LSTMCell, torch.nn.LSTM),
                         "gru": (torch.nn.GRUCell, torch.nn.GRU)}[cell]
    c, s = cell_cls(H, H), seq_cls(H, H)
    with torch.no_grad():
        for m, sfx in ((c, ""), (s, "_l0")):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(m, name + sfx).copy_(torch.from_numpy(layer.params[f"{name}_l0"]))
    return c, s


def _in_blocks(fns, rounds, budget):
    """{name: (median, q1, q3) seconds per call} over rounds of BLOCK calls each."""
    samples, start = {name: [] for name in fns}, time.perf_counter()
    for r in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(BLOCK):
                fn()
            samples[name].append((time.perf_counter() - t0) / BLOCK)
        if r >= 3 and time.perf_counter() - start > budget:
            break
    return {name: np.percentile(s, [50, 25, 75]) for name, s in samples.items()}


def step_rows(fastrnn, torch, threads, warmup=50, rounds=150, budget=1.5):
    """{cell, H, median µs per backend} for every cell and size."""
    rows = []
    for cell in CELLS:
        for H in SIZES:
            layer = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[cell](H, H, seed=0)
            layer.eval()
            eng = layer.inference()
            rng = np.random.default_rng(0)
            x = rng.standard_normal((1, H)).astype(np.float32)
            x3 = x[None]
            lstm = cell == "lstm"
            h = rng.standard_normal((1, 1, H)).astype(np.float32) * 0.1
            state = (h, h.copy()) if lstm else h
            y_buf = np.empty((1, H), np.float32)
            s_buf = (h.copy(), h.copy()) if lstm else h.copy()
            fns = {
                "eng.step": lambda: eng.step(x, state)[0],
                "eng.step out=": lambda: eng.step(x, state, out=(y_buf, s_buf))[0],
                "layer T=1": lambda: layer(x3, state)[0][0],
            }
            if torch is not None:
                tc, ts = _torch_modules(torch, cell, layer, H)
                tx, tx3 = torch.from_numpy(x), torch.from_numpy(x3)
                th = torch.from_numpy(h[0])
                tstate = (th, th.clone()) if lstm else th
                tstate3 = tuple(t[None] for t in tstate) if lstm else th[None]

                def torch_cell():
                    with torch.no_grad():
                        r = tc(tx, tstate)
                        return (r[0] if lstm else r).numpy()

                def torch_seq():
                    with torch.no_grad():
                        return ts(tx3, tstate3)[0][0].numpy()
                fns["torch cell"], fns["torch T=1"] = torch_cell, torch_seq
            want = layer(x3, state)[0][0]
            errors = {k: harness.relative_error(f(), want) for k, f in fns.items()}
            for fn in fns.values():
                for _ in range(warmup):
                    fn()
            times = _in_blocks(fns, rounds, budget)
            rows.append({"cell": cell, "H": H, "threads": threads, "errors": errors,
                         "us": {k: t[0] * 1e6 for k, t in times.items()},
                         "iqr": {k: (t[2] - t[1]) / t[0] for k, t in times.items()}})
    return rows


def table(rows):
    names = list(rows[0]["us"])
    ref = "torch cell" if "torch cell" in names else None
    head = f"{'cell':5} {'H':>4} {'thr':>3} | " + " | ".join(f"{n:>13}" for n in names)
    if ref:
        head += " | eng.step × torch cell"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['cell']:5} {r['H']:>4} {r['threads']:>3} | " + " | ".join(
            f"{r['us'][n]:10.1f} µs" for n in names)
        if ref:
            line += f" | {r['us'][ref] / r['us']['eng.step']:20.2f}×"
        lines.append(line)
    bad = [(r["cell"], r["H"], k, e) for r in rows for k, e in r["errors"].items() if e > harness.TOLERANCE]
    lines.append(f"columns: median µs per one-step call (rounds of {BLOCK} calls per backend, in turns); "
                 "× > 1: eng.step is faster")
    lines.append("validation: " + ("every output matches the layer's within "
                                   f"{harness.TOLERANCE}" if not bad else f"FAILED {bad}"))
    return "\n".join(lines), not bad
