"""Presenting results: the text table, the JSON file, the plots and docs/performance.md.

    python benchmarks/report.py                       # newest benchmarks/results/*.json -> docs/
    python benchmarks/report.py benchmarks/results/2026-12-04-2010-full.json

docs/performance.md and docs/img/performance-*.png are generated here from one saved grid
run, plus the newest saved run of each other mode (benchmarks/results/{step,precision,
training,variants,allocator}/*.json, from `run.py --step/--precision/--variants/--allocator --json`); edit this file, never
the page.
"""
import argparse
import json
import sys
from pathlib import Path

PRIMARY = "fastrnn"
# The other modes of run.py: results/<kind>/*.json -> a section of docs/performance.md.
MODES = {"step": ("One-step latency", "--step"),
         "precision": ("Low precision: bfloat16 and int8 engines",
                       "--precision float32,bfloat16,int8 --shapes mid_b32,big_b64 --cells lstm,gru"),
         "training": ("Training in bfloat16",
                      "--precision float32,bfloat16 --modes training --shapes mid_b32,big_b64 "
                      "--cells lstm,gru"),
         "variants": ("Cell variants", "--variants --shapes mid_b32"),
         "allocator": ("PyTorch's page faults: each framework alone", "--allocator")}


def _ms(v):
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _columns(doc):
    """Backends that have a column: the available ones, in table order."""
    return [name for name, info in doc["backends"].items() if info["available"]]


def header(doc):
    m = doc["meta"]
    cpu = m["cpu"]
    lines = [
        f"fastrnn benchmark suite · {m['date']} · {'quick' if m['quick'] else 'full'} run",
        f"CPU:     {cpu['model']} (family {cpu['family']}, model {cpu['model_id']}), "
        f"{cpu['usable_cpus']} usable CPUs, SIMD {' '.join(cpu['simd']) or '-'}",
        f"BLAS:    {m['blas_summary']}",
        f"threads: {', '.join(map(str, m['threads']))}   dtype float32, time-major, one layer",
        f"timing:  {m['timing']}",
        f"load:    average {m['load_average']['start']:.2f} at the start, "
        f"{m['load_average']['end']:.2f} at the end (1-minute; much above 0 at the start "
        "means other processes share the cores and the times are noisy)"
        + ("  <-- WARNING: busy machine" if m["load_average"]["start"] > 1 else ""),
        f"FLOPs:   {m['flops']}",
    ]
    for name, info in doc["backends"].items():
        where = f", ISA {info['isa']}, from {info['path']}" if "isa" in info else ""
        state = (f"{info.get('version')} (threads: {info['threads_set_by']}{where})" if info["available"]
                 else f"ABSENT — {info['reason']}")
        lines.append(f"  {name:<12} {state}")
    return "\n".join(lines)


def table(doc):
    cols = _columns(doc)
    has_primary = PRIMARY in cols
    sw = max([12] + [len(r["shape"]["name"]) for r in doc["results"]])
    head = f"{'cell':<5} {'shape':<{sw}} {'mode':<9} |"
    for name in cols:
        extra = " %roof" if name == PRIMARY else "      ×" if has_primary else ""
        head += f" {name[:11]:>11}  ±%  GF/s{extra} |"
    lines, current = [], None
    for row in doc["results"]:
        if row["threads"] != current:
            current = row["threads"]
            roof = doc["roofline"][str(current)]
            lines += ["", f"== {current} thread{'s' * (current > 1)} · float32 GEMM roofline "
                      f"{roof['gflops']:.1f} GF/s ({roof['source']}, {roof['n']}³) ==", head,
                      "-" * len(head)]
        line = f"{row['cell']:<5} {row['shape']['name']:<{sw}} {row['mode']:<9} |"
        for name in cols:
            r = row["backends"].get(name)
            width = 22 + (6 if name == PRIMARY else 7 if has_primary else 0)
            if r is None or "error" in r:
                line += f"{'—' if r is None else 'ERROR!':>{width}} |"
                continue
            flag = " " if r["validation"]["ok"] else "!"
            spread = 100 * (r["q3_ms"] - r["q1_ms"]) / r["median_ms"]
            line += f" {_ms(r['median_ms']):>10}{flag} {spread:3.0f} {r['gflops']:5.1f}"
            if name == PRIMARY:
                line += f" {100 * r['roofline_share']:4.0f}%"
            elif has_primary:
                speedup = row["speedup"].get(name)
                line += f" {speedup:5.2f}×" if speedup else "      ?"
            line += " |"
        lines.append(line)
    return "\n".join(lines)


