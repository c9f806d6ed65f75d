"""1-thread training steps against PyTorch by the calling thread's CPU time.

On a shared machine wall-clock ratios move with other jobs' load; with one thread each
framework computes on the calling thread, and `time.thread_time` counts only the time
that thread ran, so the ratio survives a busy machine (cache sharing aside). Both run
the benchmark grid's training step (forward + backward of sum(out), dx included, as
`run.py --modes training`) in turns, one call each, median of --repeats. Also prints
fastrnn's share of the 1-thread GEMM roofline by the same clock (NumPy's sgemm, N³).

    python benchmarks/train_cpu_time.py [--shapes mid_b32,...] [--cells lstm,...] [--repeats 7]
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import fastrnn  # noqa: F401
except ImportError:            # running from a source checkout without PYTHONPATH=python
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import cases  # noqa: E402
import peers  # noqa: E402


def roofline(n=1024, repeats=5):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    t = []
    for _ in range(repeats):
        t0 = time.thread_time()
        a @ a
        t.append(time.thread_time() - t0)
    return 2 * n ** 3 / np.median(t) / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(s.name for s in cases.GRID))
    ap.add_argument("--cells", default=",".join(cases.CELLS))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits
    fr, torch = peers.Functional("fastrnn", "fastrnn.functional"), peers.Torch()
    fr.set_threads(1)
    torch.set_threads(1)
    with threadpool_limits(1):
        roof = roofline()
    print(f"1 thread, CPU time of the calling thread; load average {os.getloadavg()[0]:.1f}; "
          f"roofline {roof:.1f} GF/s (NumPy sgemm 1024³, same clock)")
    print(f"{'cell':<5} {'shape':<11} {'fastrnn ms':>10} {'torch ms':>9} {'× torch':>8} {'%roof':>6}")
    for sh in (s for s in cases.GRID if s.name in args.shapes.split(",")):
        for cell in args.cells.split(","):
            p = cases.make_problem(cell, sh)
            fns = {"fastrnn": fr.bind(p, 1)["training"], "torch": torch.bind(p, 1)["training"]}
            t = {k: [] for k in fns}
            for f in fns.values():
                f()
            for _ in range(args.repeats):
                for k, f in fns.items():
                    t0 = time.thread_time()
                    f()
                    t[k].append(time.thread_time() - t0)
            a, b = np.median(t["fastrnn"]), np.median(t["torch"])
            gf = cases.flops(cell, sh, "training") / a / 1e9
            print(f"{cell:<5} {sh.name:<11} {a * 1e3:>10.1f} {b * 1e3:>9.1f} {b / a:>8.2f} "
                  f"{100 * gf / roof:>5.0f}%", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
