"""fastrnn.config() / show_config() tell the truth, and FASTRNN_ISA picks the
kernel module or fails with a clear error (python/fastrnn/_isa.py)."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import fastrnn
from fastrnn import _isa

CONFIG = fastrnn.config()
X86 = platform.machine().lower() in ("x86_64", "amd64")
# Float lanes of Eigen's packets, hence of fastrnn's packed kernels, per x86 module.
X86_LANES = {"baseline": 4, "avx2": 8, "avx512": 16}


def python_with_isa(isa, code):
    """Run `code` in a fresh interpreter with FASTRNN_ISA=isa (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "FASTRNN_ISA"}
    if isa is not None:
        env["FASTRNN_ISA"] = isa
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(fastrnn.__file__).parents[1])] + ([env["PYTHONPATH"]] if "PYTHONPATH" in env else []))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


def test_versions_agree():
    assert CONFIG["version"] == fastrnn.__version__
    assert _isa.core.build_config()["version"] == fastrnn.__version__, "kernel module from another version"


def test_module_in_use_is_the_one_reported():
    isa = CONFIG["isa"]
    assert _isa.core.__name__ == f"fastrnn._core_{isa}"
    assert Path(CONFIG["module"]).name.startswith(f"_core_{isa}.")
    assert _isa.core.build_config()["isa"] == isa
    assert isa in CONFIG["isas_available"]
    if CONFIG["isa_requested"] is None:
        assert isa == CONFIG["isas_available"][0], "the best available module is picked"


def test_built_and_available_match_the_installation():
    package = Path(fastrnn.__file__).parent
    present = {p.name.split(".")[0][len("_core_"):] for p in package.glob("_core_*.*")}
    assert set(CONFIG["isas_built"]) == present
    assert set(CONFIG["isas_available"]) <= set(CONFIG["isas_built"])
    for isa in CONFIG["isas_built"]:
        lacking = _isa.lacking(isa, CONFIG["cpu_features"])
        assert (isa in CONFIG["isas_available"]) == (not lacking), (isa, lacking)


