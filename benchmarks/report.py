"""Presenting results: the text table, the JSON file and the speedup plot."""
import json

PRIMARY = "fastrnn"


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


def plot(doc, path):
    """Bar chart of fastrnn's speedup over each peer, per shape; one panel per cell and
    (mode, threads). Returns a message saying what was written or why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"no plot: matplotlib is not installed (pip install matplotlib) — {path} not written"
    if PRIMARY not in _columns(doc):
        return f"no plot: {PRIMARY} is absent, so there are no speedups — {path} not written"
    rows = doc["results"]
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    panels = list(dict.fromkeys((r["mode"], r["threads"]) for r in rows))
    shapes = list(dict.fromkeys(r["shape"]["name"] for r in rows))
    peers = [p for p in _columns(doc) if p != PRIMARY]
    fig, axes = plt.subplots(len(cells), len(panels), squeeze=False, sharey=True,
                             figsize=(1.2 + 0.9 * len(shapes) * len(panels), 2.6 * len(cells)))
    width = 0.8 / len(peers)
    for i, cell in enumerate(cells):
        for j, (mode, threads) in enumerate(panels):
            ax = axes[i][j]
            for k, peer in enumerate(peers):
                xs, ys = [], []
                for s, shape in enumerate(shapes):
                    for r in rows:
                        if (r["cell"], r["shape"]["name"], r["mode"], r["threads"]) == \
                                (cell, shape, mode, threads) and peer in r["speedup"]:
                            xs.append(s + (k - (len(peers) - 1) / 2) * width)
                            ys.append(r["speedup"][peer])
                ax.bar(xs, [y - 1 for y in ys], width, bottom=1, label=peer)  # up = faster
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(shapes)), shapes, rotation=30, ha="right", fontsize=7)
            ax.set_title(f"{cell} · {mode} · {threads}T", fontsize=9)
            if j == 0:
                ax.set_ylabel("fastrnn speedup ×")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot written to {path}"
