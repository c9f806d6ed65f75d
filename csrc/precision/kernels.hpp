// The micro-kernels of each low-precision path (csrc/precision/lowp.hpp).
//
// Each path lives in a translation unit of its own, compiled with its own
// instruction-set flags (CMakeLists.txt) and called only when CPUID says the
// CPU has them. Those units include nothing but this header, <immintrin.h>
// and <cstdint>, and keep all their code in an anonymous namespace: inline or
// template code compiled with different -m flags and linked into one shared
// object is merged by the linker (one copy per mangled name), so a shared
// helper could end up running AVX-512 code on the scalar path. Internal
// linkage keeps each unit's copy its own; the entry points below are plain
// functions with distinct names, and this header declares nothing inline.
//
// A kernel computes C[0:m, 0:cols] (=|+=) for one panel of NR = 32 output
// columns, rows [0, m) of prepared activations. Layouts (lowp.hpp packs them):
//   bf16: K rounded up to even; per pair of k, 32 columns × (k even, k odd),
//         the layout vdpbf16ps reads; activations as bf16 rows of that length.
//   int8: K rounded up to 4; per quad of k, 32 columns × 4 bytes, the layout
//         vpdpbusd reads; activations as s8 rows of that length (as u8 = s8 +
//         128 for the VNNI path, whose column correction is -128 · Σ_k w).
//         C = float(acc) · (row_scale · col_scale).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastrnn {
namespace lowp {

constexpr int kNR = 32;  // output columns per panel, every path

struct Bf16Args {
    const std::uint16_t* a;  // m rows of kp2 bf16, row stride lda
    std::ptrdiff_t lda, m;
    const std::uint16_t* panel;
    std::ptrdiff_t kp2;  // K rounded up to even
    float* c;
    std::ptrdiff_t ldc, cols;
    bool accumulate;
    bool cold_c = false;  // C larger than L2: ask for a block's output lines before its k loop
};

struct S8Args {
    const std::int8_t* a;  // m rows of kq bytes (s8, or u8 = s8 + 128 for VNNI)
    std::ptrdiff_t lda, m;
    const float* row_scale;  // m
    const std::int8_t* panel;
    std::ptrdiff_t kq;            // K rounded up to 4
    const std::int32_t* col_sum;  // 32: Σ_k w[c, k], for the u8 correction
    const float* col_scale;       // 32
    float* c;
    std::ptrdiff_t ldc, cols;
    bool accumulate;
    bool cold_c = false;  // as Bf16Args::cold_c
};

void bf16_panel_scalar(const Bf16Args& p);
void s8_panel_scalar(const S8Args& p);
#if defined(FASTRNN_LOWP_X86)
void bf16_panel_avx2(const Bf16Args& p);
void s8_panel_avx2(const S8Args& p);
void bf16_panel_avx512_bf16(const Bf16Args& p);
void bf16_panel_avx512_bf16_ordered(const Bf16Args& p);  // one k order for every row count (training)
void s8_panel_avx512_vnni(const S8Args& p);
// Two panels over the same rows (a, lda, m, row_scale, kq) in one pass (lowp.cpp's gemm, m > 1).
void s8_panel_pair_avx512_vnni(const S8Args& p, const S8Args& q);
#endif

}  // namespace lowp
}  // namespace fastrnn
