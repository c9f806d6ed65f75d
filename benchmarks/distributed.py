"""Data-parallel scaling: training throughput of processes x threads, side by side.

    python benchmarks/distributed.py                  # mid_b32, 5 interleaved repetitions
    python benchmarks/distributed.py --reps 9 --steps 20 --shape mid_b32 --json out.json

One training step of a float32 LSTM layer of the given shape (cases.py; mid_b32 is
T=100, B=32, I=H=256): forward, backward of sum(out), gradient average across ranks
(`fastrnn.distributed.DataParallel`), SGD update. The global batch B is the same in every
configuration; with P processes each takes its B/P block (`shard`). Configurations:

    1x1   1 process, 1 kernel thread             (the baseline)
    1x2   1 process, 2 kernel threads            (fastrnn's threads)
    2x1   2 processes (mpiexec -n 2), 1 thread each, blocking allreduce
and, on a stack of two such layers (two modules, so a reduction can overlap a backward):
    stack 2x1 blocking   allreduce of both layers after the whole backward
    stack 2x1 overlap    layer 2's Iallreduce starts before layer 1's backward

Each configuration runs in its own process(es) (`--worker`); repetitions are interleaved
(1x1, 1x2, 2x1, ... then again, the order rotating) so that load from other jobs on the
machine hits all alike. Reported per configuration: the median step time over all timed
steps of all repetitions, sequences/s = B / median, the range of the per-repetition
medians (the spread), the speedup over 1x1 (median over repetitions of the ratio to the
same repetition's 1x1; one-layer configurations), the same paired ratio between the
stack's blocking and overlapped reductions, and for the MPI ones the median time inside
the gradient reduction (transfer plus waiting for the slower rank). The machine's load
average is printed after every repetition.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
try:
    import fastrnn
except ImportError:                  # a source checkout without an installed fastrnn
    sys.path.insert(0, str(HERE.parent / "python"))
    import fastrnn

import cases
import machine

CONFIGS = {   # name -> (processes, threads per process, stacked layers, overlap)
    "1x1": (1, 1, 1, False),
    "1x2": (1, 2, 1, False),
    "2x1": (2, 1, 1, False),
    "stack 2x1 blocking": (2, 1, 2, False),
    "stack 2x1 overlap": (2, 1, 2, True),
}


def find_mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def named_shape(text):
    """A cases.GRID name or T,B,I,H (cases.parse_shape)."""
    grid = {s.name: s for s in cases.GRID}
    if text in grid:
        return grid[text]
    return cases.parse_shape(text)


# -- worker: one configuration, prints JSON on rank 0 ------------------------------------------

def worker(args):
    """One configuration; a single process trains without DataParallel (no MPI at all)."""
    procs, threads, depth, overlap = CONFIGS[args.worker]
    fastrnn.set_num_threads(threads)
    shape = named_shape(args.shape)
    p = cases.make_problem("lstm", shape)
    layers = []
    for k in range(depth):
        layer = fastrnn.LSTM(shape.I if k == 0 else shape.H, shape.H)
        layer.load_state_dict({"weight_ih_l0": p.w_ih if k == 0 else p.w_hh,
                               "weight_hh_l0": p.w_hh, "bias_ih_l0": p.b_ih,
                               "bias_hh_l0": p.b_hh})
        layers.append(layer)
    x, dp, rank = p.x, None, 0
    if procs > 1:
        from mpi4py import MPI
        from fastrnn.distributed import DataParallel, shard
        assert MPI.COMM_WORLD.Get_size() == procs, f"{args.worker} needs {procs} processes"
        x, dp, rank = shard(p.x, axis=1), DataParallel(layers), MPI.COMM_WORLD.Get_rank()
    d_out = np.ones((shape.T, x.shape[1], shape.H), np.float32)       # gradient of sum(out)
    opt = fastrnn.optim.SGD(layers, lr=1e-4)

    def step():
        opt.zero_grad()
        h = x
        for layer in layers:
            h, _ = layer(h)
        d = d_out
        for layer in reversed(layers):
            d, _ = layer.backward(d)
            if overlap:
                dp.grads_ready(layer)
        t = time.perf_counter()
        if overlap:
            dp.synchronize()
        elif dp is not None:
            dp.allreduce_grads()
        reduce_s = time.perf_counter() - t
        opt.step()
        return reduce_s

    for _ in range(args.warmup):
        step()
    if dp is not None:
        dp.comm.Barrier()
    totals, reduces = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        reduces.append(step())
        totals.append(time.perf_counter() - t)
    if rank == 0:
        print(json.dumps({"step_ms": [1e3 * v for v in totals],
                          "reduce_ms": [1e3 * v for v in reduces],
                          "threads": fastrnn.get_num_threads()}))


# -- driver ---------------------------------------------------------------------------------

def run_config(name, args, mpiexec):
    procs, threads = CONFIGS[name][:2]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(fastrnn.__file__).resolve().parents[1]), env.get("PYTHONPATH"))
        if p)
    cmd = [sys.executable, __file__, "--worker", name, "--shape", args.shape,
           "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if procs > 1:
        cmd = [mpiexec, "-n", str(procs)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="mid_b32", help="a cases.py name or T,B,I,H")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per repetition")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    ap.add_argument("--json", metavar="PATH", help="also write the raw samples here")
    ap.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    names = [n.strip() for n in args.configs.split(",")]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configurations {unknown}; choose from {list(CONFIGS)}")
    mpiexec = find_mpiexec()
    if mpiexec is None and any(CONFIGS[n][0] > 1 for n in names):
        ap.error("no mpiexec beside this Python or on PATH (pip install '.[mpi]')")
    try:
        shape = named_shape(args.shape)
    except ValueError as e:
        ap.error(str(e))
    cpu = machine.cpu_info()
    load0 = os.getloadavg()
    print(f"shape {shape.name} (T={shape.T}, B={shape.B}, I={shape.I}, H={shape.H}), "
          f"float32 LSTM training steps; CPU {cpu['model']}, {cpu['usable_cpus']} usable "
          f"cores; load average {load0[0]:.2f}; {args.reps} interleaved repetitions x "
          f"{args.steps} steps", flush=True)
    samples, loads = {n: [] for n in names}, [load0[0]]
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            samples[name].append(run_config(name, args, mpiexec))
        loads.append(os.getloadavg()[0])
        print(f"  repetition {rep + 1}/{args.reps} done (load average {loads[-1]:.2f})",
              flush=True)

    print(f"\n| configuration | processes x threads | step ms (median) | sequences/s | "
          f"per-repetition medians, ms | speedup vs 1x1 | reduction ms |")
    print("|---|---|---|---|---|---|---|")
    base = [float(np.median(r["step_ms"])) for r in samples.get("1x1", [])]
    rows = {}
    for name in names:
        procs, threads = CONFIGS[name][:2]
        steps = [v for r in samples[name] for v in r["step_ms"]]
        per_rep = [float(np.median(r["step_ms"])) for r in samples[name]]
        med = float(np.median(steps))
        red = float(np.median([v for r in samples[name] for v in r["reduce_ms"]]))
        # Paired with the baseline of the same repetition, so slow drifts of the machine's
        # load cancel: the median of the per-repetition ratios.
        speedup = float(np.median(np.divide(base, per_rep))) \
            if base and CONFIGS[name][2] == 1 else None        # the stack does twice the work
        rows[name] = {"median_ms": med, "sequences_per_s": shape.B / med * 1e3,
                      "rep_medians_ms": per_rep, "speedup_vs_1x1": speedup, "reduce_ms": red}
        print(f"| {name} | {procs} x {samples[name][0]['threads']} | {med:.1f} | "
              f"{shape.B / med * 1e3:.0f} | {min(per_rep):.1f}-{max(per_rep):.1f} | "
              f"{'-' if speedup is None else f'{speedup:.2f}'} | "
              f"{f'{red:.2f}' if procs > 1 else '-'} |")
    pair = ("stack 2x1 blocking", "stack 2x1 overlap")
    if all(n in names for n in pair):
        ratio = np.divide(*(rows[n]["rep_medians_ms"] for n in pair))
        print(f"\noverlap vs blocking (stack): step time ratio blocking / overlap, median "
              f"{np.median(ratio):.2f} over the repetitions (from {ratio.min():.2f} to "
              f"{ratio.max():.2f}; > 1 means overlapping pays)")
    print(f"\nload average (1 min) from {min(loads):.2f} to {max(loads):.2f} during the run")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "shape": shape.__dict__, "cpu": cpu, "load_average": loads,
            "reps": args.reps, "steps": args.steps, "results": rows,
            "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
