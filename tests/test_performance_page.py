"""docs/performance.md is rendered by benchmarks/report.py from saved JSON, deterministically."""
import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import report  # noqa: E402

FIXTURE = Path(__file__).parent / "data" / "bench_small.json"


def load():
    return json.loads(FIXTURE.read_text())


def test_page_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    report.render(FIXTURE, first, ROOT)
    report.render(FIXTURE, second, ROOT)
    page = (first / "performance.md").read_text()
    assert page == (second / "performance.md").read_text()
    assert "tests/data/bench_small.json" in page.splitlines()[0]


def test_page_shows_machine_grid_ratios_and_date():
    doc = load()
    page = report.markdown(doc, "x.json")
    assert doc["meta"]["date"] in page
    assert doc["meta"]["cpu"]["model"] in page and "avx512f" in page
    assert "96.0 GF/s" in page
    for peer in ("reference", "torch", "onnxruntime"):
        assert f" {peer} " in page.split("### 1 thread")[1].splitlines()[2]
    # The ratios, recomputed here from the fixture's medians (peer / fastrnn).
    for row in doc["results"]:
        fast = row["backends"]["fastrnn"]["median_ms"]
        line = next(l for l in page.splitlines() if l.startswith(f"| lstm | mid_b32") and row["mode"] in l)
        for name, r in row["backends"].items():
            if name != "fastrnn":
                assert f"({r['median_ms'] / fast:.2f}×)" in line
        assert f"{100 * row['backends']['fastrnn']['gflops'] / 96.0:.0f}%" in line
    assert "training | 119 |" in page          # fastrnn's 118.838 ms, three digits
    assert "| — |" in page                     # ONNX Runtime has no training row


def test_page_says_when_the_machine_was_shared():
    doc = load()
    assert "machine was shared" not in report.markdown(doc, "x.json")   # load 0.29 / 0.47
    busy = copy.deepcopy(doc)
    busy["meta"]["load_average"] = {"start": 1.8, "end": 2.1}
    assert "**the machine was shared**" in report.markdown(busy, "x.json")
    # Where the run recorded other processes' CPU, that decides, not the load average
    # (which counts the benchmark's own threads too).
    busy["meta"]["other_cpu"] = {"cores": 0.05, "steal_cores": 0.01, "seconds": 300.0}
    page = report.markdown(busy, "x.json")
    assert "machine was shared" not in page and "other processes used 0.05 cores" in page
    busy["meta"]["other_cpu"]["cores"] = 0.9
    assert "**the machine was shared**" in report.markdown(busy, "x.json")


def test_failed_validation_and_absent_peer_are_shown():
    doc = load()
    doc["results"][0]["backends"]["torch"]["validation"] = {"ok": False, "errors": {"out": 0.5}}
    doc["backends"]["onnxruntime"] = {"available": False, "reason": "not installed"}
    page = report.markdown(doc, "x.json")
    assert "(!)" in page and "**Validation failures:**" in page
    assert "onnxruntime: absent (not installed)" in page
    assert "| onnxruntime |" not in page.split("### 1 thread")[1]


def test_plots_are_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    report.render(FIXTURE, tmp_path, ROOT)
    for name in report.IMAGES.values():
        assert (tmp_path / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_page_is_the_rendering_of_its_json(tmp_path):
    """docs/performance.md is generated: re-rendering the JSON its first line names gives it
    back byte for byte, so a hand edit fails here."""
    page = (ROOT / "docs" / "performance.md").read_text()
    source, *others = page.splitlines()[0].split(" from ")[1].split(";")[0].split(", ")
    modes = report.load_modes({Path(o).parent.name: ROOT / o for o in others}, ROOT)
    assert [kind for kind, _, _ in modes] == [Path(o).parent.name for o in others]
    assert report.markdown(json.loads((ROOT / source).read_text()), source, modes) == page


def test_other_modes_get_their_sections(tmp_path):
    """The newest --step/--precision/--variants JSON of each kind becomes a section that
    names its file, CPU and load, with its rows."""
    results = tmp_path / "results"
    rows = dict(
        step=[{"cell": "lstm", "H": 128, "threads": 1, "errors": {"x": 0.0},
               "us": {"eng.step": 10.0, "torch cell": 25.0}}],
        precision=[{"cell": "gru", "shape": "mid_b32", "threads": 2, "errors": {
            "fastrnn float32": 0.0, "fastrnn int8": 0.01}, "ms": {
            "fastrnn float32": 30.0, "fastrnn int8": 12.0}}],
        training=[{"cell": "lstm", "shape": "mid_b32", "threads": 1, "ms": {
            "fastrnn float32": 100.0, "fastrnn bfloat16": 50.0, "torch fp32": 120.0,
            "torch autocast": 60.0}, "errors": {"fastrnn bfloat16": 4e-3,
                                                "torch autocast": 5e-3}}],
        variants=[{"cell": "lstm", "row": "layer_norm", "shape": "mid_b32", "threads": 1,
                   "median_ms": 123.4, "q1_ms": 120.0, "q3_ms": 130.0, "n": 9,
                   "x_plain": 1.187}],
        allocator=[{"case": "lm", "threads": 1, "framework": fw, "allocator": a, "ms": ms,
                    "faults": f} for fw, a, ms, f in (
            ("fastrnn", "default", [100.0, 110.0], [600, 600]),
            ("fastrnn", "kept heap", [100.0, 100.0], [20, 20]),
            ("torch", "default", [120.0, 160.0], [5000, 14000]),
            ("torch", "kept heap", [120.0, 126.0], [900, 1100]))])
    meta = dict(date="2026-12-04 22:00 UTC", python="3.11", threads=[1],
                cpu=dict(model="AMD EPYC", family="25", model_id="17"),
                load_average=dict(start=0.2, end=0.3))
    for kind, r in rows.items():
        (results / kind).mkdir(parents=True)
        (results / kind / "2026-01-01.json").write_text(json.dumps({kind: r}))   # no meta
        # last by name, but without the run metadata: older than any run that has it
        (results / kind / "2026-12-04-run9.json").write_text(json.dumps({kind: r}))
        (results / kind / "2026-12-04.json").write_text(json.dumps({"meta": meta, kind: r}))
    found = report.newest_modes(results)
    assert {k: p.name for k, p in found.items()} == {k: "2026-12-04.json" for k in rows}
    page = report.markdown(load(), "x.json", report.load_modes(found, tmp_path))
    assert page.splitlines()[0].count("results/") == 5
    for title, _ in report.MODES.values():
        assert f"## {title}" in page
    assert "2.50" in page                           # the step ratio 25 / 10
    assert "| gru | mid_b32 | 2 | int8 | 2.50× |" in page     # 30 / 12 over fastrnn fp32
    assert "| lstm | mid_b32 | 1 | layer_norm | 123 | 1.187 |" in page
    assert "| lstm | mid_b32 | 1 | 2.00× | 1.20× | 2.00× |" in page    # 100/50, 60/50, 120/60
    # ranges over processes; torch/fastrnn of the medians: 140/105, 123/100
    assert "| lm | 1 | default | 100.0–110.0 | 120.0–160.0 | 5000–14000 | 600 | 1.33 |" in page
    assert "| lm | 1 | kept heap | 100.0 | 120.0–126.0 | 900–1100 | 20 | 1.23 |" in page
    assert "machine was shared" not in page.split("## One-step")[1]
    old = report.markdown(load(), "x.json", report.load_modes(
        {"step": results / "step" / "2026-01-01.json"}, tmp_path))
    assert "predates the run metadata" in old
