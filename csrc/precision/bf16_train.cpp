// The bf16 GEMMs of training (lowp.hpp; docs/precision.md, "Training"):
// the time loops' products with one k order per output (gemm_ordered,
// gemm_units_ordered) and the weight gradients dW = dGᵀ · X over k = T·B
// rows (gemm_tn), whose operands are rounded to bf16 once per call: X (or
// h, the recurrent products' inputs) packed as panels of 32 columns, dGᵀ as
// rows. Threads split (row block, panel) items and never k, so every thread
// count gives the same bits.
#include "precision/lowp.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <stdexcept>

namespace fastrnn {
namespace lowp {
namespace {

constexpr Index kRowBlock = 128;  // rows of A per work item: a multiple of the kernels' 8 rows
constexpr Index kTile = 64;       // transposition tile (elements a side)

using Bf16Kernel = void (*)(const Bf16Args&);

Bf16Kernel ordered_kernel(Path p) {
    switch (p) {
        case Path::scalar: return bf16_panel_scalar;
#if defined(FASTRNN_LOWP_X86)
        case Path::avx2: return bf16_panel_avx2;  // one order per row already
        case Path::avx512_bf16: return bf16_panel_avx512_bf16_ordered;
#endif
        default: throw std::invalid_argument(std::string("lowp: ") + path_name(p) + " is not a bf16 path");
    }
}

}  // namespace

void PackedBf16::pack_kn(const float* src, Index N, Index K, Index ld) {
    shape(1, N, K);
    const Index kp = kp2();
    data_.assign(panels() * kp * kNR, 0);
    parallel_rows(panels(), K * kNR, [&](Index p) {
        std::uint16_t* d = data_.data() + p * kp * kNR;
        const Index c0 = column(p), w = width(p);
        for (Index k = 0; k < K; ++k) {
            const float* s = src + k * ld + c0;
            std::uint16_t* dk = d + (k / 2) * 2 * kNR + k % 2;
            for (Index c = 0; c < w; ++c) dk[2 * c] = to_bf16(s[c]);
        }
    });
}

void Bf16Rows::prepare_transposed(const float* A, Index lda, Index m, Index K) {
    m_ = m, K_ = K, ld_ = (K + 1) / 2 * 2;
    data_.resize(m * ld_);
    const Index blocks = (m + kTile - 1) / kTile;
    parallel_rows(blocks, kTile * K, [&](Index b) {
        const Index i0 = b * kTile, i1 = std::min(m, i0 + kTile);
        for (Index k0 = 0; k0 < K; k0 += kTile)
            for (Index i = i0; i < i1; ++i) {
                std::uint16_t* d = data_.data() + i * ld_;
                for (Index k = k0, k1 = std::min(K, k0 + kTile); k < k1; ++k) d[k] = to_bf16(A[k * lda + i]);
            }
        if (K < ld_)
            for (Index i = i0; i < i1; ++i) data_[i * ld_ + K] = 0;
    });
}

namespace {

Bf16Args args(const std::uint16_t* a, Index lda, Index m, const PackedBf16& M, Index p, float* C, Index ldc,
              bool accumulate) {
    return {a, lda, m, M.panel(p), M.kp2(), C + M.column(p), ldc, M.width(p), accumulate};
}

void check_k(Index rows_k, Index packed_k) {
    if (rows_k != packed_k)
        throw std::invalid_argument("lowp: activations have " + std::to_string(rows_k) +
                                    " columns, the packed matrix " + std::to_string(packed_k));
}

}  // namespace

void gemm_ordered(const Bf16Rows& A, const PackedBf16& M, float* C, Index ldc, bool accumulate, Path path) {
    check_k(A.K_, M.K());
    const Bf16Kernel kernel = ordered_kernel(path);
    const Index m = A.m_, np = M.panels(), nb = (m + kRowBlock - 1) / kRowBlock;
    if (m == 0) return;
    parallel_rows(nb * np, std::min(m, kRowBlock) * M.K() * kNR / 32, [&](Index item) {
        const Index r0 = (item / np) * kRowBlock;
        kernel(args(A.data_.data() + r0 * A.ld_, A.ld_, std::min(kRowBlock, m - r0), M, item % np, C + r0 * ldc,
                    ldc, accumulate));
    });
}

void gemm_units_ordered(const Bf16Rows& A, const PackedBf16& M, Index j0, Index j1, float* C, Index ldc,
                        bool accumulate, Path path) {
    check_k(A.K_, M.K());
    const Bf16Kernel kernel = ordered_kernel(path);
    for (Index r0 = 0; r0 < A.m_; r0 += kRowBlock)
        for (Index g = 0; g < M.groups(); ++g)
            for (Index j = j0; j < j1; ++j)
                kernel(args(A.data_.data() + r0 * A.ld_, A.ld_, std::min(kRowBlock, A.m_ - r0), M,
                            g * M.per_group() + j, C + r0 * ldc, ldc, accumulate));
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
