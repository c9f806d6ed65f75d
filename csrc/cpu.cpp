// fastrnn._cpu.features(): the instruction-set extensions this CPU and OS
// support, for python/fastrnn/_isa.py to pick a kernel module.
//
// Read with CPUID through the compiler's __builtin_cpu_supports, which also
// checks (XGETBV) that the OS saves the AVX and AVX-512 registers; not from
// /proc/cpuinfo, which shows the host's flags under an emulator (qemu-user).
// Compiled for plain x86-64, so it loads on any x86-64 CPU, and written
// against Python's C API rather than pybind11, so it builds in a moment.
#include <Python.h>

#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace {

// AMX needs more than the CPUID bit: the tile palette (leaf 0x1D) and, on
// Linux, the kernel's permission to use the tile data state, which a process
// must request (arch_prctl ARCH_REQ_XCOMP_PERM) before its first tile
// instruction or it dies with SIGILL. Asking here grants it to the process.
bool amx_usable() {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(0x1D, 0, &a, &b, &c, &d) || a < 1) return false;  // no palette 1
#if defined(__linux__) && defined(SYS_arch_prctl)
    constexpr int kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
}

PyObject* features(PyObject*, PyObject*) {
    __builtin_cpu_init();
    // __builtin_cpu_supports takes string literals only, hence the macro.
#define FASTRNN_FEATURE(name) {name, __builtin_cpu_supports(name) != 0}
    const struct {
        const char* name;
        bool present;
    } table[] = {
        FASTRNN_FEATURE("sse2"),     FASTRNN_FEATURE("sse3"),     FASTRNN_FEATURE("ssse3"),
        FASTRNN_FEATURE("sse4.1"),   FASTRNN_FEATURE("sse4.2"),   FASTRNN_FEATURE("popcnt"),
        FASTRNN_FEATURE("avx"),      FASTRNN_FEATURE("avx2"),     FASTRNN_FEATURE("fma"),
        FASTRNN_FEATURE("bmi"),      FASTRNN_FEATURE("bmi2"),     FASTRNN_FEATURE("avx512f"),
        FASTRNN_FEATURE("avx512bw"), FASTRNN_FEATURE("avx512dq"), FASTRNN_FEATURE("avx512vl"),
        FASTRNN_FEATURE("avx512cd"), FASTRNN_FEATURE("avx512bf16"), FASTRNN_FEATURE("avx512vnni"),
        FASTRNN_FEATURE("avxvnni"),
        {"amx-bf16", __builtin_cpu_supports("amx-bf16") != 0 && amx_usable()},
        {"amx-int8", __builtin_cpu_supports("amx-int8") != 0 && amx_usable()},
    };
#undef FASTRNN_FEATURE
    PyObject* names = PyList_New(0);
    if (!names) return nullptr;
    for (const auto& f : table) {
        if (!f.present) continue;
        PyObject* s = PyUnicode_FromString(f.name);
        if (!s || PyList_Append(names, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(names);
            return nullptr;
        }
        Py_DECREF(s);
    }
    return names;
}

PyMethodDef methods[] = {
    {"features", features, METH_NOARGS, "Instruction-set extensions of this CPU usable under this OS (CPUID)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", "CPU feature detection (private: see fastrnn.config())",
                      -1, methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__cpu() { return PyModule_Create(&module); }
