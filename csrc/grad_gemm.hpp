// The weight-gradient GEMM, C(m, n) (=|+=) A(k, m)ᵀ · B(k, n): a sum over
// the k = T·B rows of a call (dW_ih, dW_hh, dW_hr, Dense's dW), and the
// bias sums, Σ over k of A's columns, fused into its pass over A.
//
// Every element of C is one FMA chain over k in order 0, 1, …, k−1, whatever
// the thread count or the blocking: a k block continues the chain from C's
// stored value (a float stored and loaded back is exact), and a tile's
// position does not change its arithmetic. So the output rows can be shared
// among threads evenly, by work, and results stay bit-identical for every
// thread count (docs/numerics.md). Eigen's GEMM, which this replaces, re-packed
// the whole other operand per output strip and so had to run in a few wide
// strips fixed by the shape (small_h64's dW on one thread).
//
// Per k block each thread packs its own strips of MR columns of A and all of
// B (as panels of NR columns, K-contiguous), then runs an MR × NR
// register-blocked kernel: A's strip stays in L1 while B's panels stream
// from L2.
#pragma once

#include "parallel.hpp"

#include <algorithm>

namespace fastrnn {

// One output of a weight-gradient GEMM over a shared A: C (m, n) (=|+=) Aᵀ · B,
// B (k, n) and C dense. Several outputs of one A (dW_hh and dW_ih both read
// dG) run as one pass over A.
template <typename S>
struct TnOutput {
    const S* B;
    S* C;
    Index n;
};

namespace grad_gemm {

constexpr int kMaxOutputs = 2;

template <typename S>
struct TnOutputs {
    TnOutput<S> out[kMaxOutputs];
    int count;
};

template <typename S>
struct Shape {
    using P = typename Eigen::internal::packet_traits<S>::type;
    static constexpr int L = Eigen::internal::unpacket_traits<P>::size;
    static constexpr int NR = 2 * L;  // columns of C per panel
    // Rows of C per strip: 2·MR accumulators and 3 more registers. With 32
    // of them (AVX-512), 8 rows: 2-4% faster than 6 with 1 thread on the
    // LM's fused dW shapes (m 1024, n 320 and 512, k 2048).
#ifdef __AVX512F__
    static constexpr int MR = 8;
#else
    static constexpr int MR = 6;
#endif
};

// C[0:MR, 0:NR] (= 0 | +=) Σ_kk a[kk·as + r] · b[kk·NR + c], C row stride ldc.
template <typename S>
inline void kernel(const S* a, Index as, const S* b, Index kc, S* C, Index ldc, bool load) {
    using namespace Eigen::internal;
    using Sh = Shape<S>;
    using P = typename Sh::P;
    constexpr int L = Sh::L, NR = Sh::NR, MR = Sh::MR;
    P c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
        c0[r] = load ? ploadu<P>(C + r * ldc) : pset1<P>(S(0));
        c1[r] = load ? ploadu<P>(C + r * ldc + L) : pset1<P>(S(0));
    }
    for (Index kk = 0; kk < kc; ++kk) {
        const P b0 = pload<P>(b + kk * NR), b1 = pload<P>(b + kk * NR + L);
        for (int r = 0; r < MR; ++r) {
            const P x = pset1<P>(a[kk * as + r]);
            c0[r] = pmadd(x, b0, c0[r]);
            c1[r] = pmadd(x, b1, c1[r]);
        }
    }
    for (int r = 0; r < MR; ++r) {
        pstoreu(C + r * ldc, c0[r]);
        pstoreu(C + r * ldc + L, c1[r]);
    }
}

// One row of a k block into its blocks of W values (the last one padded
// with zeros): dst[blk·kc·W + c] = row[blk·W + c].
template <int W, typename S>
inline void pack(const S* row, Index len, Index blocks, Index kc, S* dst) {
    const Index full = len / W;
    for (Index q = 0; q < full; ++q)
        for (int c = 0; c < W; ++c) dst[q * kc * W + c] = row[q * W + c];
    if (full < blocks)
        for (int c = 0; c < W; ++c) dst[full * kc * W + c] = full * W + c < len ? row[full * W + c] : S(0);
}

// Rows [i0, i1) of every output's C (a multiple of MR from i0, but for the
// last strip), every column, over k blocks of kc; colsum (i1 − i0 values) or
// null. The outputs' B panels sit side by side in one packed block, so A's
// strips are packed once and read by the panels of them all.
template <typename S>
void rows_of_c(const S* A, Index lda, const TnOutputs<S>& outs, Index k, Index i0, Index i1, bool accumulate,
               S* colsum) {
    using Sh = Shape<S>;
    constexpr int NR = Sh::NR, MR = Sh::MR;
    Index first[kMaxOutputs + 1] = {0};  // output j's panels: [first[j], first[j + 1])
    for (int j = 0; j < outs.count; ++j) first[j + 1] = first[j] + (outs.out[j].n + NR - 1) / NR;
    const Index m = i1 - i0, strips = (m + MR - 1) / MR, panels = first[outs.count];
    // B's block (kc × n) stays in L2 while A's strips pass through L1.
    const Index kc = std::min(k, std::clamp<Index>(Index(65536) / (panels * NR), 32, 512));
    // A's strips are packed when several panels read them; with one or two
    // the kernel broadcasts from A's rows (packing would cost as much), all
    // but a last strip narrower than MR.
    const Index unpacked = panels > 2 ? 0 : m / MR;  // strips read in place
    Buffer<S> ap((strips - unpacked) * MR * kc), bp(panels * NR * kc);
    alignas(64) S edge[MR * NR];
    if (colsum) std::fill_n(colsum, m, S(0));
    for (Index k0 = 0; k0 < k; k0 += kc) {
        const Index kn = std::min(kc, k - k0);
        for (Index kk = 0; kk < kn; ++kk) {
            const S* arow = A + (k0 + kk) * lda + i0;
            if (unpacked < strips)
                pack<MR>(arow + unpacked * MR, m - unpacked * MR, strips - unpacked, kc, ap.data() + kk * MR);
            if (colsum) ArrMap<S>(colsum, m) += ConstArrMap<S>(arow, m);
            for (int j = 0; j < outs.count; ++j) {
                const TnOutput<S>& o = outs.out[j];
                pack<NR>(o.B + (k0 + kk) * o.n, o.n, first[j + 1] - first[j], kc, bp.data() + (first[j] * kc + kk) * NR);
            }
        }
        const bool load = accumulate || k0 > 0;
        for (Index s = 0; s < strips; ++s) {
            const Index rows = std::min<Index>(MR, m - s * MR);
            const bool in_place = s < unpacked;
            const S* a = in_place ? A + k0 * lda + i0 + s * MR : ap.data() + (s - unpacked) * kc * MR;
            const Index as = in_place ? lda : MR;
            for (int j = 0; j < outs.count; ++j) {
                const TnOutput<S>& o = outs.out[j];
                for (Index q = first[j]; q < first[j + 1]; ++q) {
                    const Index col = (q - first[j]) * NR, cols = std::min<Index>(NR, o.n - col);
                    S* c = o.C + (i0 + s * MR) * o.n + col;
                    const S* b = bp.data() + q * kc * NR;
                    if (rows == MR && cols == NR) {
                        kernel(a, as, b, kn, c, o.n, load);
                        continue;
                    }
                    for (Index r = 0; r < rows; ++r)
                        for (Index jj = 0; jj < cols; ++jj) edge[r * NR + jj] = load ? c[r * o.n + jj] : S(0);
                    kernel(a, as, b, kn, edge, NR, true);
                    for (Index r = 0; r < rows; ++r) std::copy_n(edge + r * NR, cols, c + r * o.n);
                }
            }
        }
    }
}

}  // namespace grad_gemm