def legend(doc):
    text = ("columns: median ms over the timed repeats · ±% = interquartile range / median · "
            "GF/s by the FLOP formula above")
    if PRIMARY in _columns(doc):
        text += ("\n         %roof = fastrnn GF/s / same-run GEMM roofline · "
                 "× = fastrnn's speedup over that backend (its median / fastrnn's)")
    else:
        text += f"\n         no speedups: {PRIMARY} is absent"
    return text + ("\n         ! = output or gradients differ from the reference, ERROR! = the "
                   "call raised (both listed below)")


def all_valid(doc):
    return all(r["validation"]["ok"] for row in doc["results"] for r in row["backends"].values())


def failures(doc):
    lines = []
    for row in doc["results"]:
        for name, r in row["backends"].items():
            if "error" in r:
                lines.append(f"  ! {name} {row['cell']} {row['shape']['name']} {row['mode']} "
                             f"{row['threads']}T raised {r['error']}")
            elif not r["validation"]["ok"]:
                errs = ", ".join(f"{k} {v:.2g}" for k, v in r["validation"]["errors"].items())
                lines.append(f"  ! {name} {row['cell']} {row['shape']['name']} {row['mode']} "
                             f"{row['threads']}T: relative error {errs} "
                             f"(tolerance {doc['meta']['tolerance']})")
    if not lines:
        return "validation: every result matches the reference within " \
               f"{doc['meta']['tolerance']} (max |diff| / max |reference|)"
    return "VALIDATION FAILURES:\n" + "\n".join(lines)


def memory(doc):
    if not doc["memory"]:
        return "peak memory: skipped (--no-memory)"
    m = doc["memory"]
    s = m["shape"]
    lines = [f"peak memory of one {m['cell']} inference, T={s['T']} B={s['B']} I={s['I']} "
             f"H={s['H']}, {m['threads']} thread(s), fresh subprocess (VmHWM rise):",
             f"  output {m['runs'][0]['output_mib']:.0f} MiB · a per-step gate array "
             f"(what a training cache holds at least) {m['runs'][0]['per_step_gates_mib']:.0f} MiB"]
    for r in m["runs"]:
        if "error" in r:
            lines.append(f"  {r['backend']:<12} failed: {' '.join(r['error'])}")
            continue
        verdict = "keeps per-step state" if r["keeps_per_step_state"] else "no per-step state"
        lines.append(f"  {r['backend']:<12} peak rise {r['peak_rise_mib']:7.0f} MiB = output "
                     f"+ {r['extra_beyond_output_mib']:6.0f} MiB  -> {verdict} "
                     f"({r['seconds']:.1f} s)")
    return "\n".join(lines)


def text(doc):
    return "\n".join([header(doc), table(doc), "", legend(doc), failures(doc), memory(doc)])


def write_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=float)


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _panels(doc):
    """Rows grouped for plotting: cells, (mode, threads) panels, shape names, in run order."""
    rows = doc["results"]
    return (list(dict.fromkeys(r["cell"] for r in rows)),
            list(dict.fromkeys((r["mode"], r["threads"]) for r in rows)),
            list(dict.fromkeys(r["shape"]["name"] for r in rows)))


