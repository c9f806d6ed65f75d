"""End-to-end training steps: fastrnn's toolkit against the same model in PyTorch.

Two tasks (issue #18):
  lm   2-layer LSTM character LM: Embedding(96, 64) -> LSTM(64, 256, 2 layers) ->
       Dense(256, 96) -> softmax cross-entropy; batch 32, BPTT 64; Adam 1e-3, clip 5.
  gru  the GRU forecaster of examples/forecast_gru.py: window (72, 64, 1) -> GRU(1, 32)
       -> h_n -> Dense(32, 12) -> MSE; Adam 5e-3, clip 1.

Both frameworks start from the same weights and see the same batches; they take turns
of --steps steps each (alternating, so both see the same machine load), and every
step's loss is checked to agree (float32 round-off: relative 1e-3 after a few Adam
steps). Threads: fastrnn.set_num_threads(n) and torch.set_num_threads(n) for each n of
--threads; NumPy's BLAS is left at its default, as a user's would be.

    python benchmarks/train_e2e.py                 # both tasks, 1 and 2 threads
    python benchmarks/train_e2e.py --task lm --threads 2 --turns 6

Prints, per task and thread count, the median step time of each and torch/fastrnn
(> 1: fastrnn is faster), and each framework's minor page faults per step (fastrnn /
torch): with glibc's default malloc PyTorch's LM step faults in 5 000-15 000 fresh pages,
a number that depends on the process (its step takes 120-160 ms at 1 thread accordingly);
`run.py --allocator` measures both with the heap kept. `--clock cpu` times by the calling thread's CPU time
(time.thread_time), which a busy machine barely moves: meaningful at 1 thread only.
`--breakdown` prints instead where fastrnn's LM step spends its time, part by part,
and the share of the parts that run Python/NumPy (embedding, loss, clipping, Adam).
"""
import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

try:
    import fastrnn
except ImportError:            # running from a source checkout without PYTHONPATH=python
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import fastrnn
from fastrnn import nn, optim


class LM:
    V, E, H, T, B = 96, 64, 256, 64, 32

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(self.V, self.E, seed=rng)
        self.lstm = fastrnn.LSTM(self.E, self.H, num_layers=2, seed=rng)
        self.head = nn.Dense(self.H, self.V, seed=rng)
        self.modules = [self.embed, self.lstm, self.head]
        self.opt = optim.Adam(self.modules, lr=1e-3)
        self.clip = 5.0

    def batches(self, rng, n):
        for _ in range(n):
            idx = rng.integers(0, self.V, (self.T + 1, self.B))
            yield idx[:-1], idx[1:]

    def loss_and_backward(self, x, y):
        out, _ = self.lstm(self.embed(x))
        loss, d = nn.softmax_cross_entropy(self.head(out), y)
        d_out = self.head.backward(d)
        dx = self.lstm.backward(d_out)
        self.embed.backward(dx[0] if isinstance(dx, tuple) else dx)
        return loss

    def torch_model(self):
        import torch
        m = torch.nn.ModuleDict({"embed": torch.nn.Embedding(self.V, self.E),
                                 "lstm": torch.nn.LSTM(self.E, self.H, num_layers=2),
                                 "head": torch.nn.Linear(self.H, self.V)})
        with torch.no_grad():
            m["embed"].weight.copy_(torch.from_numpy(self.embed.params["weight"]))
            m["lstm"].load_state_dict(fastrnn.to_torch_state_dict(self.lstm))
            m["head"].weight.copy_(torch.from_numpy(self.head.params["weight"]))
            m["head"].bias.copy_(torch.from_numpy(self.head.params["bias"]))

        def loss_fn(x, y):
            out, _ = m["lstm"](m["embed"](torch.from_numpy(x)))
            logits = m["head"](out)
            return torch.nn.functional.cross_entropy(logits.reshape(-1, self.V),
                                                     torch.from_numpy(y).reshape(-1))
        return m, loss_fn


class Forecaster:
    W, K, H, B = 72, 12, 32, 64

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.gru = fastrnn.GRU(1, self.H, seed=rng)
        self.head = nn.Dense(self.H, self.K, seed=rng)
        self.modules = [self.gru, self.head]
        self.opt = optim.Adam(self.modules, lr=5e-3)
        self.clip = 1.0

    def batches(self, rng, n):
        t = np.arange(self.W + self.K)
        for _ in range(n):
            phase = rng.uniform(0, 2 * np.pi, self.B)
            s = np.sin(2 * np.pi * t[:, None] / 24 + phase) + 0.3 * rng.standard_normal(
                (len(t), self.B))
            yield s[:self.W, :, None].astype(np.float32), s[self.W:].T.astype(np.float32)

    def loss_and_backward(self, x, y):
        _, h_n = self.gru(x)
        loss, d = nn.mse(self.head(h_n[-1]), y)
        dh = self.head.backward(d)
        self.gru.backward(None, dh[None])
        return loss

    def torch_model(self):
        import torch
        m = torch.nn.ModuleDict({"gru": torch.nn.GRU(1, self.H), "head": torch.nn.Linear(self.H, self.K)})
        with torch.no_grad():
            m["gru"].load_state_dict(fastrnn.to_torch_state_dict(self.gru))
            m["head"].weight.copy_(torch.from_numpy(self.head.params["weight"]))
            m["head"].bias.copy_(torch.from_numpy(self.head.params["bias"]))

        def loss_fn(x, y):
            _, h_n = m["gru"](torch.from_numpy(x))
            return torch.nn.functional.mse_loss(m["head"](h_n[-1]), torch.from_numpy(y))
        return m, loss_fn


