// C = A · Mᵀ with M packed once and reused for every time step.
//
// The recurrent product of each step, (n × H) · W_hhᵀ, is too small for a
// general GEMM to amortise packing W_hh on every call; here W is packed once
// per layer call into panels of NR = 2 SIMD packets of output columns,
// K-contiguous, and each step runs an MR × NR register-blocked micro-kernel
// that broadcasts A and streams the panel. M's rows come in G groups (the
// gates) of H rows each; panels never straddle a group, so a panel is "units
// [j·NR, j·NR + NR) of gate g".
//
// Each output element is computed by the same code with the same summation
// order whatever the thread count (panels are split among threads, never K),
// so the recurrent products are bit-identical across thread counts. With 32
// vector registers (AVX-512) that order does not depend on how many rows a
// micro-kernel call gets either, so rows may be split among threads anywhere
// (kRowAlign = 1); with 16 the order of a block of 1 or 2 rows differs, and
// row shares start at multiples of MR (time_loop.hpp).
#pragma once

#include "parallel.hpp"

#include <algorithm>
#include <utility>

namespace fastrnn {

template <typename S>
struct PacketInfo {
    using P = typename Eigen::internal::packet_traits<S>::type;
    static constexpr int L = Eigen::internal::unpacket_traits<P>::size;
    static constexpr int NR = 2 * L;  // output columns per panel
    static constexpr int MR = 6;      // rows of A per micro-kernel call
#ifdef EIGEN_VECTORIZE_AVX512
    // 32 registers hold 2 k-interleaved accumulator sets of MR × NR (24), so
    // every row count runs the same two chains per element: 4 FMA chains even
    // for one row, enough to cover the FMA latency where one row is load-bound.
    static constexpr bool kFixedOrder = true;
#else
    // 16 registers hold one set of MR × NR (12); blocks of 1 or 2 rows split
    // k into more sets for the latency chain, a different summation order.
    static constexpr bool kFixedOrder = false;
#endif
    // Rows of A a thread's share must start at for bit-identical results.
    static constexpr int kRowAlign = kFixedOrder ? 1 : MR;
    // Accumulator sets (k-interleaved chains) for a block of `rows` rows.
    static constexpr int sets(int rows) { return kFixedOrder ? 2 : rows == 1 ? 4 : rows == 2 ? 2 : 1; }
};

template <typename S>
class PackedMatrix {
public:
    static constexpr int NR = PacketInfo<S>::NR;

    // M (G·H, K): M[g·H + u, k] = src[(g·H + u)·ld + k] (row-major source), or
    // with transpose, M[n, k] = src[k·ld + n] (M is a column block of src's transpose).
    void pack(const S* src, Index G, Index H, Index K, Index ld, bool transpose) {
        G_ = G, H_ = H, K_ = K;
        per_group_ = (H + NR - 1) / NR;
        data_.resize(G * per_group_ * K * NR);
        for (Index g = 0; g < G; ++g)
            for (Index j = 0; j < per_group_; ++j) {
                S* p = data_.data() + (g * per_group_ + j) * K * NR;
                const Index n = g * H + j * NR, cols = std::min<Index>(NR, H - j * NR);
                if (transpose)
                    pack_columns(src + n, ld, cols, K, p);
                else
                    pack_rows(src + n * ld, ld, cols, K, p);
            }
    }

