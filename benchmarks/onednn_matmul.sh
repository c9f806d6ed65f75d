#!/bin/sh
# Builds and runs benchmarks/onednn_matmul.cpp (docs/precision.md "oneDNN"), one thread.
# ONEDNN: a venv with the PyPI wheels `onednn onednn-devel` (kept out of the project's venv):
#   python3 -m venv /work/venv-onednn --system-site-packages
#   /work/venv-onednn/bin/pip install onednn-devel onednn
set -e
ONEDNN=${ONEDNN:-/work/venv-onednn}
cd "$(dirname "$0")/.."
EIGEN=$(python -m cmeel cmake 2>/dev/null)/include/eigen3
OUT=${OUT_DIR:-build/onednn}
mkdir -p "$OUT"
FLAGS="-O3 -march=native -ffp-contract=off -DFASTRNN_LOWP_X86 -DEIGEN_DONT_PARALLELIZE -Icsrc -I$EIGEN -I$ONEDNN/include"
g++ -std=c++17 $FLAGS -c csrc/precision/avx2.cpp -mavx2 -mfma -o "$OUT/avx2.o"
g++ -std=c++17 $FLAGS -c csrc/precision/avx512_bf16.cpp -mavx512f -mavx512bw -mavx512bf16 -o "$OUT/bf16.o"
g++ -std=c++17 $FLAGS -c csrc/precision/avx512_vnni.cpp -mavx512f -mavx512bw -mavx512vnni -o "$OUT/vnni.o"
g++ -std=c++17 $FLAGS benchmarks/onednn_matmul.cpp csrc/precision/lowp.cpp csrc/precision/scalar.cpp \
    csrc/threads.cpp csrc/block_cache.cpp "$OUT"/avx2.o "$OUT"/bf16.o "$OUT"/vnni.o -L"$ONEDNN/lib" -Wl,-rpath,"$ONEDNN/lib" \
    -ldnnl -lpthread -o "$OUT/onednn_matmul"
# One CPU: fastrnn's pool and oneDNN's TBB both size themselves from the affinity mask.
# The PyPI build is a SYCL one: its CPU engine needs the OpenCL CPU runtime it ships.
OCL_ICD_FILENAMES="$ONEDNN/lib/libintelocl.so" LD_LIBRARY_PATH="$ONEDNN/lib" OMP_NUM_THREADS=1 taskset -c "${CPU:-0}" "$OUT/onednn_matmul" "$@"
