"""Which kernel module runs: picked once, when fastrnn is imported (docs/build.md).

A native build (FASTRNN_NATIVE=ON, the default for source installs) has one
module, _core_native, compiled with -march=native for the machine that built
it. A portable build (FASTRNN_NATIVE=OFF, the wheel) has the same sources
compiled once per instruction set: _core_baseline (any x86-64), _core_avx2 and
_core_avx512 (on other architectures _core_baseline only). The best module this
CPU can run is imported; FASTRNN_ISA=baseline|avx2|avx512 asks for another one.
The CPU's features come from CPUID (_cpu), never from /proc/cpuinfo, which
shows the host's flags under an emulator.
"""
import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Optional, Tuple

# What each portable module's compiler flags let it assume (CMakeLists.txt):
# -mavx2 -mfma also enable SSE3 to SSE4.2, POPCNT and AVX.
_AVX2 = ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma")
REQUIRES = {
    "avx512": _AVX2 + ("avx512f", "avx512bw", "avx512dq", "avx512vl"),
    "avx2": _AVX2,
    "baseline": (),
}
ISAS = ("native",) + tuple(REQUIRES)  # best first


@dataclass(frozen=True)
class Selection:
    isa: str                         # the module in use: _core_<isa>
    requested: Optional[str]         # FASTRNN_ISA, None when unset
    built: Tuple[str, ...]           # modules this installation has, best first
    available: Tuple[str, ...]       # the built ones this CPU can run, best first
    features: Optional[Tuple[str, ...]]  # CPUID features; None without a detector (not x86-64)


def cpu_features():
    """This CPU's features usable under this OS, or None where there is no detector."""
    try:
        from . import _cpu
    except ImportError:
        return None
    return tuple(_cpu.features())


def built_modules(package=__package__):
    """The ISAs whose kernel module this installation holds, best first."""
    return tuple(isa for isa in ISAS if importlib.util.find_spec(f"{package}._core_{isa}") is not None)


def lacking(isa, features):
    """The CPU features that module `isa` needs and this CPU lacks. A native
    module is taken to run here: it was built for this machine."""
    have = set(features or ())
    return tuple(f for f in REQUIRES.get(isa, ()) if f not in have)


def choose(built, features, requested):
    """(isa, available): the module to load for FASTRNN_ISA=`requested` (None:
    the best one), and every module this CPU can run. ImportError, naming
    FASTRNN_ISA, when the request cannot be met."""
    if not built:
        raise ImportError("fastrnn has no kernel module (_core_*): build it with "
                          "`pip install .` (docs/build.md)")
    if "native" in built and len(built) > 1:
        raise ImportError(
            f"fastrnn holds kernel modules of two builds, native and portable ("
            f"{', '.join('_core_' + isa for isa in built)}); remove the stale ones")
    available = tuple(isa for isa in built if not lacking(isa, features))
    if not available:
        raise ImportError(f"this CPU can run none of fastrnn's kernel modules (built: "
                          f"{', '.join(built)}; it lacks {', '.join(lacking(built[-1], features))})")
    if requested is None:
        return available[0], available
    if requested not in ISAS:
        raise ImportError(f"FASTRNN_ISA={requested!r} is not one of {', '.join(ISAS[1:])}; "
                          f"available here: {', '.join(available)} (unset FASTRNN_ISA for the best)")
    if requested not in built:
        how = ("this is a native build (FASTRNN_NATIVE=ON), whose only module was compiled with "
               "-march=native; build with FASTRNN_NATIVE=OFF for baseline/avx2/avx512 modules"
               if "native" in built else f"this build has no {requested} module")
        raise ImportError(f"FASTRNN_ISA={requested!r} cannot be used: {how}; "
                          f"available here: {', '.join(available)}")
    if requested not in available:
        raise ImportError(f"FASTRNN_ISA={requested!r} cannot be used: this CPU lacks "
                          f"{', '.join(lacking(requested, features))}; "
                          f"available here: {', '.join(available)}")
    return requested, available


def load():
    """Import the kernel module for this CPU and FASTRNN_ISA."""
    requested = os.environ.get("FASTRNN_ISA", "").strip().lower() or None
    features = cpu_features()
    built = built_modules()
    isa, available = choose(built, features, requested)
    module = importlib.import_module(f"._core_{isa}", __package__)
    return module, Selection(isa, requested, built, available, features)


core, selection = load()
