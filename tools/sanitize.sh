#!/usr/bin/env bash
# Debug build with AddressSanitizer + UndefinedBehaviorSanitizer (the portable
# modules, no -march=native), then the whole test suite but the example and
# benchmark scripts (subprocesses of a plain interpreter) against the module
# fastrnn picks for this CPU (FASTRNN_ISA=baseline, say, for another). Any ASan
# or UBSan report aborts the run. Leak checking is off because CPython itself
# leaks by design at exit (tools/valgrind.sh checks fastrnn's own leaks);
# allocations past ASan's limit return null, so the kernels' std::bad_alloc ->
# MemoryError path is what runs, as without ASan.
#   tools/sanitize.sh [pytest args...]      (needs: pip install ".[test]" cmeel-eigen)
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_sanitizer_build.sh
sanitizer_build asan -DCMAKE_BUILD_TYPE=Debug -DFASTRNN_SANITIZE=ON -DFASTRNN_NATIVE=OFF
# Run from outside the repo so the sanitized copy, not an installed fastrnn, is imported.
tests="$PWD/tests"
cd build/asan-pkg
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1 PYTHONPATH="$PWD" \
python -m pytest -p no:cacheprovider -q "$tests" --ignore="$tests/test_examples.py" \
    --ignore="$tests/test_benchmarks.py" "$@"