    Index panels() const { return G_ * per_group_; }
    Index groups() const { return G_; }
    Index per_group() const { return per_group_; }
    Index K() const { return K_; }
    const S* panel(Index p) const { return data_.data() + p * K_ * NR; }
    Index column(Index p) const { return (p / per_group_) * H_ + (p % per_group_) * NR; }
    Index width(Index p) const { return std::min<Index>(NR, H_ - (p % per_group_) * NR); }

private:
    // p[k·NR + c] = rows[c·ld + k], zero for c ≥ cols. Full panels transpose
    // L×L blocks in registers: packing is all a one-step call does besides
    // its few flops, and element-wise it was most of such a call.
    static void pack_rows(const S* rows, Index ld, Index cols, Index K, S* p) {
        using namespace Eigen::internal;
        using P = typename PacketInfo<S>::P;
        constexpr int L = PacketInfo<S>::L;
        Index k = 0;
        if (cols == NR)
            for (; k + L <= K; k += L)
                for (int h = 0; h < 2; ++h) {
// GCC drops a vector type's alignment attribute in a template argument and
// says so; Eigen silences the same warning inside its own headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
                    PacketBlock<P, L> b;
#pragma GCC diagnostic pop
                    for (int r = 0; r < L; ++r) b.packet[r] = ploadu<P>(rows + (h * L + r) * ld + k);
                    ptranspose(b);
                    for (int r = 0; r < L; ++r) pstoreu(p + (k + r) * NR + h * L, b.packet[r]);
                }
        for (; k < K; ++k)
            for (Index c = 0; c < NR; ++c) p[k * NR + c] = c < cols ? rows[c * ld + k] : S(0);
    }

    // p[k·NR + c] = src[k·ld + c], zero for c ≥ cols: rows of the panel are
    // contiguous in the source.
    static void pack_columns(const S* src, Index ld, Index cols, Index K, S* p) {
        for (Index k = 0; k < K; ++k) {
            std::copy_n(src + k * ld, cols, p + k * NR);
            std::fill(p + k * NR + cols, p + k * NR + NR, S(0));
        }
    }