// C(m, n) (=|+=) A(k, m)ᵀ · B(k, n)   (weight gradients: sum over k rows)
// for each output (B, C, n) of o1, o2 (an output with n = 0 is none); A's rows
// lda apart (default m), B's and C's dense. colsum (m values) or null: = Σ
// over k of A's columns (a bias gradient), row by row in order as column_sum,
// from the same pass over A.
template <typename S>
inline void gemm_tn(const S* A, const TnOutput<S>& o1, const TnOutput<S>& o2, Index m, Index k, bool accumulate,
                    Index lda = -1, S* colsum = nullptr) {
    grad_gemm::TnOutputs<S> o{};
    Index n = 0;
    for (const TnOutput<S>* out : {&o1, &o2})
        if (out->n > 0) o.out[o.count++] = *out, n += out->n;
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate)
            for (int j = 0; j < o.count; ++j) std::fill_n(o.out[j].C, m * o.out[j].n, S(0));
        if (colsum) std::fill_n(colsum, m, S(0));
        return;
    }
    constexpr int MR = grad_gemm::Shape<S>::MR;
    const Index ld = lda < 0 ? m : lda, strips = (m + MR - 1) / MR;
    const int nt = static_cast<int>(std::min<Index>(num_threads(), strips));
    auto share = [&](int t, int nt_) {  // strips [strips·t/nt, strips·(t+1)/nt)
        const Index i0 = strips * t / nt_ * MR, i1 = std::min(m, strips * (t + 1) / nt_ * MR);
        if (i0 < i1) grad_gemm::rows_of_c(A, ld, o, k, i0, i1, accumulate, colsum ? colsum + i0 : nullptr);
    };
    if (nt > 1 && 2 * m * n * k >= (Index(1) << 20))
        run_team(nt, share);
    else
        share(0, 1);
}

template <typename S>
inline void gemm_tn(const S* A, const S* B, S* C, Index m, Index n, Index k, bool accumulate, Index lda = -1,
                    S* colsum = nullptr) {
    gemm_tn(A, TnOutput<S>{B, C, n}, TnOutput<S>{nullptr, nullptr, 0}, m, k, accumulate, lda, colsum);
}

// out(n) = sum over the k rows of A(k, n), row by row in order (each column
// alone: the column ranges of threads do not change any bits).
template <typename S>
inline void column_sum(const S* A, S* out, Index k, Index n) {
    constexpr Index kChunk = 256;
    parallel_rows((n + kChunk - 1) / kChunk, kChunk * k, [&](Index c) {
        const Index j0 = c * kChunk, len = std::min(kChunk, n - j0);
        ArrMap<S> o(out + j0, len);
        o.setZero();
        for (Index r = 0; r < k; ++r) o += ConstArrMap<S>(A + r * n + j0, len);
    });
}

}  // namespace fastrnn
