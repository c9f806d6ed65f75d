// The weight gradients of bf16 training (lowp.hpp; docs/precision.md,
// "Training"): dW = dGᵀ · X over k = T·B rows (gemm_tn), whose operands are
// rounded to bf16 once per call: X (or h, the recurrent products' inputs)
// packed as panels of 32 columns, dGᵀ as rows; then gemm_ordered (lowp.cpp),
// whose threads split (row block, panel) items and never k, so every thread
// count gives the same bits.
#include "precision/lowp.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastrnn {
namespace lowp {
namespace {

// Columns read from each row of the source per pass (1 KiB of fp32): long
// contiguous reads; the kTile destination rows they fill stay in L1.
constexpr Index kTile = 256;
constexpr Index kPairChunk = 256;  // pairs of k per work item of pack_kn

// Rows 2q and 2q + 1 of src (columns [c0, c0 + w)) as bf16 pairs: the low
// half from row 2q (the even k, as the layouts of kernels.hpp hold it); a row
// past K is zero.
void pairs_of(const float* src, Index ld, Index K, Index q, Index c0, Index w, std::uint32_t* out) {
    const float* a0 = src + 2 * q * ld + c0;
    if (2 * q + 1 < K) {
        const float* a1 = a0 + ld;
        for (Index c = 0; c < w; ++c) out[c] = to_bf16(a0[c]) | std::uint32_t(to_bf16(a1[c])) << 16;
    } else {
        for (Index c = 0; c < w; ++c) out[c] = to_bf16(a0[c]);
    }
}

// colsum[c] += A[2q, c], then A[2q + 1, c] (if < K), for c in [c0, c1).
void add_rows(const float* A, Index lda, Index K, Index q, Index c0, Index c1, float* colsum) {
    for (Index k = 2 * q; k < std::min(K, 2 * q + 2); ++k)
        for (Index c = c0; c < c1; ++c) colsum[c] += A[k * lda + c];
}

// Columns [i, i + kSide) × pairs [q0, q0 + kSide) of A (K rows, all of the
// block inside A) into rows i… of out (row stride ld), and into colsum (or null).
constexpr Index kSide = 16;
#if defined(__AVX512F__)

// The bf16 bits of 16 values (to_bf16's, NaN included) in the low halves of 32-bit lanes.
__m512i bf16_lanes(__m512 v) {
    const __m512i b = _mm512_castps_si512(v), one = _mm512_set1_epi32(1);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), 16);
    const __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
    return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40));
}

// r[i] (16 × 32-bit lanes) → its transpose: lane j of r[i] moves to lane i of r[j].
void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
        for (int j = 0; j < 2; ++j) {
            r[i + 2 * j] = _mm512_unpacklo_epi64(t[i + j], t[i + j + 2]);
            r[i + 2 * j + 1] = _mm512_unpackhi_epi64(t[i + j], t[i + j + 2]);
        }
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; ++j) {
            t[i + j] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0xDD);
        }
    for (int j = 0; j < 8; ++j) {
        r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xDD);
    }
}

void transpose_block(const float* A, Index lda, Index, Index i, Index q0, float* colsum, std::uint16_t* out,
                     Index ld) {
    static_assert(kSide == 16, "one 512-bit register per 16 pairs");
    __m512i r[16];
    __m512 sum = colsum ? _mm512_loadu_ps(colsum + i) : _mm512_setzero_ps();
    for (int q = 0; q < 16; ++q) {
        const float* a = A + 2 * (q0 + q) * lda + i;
        const __m512 a0 = _mm512_loadu_ps(a), a1 = _mm512_loadu_ps(a + lda);
        sum = _mm512_add_ps(_mm512_add_ps(sum, a0), a1);
        r[q] = _mm512_or_si512(bf16_lanes(a0), _mm512_slli_epi32(bf16_lanes(a1), 16));
    }
    if (colsum) _mm512_storeu_ps(colsum + i, sum);
    transpose16(r);
    for (int c = 0; c < 16; ++c) _mm512_storeu_si512(out + (i + c) * ld + 2 * q0, r[c]);
}
#else
void transpose_block(const float* A, Index lda, Index K, Index i, Index q0, float* colsum, std::uint16_t* out,
                     Index ld) {
    std::uint32_t pair[kSide][kSide];
    for (Index q = 0; q < kSide; ++q) {
        pairs_of(A, lda, K, q0 + q, i, kSide, pair[q]);
        if (colsum) add_rows(A, lda, K, q0 + q, i, i + kSide, colsum);
    }
    for (Index c = 0; c < kSide; ++c)
        for (Index q = 0; q < kSide; ++q) std::memcpy(out + (i + c) * ld + 2 * (q0 + q), &pair[q][c], 4);
}
#endif

}  // namespace