def _bar_grid(doc, path, series, value, ylabel, baseline, log):
    """One panel per cell and (mode, threads), one bar per shape and series; value(row, name)
    is the bar's height or None. Bars grow from `baseline` (1 for speedups: up = faster)."""
    plt = _pyplot()
    if plt is None:
        return f"no plot: matplotlib is not installed (pip install matplotlib) — {path} not written"
    cells, panels, shapes = _panels(doc)
    fig, axes = plt.subplots(len(cells), len(panels), squeeze=False, sharey=True,
                             figsize=(1.2 + 0.9 * len(shapes) * len(panels), 2.6 * len(cells)))
    width = 0.8 / len(series)
    for i, cell in enumerate(cells):
        for j, (mode, threads) in enumerate(panels):
            ax = axes[i][j]
            for k, name in enumerate(series):
                xs, ys = [], []
                for s, shape in enumerate(shapes):
                    for r in doc["results"]:
                        if (r["cell"], r["shape"]["name"], r["mode"], r["threads"]) == \
                                (cell, shape, mode, threads) and value(r, name) is not None:
                            xs.append(s + (k - (len(series) - 1) / 2) * width)
                            ys.append(value(r, name))
                ax.bar(xs, [y - baseline for y in ys], width, bottom=baseline, label=name)
            ax.axhline(1.0, color="black", linewidth=0.8)
            if log:
                ax.set_yscale("log")
            ax.set_xticks(range(len(shapes)), shapes, rotation=30, ha="right", fontsize=7)
            ax.set_title(f"{cell} · {mode} · {threads}T", fontsize=9)
            if j == 0:
                ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return f"plot written to {path}"


def plot(doc, path):
    """Bar chart of fastrnn's speedup over each peer, per shape; one panel per cell and
    (mode, threads). Returns a message saying what was written or why not."""
    if PRIMARY not in _columns(doc):
        return f"no plot: {PRIMARY} is absent, so there are no speedups — {path} not written"
    peers = [p for p in _columns(doc) if p != PRIMARY]
    return _bar_grid(doc, path, peers, lambda r, p: r["speedup"].get(p), "fastrnn speedup ×",
                     1, log=True)


def _share(row, name):
    r = row["backends"].get(name)
    return None if r is None or "error" in r else r["roofline_share"]


def roofline_plot(doc, path):
    """Bar chart of each backend's share of the same run's GEMM roofline, per shape."""
    return _bar_grid(doc, path, _columns(doc), _share, "share of GEMM roofline", 0, log=False)


# docs/performance.md -------------------------------------------------------------------
IMAGES = {"speedup": "performance-speedup.png", "roofline": "performance-roofline.png"}
BUSY_LOAD = 0.5   # 1-minute load average above which the page warns that cores were shared
OTHER_CORES = 0.2  # other processes' CPU (cores' worth) above which it warns, where recorded


def _shared(m):
    """Whether other processes used the cores during a run: their CPU time (meta other_cpu,
    recorded since 2026-12-05) over OTHER_CORES; for older runs, the load average, which
    also counts the benchmark's own threads, over BUSY_LOAD."""
    if m.get("other_cpu"):
        return m["other_cpu"]["cores"] > OTHER_CORES
    load = m["load_average"]
    return max(load["start"], load.get("end", 0)) > BUSY_LOAD


def _others(m):
    """', other processes …' for the pages where the run recorded it, else ''."""
    o = m.get("other_cpu")
    if not o:
        return ""
    return (f"; other processes used {o['cores']:.2f} cores on average and the hypervisor "
            f"took {o['steal_cores']:.2f} (steal) over its {o['seconds']:.0f} s")


def _cell(row, name):
    r = row["backends"].get(name)
    if r is None:
        return "—"
    if "error" in r:
        return "error"
    text = f"{_ms(r['median_ms'])}{'' if r['validation']['ok'] else ' (!)'}"
    if name == PRIMARY:
        return f"{text} | {100 * r['roofline_share']:.0f}%"
    speedup = row["speedup"].get(name)
    return f"{text} ({speedup:.2f}×)" if speedup else text


