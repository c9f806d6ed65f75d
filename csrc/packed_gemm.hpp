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
// Each output element is one FMA chain over k in order, the same code
// whatever the thread count (panels are split among threads, never K) and
// whatever the number of rows a micro-kernel call gets, so the recurrent
// products are bit-identical across thread counts and rows may be split among
// threads anywhere (time_loop.hpp). A chain has an FMA's latency per k; with
// 1 or 2 rows there would be too few chains to keep the FMA units busy, so
// such calls take several panels at once (more chains, same order per element)
// rather than splitting k.
#pragma once

#include "parallel.hpp"

#include <algorithm>
#include <tuple>
#include <utility>

namespace fastrnn {

template <typename S>
struct PacketInfo {
    using P = typename Eigen::internal::packet_traits<S>::type;
    static constexpr int L = Eigen::internal::unpacket_traits<P>::size;
    static constexpr int NR = 2 * L;  // output columns per panel
    static constexpr int MR = 6;      // rows of A per micro-kernel call
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

// For each of NP panels q: C[q][0:MR, 0:cols[q]] (=|+=) A[0:MR, 0:K] · panel[q]ᵀ,
// each element one FMA chain over k in order.
template <typename S, int MR, int NP>
inline void micro_kernel(const S* A, Index lda, const S* const (&panel)[NP], Index K, S* const (&C)[NP], Index ldc,
                         const Index (&cols)[NP], bool accumulate) {
    using namespace Eigen::internal;
    using P = typename PacketInfo<S>::P;
    constexpr int L = PacketInfo<S>::L, NR = PacketInfo<S>::NR;
    P c0[NP][MR], c1[NP][MR];
    for (int q = 0; q < NP; ++q)
        for (int i = 0; i < MR; ++i) c0[q][i] = c1[q][i] = pset1<P>(S(0));
    for (Index k = 0; k < K; ++k)
        for (int q = 0; q < NP; ++q) {
            const P b0 = pload<P>(panel[q] + k * NR), b1 = pload<P>(panel[q] + k * NR + L);
            for (int i = 0; i < MR; ++i) {
                const P a = pset1<P>(A[i * lda + k]);
                c0[q][i] = pmadd(a, b0, c0[q][i]);
                c1[q][i] = pmadd(a, b1, c1[q][i]);
            }
        }
    for (int q = 0; q < NP; ++q)
        for (int i = 0; i < MR; ++i) {
            S* c = C[q] + i * ldc;
            if (cols[q] == NR) {
                if (accumulate) {
                    c0[q][i] = padd(c0[q][i], ploadu<P>(c));
                    c1[q][i] = padd(c1[q][i], ploadu<P>(c + L));
                }
                pstoreu(c, c0[q][i]);
                pstoreu(c + L, c1[q][i]);
            } else {
                alignas(64) S tmp[NR];
                pstore(tmp, c0[q][i]);
                pstore(tmp + L, c1[q][i]);
                for (Index j = 0; j < cols[q]; ++j) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
            }
        }
}

// One panel for MR′ < MR rows.
template <typename S, int MR>
inline void panel_rows(const S* A, Index lda, const S* panel, Index K, S* C, Index ldc, Index cols, bool accumulate) {
    const S* const p[1] = {panel};
    S* const c[1] = {C};
    const Index w[1] = {cols};
    micro_kernel<S, MR, 1>(A, lda, p, K, c, ldc, w, accumulate);
}

// One panel for rows [0, m) of A: blocks of MR rows, and no block of 1 or 2
// rows unless m is: those have too few FMA chains (2 or 4) to hide the FMA's
// latency, so a last MR + 1 or MR + 2 rows go as two blocks of about half.
// (6 + 2 → 4 + 4 made a step's product 3–7% faster at 8 or 32 rows.)
template <typename S>
inline void panel_product(const S* A, Index lda, Index m, const S* panel, Index K, S* C, Index ldc, Index cols,
                          bool accumulate) {
    constexpr int MR = PacketInfo<S>::MR;
    auto rows = [&](Index i, Index n) {
        const S* a = A + i * lda;
        S* c = C + i * ldc;
        switch (n) {
            case MR: panel_rows<S, MR>(a, lda, panel, K, c, ldc, cols, accumulate); break;
            case 5: panel_rows<S, 5>(a, lda, panel, K, c, ldc, cols, accumulate); break;
            case 4: panel_rows<S, 4>(a, lda, panel, K, c, ldc, cols, accumulate); break;
            case 3: panel_rows<S, 3>(a, lda, panel, K, c, ldc, cols, accumulate); break;
            case 2: panel_rows<S, 2>(a, lda, panel, K, c, ldc, cols, accumulate); break;
            case 1: panel_rows<S, 1>(a, lda, panel, K, c, ldc, cols, accumulate); break;
            default: break;
        }
    };
    static_assert(MR == 6, "the switch above lists blocks of 1 to 6 rows");
    Index full = m / MR, last = m % MR;
    if (last > 0 && last <= 2 && full > 0) --full, last += MR;
    Index i = 0;
    for (; i < full * MR; i += MR) rows(i, MR);
    if (last > MR) {
        rows(i, (last + 1) / 2);
        i += (last + 1) / 2;
        last /= 2;
    }
    rows(i, last);
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

// MR ≤ 2 rows against n panels, panel(i) giving the i-th (its pointer, C
// column and width): NP panels per call, for 4 FMA chains per k or more.
template <typename S, int MR, int NP, typename Panel>
inline void few_rows_panels(const S* A, Index lda, Index K, Index i0, Panel&& panel, S* C, Index ldc, bool accumulate) {
    const S* p[NP];
    S* c[NP];
    Index w[NP];
    for (int q = 0; q < NP; ++q) {
        const auto [ptr, col, width] = panel(i0 + q);
        p[q] = ptr, c[q] = C + col, w[q] = width;
    }
    micro_kernel<S, MR, NP>(A, lda, p, K, c, ldc, w, accumulate);
}

template <typename S, int MR, typename Panel>
inline void few_rows(const S* A, Index lda, Index K, Index n, Panel&& panel, S* C, Index ldc, bool accumulate) {
    constexpr int NP = MR == 1 ? 4 : 2;
    Index i = 0;
    for (; i + NP <= n; i += NP) few_rows_panels<S, MR, NP>(A, lda, K, i, panel, C, ldc, accumulate);
    switch (n - i) {
        case 3: few_rows_panels<S, MR, 3>(A, lda, K, i, panel, C, ldc, accumulate); break;
        case 2: few_rows_panels<S, MR, 2>(A, lda, K, i, panel, C, ldc, accumulate); break;
        case 1: few_rows_panels<S, MR, 1>(A, lda, K, i, panel, C, ldc, accumulate); break;
        default: break;
    }
}

// The columns of unit panels [j0, j1) of groups [g0, g1) (default: every
// group): C (=|+=) A · Mᵀ there, summed over the k range [k0, k1) of A's
// columns and M's (default: all K). A k range of a panel is contiguous.
// Blocks of 3 to MR rows go panel by panel (panel_product); 1 or 2 rows
// alone take several panels per micro-kernel call.
template <typename S>
void packed_gemm_units(const S* A, Index lda, Index m, const PackedMatrix<S>& M, Index j0, Index j1, S* C,
                       Index ldc, bool accumulate, Index g0 = 0, Index g1 = -1, Index k0 = 0, Index k1 = -1) {
    constexpr int NR = PackedMatrix<S>::NR;
    if (g1 < 0) g1 = M.groups();
    if (k1 < 0) k1 = M.K();
    const Index K = k1 - k0, nj = j1 - j0;
    auto panel = [&](Index i) {  // i-th of the (group, unit panel) pairs, group-major
        const Index p = (g0 + i / nj) * M.per_group() + j0 + i % nj;
        return std::tuple<const S*, Index, Index>{M.panel(p) + k0 * NR, M.column(p), M.width(p)};
    };
    for (Index r0 = 0; r0 < m; r0 += kRowBlock) {
        const Index rows = std::min(kRowBlock, m - r0), tail = rows <= 2 ? rows : 0;
        const S* a = A + r0 * lda + k0;
        S* c = C + r0 * ldc;
        for (Index i = 0; i < (g1 - g0) * nj && rows > tail; ++i) {
            const auto [ptr, col, width] = panel(i);
            panel_product(a, lda, rows - tail, ptr, K, c + col, ldc, width, accumulate);
        }
        const Index at = (rows - tail) * lda, ct = (rows - tail) * ldc;
        if (tail == 2) few_rows<S, 2>(a + at, lda, K, (g1 - g0) * nj, panel, c + ct, ldc, accumulate);
        if (tail == 1) few_rows<S, 1>(a + at, lda, K, (g1 - g0) * nj, panel, c + ct, ldc, accumulate);
    }
}

// The hidden units [u0, u0 + len) that unit panels [j0, j1) cover.
template <typename S>
inline std::pair<Index, Index> unit_range(Index j0, Index j1, Index H) {
    const Index u0 = j0 * PackedMatrix<S>::NR;
    return {u0, std::min(H, j1 * PackedMatrix<S>::NR) - u0};
}

}  // namespace fastrnn
