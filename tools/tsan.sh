#!/usr/bin/env bash
# ThreadSanitizer run of the threading tests: a RelWithDebInfo build of the
# native module with -fsanitize=thread, then the tests that exercise the
# thread pool (fork, Ctrl-C, determinism across thread counts, concurrent
# Python threads on layers and engines) against it. Any report fails the run
# (halt_on_error). CPython itself is not instrumented: TSan sees fastrnn's
# accesses and every synchronisation through pthreads and futexes it intercepts.
# The fork tests are left out: TSan does not support a multi-threaded process
# that forks and then starts threads in the child ("starting new threads after
# multi-threaded fork is not supported"), which is exactly what they check.
#   tools/tsan.sh [pytest args...]      (needs: pip install ".[test]" cmeel-eigen)
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_sanitizer_build.sh
sanitizer_build tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=thread"
# Run from outside the repo so the sanitized copy, not an installed fastrnn, is imported.
tests="$PWD/tests"
cd build/tsan-pkg
# Reports go to files (pytest captures stderr, and halt_on_error exits at once).
# NumPy's OpenBLAS runs on one thread: its workers synchronise by spinning on
# plain memory, which TSan cannot see, and they are not what is checked here.
rm -f tsan-report.*
status=0
LD_PRELOAD="$(gcc -print-file-name=libtsan.so)" OPENBLAS_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$PWD/tsan-report:suppressions=$tests/../tools/tsan.supp" PYTHONPATH="$PWD" \
python -m pytest -p no:cacheprovider -q "$tests/test_pool.py" "$tests/test_determinism.py" \
    "$tests/test_threads.py" "$tests/test_engine.py" \
    -k "(thread or ctrl_c or threadpoolctl or determin or concurrent or soak or identical) and not fork and not multiprocessing" "$@" \
    || status=$?
cat tsan-report.* 2>/dev/null || true
exit "$status"