def mode_section(kind, doc, source):
    """The markdown section of one saved --step/--precision/--variants run."""
    import allocator
    import precision
    import precision_training
    import step
    import variants
    title, flag = MODES[kind]
    m = doc.get("meta")
    lines = [f"## {title}", ""]
    if m is None:
        lines += [f"From `{source}` (`benchmarks/run.py {flag}`); this file predates the run "
                  "metadata, so its date, CPU and load were not recorded.", ""]
    else:
        cpu, load = m["cpu"], m["load_average"]
        lines += [f"One run of `benchmarks/run.py {flag}` on {m['date']}, saved as `{source}`: "
                  f"{cpu['model']} (family {cpu['family']}, model {cpu['model_id']}), threads "
                  f"{', '.join(map(str, m['threads']))}, load average {load['start']:.2f} at the "
                  f"start and {load['end']:.2f} at the end" + _others(m)
                  + (" (**the machine was shared**: read ratios within ±10% as ties)" if _shared(m)
                     else "") + ".", ""]
    if kind == "step":
        lines += ["```text", step.table(doc["step"])[0], "```"]
    elif kind == "precision":
        grid, steps = doc["precision"], doc.get("step", [])
        names = ([k.split(" ", 1)[1] for k in grid[0]["ms"] if k.startswith("fastrnn ")]
                 if grid else list(steps[0]["us"]))
        lines += [precision.table(grid, steps, names)]
    elif kind == "training":
        lines += ["A training step (forward + backward of one layer) per precision, against "
                  "torch fp32 and `torch.autocast(\"cpu\", torch.bfloat16)`; gradient errors "
                  "relative (Frobenius) to fastrnn's float32 gradients (docs/precision.md).", "",
                  precision_training.table(doc["training"])]
    elif kind == "allocator":
        lines += ["Training steps with each framework alone in a fresh process, three processes "
                  "per row (ranges over them), with glibc's default malloc and with its heap kept "
                  "(`MALLOC_TOP_PAD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_`; "
                  "benchmarks/allocator.py). PyTorch's steps with the defaults include first-touch "
                  "page faults whose number depends on the process; fastrnn keeps its blocks. The "
                  "ratios of the tables above are measured with the defaults "
                  "(docs/performance-notes.md).", "", allocator.table(doc["allocator"])]
    else:
        lines += ["Each variant's training step (forward + backward) over its plain cell's, "
                  "timed in turns; `torch_ln_lstm` is PyTorch's LN-LSTM as people write it "
                  "(docs/variants.md).", "", variants.table(doc["variants"])]
    return lines + [""]


def newest_modes(results):
    """{kind: the newest JSON in results/<kind>/} for the kinds that have one: the latest
    recorded date, then the last name (files from before the run metadata count as oldest)."""
    def when(path):
        return json.loads(path.read_text()).get("meta", {}).get("date", ""), path.name
    found = {}
    for kind in MODES:
        saved = sorted((Path(results) / kind).glob("*.json"), key=when)
        if saved:
            found[kind] = saved[-1]
    return found


