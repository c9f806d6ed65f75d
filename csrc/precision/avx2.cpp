// AVX2 + FMA fallbacks (compiled with -mavx2 -mfma; run when CPUID has both).
//
// bf16: the weights are widened to fp32 in registers (a bf16 is the top half
// of an fp32) and multiplied with fp32 FMA, in the scalar path's order, so the
// two agree bit for bit; the gain over fp32 is the halved weight traffic.
//
// int8: vpmaddubsw multiplies u8 by s8 and adds neighbouring pairs into s16
// with saturation: with activations as u8 = s8 + 128 a pair reaches
// 2 · 255 · 127 = 64770 and saturates. Instead the sign of each activation is
// moved onto the weight (vpsignb) and |a| ≤ 127 is the u8 operand: a pair is
// then at most 2 · 127 · 127 = 32258 < 32767, so nothing saturates and the s32
// sums (vpmaddwd by ones) are exact, equal to the scalar and VNNI paths. Both
// operands lie in [-127, 127] by construction (lowp.cpp never makes -128).
// See kernels.hpp for why everything here is in an anonymous namespace.
#include "precision/kernels.hpp"

#include <immintrin.h>

namespace fastrnn {
namespace lowp {
namespace {

constexpr int kChunks = kNR / 8;  // ymm per panel row

void store(float* c, __m256 v, std::ptrdiff_t cols, bool accumulate) {
    if (cols >= 8) {
        if (accumulate) v = _mm256_add_ps(v, _mm256_loadu_ps(c));
        _mm256_storeu_ps(c, v);
    } else if (cols > 0) {
        alignas(32) float t[8];
        _mm256_store_ps(t, v);
        for (std::ptrdiff_t j = 0; j < cols; ++j) c[j] = accumulate ? c[j] + t[j] : t[j];
    }
}

std::int32_t load4(const void* p) {
    std::int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

template <int MR>
void bf16_rows(const Bf16Args& p, std::ptrdiff_t i0) {
    __m256 acc[MR][kChunks];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < kChunks; ++j) acc[i][j] = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi32(std::int32_t(0xFFFF0000u));
    for (std::ptrdiff_t q = 0; q < p.kp2 / 2; ++q) {
        __m256 a0[MR], a1[MR];
        for (int i = 0; i < MR; ++i) {
            const __m256i pair = _mm256_set1_epi32(load4(p.a + (i0 + i) * p.lda + 2 * q));
            a0[i] = _mm256_castsi256_ps(_mm256_slli_epi32(pair, 16));
            a1[i] = _mm256_castsi256_ps(_mm256_and_si256(pair, high));
        }
        for (int j = 0; j < kChunks; ++j) {
            const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.panel + q * 2 * kNR + 16 * j));
            const __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
            const __m256 w1 = _mm256_castsi256_ps(_mm256_and_si256(w, high));
            for (int i = 0; i < MR; ++i) {
                acc[i][j] = _mm256_fmadd_ps(a1[i], w1, acc[i][j]);
                acc[i][j] = _mm256_fmadd_ps(a0[i], w0, acc[i][j]);
            }
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < kChunks; ++j)
            store(p.c + (i0 + i) * p.ldc + 8 * j, acc[i][j], p.cols - 8 * j, p.accumulate);
}

template <int MR>
void s8_rows(const S8Args& p, std::ptrdiff_t i0) {
    __m256i acc[MR][kChunks];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < kChunks; ++j) acc[i][j] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    for (std::ptrdiff_t q = 0; q < p.kq / 4; ++q) {
        __m256i a[MR], abs_a[MR];
        for (int i = 0; i < MR; ++i) {
            a[i] = _mm256_set1_epi32(load4(p.a + (i0 + i) * p.lda + 4 * q));
            abs_a[i] = _mm256_sign_epi8(a[i], a[i]);
        }
        for (int j = 0; j < kChunks; ++j) {
            const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.panel + q * 4 * kNR + 32 * j));
            for (int i = 0; i < MR; ++i) {
                const __m256i pairs = _mm256_maddubs_epi16(abs_a[i], _mm256_sign_epi8(w, a[i]));
                acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    for (int i = 0; i < MR; ++i) {
        const __m256 rs = _mm256_set1_ps(p.row_scale[i0 + i]);
        for (int j = 0; j < kChunks; ++j) {
            const __m256 scale = _mm256_mul_ps(rs, _mm256_loadu_ps(p.col_scale + 8 * j));
            store(p.c + (i0 + i) * p.ldc + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][j]), scale),
                  p.cols - 8 * j, p.accumulate);
        }
    }
}

}  // namespace

void bf16_panel_avx2(const Bf16Args& p) {
    std::ptrdiff_t i = 0;
    for (; i + 2 <= p.m; i += 2) bf16_rows<2>(p, i);
    if (i < p.m) bf16_rows<1>(p, i);
}

void s8_panel_avx2(const S8Args& p) {
    std::ptrdiff_t i = 0;
    for (; i + 2 <= p.m; i += 2) s8_rows<2>(p, i);
    if (i < p.m) s8_rows<1>(p, i);
}

}  // namespace lowp
}  // namespace fastrnn
