#!/usr/bin/env bash
# Debug build with AddressSanitizer + UndefinedBehaviorSanitizer (the portable
# modules, no -march=native), then the kernel, reference, PyTorch and layer
# tests against the one fastrnn picks for this CPU (FASTRNN_ISA=baseline, say,
# for another). UBSan aborts on the first report; leak checking is off because
# CPython itself leaks by design at exit.
#   tools/sanitize.sh [pytest args...]      (needs: pip install ".[test]" cmeel-eigen)
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/asan
pkg=build/asan-pkg
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DFASTRNN_SANITIZE=ON -DFASTRNN_NATIVE=OFF \
      -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
      -DCMAKE_PREFIX_PATH="$(python -m cmeel cmake 2>/dev/null)"
cmake --build "$build" -j 2
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r python/fastrnn "$pkg/" && rm -f "$pkg"/fastrnn/_*.so && cp "$build"/_*.so "$pkg/fastrnn/"
# Run from outside the repo so the sanitized copy, not an installed fastrnn, is imported.
tests="$PWD/tests"
cd "$pkg"
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0 PYTHONPATH="$PWD" \
python -m pytest -p no:cacheprovider -q "$tests/test_kernels.py" "$tests/test_reference.py" \
    "$tests/test_torch.py" "$tests/test_layers.py" "$@"