def markdown(doc, source, modes=()):
    """docs/performance.md for one saved run; `source` names the JSON it came from, and
    `modes` lists (kind, doc, source) of the other modes' saved runs shown after it."""
    m, cpu = doc["meta"], doc["meta"]["cpu"]
    cols = _columns(doc)
    peers = [c for c in cols if c != PRIMARY]
    load = m["load_average"]
    busy = _shared(m)
    fastrnn = doc["backends"].get(PRIMARY, {})
    lines = [
        f"<!-- Generated by benchmarks/report.py from "
        f"{', '.join([source] + [src for _, _, src in modes])}; do not edit by hand. -->",
        "# Performance", "",
        f"One run of `benchmarks/run.py{' --quick' if m['quick'] else ''}` on {m['date']}, saved as "
        f"`{source}`. Times are medians; a ratio is the peer's median over "
        "fastrnn's, measured side by side in one process (> 1: fastrnn is faster). "
        "What is measured and how: `benchmarks/README.md`; "
        "the grid: [design §5](design.md#5-performance-yardstick).", "",
    ]
    if m["quick"]:
        lines += ["This is a **quick run** (a subset of the grid, few repeats): indicative "
                  "only until a full run replaces it.", ""]
    lines += [
        "## Machine", "",
        "| | |", "|---|---|",
        f"| CPU | {cpu['model']} (family {cpu['family']}, model {cpu['model_id']}), "
        f"{cpu['usable_cpus']} usable of {cpu['logical_cpus']} logical CPUs |",
        f"| ISA | {' '.join(cpu['simd']) or '-'}; fastrnn module: {fastrnn.get('isa', '-')} |",
        "| GEMM roofline (float32) | " + "; ".join(
            f"{t} thread{'s' * (int(t) > 1)}: {r['gflops']:.1f} GF/s ({r['source']}, {r['n']}³)"
            for t, r in doc["roofline"].items()) + " |",
        f"| BLAS | {m['blas_summary']} |",
        f"| Python | {m['python']} |",
        "| Backends | " + "; ".join(
            f"{n} {i.get('version')}" if i["available"] else f"{n}: absent ({i['reason']})"
            for n, i in doc["backends"].items()) + " |",
        f"| Load (1-min average) | {load['start']:.2f} at the start, {load.get('end', float('nan')):.2f} "
        f"at the end{_others(m)}{': **the machine was shared**, read ratios within ±10% as ties' if busy else ''} |",
        f"| Timing | {m['timing']} |", "",
        "## Results", "",
        f"Columns: median ms; `%roof` = fastrnn's GF/s over the same run's GEMM roofline; "
        f"peers as `ms (ratio×)`. FLOPs: {m['flops']}.", "",
    ]
    for threads in dict.fromkeys(r["threads"] for r in doc["results"]):
        lines += [f"### {threads} thread{'s' * (threads > 1)}", "",
                  "| cell | shape (T, B, I, H) | mode | fastrnn ms | %roof | "
                  + " | ".join(peers) + " |",
                  "|---|---|---|---:|---:|" + "---:|" * len(peers)]
        for row in doc["results"]:
            if row["threads"] != threads:
                continue
            s = row["shape"]
            lines.append(f"| {row['cell']} | {s['name']} ({s['T']}, {s['B']}, {s['I']}, {s['H']}) "
                         f"| {row['mode']} | " + " | ".join(
                             [_cell(row, PRIMARY)] + [_cell(row, p) for p in peers]) + " |")
        lines.append("")
    lines += [failures(doc).replace("  ! ", "- ").replace("VALIDATION FAILURES:", "**Validation failures:**"),
              "", "## Plots", "",
              "fastrnn's speedup over each peer, per row (log scale, up = fastrnn faster):", "",
              f"![speedup over each peer](img/{IMAGES['speedup']})", "",
              "Each backend's share of the GEMM roofline:", "",
              f"![share of roofline](img/{IMAGES['roofline']})", ""]
    if doc["memory"]:
        lines += ["## Peak memory", "", "```", memory(doc), "```", ""]
    for kind, mode_doc, mode_source in modes:
        lines += mode_section(kind, mode_doc, mode_source)
    lines += ["## Regenerating", "", "```bash",
              "python benchmarks/run.py --json benchmarks/results/$(date -u +%F)-full.json"]
    lines += [f"python benchmarks/run.py {flag} --json benchmarks/results/{kind}/$(date -u +%F).json"
              for kind, (_, flag) in MODES.items()]
    lines += ["python benchmarks/report.py       # newest JSONs -> docs/performance.md + docs/img/*.png",
              "git add -f docs/img/performance-*.png   # *.png is git-ignored", "```", ""]
    return "\n".join(lines)


def _source(path, root):
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).name


def load_modes(paths, root):
    """{kind: path} -> the (kind, doc, source) list `markdown` takes, in MODES order."""
    return [(kind, json.loads(Path(paths[kind]).read_text()), _source(paths[kind], root))
            for kind in MODES if kind in paths]


def render(json_path, docs_dir, root, modes=None):
    """Write docs_dir/performance.md and its plots from one saved grid run and the other
    modes' runs ({kind: path}; default none); returns messages."""
    json_path, docs_dir = Path(json_path), Path(docs_dir)
    doc = json.loads(json_path.read_text())
    source = _source(json_path, root)
    (docs_dir / "img").mkdir(parents=True, exist_ok=True)
    (docs_dir / "performance.md").write_text(markdown(doc, source, load_modes(modes or {}, root)),
                                             encoding="utf-8")
    return [f"{docs_dir / 'performance.md'} written from {source}",
            plot(doc, docs_dir / "img" / IMAGES["speedup"]),
            roofline_plot(doc, docs_dir / "img" / IMAGES["roofline"])]


def main(argv=None):
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description="Render docs/performance.md and its plots from a saved run.")
    p.add_argument("json", nargs="?", help="a run.py --json file (default: the newest, by name, "
                   "in benchmarks/results/)")
    p.add_argument("--docs", default=str(root / "docs"), help="where performance.md and img/ go")
    args = p.parse_args(argv)
    path = args.json
    if path is None:
        saved = sorted((root / "benchmarks" / "results").glob("*.json"))
        if not saved:
            p.error("no saved run in benchmarks/results/: give a JSON file")
        path = saved[-1]
    print("\n".join(render(path, args.docs, root, newest_modes(root / "benchmarks" / "results"))))


if __name__ == "__main__":
    sys.exit(main())
