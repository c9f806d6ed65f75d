"""fastrnn benchmark suite: fastrnn, the NumPy reference, PyTorch and ONNX Runtime side by side.

    python benchmarks/run.py --quick                 # the short run (well under a minute)
    python benchmarks/run.py --json out.json --plot out.png
    python benchmarks/run.py --shapes none --shape 20,4,16,32 --threads 1
    python benchmarks/run.py --peers none --interleave --build portable=VENV/lib/python3.X/site-packages
    python benchmarks/run.py --precision float32,bfloat16,int8 --shapes mid_b32,big_b64 --cells lstm,gru --threads 1
    python benchmarks/run.py --precision float32,bfloat16 --modes training --shapes mid_b32,big_b64 --cells lstm,gru
    python benchmarks/run.py --variants --shapes mid_b32 --threads 1 --json benchmarks/results/variants/DATE.json
    python benchmarks/run.py --allocator --json benchmarks/results/allocator/DATE.json

See benchmarks/README.md for what is measured and what the columns mean.
"""
import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

try:
    import fastrnn
except ImportError:            # running from a source checkout without PYTHONPATH=python
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import fastrnn

import allocator
import cases
import harness
import machine
import memory
import peers
import precision
import precision_training
import report
import step
import variants

PEERS = [name for name in peers.BACKENDS if name not in ("reference", report.PRIMARY)]
QUICK = {"shapes": ",".join(cases.QUICK_SHAPES), "threads": "1", "warmup": 1, "repeats": 5,
         "budget": 0.4, "memory": "10000,16,128,128"}
FULL = {"shapes": ",".join(s.name for s in cases.GRID), "threads": "1,2", "warmup": 2,
        "repeats": 15, "budget": 2.0, "memory": "10000,64,256,256"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"short run: shapes {QUICK['shapes']}, {QUICK['threads']} thread, "
                        f"≤{QUICK['repeats']} repeats, a smaller memory run for fastrnn only")
    p.add_argument("--shapes", help="comma list of grid shapes, or 'none' "
                   f"(grid: {', '.join(f'{s.name}={s.dims()}' for s in cases.GRID)})")
    p.add_argument("--shape", action="append", default=[], metavar="[NAME=]T,B,I,H",
                   help="an extra shape (repeatable)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma list of {','.join(PEERS)}, "
                   "or 'none' (the reference and fastrnn always run)")
    p.add_argument("--build", action="append", default=[], metavar="NAME=DIR[@ISA]",
                   help="also time the fastrnn package in DIR (another build, e.g. a virtual "
                        "environment's site-packages) as backend NAME, with FASTRNN_ISA=ISA if given "
                        "(repeatable); its × column compares it with the fastrnn on sys.path")
    p.add_argument("--interleave", action="store_true",
                   help="time the backends of a row in turns, one call each, instead of one after "
                        "the other (the reference still alone): for comparing close contenders")
    p.add_argument("--cells", default=",".join(cases.CELLS), help="comma list of lstm,gru,rnn")
    p.add_argument("--modes", help="comma list of inference,training (default both; with "
                   "--precision: inference)")
    p.add_argument("--threads", help="comma list of thread counts (default 1,2; quick 1)")
    p.add_argument("--warmup", type=int, help="untimed calls before timing (default 2; quick 1)")
    p.add_argument("--repeats", type=int, help="timed calls at most (default 15; quick 5)")
    p.add_argument("--budget", type=float, help="seconds per measurement after which timing "
                   "stops once 3 calls are in (default 2; quick 0.4)")
    p.add_argument("--gemm", type=int, default=2048, metavar="N", help="roofline GEMM size N³")
    p.add_argument("--memory", metavar="T,B,I,H", help="LSTM shape of the peak-memory run "
                   f"(default {FULL['memory']}; quick {QUICK['memory']})")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    p.add_argument("--step", action="store_true", help="only the one-step latency table "
                   "(B=1, I=H in 128,256,512; engine step vs PyTorch cells; benchmarks/step.py)")
    p.add_argument("--precision", metavar="LIST", help="only the low-precision table: comma list "
                   "of float32,bfloat16,int8 (float32 included) for the fastrnn engine, against "
                   "torch bf16 / quantize_dynamic and ONNX Runtime DynamicQuantizeLSTM, on --shapes, "
                   "--cells (lstm, gru) and --threads, plus eng.step at H=512 (benchmarks/precision.py); "
                   "with --modes training: float32,bfloat16 training steps against torch fp32 and "
                   "torch.autocast bf16 (benchmarks/precision_training.py)")
    p.add_argument("--variants", action="store_true", help="only the cell-variant table on "
                   "--shapes, --cells and --threads: each variant's training step over its plain "
                   "cell's, and PyTorch's LN-LSTM loop when torch is installed "
                   "(benchmarks/variants.py)")
    p.add_argument("--allocator", action="store_true", help="only the allocator table: each "
                   "framework alone in fresh processes, with glibc's default malloc and with its "
                   "heap kept, training steps of the LM, LSTM mid_b32 (fp32, bf16) and GRU mid_b32 on --threads, "
                   "with page faults per step (needs torch; benchmarks/allocator.py)")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument("--plot", metavar="PATH", help="draw fastrnn's speedups (needs matplotlib)")
    args = p.parse_args(argv)
    args.cpu_start = machine.cpu_snapshot()   # for the other processes' CPU over the run
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    def listed(text, allowed, what):
        items = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad:
            p.error(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}")
        return items

    grid = {s.name: s for s in cases.GRID}
    names = [] if args.shapes == "none" else listed(args.shapes, list(grid), "shape")
    try:
        args.shapes = [grid[n] for n in names] + [cases.parse_shape(s) for s in args.shape]
        args.memory = None if args.no_memory else cases.parse_shape(args.memory)
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError as err:
        p.error(str(err))
    if not args.shapes:
        p.error("no shapes to run: give --shapes and/or --shape")
    if min(args.threads) < 1:
        p.error("thread counts must be positive")
    args.peers = [] if args.peers == "none" else listed(args.peers, PEERS, "peer")
    builds = []
    for text in args.build:
        name, sep, rest = text.partition("=")
        path, _, isa = rest.partition("@")
        if not (sep and name and path):
            p.error(f"--build takes NAME=DIR or NAME=DIR@ISA, got {text!r}")
        if name in peers.BACKENDS or name in (b[0] for b in builds):
            p.error(f"--build name {name!r} is taken")
        builds.append((name, path, isa or None))
    args.build = builds
    args.cells = listed(args.cells, cases.CELLS, "cell")
    if args.precision is not None:
        args.precision = listed(args.precision, ["float32", "bfloat16", "int8"], "precision")
        if "float32" not in args.precision:
            p.error("--precision must include float32 (speedups are over it)")
    default_modes = ["inference"] if args.precision is not None else list(cases.MODES)
    args.modes = default_modes if args.modes is None else listed(args.modes, cases.MODES, "mode")
    if args.precision is not None and "training" in args.modes and "int8" in args.precision:
        p.error("training runs in float32 or bfloat16: --precision float32,bfloat16 with --modes training")
    return args


