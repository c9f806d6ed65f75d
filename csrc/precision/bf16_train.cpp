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

namespace fastrnn {
namespace lowp {
namespace {

// Columns read from each row of the source per pass (1 KiB of fp32): long
// contiguous reads; the kTile destination rows they fill stay in L1.
constexpr Index kTile = 256;

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

}  // namespace

void PackedBf16::pack_kn(const float* src, Index N, Index K, Index ld) {
    shape(1, N, K);
    const Index kp = kp2(), per = kTile / kNR, groups = (panels() + per - 1) / per;
    data_.assign(panels() * kp * kNR, 0);
    // A group of panels (kTile columns) per pass; a panel holds 32 columns ×
    // (k even, k odd) per pair of k.
    parallel_rows(groups, K * kTile, [&](Index b) {
        const Index p0 = b * per, p1 = std::min(panels(), p0 + per), c0 = column(p0);
        std::uint32_t pair[kTile];
        for (Index q = 0; q < kp / 2; ++q) {
            pairs_of(src, ld, K, q, c0, column(p1 - 1) + width(p1 - 1) - c0, pair);
            for (Index p = p0; p < p1; ++p)
                std::memcpy(data_.data() + (p * kp + 2 * q) * kNR, pair + (column(p) - c0),
                            width(p) * sizeof pair[0]);
        }
    });
}

void Bf16Rows::prepare_transposed(const float* A, Index lda, Index m, Index K) {
    m_ = m, K_ = K, ld_ = (K + 1) / 2 * 2;
    data_.resize(m * ld_);
    // Rows of A are read contiguously a tile of kTile columns at a time; each
    // column's pair lands in its row of the result (kTile rows, all in cache).
    parallel_rows((m + kTile - 1) / kTile, kTile * K, [&](Index b) {
        const Index i0 = b * kTile, n = std::min(m, i0 + kTile) - i0;
        std::uint32_t pair[kTile];
        for (Index q = 0; q < ld_ / 2; ++q) {
            pairs_of(A, lda, K, q, i0, n, pair);
            for (Index i = 0; i < n; ++i) std::memcpy(data_.data() + (i0 + i) * ld_ + 2 * q, pair + i, 4);
        }
    });
}

void gemm_tn(const float* A, Index lda, const float* B, float* C, Index m, Index n, Index k, bool accumulate,
             Path path) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate) std::fill_n(C, m * n, 0.0f);
        return;
    }
    Bf16Rows a;
    a.prepare_transposed(A, lda, m, k);
    PackedBf16 b;
    b.pack_kn(B, n, k, n);
    gemm_ordered(a, b, C, n, accumulate, path);
}

}  // namespace lowp
}  // namespace fastrnn
