"""How much of a ratio against PyTorch is PyTorch's allocator (`run.py --allocator`).

glibc's malloc hands large freed blocks back to the OS and maps them afresh, so every step
of a framework that allocates its big arrays anew pays first-touch page faults (~2.7 µs
per 4 KiB page here), and how many depends on the process's history of allocations: PyTorch's LM
step runs in 120 or 155 ms from one process to the next with default settings. fastrnn
keeps its blocks (csrc/array_pool.cpp, block_cache.cpp). This runs each framework alone in
a fresh process, several times, with glibc's defaults and with its heap kept
(KEPT_HEAP: no trimming, no mmap below 32 MiB), and records each run's median step time
and minor page faults per step.

Cases (training steps):
  lm          train_e2e.py's LM: fastrnn's toolkit against the same model in PyTorch
  lstm_mid    one LSTM layer-direction, mid_b32, float32: fastrnn.functional / torch.nn.LSTM
  lstm_mid_bf16  the same in bf16: precision="bfloat16" / torch.autocast(bfloat16)
  gru_mid     one GRU layer-direction, mid_b32, float32

    python benchmarks/allocator.py --processes 3 --threads 1,2
"""
import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEPT_HEAP = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296",
             "MALLOC_TOP_PAD_": "268435456"}
CASES = ("lm", "lstm_mid", "lstm_mid_bf16", "gru_mid")
FRAMEWORKS = ("fastrnn", "torch")


def _step(case, framework, threads):
    """The training step of one case in one framework, ready to call."""
    import numpy as np
    import fastrnn
    fastrnn.set_num_threads(threads)
    torch = None
    if framework == "torch":   # a fastrnn process does not load torch at all
        import torch
        torch.set_num_threads(threads)
    if case == "lm":
        import train_e2e
        from fastrnn import optim
        model = train_e2e.LM(0)
        data = list(model.batches(np.random.default_rng(1), 4))
        if framework == "fastrnn":
            def once(x, y):
                model.opt.zero_grad()
                model.loss_and_backward(x, y)
                optim.clip_grad_norm(model.modules, model.clip)
                model.opt.step()
        else:
            tmodel, loss_fn = model.torch_model()
            topt = torch.optim.Adam(tmodel.parameters(), lr=model.opt.lr)

            def once(x, y):
                topt.zero_grad()
                loss_fn(x, y).backward()
                torch.nn.utils.clip_grad_norm_(tmodel.parameters(), model.clip)
                topt.step()
        batches = itertools.cycle(data)
        return lambda: once(*next(batches))
    import cases
    import precision_training
    cell, _, precision = case.partition("_mid")   # "<cell>_mid" or "<cell>_mid_bf16"
    p = cases.make_problem(cell, next(s for s in cases.GRID if s.name == "mid_b32"))
    bf16 = precision == "_bf16"
    if framework == "fastrnn":
        return precision_training._fastrnn_fn(fastrnn, p, "bfloat16" if bf16 else "float32")
    return precision_training._torch_fns(torch, p)["torch autocast" if bf16 else "torch fp32"]


def child(case, framework, threads, steps, warmup=4):
    """Run in the child process: median ms and minor faults per step, as one JSON line."""
    step = _step(case, framework, threads)
    for _ in range(warmup):
        step()
    f0, times = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps
    print(json.dumps({"ms": 1e3 * statistics.median(times), "faults": faults}))


def rows(threads_list, processes=3, steps=12, cases=CASES, log=print):
    """One row per (case, threads, framework, allocator): each process's median ms and faults.
    Processes alternate frameworks and allocators, so both see the same machine."""
    import fastrnn   # the children import the same fastrnn as this process
    path = os.pathsep.join([str(HERE), str(Path(fastrnn.__file__).resolve().parents[1])]
                           + [p for p in (os.environ.get("PYTHONPATH"),) if p])
    out = {}
    for case in cases:
        for threads in threads_list:
            for _ in range(processes):
                for framework in FRAMEWORKS:
                    for allocator in ("default", "kept heap"):
                        env = {k: v for k, v in os.environ.items() if k not in KEPT_HEAP}
                        if allocator != "default":
                            env.update(KEPT_HEAP)
                        env["PYTHONPATH"] = path
                        cmd = [sys.executable, __file__, "--child", case, framework,
                               str(threads), str(steps)]
                        res = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                             check=True)
                        got = json.loads(res.stdout.strip().splitlines()[-1])
                        row = out.setdefault((case, threads, framework, allocator),
                                             {"case": case, "threads": threads,
                                              "framework": framework, "allocator": allocator,
                                              "ms": [], "faults": []})
                        row["ms"].append(got["ms"])
                        row["faults"].append(got["faults"])
                        log(f"  {case} {threads}T {framework:8s} {allocator:9s} "
                            f"{got['ms']:7.1f} ms  {got['faults']:7.0f} faults/step")
    return list(out.values())


def _span(values, fmt="{:.1f}"):
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"


def table(grid):
    """Markdown: per case and thread count, each framework's step (range over processes)
    and faults per step under both allocators, and torch/fastrnn per allocator."""
    get = {(r["case"], r["threads"], r["framework"], r["allocator"]): r for r in grid}
    lines = ["| case | thr | allocator | fastrnn ms | torch ms | torch faults/step | "
             "fastrnn faults/step | torch / fastrnn (medians) |", "|---|---|---|---|---|---|---|---|"]
    for case, threads in dict.fromkeys((r["case"], r["threads"]) for r in grid):
        for allocator in ("default", "kept heap"):
            f, t = get[(case, threads, "fastrnn", allocator)], get[(case, threads, "torch", allocator)]
            ratio = statistics.median(t["ms"]) / statistics.median(f["ms"])
            lines.append(f"| {case} | {threads} | {allocator} | {_span(f['ms'])} | {_span(t['ms'])} | "
                         f"{_span(t['faults'], '{:.0f}')} | {_span(f['faults'], '{:.0f}')} | "
                         f"{ratio:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=4, metavar=("CASE", "FRAMEWORK", "THREADS", "STEPS"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--processes", type=int, default=3, help="fresh processes per configuration")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list of {','.join(CASES)}")
    args = ap.parse_args(argv)
    if args.child:
        case, framework, threads, steps = args.child
        child(case, framework, int(threads), int(steps))
        return
    grid = rows([int(t) for t in args.threads.split(",")], args.processes,
                cases=args.cases.split(","))
    print(table(grid))


if __name__ == "__main__":
    main()
