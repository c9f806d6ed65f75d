"""Cell variants fused in the kernels (docs/variants.md) against the plain cell, side by side.

    python benchmarks/variants.py                       # mid_b32, 1 thread, float32
    python benchmarks/variants.py --shape 50,16,128,128 --threads 2 --budget 20
    python benchmarks/run.py --variants [--shapes mid_b32] [--threads 1,2] [--json PATH]

One training step of one layer-direction through `fastrnn.functional` (forward, then
backward of d_out = 1), float32, timed in turns (harness.measure_interleaved) so that a
change in the machine's load hits every row alike; each row is reported as its median
time over the plain cell's median. Rows: LSTM with hard_sigmoid gates vs sigmoid (the
issue's target: within 5%), LN-LSTM and LN-GRU (layer_norm=True; target for the LSTM
<= 1.35x), LSTM/GRU/SimpleRNN with recurrent dropout (a p = 0.1 mask per gate, Keras's)
and with zoneout masks (p = 0.1; LSTM on h and c) vs plain (target <= 1.1x), GRU and
SimpleRNN with leak_rate = 0.5. `--torch` adds the PyTorch equivalent of the LN-LSTM as
people write it (an `nn.LSTMCell`-shaped loop over time with `nn.LayerNorm` on the two
pre-activation terms and on c, autograd backward; the issue's target: LN-LSTM >= 5x it).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from cases import GRID, parse_shape  # noqa: E402

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def rows(shape, rng, p=0.1):
    """{cell: {row name: forward options}}; each cell's first row is its plain cell."""
    from fastrnn.masks import recurrent_dropout_mask, zoneout_mask
    T, B, H = shape.T, shape.B, shape.H

    def rd(cell):
        return dict(recurrent_mask=recurrent_dropout_mask(rng, p, GATES[cell], B, H))

    zh, zc = zoneout_mask(rng, p, T, B, H), zoneout_mask(rng, p, T, B, H)
    return {
        "lstm": {"plain": {}, "hard_sigmoid": dict(recurrent_activation="hard_sigmoid"),
                 "layer_norm": dict(layer_norm=True), "recurrent_dropout": rd("lstm"),
                 "zoneout": dict(zoneout_mask=zh, zoneout_mask_c=zc)},
        "gru": {"plain": {}, "layer_norm": dict(layer_norm=True), "recurrent_dropout": rd("gru"),
                "zoneout": dict(zoneout_mask=zh),
                "leak_rate": dict(leak_rate=0.5)},
        "rnn": {"plain": {}, "recurrent_dropout": rd("rnn"), "zoneout": dict(zoneout_mask=zh),
                "leak_rate": dict(leak_rate=0.5)},
    }


def training_step(F, cell, args, d_out, opts):
    fwd, bwd = getattr(F, f"{cell}_forward"), getattr(F, f"{cell}_backward")

    def run():
        res = fwd(*args, **opts)
        bwd(res[-1], d_out)
    return run


def torch_ln_lstm(shape, threads):
    """One training step of haste's LayerNorm LSTM in PyTorch, a Python loop over time."""
    import torch
    torch.set_num_threads(threads)
    T, B, I, H = shape.T, shape.B, shape.I, shape.H
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, I, generator=g)
    w_ih = (0.1 * torch.randn(4 * H, I, generator=g)).requires_grad_()
    w_hh = (0.1 * torch.randn(4 * H, H, generator=g)).requires_grad_()
    b = torch.zeros(4 * H, requires_grad=True)
    ln_x, ln_h = torch.nn.LayerNorm(4 * H, bias=False), torch.nn.LayerNorm(4 * H, bias=False)
    ln_c = torch.nn.LayerNorm(H)

    def run():
        h, c, outs = torch.zeros(B, H), torch.zeros(B, H), []
        for t in range(T):
            a = ln_x(x[t] @ w_ih.T) + ln_h(h @ w_hh.T) + b
            i, f, gg, o = a.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(ln_c(c))
            outs.append(h)
        torch.stack(outs).sum().backward()
    return run


def measure(F, shape, threads, cells=("lstm", "gru", "rnn"), budget=15.0, torch_peer=False):
    """Rows {cell, row, shape, threads, median_ms, q1_ms, q3_ms, n, x_plain}: each variant's
    training step against its plain cell's (and PyTorch's LN-LSTM with torch_peer), timed
    in turns in this process."""
    F.set_num_threads(threads)
    rng = np.random.default_rng(0)
    table_ = rows(shape, rng)
    out = []
    for cell in cells:
        G, n = GATES[cell], rng.standard_normal
        args = [n((shape.T, shape.B, shape.I)).astype(np.float32),
                (0.1 * n((G * shape.H, shape.I))).astype(np.float32),
                (0.1 * n((G * shape.H, shape.H))).astype(np.float32)]
        d_out = np.ones((shape.T, shape.B, shape.H), np.float32)
        fns = {name: training_step(F, cell, args, d_out, opts)
               for name, opts in table_[cell].items()}
        if torch_peer and cell == "lstm":
            fns["torch_ln_lstm"] = torch_ln_lstm(shape, threads)
        res = harness.measure_interleaved(fns, warmup=1, repeats=1000, budget=budget)
        base = res["plain"]["median_ms"]
        for name, r in res.items():
            out.append(dict(cell=cell, row=name, shape=shape.name, threads=threads,
                            **{k: r[k] for k in ("median_ms", "q1_ms", "q3_ms", "n")},
                            x_plain=r["median_ms"] / base))
    return out


def table(rows_):
    """Markdown: each row's median and its time over the plain cell's (< 1: faster)."""
    lines = ["| cell | shape | thr | row | median ms | × plain | IQR ms | n |",
             "|---|---|---|---|---:|---:|---|---:|"]
    for r in rows_:
        lines.append(f"| {r['cell']} | {r['shape']} | {r['threads']} | {r['row']} | "
                     f"{r['median_ms']:.3g} | {r['x_plain']:.3f} | "
                     f"{r['q1_ms']:.3g}–{r['q3_ms']:.3g} | {r['n']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="mid_b32", help="a cases.py name or T,B,I,H")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--budget", type=float, default=15.0, help="seconds of timing per cell")
    ap.add_argument("--torch", action="store_true", help="add PyTorch's LN-LSTM (LSTMCell-style "
                    "loop with LayerNorm) beside fastrnn's")
    a = ap.parse_args(argv)
    from fastrnn import functional as F
    shape = next((s for s in GRID if s.name == a.shape), None) or parse_shape(a.shape)
    load = os.getloadavg()[0]
    print(f"{shape.name} (T={shape.T}, B={shape.B}, I={shape.I}, H={shape.H}) float32, "
          f"{a.threads} thread(s), training step (forward + backward), load average {load:.1f}")
    print(table(measure(F, shape, a.threads, a.cells.split(","), a.budget, a.torch)))


if __name__ == "__main__":
    main()