TASKS = {"lm": LM, "gru": Forecaster}


def breakdown(threads, steps, clock, seed=0):
    """Median time of each part of fastrnn's LM step, and the Python/NumPy parts' share."""
    fastrnn.set_num_threads(threads)
    m = LM(seed)
    parts = {}
    for i, (x, y) in enumerate(m.batches(np.random.default_rng(seed + 1), steps + 2)):
        t = {"start": clock()}

        def mark(name):
            t[name] = clock()
        m.opt.zero_grad(); mark("zero_grad")
        e = m.embed(x); mark("embedding forward")
        out, _ = m.lstm(e); mark("LSTM forward")
        logits = m.head(out); mark("Dense forward")
        loss, d = nn.softmax_cross_entropy(logits, y); mark("loss")
        d_out = m.head.backward(d); mark("Dense backward")
        dx = m.lstm.backward(d_out); mark("LSTM backward")
        m.embed.backward(dx[0] if isinstance(dx, tuple) else dx); mark("embedding backward")
        optim.clip_grad_norm(m.modules, m.clip); mark("clipping")
        m.opt.step(); mark("Adam")
        names = list(t)
        if i >= 2:                      # two warm-up steps
            for a, b in zip(names, names[1:]):
                parts.setdefault(b, []).append(t[b] - t[a])
            parts.setdefault("step", []).append(t[names[-1]] - t["start"])
    med = {k: float(np.median(v)) for k, v in parts.items()}
    python_parts = ("zero_grad", "embedding forward", "loss", "embedding backward", "clipping", "Adam")
    return med, sum(med[k] for k in python_parts) / med["step"]


def bench(task_cls, threads, turns, steps, seed=0, clock=time.perf_counter):
    import torch
    fastrnn.set_num_threads(threads)
    torch.set_num_threads(threads)
    model = task_cls(seed)
    tmodel, loss_fn = model.torch_model()
    topt = torch.optim.Adam(tmodel.parameters(), lr=model.opt.lr)
    data = list(model.batches(np.random.default_rng(seed + 1), turns * steps))

    def fastrnn_step(x, y):
        model.opt.zero_grad()
        loss = model.loss_and_backward(x, y)
        optim.clip_grad_norm(model.modules, model.clip)
        model.opt.step()
        return loss

    def torch_step(x, y):
        topt.zero_grad()
        loss = loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), model.clip)
        topt.step()
        return loss.item()

    times = {"fastrnn": [], "torch": []}
    losses = {"fastrnn": [], "torch": []}
    faults = {"fastrnn": 0, "torch": 0}   # minor page faults in the timed turns
    for turn in range(turns):
        chunk = data[turn * steps:(turn + 1) * steps]
        for name, step in (("fastrnn", fastrnn_step), ("torch", torch_step)):
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for x, y in chunk:
                t0 = clock()
                losses[name].append(step(x, y))
                times[name].append(clock() - t0)
            if turn > 0:
                faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    a, b = np.array(losses["fastrnn"]), np.array(losses["torch"])
    rel = float(np.max(np.abs(a - b) / np.abs(b)))
    # The first turn warms caches and thread pools up: not timed.
    med = {k: float(np.median(v[steps:])) for k, v in times.items()}
    per_step = {k: v / max(1, (turns - 1) * steps) for k, v in faults.items()}
    return med, rel, per_step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="lm,gru", help="comma list of lm,gru")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--turns", type=int, default=5, help="turns per framework (first untimed)")
    ap.add_argument("--steps", type=int, default=4, help="steps per turn")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--breakdown", action="store_true",
                    help="time the parts of fastrnn's LM step instead (--turns × --steps steps)")
    args = ap.parse_args(argv)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.breakdown:
        for n in (int(t) for t in args.threads.split(",")):
            med, share = breakdown(n, args.turns * args.steps, clock)
            print(f"LM step, {n} thread(s), clock {args.clock}, load average {os.getloadavg()[0]:.1f}")
            for k, v in med.items():
                print(f"  {k:<20}{v * 1e3:>8.2f} ms{100 * v / med['step']:>6.1f}%")
            print(f"  Python/NumPy parts (embedding, loss, clipping, Adam, zero_grad): {100 * share:.1f}%")
        return 0
    print(f"clock {args.clock}, load average {os.getloadavg()[0]:.1f}")
    print(f"fastrnn {fastrnn.__version__} ({fastrnn.config()['isa']}); median step time, "
          f"turns of {args.steps} steps, first turn untimed")
    print(f"{'task':<5}{'threads':>8}{'fastrnn ms':>12}{'torch ms':>10}{'torch/fastrnn':>15}"
          f"{'max rel loss diff':>19}{'page faults/step':>18}")
    ok = True
    for task in args.task.split(","):
        for n in (int(t) for t in args.threads.split(",")):
            med, rel, faults = bench(TASKS[task], n, args.turns, args.steps, clock=clock)
            ok &= rel <= 1e-3
            print(f"{task:<5}{n:>8}{med['fastrnn'] * 1e3:>12.1f}{med['torch'] * 1e3:>10.1f}"
                  f"{med['torch'] / med['fastrnn']:>15.2f}{rel:>19.1e}"
                  f"{faults['fastrnn']:>8.0f} / {faults['torch']:<7.0f}", flush=True)
    if not ok:
        print("LOSSES DISAGREE (more than 1e-3 relative)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