void PackedBf16::pack_kn(const float* src, Index N, Index K, Index ld) {
    shape(1, N, K);
    const Index kp = kp2(), per = kTile / kNR, groups = (panels() + per - 1) / per;
    const Index chunks = (kp / 2 + kPairChunk - 1) / kPairChunk;
    data_.assign(panels() * kp * kNR, 0);
    // A group of panels (kTile columns) and a chunk of pairs of k per item (a
    // thread's share even when N is one group); a panel holds 32 columns ×
    // (k even, k odd) per pair of k.
    parallel_rows(groups * chunks, 2 * kPairChunk * kTile, [&](Index item) {
        const Index b = item / chunks, q0 = item % chunks * kPairChunk, q1 = std::min(kp / 2, q0 + kPairChunk);
        const Index p0 = b * per, p1 = std::min(panels(), p0 + per), c0 = column(p0);
        std::uint32_t pair[kTile];
        for (Index q = q0; q < q1; ++q) {
            pairs_of(src, ld, K, q, c0, column(p1 - 1) + width(p1 - 1) - c0, pair);
            for (Index p = p0; p < p1; ++p)
                std::memcpy(data_.data() + (p * kp + 2 * q) * kNR, pair + (column(p) - c0),
                            width(p) * sizeof pair[0]);
        }
    });
}

void Bf16Rows::prepare_transposed(const float* A, Index lda, Index m, Index K, float* colsum) {
    m_ = m, K_ = K, ld_ = (K + 1) / 2 * 2;
    data_.resize(m * ld_);
    if (colsum) std::fill_n(colsum, m, 0.0f);
    // Blocks of kSide columns × kSide pairs of k, full ones where m and K
    // allow: a block reads kSide short pieces of rows of A and writes kSide
    // pairs to each of its result rows. The result's rows are T·B values long,
    // so writing one pair per visit (as pairs_of's rows come) touched a page per
    // pair: a third of the weight-gradient GEMM's time. Each column's sum adds
    // the rows in k order (column_sum's bits); threads take tiles of columns.
    const Index m_full = m / kSide * kSide, q_full = K / 2 / kSide * kSide;
    parallel_rows((m + kTile - 1) / kTile, kTile * K, [&](Index b) {
        const Index i0 = b * kTile, i1 = std::min(m, i0 + kTile), full_end = std::min(i1, m_full);
        for (Index q0 = 0; q0 < q_full; q0 += kSide)
            for (Index i = i0; i < full_end; i += kSide) transpose_block(A, lda, K, i, q0, colsum, data_.data(), ld_);
        // the rest, one pair at a time: the last pairs of k of the full
        // columns, then every pair of the last columns
        auto rest = [&](Index c0, Index c1, Index q0) {
            std::uint32_t pair[kTile];
            for (Index q = q0; q < ld_ / 2; ++q) {
                pairs_of(A, lda, K, q, c0, c1 - c0, pair);
                for (Index i = c0; i < c1; ++i) std::memcpy(data_.data() + i * ld_ + 2 * q, pair + i - c0, 4);
                if (colsum) add_rows(A, lda, K, q, c0, c1, colsum);
            }
        };
        if (i0 < full_end) rest(i0, full_end, q_full);
        if (full_end < i1) rest(full_end, i1, 0);
    });
}

void gemm_tn(const float* A, Index lda, const float* B, float* C, Index m, Index n, Index k, bool accumulate,
             Path path, float* colsum) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate) std::fill_n(C, m * n, 0.0f);
        if (colsum) std::fill_n(colsum, m, 0.0f);
        return;
    }
    Bf16Rows a;
    a.prepare_transposed(A, lda, m, k, colsum);
    PackedBf16 b;
    b.pack_kn(B, n, k, n);
    gemm_ordered(a, b, C, n, accumulate, path);
}

}  // namespace lowp
}  // namespace fastrnn