def test_build_values_match_the_module():
    isa, flags = CONFIG["isa"], CONFIG["flags"]
    if isa == "native":
        assert "-march=native" in flags
    elif isa == "avx2":
        assert "-mavx2 -mfma" in flags and "avx512" not in flags
    elif isa == "avx512":
        assert "-mavx512f" in flags
    else:
        assert "-mavx" not in flags and "-march" not in flags
    if X86 and isa in X86_LANES:
        assert CONFIG["float_lanes"] == X86_LANES[isa]
        assert CONFIG["eigen_simd"].startswith({"baseline": "SSE, SSE2", "avx2": "AVX ",
                                                "avx512": "AVX512"}[isa])
    if CONFIG["compiler"].split()[0] in ("GNU", "Clang"):
        # Threads come from fastrnn's own pool: OpenMP hangs forked children.
        assert "-fopenmp" not in flags and CONFIG["openmp"] is False
        assert "-ffp-contract=off" in flags     # one rounding in SIMD and scalar code
    assert CONFIG["threads"] == fastrnn.get_num_threads() >= 1
    assert CONFIG["eigen_version"].startswith("3.")
    assert CONFIG["build_type"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_thread_pool_is_reported_truthfully():
    """A build that reports its pool runs a call on as many OS threads as set;
    one that reports none stays on one thread."""
    code = ("import os, numpy as np, fastrnn, fastrnn.functional as F\n"
            "fastrnn.set_num_threads(3)\n"
            "before = len(os.listdir('/proc/self/task'))\n"
            "x = np.ones((20, 48, 64), np.float32); w = np.full((256, 64), 0.01, np.float32)\n"
            "F.lstm_forward(x, w, w, training=False)\n"
            "print(len(os.listdir('/proc/self/task')) - before, fastrnn.config()['thread_pool'])\n")
    run = python_with_isa(CONFIG["isa_requested"], code)
    assert run.returncode == 0, run.stderr
    added, pool = run.stdout.split()
    assert pool == str(CONFIG["thread_pool"])
    assert int(added) == (2 if CONFIG["thread_pool"] else 0)


@pytest.mark.skipif(not (X86 and sys.platform.startswith("linux")), reason="x86-64 Linux only")
def test_cpu_features_agree_with_the_kernel():
    # Outside an emulator the kernel's flags (/proc/cpuinfo) and CPUID agree.
    kernel_names = {"sse3": "pni", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "bmi": "bmi1",
                    "avx512bf16": "avx512_bf16", "avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni"}
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    for name in ("sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "avx", "avx2", "fma", "bmi", "bmi2",
                 "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512bf16", "avx512vnni", "avxvnni"):
        assert (name in CONFIG["cpu_features"]) == (kernel_names.get(name, name) in flags), name


def test_show_config_and_python_m_print_the_config(capsys):
    fastrnn.show_config()
    out = capsys.readouterr().out
    assert out.startswith(f"fastrnn {fastrnn.__version__}\n")
    for value in (CONFIG["isa"], CONFIG["compiler"], CONFIG["flags"], CONFIG["build_type"],
                  CONFIG["eigen_version"], ", ".join(CONFIG["isas_available"])):
        assert value in out
    assert (f"{CONFIG['threads']} (fastrnn's thread pool)" if CONFIG["thread_pool"]
            else "1 (built without threads") in out
    run = python_with_isa(CONFIG["isa_requested"], "import runpy; runpy.run_module('fastrnn', run_name='__main__')")
    assert run.returncode == 0, run.stderr
    assert run.stdout == out


@pytest.mark.parametrize("isa", CONFIG["isas_available"])
def test_fastrnn_isa_selects_each_available_module(isa):
    code = ("import numpy as np, fastrnn, fastrnn.functional as F, fastrnn.reference as R\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.standard_normal((4, 3, 5)); w_ih = rng.standard_normal((12, 5)) / 2\n"
            "w_hh = rng.standard_normal((12, 4)) / 2\n"
            "got = F.gru_forward(x, w_ih, w_hh, training=False)[0]\n"
            "want = R.gru_forward(x, w_ih, w_hh, training=False)[0]\n"
            "np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)\n"
            "print(fastrnn.config()['isa'])")
    run = python_with_isa(isa, code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == isa


@pytest.mark.parametrize("value", ["bogus", next(isa for isa in _isa.ISAS if isa not in CONFIG["isas_available"])])
def test_fastrnn_isa_refused_with_a_clear_error(value):
    run = python_with_isa(value, "import fastrnn")
    assert run.returncode == 1, "an ImportError, not a crash"
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: FASTRNN_ISA={value!r}")
    assert f"available here: {', '.join(CONFIG['isas_available'])}" in last


def test_choose_picks_the_best_the_cpu_runs():
    portable = ("avx512", "avx2", "baseline")
    avx2_cpu = ("sse2",) + _isa.REQUIRES["avx2"]
    assert _isa.choose(portable, avx2_cpu, None) == ("avx2", ("avx2", "baseline"))
    assert _isa.choose(portable, avx2_cpu, "baseline") == ("baseline", ("avx2", "baseline"))
    assert _isa.choose(portable, _isa.REQUIRES["avx512"], None)[0] == "avx512"
    assert _isa.choose(portable, ("sse2", "avx", "avx2"), None)[0] == "baseline", "AVX2 without FMA"
    assert _isa.choose(portable, None, None) == ("baseline", ("baseline",)), "no detector"
    assert _isa.choose(("native",), None, None) == ("native", ("native",))


def test_choose_errors_name_the_problem():
    portable = ("avx512", "avx2", "baseline")
    avx2_cpu = ("sse2",) + _isa.REQUIRES["avx2"]
    with pytest.raises(ImportError, match=r"FASTRNN_ISA='avx512' cannot be used: this CPU lacks "
                                          r"avx512f, avx512bw, avx512dq, avx512vl; available here: avx2, baseline"):
        _isa.choose(portable, avx2_cpu, "avx512")
    with pytest.raises(ImportError, match=r"FASTRNN_ISA='avx2' cannot be used: this build has no avx2 module"):
        _isa.choose(("baseline",), None, "avx2")
    with pytest.raises(ImportError, match=r"FASTRNN_ISA='avx2' cannot be used: this is a native build"):
        _isa.choose(("native",), avx2_cpu, "avx2")
    with pytest.raises(ImportError, match=r"FASTRNN_ISA='sse9' is not one of avx512, avx2, baseline"):
        _isa.choose(portable, avx2_cpu, "sse9")
    with pytest.raises(ImportError, match="two builds"):
        _isa.choose(("native", "avx2", "baseline"), avx2_cpu, None)
    with pytest.raises(ImportError, match="no kernel module"):
        _isa.choose((), avx2_cpu, None)
    with pytest.raises(ImportError, match=r"can run none .* \(built: avx2; it lacks avx2, fma\)"):
        _isa.choose(("avx2",), ("sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx"), None)
