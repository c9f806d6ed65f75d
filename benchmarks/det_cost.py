"""Training-step time of the fastrnn on the path against another build, on the grid.

Both builds are imported in one process and called in turns (forward training +
backward with d_out = ones), median of --repeats; prints this/other per row, at 1 and
2 threads. Used for docs/numerics.md's cost of determinism (other = a build before it).

    PYTHONPATH=python python benchmarks/det_cost.py --other /path/with/fastrnn [--repeats 5]
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases  # noqa: E402
import peers  # noqa: E402
import fastrnn.functional as this  # noqa: E402


def step(F, cell, p):
    fw, bw = getattr(F, cell + "_forward"), getattr(F, cell + "_backward")

    def run():
        o = fw(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        bw(o[-1], np.ones_like(o[0]))
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other", required=True, help="directory holding the other fastrnn package")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--shapes", default=",".join(s.name for s in cases.GRID), help="comma list of grid shapes")
    ap.add_argument("--cells", default="lstm,gru,rnn", help="comma list of lstm,gru,rnn")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the calling thread's CPU time (time.thread_time), which a busy "
                    "machine barely moves; meaningful at 1 thread only")
    args = ap.parse_args(argv)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    shapes = [s for s in cases.GRID if s.name in args.shapes.split(",")]
    cells = [c for c in (("lstm", 4), ("gru", 3), ("rnn", 1)) if c[0] in args.cells.split(",")]
    peers._import_package("fastrnn_other", Path(args.other) / "fastrnn", None)
    import fastrnn_other.functional as other
    print("threads shape cell other_ms this_ms this/other")
    print(f"load average {os.getloadavg()[0]:.1f} at the start; clock {args.clock}")
    for nt in (int(t) for t in args.threads.split(",")):
        this.set_num_threads(nt)
        other.set_num_threads(nt)
        for sh in shapes:
            for cell, G in cells:
                rng = np.random.default_rng(0)
                p = {"x": rng.standard_normal((sh.T, sh.B, sh.I)).astype(np.float32),
                     "w_ih": rng.uniform(-.1, .1, (G * sh.H, sh.I)).astype(np.float32),
                     "w_hh": rng.uniform(-.1, .1, (G * sh.H, sh.H)).astype(np.float32),
                     "b_ih": np.zeros(G * sh.H, np.float32), "b_hh": np.zeros(G * sh.H, np.float32)}
                fns = {"other": step(other, cell, p), "this": step(this, cell, p)}
                for f in fns.values():
                    f()
                t = {k: [] for k in fns}
                for _ in range(args.repeats):
                    for k, f in fns.items():
                        t0 = clock()
                        f()
                        t[k].append(clock() - t0)
                a, b = np.median(t["other"]), np.median(t["this"])
                print(f"{nt} {sh.name} {cell} {a * 1e3:.1f} {b * 1e3:.1f} {b / a:.3f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