    Index G_ = 0, H_ = 0, K_ = 0, per_group_ = 0;
    Buffer<S> data_;  // line-aligned for packet loads
};

// C[0:MR, 0:cols] (=|+=) A[0:MR, 0:K] · panelᵀ. With few rows the FMA chain
// is latency-bound, so KS independent accumulator sets split the k loop.
template <typename S, int MR, int KS>
inline void micro_kernel(const S* A, Index lda, const S* panel, Index K, S* C, Index ldc, Index cols,
                         bool accumulate) {
    using namespace Eigen::internal;
    using P = typename PacketInfo<S>::P;
    constexpr int L = PacketInfo<S>::L, NR = PacketInfo<S>::NR;
    P c0[KS][MR], c1[KS][MR];
    for (int s = 0; s < KS; ++s)
        for (int i = 0; i < MR; ++i) c0[s][i] = c1[s][i] = pset1<P>(S(0));
    Index k = 0;
    for (; k + KS <= K; k += KS)
        for (int s = 0; s < KS; ++s) {
            const P b0 = pload<P>(panel + (k + s) * NR), b1 = pload<P>(panel + (k + s) * NR + L);
            for (int i = 0; i < MR; ++i) {
                const P a = pset1<P>(A[i * lda + k + s]);
                c0[s][i] = pmadd(a, b0, c0[s][i]);
                c1[s][i] = pmadd(a, b1, c1[s][i]);
            }
        }
    for (; k < K; ++k) {
        const P b0 = pload<P>(panel + k * NR), b1 = pload<P>(panel + k * NR + L);
        for (int i = 0; i < MR; ++i) {
            const P a = pset1<P>(A[i * lda + k]);
            c0[0][i] = pmadd(a, b0, c0[0][i]);
            c1[0][i] = pmadd(a, b1, c1[0][i]);
        }
    }
    for (int s = 1; s < KS; ++s)
        for (int i = 0; i < MR; ++i) {
            c0[0][i] = padd(c0[0][i], c0[s][i]);
            c1[0][i] = padd(c1[0][i], c1[s][i]);
        }
    for (int i = 0; i < MR; ++i) {
        S* c = C + i * ldc;
        if (cols == NR) {
            if (accumulate) {
                c0[0][i] = padd(c0[0][i], ploadu<P>(c));
                c1[0][i] = padd(c1[0][i], ploadu<P>(c + L));
            }
            pstoreu(c, c0[0][i]);
            pstoreu(c + L, c1[0][i]);
        } else {
            alignas(64) S tmp[NR];
            pstore(tmp, c0[0][i]);
            pstore(tmp + L, c1[0][i]);
            for (Index j = 0; j < cols; ++j) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
        }
    }
}

// One panel for rows [0, m) of A.
template <typename S>
inline void panel_product(const S* A, Index lda, Index m, const S* panel, Index K, S* C, Index ldc, Index cols,
                          bool accumulate) {
    using PI = PacketInfo<S>;
    constexpr int MR = PI::MR;
    Index i = 0;
    for (; i + MR <= m; i += MR)
        micro_kernel<S, MR, PI::sets(MR)>(A + i * lda, lda, panel, K, C + i * ldc, ldc, cols, accumulate);
    const S* a = A + i * lda;
    S* c = C + i * ldc;
    switch (m - i) {
        case 5: micro_kernel<S, 5, PI::sets(5)>(a, lda, panel, K, c, ldc, cols, accumulate); break;
        case 4: micro_kernel<S, 4, PI::sets(4)>(a, lda, panel, K, c, ldc, cols, accumulate); break;
        case 3: micro_kernel<S, 3, PI::sets(3)>(a, lda, panel, K, c, ldc, cols, accumulate); break;
        case 2: micro_kernel<S, 2, PI::sets(2)>(a, lda, panel, K, c, ldc, cols, accumulate); break;
        case 1: micro_kernel<S, 1, PI::sets(1)>(a, lda, panel, K, c, ldc, cols, accumulate); break;
        default: break;
    }
}

// C(m, G·H) (=|+=) A(m, K) · Mᵀ. Work items are (row block, panel) pairs,
// row-block-major, so under a static split each thread keeps its own rows of
// A in cache while it sweeps the panels; a row block (kRowBlock × K) fits L2.
constexpr Index kRowBlock = 120;  // a multiple of MR

template <typename S>
void packed_gemm(const S* A, Index lda, Index m, const PackedMatrix<S>& M, S* C, Index ldc, bool accumulate) {
    if (m == 0) return;
    const Index np = M.panels(), nb = (m + kRowBlock - 1) / kRowBlock;
    const Index rows = std::min(m, kRowBlock);
    parallel_rows(nb * np, rows * M.K() * PackedMatrix<S>::NR / 32, [&](Index item) {
        const Index b = item / np, p = item % np, r0 = b * kRowBlock;
        panel_product(A + r0 * lda, lda, std::min(kRowBlock, m - r0), M.panel(p), M.K(), C + r0 * ldc + M.column(p),
                      ldc, M.width(p), accumulate);
    });
}

// The columns of unit panels [j0, j1) of groups [g0, g1) (default: every
// group): C (=|+=) A · Mᵀ there, summed over the k range [k0, k1) of A's
// columns and M's (default: all K). A k range of a panel is contiguous.
template <typename S>
void packed_gemm_units(const S* A, Index lda, Index m, const PackedMatrix<S>& M, Index j0, Index j1, S* C,
                       Index ldc, bool accumulate, Index g0 = 0, Index g1 = -1, Index k0 = 0, Index k1 = -1) {
    if (g1 < 0) g1 = M.groups();
    if (k1 < 0) k1 = M.K();
    for (Index r0 = 0; r0 < m; r0 += kRowBlock)
        for (Index g = g0; g < g1; ++g)
            for (Index j = j0; j < j1; ++j) {
                const Index p = g * M.per_group() + j;
                panel_product(A + r0 * lda + k0, lda, std::min(kRowBlock, m - r0), M.panel(p) + k0 * PackedMatrix<S>::NR,
                              k1 - k0, C + r0 * ldc + M.column(p), ldc, M.width(p), accumulate);
            }
}

// The hidden units [u0, u0 + len) that unit panels [j0, j1) cover.
template <typename S>
inline std::pair<Index, Index> unit_range(Index j0, Index j1, Index H) {
    const Index u0 = j0 * PackedMatrix<S>::NR;
    return {u0, std::min(H, j1 * PackedMatrix<S>::NR) - u0};
}

}  // namespace fastrnn