class Progress:
    """Rows done so far, on stderr: tqdm's bar on a terminal (if installed), else one line each."""

    def __init__(self, total):
        self.bar, self.done, self.total = None, 0, total
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, file=sys.stderr, unit="row", leave=False)
            except ImportError:
                pass

    def step(self, label):
        if self.bar is not None:
            self.bar.set_postfix_str(label)
            self.bar.update()
        else:
            self.done += 1
            print(f"[{self.done}/{self.total}] {label}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_row(backends, bound, oracle, problem, mode, threads, roofline, args):
    """Validate then time every backend on one (cell, shape, mode, threads)."""
    row = {"cell": problem.cell, "shape": vars(problem.shape), "mode": mode, "threads": threads,
           "flops": cases.flops(problem.cell, problem.shape, mode), "backends": {}, "speedup": {}}
    checks, in_turns = {}, {}
    for b in backends:
        fn = bound[b.name].get(mode)
        if fn is None:
            continue
        try:
            if b.name == "reference" and mode == "training":
                checks[b.name] = {"ok": True, "errors": {}, "oracle": True}
            else:
                checks[b.name] = harness.validate(fn(), oracle, mode)
            # The slow reference is timed alone even with --interleave: in turns, its
            # seconds-long calls would leave the others few rounds.
            if args.interleave and b.name != "reference":
                in_turns[b.name] = fn
                continue
            row["backends"][b.name] = harness.measure(fn, args.warmup, args.repeats, args.budget)
        except Exception as err:     # one failing backend must not stop the others
            row["backends"][b.name] = failed(err)
    if in_turns:
        try:
            row["backends"].update(harness.measure_interleaved(in_turns, args.warmup, args.repeats,
                                                               args.budget))
        except Exception as err:
            row["backends"].update({name: failed(err) for name in in_turns})
    for name, r in row["backends"].items():
        if "error" not in r:
            r["gflops"] = row["flops"] / r["median_ms"] / 1e6
            r["roofline_share"] = r["gflops"] / roofline
            r["validation"] = checks[name]
    primary = row["backends"].get(report.PRIMARY)
    if primary and "error" not in primary:
        row["speedup"] = {name: r["median_ms"] / primary["median_ms"]
                          for name, r in row["backends"].items()
                          if name != report.PRIMARY and "error" not in r}
    return row


def failed(err):
    """The entry of a backend whose call raised: reported, never timed."""
    return {"error": f"{type(err).__name__}: {err}", "validation": {"ok": False, "errors": {}}}


def bind(backend, problem, threads):
    """The backend's callables; ones that raise the binding error when it could not bind."""
    try:
        return backend.bind(problem, threads)
    except Exception as err:
        def raise_it(err=err):
            raise err
        return {mode: raise_it for mode in backend.modes}


def run_grid(backends, args, doc, torch):
    progress = Progress(len(args.threads) * len(args.shapes) * len(args.cells) * len(args.modes))
    for threads in args.threads:
        with machine.thread_limit(threads):
            for b in backends:
                b.set_threads(threads)
            roof = machine.roofline(threads, args.gemm, 3 if args.quick else 5, torch)
            doc["roofline"][str(threads)] = roof
            for shape in args.shapes:
                for cell in args.cells:
                    problem = cases.make_problem(cell, shape)
                    bound = {b.name: bind(b, problem, threads) for b in backends}
                    oracle = bound["reference"]["training"]()
                    for mode in args.modes:
                        doc["results"].append(run_row(backends, bound, oracle, problem, mode,
                                                      threads, roof["gflops"], args))
                        progress.step(f"{threads}T {cell} {shape.name} {mode}")
    progress.close()


def run_memory(backends, args, doc):
    """fastrnn and the peers (quick: fastrnn only; never --build builds); the slow reference
    only stands in for an absent fastrnn."""
    names = [b.name for b in backends if b.name != "reference" and b.name in peers.BACKENDS]
    if report.PRIMARY not in names:
        names.insert(0, "reference")
    if args.quick:
        names = names[:1]
    pythonpath = str(Path(fastrnn.__file__).resolve().parents[1])
    threads = max(args.threads)
    runs = []
    for name in names:
        print(f"peak memory: {name} ...", file=sys.stderr, flush=True)
        runs.append(memory.peak_memory(name, "lstm", args.memory, threads, pythonpath))
    doc["memory"] = {"cell": "lstm", "shape": vars(args.memory), "threads": threads, "runs": runs}


def optional_torch():
    """torch if installed (the peer of the --step/--precision/--variants tables), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def thread_counts(args, torch):
    """Each of --threads in turn, with fastrnn's, torch's (if any) and the BLAS/OpenMP
    libraries' thread counts set to it."""
    for threads in args.threads:
        with machine.thread_limit(threads):
            fastrnn.set_num_threads(threads)
            if torch is not None:
                torch.set_num_threads(threads)
            yield threads


def run_step(args):
    """The one-step latency table at each thread count; exit status 1 on a mismatch."""
    torch = optional_torch()
    load = os.getloadavg()[0]
    rows = []
    for threads in thread_counts(args, torch):
        rows += step.step_rows(fastrnn, torch, threads)
    text, ok = step.table(rows)
    finish_mode(args, load, "one-step latency", "", [text], {"step": rows})
    return ok


def mode_meta(args, load):
    """What the --step/--precision/--variants/--allocator JSON records about the run (report.py
    shows it)."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "cpu": machine.cpu_info(),
            "threads": args.threads,
            "load_average": {"start": load, "end": os.getloadavg()[0]},
            "other_cpu": machine.other_cpu(args.cpu_start)}


def finish_mode(args, load, title, how, tables, results):
    """Print a mode's header (CPU, load at start and end; how it timed) and its tables, and
    save {"meta", **results} to --json."""
    print(f"{title} · CPU: {machine.cpu_info().get('model', '?')} · load average {load:.2f} at "
          f"the start, {os.getloadavg()[0]:.2f} at the end (1-minute)" + (f"; {how}" if how else ""))
    for text in tables:
        print(text)
    if args.json:
        report.write_json({"meta": mode_meta(args, load), **results}, args.json)


def run_variants(args):
    """The cell-variant table (docs/variants.md) at each thread count."""
    torch = optional_torch()
    load = os.getloadavg()[0]
    rows = []
    for threads in thread_counts(args, torch):
        for shape in args.shapes:
            rows += variants.measure(fastrnn.functional, shape, threads, args.cells,
                                     budget=15.0, torch_peer=torch is not None)
    finish_mode(args, load, "cell variants", "training step (forward + backward), medians of "
                "interleaved calls", [variants.table(rows)], {"variants": rows})


def run_allocator(args):
    """The allocator table (benchmarks/allocator.py): every configuration in its own processes."""
    if optional_torch() is None:
        sys.exit("--allocator compares with PyTorch: install torch")
    load = os.getloadavg()[0]
    grid = allocator.rows(args.threads)
    finish_mode(args, load, "allocator", "each framework alone per process, medians of its steps",
                [allocator.table(grid)], {"allocator": grid})


def run_precision(args):
    """The low-precision table at each thread count; exit status 1 if an engine misses
    its accuracy bound (docs/precision.md)."""
    torch = optional_torch()
    load = os.getloadavg()[0]
    grid, steps = [], []
    cells = [c for c in args.cells if c in ("lstm", "gru")]
    training = []
    for threads in thread_counts(args, torch):
        if "inference" in args.modes:
            grid += precision.rows(fastrnn, torch, args.precision, cells, args.shapes, threads)
            steps += precision.step_rows(fastrnn, args.precision, threads)
        if "training" in args.modes:
            training += precision_training.rows(fastrnn, torch, args.precision, cells, args.shapes, threads)
    finish_mode(args, load, "low precision", "medians of interleaved calls",
                ([precision.table(grid, steps, args.precision)] if grid else [])
                + ([precision_training.table(training)] if training else []),
                {"precision": grid, "step": steps, "training": training})
    bound = {"float32": 1e-5, "bfloat16": 1e-2, "int8": 3e-2}
    return (all(r["errors"][f"fastrnn {p}"] <= bound[p] for r in grid for p in args.precision)
            and all(r["errors"][f"fastrnn {p}"] <= precision_training.BOUND for r in training
                    for p in args.precision))


def main(argv=None):
    args = parse_args(argv)
    if args.step:
        sys.exit(0 if run_step(args) else 1)
    if args.precision:
        sys.exit(0 if run_precision(args) else 1)
    if args.variants:
        run_variants(args)
        sys.exit(0)
    if args.allocator:
        run_allocator(args)
        sys.exit(0)
    all_backends = [make() for name, make in peers.BACKENDS.items() if name not in PEERS]
    all_backends += [peers.Build(name, path, isa) for name, path, isa in args.build]
    all_backends += [peers.BACKENDS[name]() for name in args.peers]
    backends = [b for b in all_backends if b.available]
    if not any(b.name == "reference" for b in backends):
        sys.exit("fastrnn.reference cannot be imported: it is the oracle every result is "
                 "checked against, so nothing can be measured")
    blas = machine.blas_info()       # after the imports: lists every BLAS/OpenMP runtime loaded
    torch = next((b.torch for b in backends if b.name == "torch"), None)
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick, "python": platform.python_version(),
            "cpu": machine.cpu_info(), "blas": blas, "blas_summary": machine.blas_summary(blas),
            "threads": args.threads,
            "threads_controlled": machine.threadpoolctl is not None,
            "timing": f"{args.warmup} warm-up call(s) after a validation call, then ≤{args.repeats} "
                      f"timed calls, stopping after {args.budget:g} s once 3 are in; "
                      "the same rule for every backend",
            "flops": "inference 2·T·B·(I+H)·G·H (G = 4 lstm, 3 gru, 1 rnn); training 3× that",
            "tolerance": harness.TOLERANCE,
            "load_average": {"start": os.getloadavg()[0]},
        },
        "backends": {b.name: b.info() for b in all_backends},
        "roofline": {}, "results": [], "memory": None,
    }
    if machine.threadpoolctl is None:
        print("warning: threadpoolctl is not installed, so BLAS/OpenMP thread counts are not "
              "controlled (pip install threadpoolctl)", file=sys.stderr)
    run_grid(backends, args, doc, torch)
    if args.memory is not None:
        run_memory(backends, args, doc)
    doc["meta"]["load_average"]["end"] = os.getloadavg()[0]
    doc["meta"]["other_cpu"] = machine.other_cpu(args.cpu_start)
    print(report.text(doc))
    if args.json:
        report.write_json(doc, args.json)
        print(f"JSON written to {args.json}")
    if args.plot:
        print(report.plot(doc, args.plot))
    return doc


if __name__ == "__main__":
    sys.exit(0 if report.all_valid(main()) else 1)
