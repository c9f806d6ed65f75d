"""fastrnn on a busy machine: the default thread count against 1 thread, with every core
already busy with another process (issue #18, item 5).

A load generator starts one busy-looping process per CPU this process may use; the
workload (the README's layers example: 300 training steps of LSTM(1, 32) + Dense on
(64, 20, 1) batches, an LSTM(128, 128) training call on (100, 32, 128), and the same on one
sequence (100, 1, 128), whose steps are split by hidden units with a barrier each) then runs in a
fresh interpreter with the default thread count, and again with 1 thread, alternating.
Without the load too, for reference.

    python benchmarks/busy.py                       # the fastrnn on the path
    PYTHONPATH=/other/build python benchmarks/busy.py   # another build (e.g. main's)

Prints, per workload and load, the median time of each setting and default / 1 thread
(the target under load: at most about 1.5).
"""
import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

WORKLOAD = r"""
import sys, time
import numpy as np
import fastrnn
from fastrnn.nn import Dense, mse
from fastrnn.optim import Adam
if sys.argv[1] != "default":
    fastrnn.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
if sys.argv[2] == "readme":
    lstm = fastrnn.LSTM(input_size=1, hidden_size=32, batch_first=True, seed=0)
    head = Dense(32, 1, seed=0)
    opt = Adam([lstm, head], lr=1e-2)
    t0 = time.perf_counter()
    for step in range(300):
        x = rng.uniform(-1, 1, (64, 20, 1)).astype(np.float32)
        y = np.cumsum(x, axis=1) / np.arange(1, 21)[:, None]
        out, (h_n, c_n) = lstm(x)
        loss, d_pred = mse(head(out), y)
        opt.zero_grad()
        lstm.backward(head.backward(d_pred))
        opt.step()
else:
    B, calls = (32, 20) if sys.argv[2] == "lstm128" else (1, 200)   # latency_b1: one sequence
    lstm = fastrnn.LSTM(128, 128, seed=0)
    x = rng.standard_normal((100, B, 128)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(calls):
        out, _ = lstm(x)
        lstm.backward(np.ones_like(out))
print(time.perf_counter() - t0, fastrnn.get_num_threads())
"""


def spin():
    while True:
        pass


def run(threads, workload):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if "PYTHONPATH" not in env:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "python")
    r = subprocess.run([sys.executable, "-c", WORKLOAD, threads, workload], env=env,
                       capture_output=True, text=True, check=True)
    seconds, n = r.stdout.split()
    return float(seconds), int(n)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each setting (alternating)")
    ap.add_argument("--workloads", default="readme,lstm128,latency_b1",
                    help="comma list of readme, lstm128, latency_b1")
    args = ap.parse_args(argv)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cpus} CPUs; default thread count = {run('default', 'readme')[1]}")
    print(f"{'workload':<12}{'load':<14}{'default s':>10}{'1 thread s':>11}{'default/1':>11}")
    for workload in args.workloads.split(","):
        for loaded in (False, True):
            procs = [mp.Process(target=spin, daemon=True) for _ in range(cpus if loaded else 0)]
            for p in procs:
                p.start()
            time.sleep(0.5 if loaded else 0)
            times = {"default": [], "1": []}
            try:
                for _ in range(args.repeats):
                    for setting in times:
                        times[setting].append(run(setting, workload)[0])
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.join()
            d, one = median(times["default"]), median(times["1"])
            load = f"{cpus} spinners" if loaded else "none"
            print(f"{workload:<12}{load:<14}{d:>10.2f}{one:>11.2f}{d / one:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
