"""fastrnn.config() and show_config(): how this fastrnn was built and what it runs."""
from . import _isa


def config():
    """The build and run-time configuration as a dict (what show_config() prints).

    Build values come from the kernel module in use (its compiler, flags, build
    type, Eigen); run-time values from this process (ISA picked, threads).
    """
    from . import __version__
    core, sel = _isa.core, _isa.selection
    built = core.build_config()
    lowp = core.lowp_paths()  # low-precision GEMM paths (docs/precision.md)
    return {
        "version": __version__,
        "isa": sel.isa,
        "isa_requested": sel.requested,
        "isas_built": list(sel.built),
        "isas_available": list(sel.available),
        "cpu_features": None if sel.features is None else list(sel.features),
        "openmp": built["openmp"],
        "thread_pool": built.get("thread_pool", built["openmp"]),
        "block_cache": built["block_cache"],
        "threads": core.get_num_threads(),
        "eigen_version": built["eigen_version"],
        "eigen_simd": built["eigen_simd"],
        "float_lanes": built["float_lanes"],
        "compiler": built["compiler"],
        # "SHELL:" is CMake's marker on options it must not de-duplicate.
        "flags": built["flags"].replace("SHELL:", ""),
        "build_type": built["build_type"],
        "module": core.__file__,
        "bf16_path": lowp["bf16"],
        "bf16_paths_available": lowp["bf16_available"],
        "int8_path": lowp["int8"],
        "int8_paths_available": lowp["int8_available"],
    }


def _path_row(path, available, var):
    import os
    if path.startswith("error: "):
        return path
    why = f"{var}={os.environ[var]}" if os.environ.get(var) else f"the best this CPU runs ({var} unset)"
    return f"{path} — {why}; available: {', '.join(available)}"


def show_config():
    """Print the version, the instruction set in use and the ones available,
    threads, Eigen, the compiler, its flags, the build type and the bf16 and int8 GEMM
    paths in use."""
    c = config()
    if c["isa"] == "native":
        why = "the only module of a native build (-march=native, for the machine that built it)"
    elif c["isa_requested"]:
        why = f"FASTRNN_ISA={c['isa_requested']}"
    else:
        why = "the best this CPU runs (FASTRNN_ISA unset)"
    features = ("unknown (no fastrnn._cpu: not an x86-64 build)" if c["cpu_features"] is None
                else " ".join(c["cpu_features"]) or "none of those fastrnn checks")
    rows = [
        ("ISA in use", f"{c['isa']} — {why}"),
        ("ISAs built", ", ".join(c["isas_built"])),
        ("ISAs available", ", ".join(c["isas_available"])),
        ("CPU features", f"{features} (CPUID)" if c["cpu_features"] is not None else features),
        ("threads", f"{c['threads']} (fastrnn's thread pool)" if c["thread_pool"]
                    else "1 (built without threads, FASTRNN_THREADS=OFF)"),
        ("Eigen", f"{c['eigen_version']}, SIMD {c['eigen_simd']}; "
                  f"{c['float_lanes']} float lanes in fastrnn's kernels"),
        ("compiler", c["compiler"]),
        ("flags", c["flags"]),
        ("build type", c["build_type"]),
        ("module", c["module"]),
        ("bf16 path", _path_row(c["bf16_path"], c["bf16_paths_available"], "FASTRNN_BF16_PATH")),
        ("int8 path", _path_row(c["int8_path"], c["int8_paths_available"], "FASTRNN_INT8_PATH")),
    ]
    print(f"fastrnn {c['version']}")
    for name, value in rows:
        print(f"  {name + ':':<18}{value}")
