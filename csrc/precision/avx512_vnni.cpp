// AVX512_VNNI path (compiled with -mavx512f -mavx512bw -mavx512vnni; run when
// CPUID has avx512vnni): vpdpbusd multiplies 64 u8 by 64 s8 and adds each
// group of four products into 16 s32 sums without intermediate saturation,
// four times the multiply-adds of an fp32 FMA per instruction. Activations
// arrive as u8 = s8 + 128; the kernel subtracts 128 · Σ_k w per column, so the
// s32 sums equal the scalar path's exactly (|sum| ≤ K · 255 · 127 < 2³¹ for
// K ≤ 65536, which lowp.cpp checks).
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

// C = float(acc - 128 · colsum) · (row_scale · col_scale), 16 columns.
void store(float* c, __m512i acc, const std::int32_t* col_sum, const float* col_scale, float row_scale,
           std::ptrdiff_t cols, bool accumulate) {
    acc = _mm512_sub_epi32(acc, _mm512_slli_epi32(_mm512_loadu_si512(col_sum), 7));
    const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(row_scale), _mm512_loadu_ps(col_scale));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale);
    const __mmask16 m = lanes(cols);
    if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, c));
    _mm512_mask_storeu_ps(c, m, v);
}

template <int MR, int KS>
void rows(const S8Args& p, std::ptrdiff_t i0) {
    __m512i c0[KS][MR], c1[KS][MR];
    for (int s = 0; s < KS; ++s)
        for (int i = 0; i < MR; ++i) c0[s][i] = c1[s][i] = _mm512_setzero_si512();
    const std::ptrdiff_t quads = p.kq / 4;
    const std::int8_t* a = p.a + i0 * p.lda;
    prefetch_out<MR>(p.c + i0 * p.ldc, p.ldc, p.cold_c);
    std::ptrdiff_t q = 0;
    auto step = [&](int s, std::ptrdiff_t k) {
        const __m512i w0 = _mm512_load_si512(p.panel + k * 4 * kNR);
        const __m512i w1 = _mm512_load_si512(p.panel + k * 4 * kNR + 64);
        for (int i = 0; i < MR; ++i) {
            std::int32_t quad;
            __builtin_memcpy(&quad, a + i * p.lda + 4 * k, 4);
            const __m512i x = _mm512_set1_epi32(quad);
            c0[s][i] = _mm512_dpbusd_epi32(c0[s][i], x, w0);
            c1[s][i] = _mm512_dpbusd_epi32(c1[s][i], x, w1);
        }
    };
    for (; q + KS <= quads; q += KS)
        for (int s = 0; s < KS; ++s) step(s, q + s);
    for (; q < quads; ++q) step(0, q);
    for (int s = 1; s < KS; ++s)
        for (int i = 0; i < MR; ++i) {
            c0[0][i] = _mm512_add_epi32(c0[0][i], c0[s][i]);
            c1[0][i] = _mm512_add_epi32(c1[0][i], c1[s][i]);
        }
    for (int i = 0; i < MR; ++i) {
        float* c = p.c + (i0 + i) * p.ldc;
        const float rs = p.row_scale[i0 + i];
        store(c, c0[0][i], p.col_sum, p.col_scale, rs, p.cols, p.accumulate);
        store(c + 16, c1[0][i], p.col_sum + 16, p.col_scale + 16, rs, p.cols - 16, p.accumulate);
    }
}

// Two panels at once (64 columns), 4 rows: each broadcast of a row's quad
// feeds four vpdpbusd instead of two. (6 rows, 24 accumulators: GCC 12
// spilled them and it ran slower.)
template <int MR>
void rows2(const S8Args& p, const S8Args& q, std::ptrdiff_t i0) {
    __m512i c[MR][4];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < 4; ++j) c[i][j] = _mm512_setzero_si512();
    const std::int8_t* a = p.a + i0 * p.lda;
    prefetch_out<MR>(p.c + i0 * p.ldc, p.ldc, p.cold_c);
    prefetch_out<MR>(q.c + i0 * q.ldc, q.ldc, q.cold_c);
    for (std::ptrdiff_t k = 0; k < p.kq / 4; ++k) {
        const __m512i w0 = _mm512_load_si512(p.panel + k * 4 * kNR);
        const __m512i w1 = _mm512_load_si512(p.panel + k * 4 * kNR + 64);
        const __m512i w2 = _mm512_load_si512(q.panel + k * 4 * kNR);
        const __m512i w3 = _mm512_load_si512(q.panel + k * 4 * kNR + 64);
        for (int i = 0; i < MR; ++i) {
            std::int32_t quad;
            __builtin_memcpy(&quad, a + i * p.lda + 4 * k, 4);
            const __m512i x = _mm512_set1_epi32(quad);
            c[i][0] = _mm512_dpbusd_epi32(c[i][0], x, w0);
            c[i][1] = _mm512_dpbusd_epi32(c[i][1], x, w1);
            c[i][2] = _mm512_dpbusd_epi32(c[i][2], x, w2);
            c[i][3] = _mm512_dpbusd_epi32(c[i][3], x, w3);
        }
    }
    for (int i = 0; i < MR; ++i) {
        const float rs = p.row_scale[i0 + i];
        float* cp = p.c + (i0 + i) * p.ldc;
        float* cq = q.c + (i0 + i) * q.ldc;
        store(cp, c[i][0], p.col_sum, p.col_scale, rs, p.cols, p.accumulate);
        store(cp + 16, c[i][1], p.col_sum + 16, p.col_scale + 16, rs, p.cols - 16, p.accumulate);
        store(cq, c[i][2], q.col_sum, q.col_scale, rs, q.cols, q.accumulate);
        store(cq + 16, c[i][3], q.col_sum + 16, q.col_scale + 16, rs, q.cols - 16, q.accumulate);
    }
}

}  // namespace

void s8_panel_pair_avx512_vnni(const S8Args& p, const S8Args& q) {
    std::ptrdiff_t i = 0;
    for (; i + 4 <= p.m; i += 4) rows2<4>(p, q, i);
    switch (p.m - i) {
        case 3: rows2<3>(p, q, i); break;
        case 2: rows2<2>(p, q, i); break;
        case 1: rows2<1>(p, q, i); break;
        default: break;
    }
}

void s8_panel_avx512_vnni(const S8Args& p) {
    for_row_blocks<true>(p.m, [&](auto mr, auto ks, std::ptrdiff_t i) {
        rows<decltype(mr)::value, decltype(ks)::value>(p, i);
    });
}

}  // namespace lowp
}  // namespace fastrnn
