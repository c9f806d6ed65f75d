"""Training-step medians (forward + backward, d_out = ones) of the fastrnn first on sys.path,
on the grid, in this process alone: run it once per build, alternating, to compare builds
without one build's threads disturbing the other's (docs/numerics.md). --inference times
the inference forward instead.

    PYTHONPATH=python python benchmarks/train_step_times.py --threads 2 [--inference]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases  # noqa: E402
import fastrnn.functional as F  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inference", action="store_true", help="time the inference forward only")
    args = ap.parse_args(argv)
    F.set_num_threads(args.threads)
    for sh in cases.GRID:
        for cell, G in (("lstm", 4), ("gru", 3), ("rnn", 1)):
            rng = np.random.default_rng(0)
            x = rng.standard_normal((sh.T, sh.B, sh.I)).astype(np.float32)
            w_ih = rng.uniform(-.1, .1, (G * sh.H, sh.I)).astype(np.float32)
            w_hh = rng.uniform(-.1, .1, (G * sh.H, sh.H)).astype(np.float32)
            fw, bw = getattr(F, cell + "_forward"), getattr(F, cell + "_backward")

            def run():
                if args.inference:
                    fw(x, w_ih, w_hh, training=False)
                    return
                o = fw(x, w_ih, w_hh)
                bw(o[-1], np.ones_like(o[0]))
            run()
            run()
            t = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run()
                t.append(time.perf_counter() - t0)
            print(f"{sh.name} {cell} {np.median(t) * 1e3:.3f}", flush=True)


if __name__ == "__main__":
    main()
