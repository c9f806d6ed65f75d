// AVX512_BF16 path (compiled with -mavx512f -mavx512bw -mavx512bf16; run when
// CPUID has avx512bf16): vdpbf16ps multiplies 16 pairs of bf16 and adds both
// products into 16 fp32 sums, twice the flops of an fp32 FMA per instruction.
// It treats denormal inputs as zero and rounds to nearest even without
// consulting MXCSR; with its own k order for few rows (KS split sums, for the
// latency chain) it agrees with the scalar path to fp32 round-off.
// See kernels.hpp for why everything here is in an anonymous namespace.
#include "precision/kernels.hpp"
#include "precision/row_blocks.hpp"

#include <immintrin.h>

namespace fastrnn {
namespace lowp {
namespace {

__mmask16 lanes(std::ptrdiff_t n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

void store(float* c, __m512 v0, __m512 v1, std::ptrdiff_t cols, bool accumulate) {
    if (cols == kNR) {
        if (accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(c));
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(c + 16));
        }
        _mm512_storeu_ps(c, v0);
        _mm512_storeu_ps(c + 16, v1);
    } else {
        const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
        if (accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

// Rows [i0, i0 + MR); KS independent sums split the pairs of k when MR is
// too small to hide the instruction's latency.
template <int MR, int KS>
void rows(const Bf16Args& p, std::ptrdiff_t i0) {
    __m512 c0[KS][MR], c1[KS][MR];
    for (int s = 0; s < KS; ++s)
        for (int i = 0; i < MR; ++i) c0[s][i] = c1[s][i] = _mm512_setzero_ps();
    const std::ptrdiff_t pairs = p.kp2 / 2;
    const std::uint16_t* a = p.a + i0 * p.lda;
    prefetch_out<MR>(p.c + i0 * p.ldc, p.ldc, p.cold_c);
    std::ptrdiff_t q = 0;
    auto step = [&](int s, std::ptrdiff_t k) {
        const __m512bh w0 = (__m512bh)_mm512_load_si512(p.panel + k * 2 * kNR);
        const __m512bh w1 = (__m512bh)_mm512_load_si512(p.panel + k * 2 * kNR + 32);
        for (int i = 0; i < MR; ++i) {
            std::int32_t pair;
            __builtin_memcpy(&pair, a + i * p.lda + 2 * k, 4);
            const __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
            c0[s][i] = _mm512_dpbf16_ps(c0[s][i], x, w0);
            c1[s][i] = _mm512_dpbf16_ps(c1[s][i], x, w1);
        }
    };
    for (; q + KS <= pairs; q += KS)
        for (int s = 0; s < KS; ++s) step(s, q + s);
    for (; q < pairs; ++q) step(0, q);
    for (int s = 1; s < KS; ++s)
        for (int i = 0; i < MR; ++i) {
            c0[0][i] = _mm512_add_ps(c0[0][i], c0[s][i]);
            c1[0][i] = _mm512_add_ps(c1[0][i], c1[s][i]);
        }
    for (int i = 0; i < MR; ++i) store(p.c + (i0 + i) * p.ldc, c0[0][i], c1[0][i], p.cols, p.accumulate);
}

}  // namespace

void bf16_panel_avx512_bf16(const Bf16Args& p) {
    for_row_blocks<true>(p.m, [&](auto mr, auto ks, std::ptrdiff_t i) {
        rows<decltype(mr)::value, decltype(ks)::value>(p, i);
    });
}

// Every row's sums run over k in one order (KS = 1), whatever the row count:
// a row gives the same bits in any row block, as the time loops of training
// need for results that do not depend on the thread count.
void bf16_panel_avx512_bf16_ordered(const Bf16Args& p) {
    for_row_blocks<false>(p.m, [&](auto mr, auto ks, std::ptrdiff_t i) {
        rows<decltype(mr)::value, decltype(ks)::value>(p, i);
    });
}

}  // namespace lowp
}  // namespace fastrnn
