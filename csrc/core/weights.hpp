// Weight formats: how a layer-direction's matrices are stored and multiplied.
// PackedLayer, InputProjection and ForwardStep are templates over one of
// these, so every cell runs in every format through the same driver.
//
// A format W gives:
//   Matrix     a packed weight matrix; per_group() = unit panels per gate
//   Rows       per-call preparation of the activations (bf16 rounding,
//              int8 quantisation); nothing for the native format
//   Config     what packing needs besides the weights (the kernel path)
//   pack(M, cfg, src, G, H, K, name)          M = src (G·H, K), row-major
//   gemm(rows, A, lda, m, M, C, ldc, acc)      C (=|+=) A · Mᵀ, threads inside
//   gemm_units(rows, A, lda, m, M, j0, j1, C, ldc, acc)
//                                              the same on unit panels [j0, j1)
//                                              of every gate, on this thread
//   units(j0, j1, H)                           the hidden units those panels cover
// and, for the backward driver (formats training runs in: native, bf16):
//   pack_t(M, cfg, src, N, K, ld)              M (N, K) = src (K, N)ᵀ, row stride ld
//   gemm_tn(cfg, A, lda, B, C, m, n, k, acc, colsum, shared)
//                                              C (m, n) (=|+=) Aᵀ · B (weight gradients);
//                                              colsum (m) = Σ_k A's columns from the same
//                                              pass where kFusedColumnSum, else null;
//                                              shared (a GradRows, or null): what one call
//                                              prepared of A and B, for the next that reads them
//   gemm_tn2(cfg, A, lda, B1, C1, n1, B2, C2, n2, m, k, colsum, shared)
//                                              C1 = Aᵀ · B1 and C2 = Aᵀ · B2 (dW_hh and dW_ih
//                                              of one dG block), one pass over A where the
//                                              format can
#pragma once

#include "../grad_gemm.hpp"
#include "../packed_gemm.hpp"
#include "../precision/lowp.hpp"

#include <string>

namespace fastrnn {

// The layer's own dtype (float or double), fp32/fp64 FMA micro-kernel.
template <typename S>
struct NativeFormat {
    using Matrix = PackedMatrix<S>;
    struct Rows {};
    struct Config {};
    static void pack(Matrix& M, const Config&, const S* src, Index G, Index H, Index K, const std::string&) {
        M.pack(src, G, H, K, K, false);
    }
    static void gemm(Rows&, const S* A, Index lda, Index m, const Matrix& M, S* C, Index ldc, bool acc) {
        packed_gemm(A, lda, m, M, C, ldc, acc);
    }
    static void gemm_units(Rows&, const S* A, Index lda, Index m, const Matrix& M, Index j0, Index j1, S* C,
                           Index ldc, bool acc) {
        packed_gemm_units(A, lda, m, M, j0, j1, C, ldc, acc);
    }
    static std::pair<Index, Index> units(Index j0, Index j1, Index H) { return unit_range<S>(j0, j1, H); }
    static void pack_t(Matrix& M, const Config&, const S* src, Index N, Index K, Index ld) {
        M.pack(src, 1, N, K, ld, true);
    }
    static constexpr bool kFusedColumnSum = true;
    struct GradRows {};  // A is read in place
    static void gemm_tn(const Config&, const S* A, Index lda, const S* B, S* C, Index m, Index n, Index k,
                        bool acc, S* colsum = nullptr, GradRows* = nullptr) {
        fastrnn::gemm_tn(A, B, C, m, n, k, acc, lda, colsum);
    }
    static void gemm_tn2(const Config&, const S* A, Index lda, const S* B1, S* C1, Index n1, const S* B2, S* C2,
                         Index n2, Index m, Index k, S* colsum = nullptr, GradRows* = nullptr) {
        fastrnn::gemm_tn(A, TnOutput<S>{B1, C1, n1}, TnOutput<S>{B2, C2, n2}, m, k, false, lda, colsum);
    }
};

// bfloat16 (Packed = PackedBf16, Prepared = Bf16Rows) or int8 dynamic
// quantisation (PackedS8, S8Rows) weights, fp32 activations, states and
// gate math: the activations are rounded or quantised per call (per step
// for h_t, each thread its own copy of the rows it runs), and the kernel's
// epilogue writes or adds fp32 (dequantised for int8) into C.
template <typename Packed, typename Prepared>
struct LowpFormat {
    struct Matrix {
        Packed m;
        lowp::Path path;  // the kernel path it runs on, chosen when packed
        Index per_group() const { return m.per_group(); }
    };
    using Rows = Prepared;
    using Config = lowp::Path;
    static void pack(Matrix& M, lowp::Path path, const float* src, Index G, Index H, Index K,
                     const std::string& name) {
        if constexpr (std::is_same_v<Packed, lowp::PackedS8>)
            M.m.pack(src, G, H, K, K, false, name);
        else
            M.m.pack(src, G, H, K, K, false);
        M.path = path;
    }
    static void gemm(Rows& rows, const float* A, Index lda, Index m, const Matrix& M, float* C, Index ldc,
                     bool acc) {
        prepare(rows, A, lda, m, M);
        if constexpr (std::is_same_v<Packed, lowp::PackedS8>)
            lowp::gemm(rows, M.m, C, ldc, acc);
        else
            lowp::gemm(rows, M.m, C, ldc, acc, M.path);
    }
    static void gemm_units(Rows& rows, const float* A, Index lda, Index m, const Matrix& M, Index j0, Index j1,
                           float* C, Index ldc, bool acc) {
        prepare(rows, A, lda, m, M);
        if constexpr (std::is_same_v<Packed, lowp::PackedS8>)
            lowp::gemm_units(rows, M.m, j0, j1, C, ldc, acc);
        else
            lowp::gemm_units(rows, M.m, j0, j1, C, ldc, acc, M.path);
    }
    static std::pair<Index, Index> units(Index j0, Index j1, Index H) { return lowp::unit_range(j0, j1, H); }

private:
    static void prepare(Rows& rows, const float* A, Index lda, Index m, const Matrix& M) {
        if constexpr (std::is_same_v<Packed, lowp::PackedS8>)
            rows.prepare(A, lda, m, M.m.K(), M.path, M.m.activation_terms());
        else
            rows.prepare(A, lda, m, M.m.K());
    }
};

using Bf16Format = LowpFormat<lowp::PackedBf16, lowp::Bf16Rows>;
using Int8Format = LowpFormat<lowp::PackedS8, lowp::S8Rows>;

// bf16 mixed-precision training (docs/precision.md): Bf16Format's storage,
// with every output summed in one k order whatever rows a call covers
// (bit-identical for every thread count), and the backward's transposed
// packs and weight-gradient GEMMs in bf16 too. fp32 everywhere else.
struct Bf16TrainFormat {
    using Matrix = Bf16Format::Matrix;
    using Rows = lowp::Bf16Rows;
    using Config = lowp::Path;
    static void pack(Matrix& M, lowp::Path path, const float* src, Index G, Index H, Index K, const std::string&) {
        M.m.pack(src, G, H, K, K, false);
        M.path = path;
    }
    static void pack_t(Matrix& M, lowp::Path path, const float* src, Index N, Index K, Index ld) {
        M.m.pack_kn(src, N, K, ld);
        M.path = path;
    }
    static void gemm(Rows& rows, const float* A, Index lda, Index m, const Matrix& M, float* C, Index ldc,
                     bool acc) {
        rows.prepare(A, lda, m, M.m.K());
        lowp::gemm_ordered(rows, M.m, C, ldc, acc, M.path);
    }
    static void gemm_units(Rows& rows, const float* A, Index lda, Index m, const Matrix& M, Index j0, Index j1,
                           float* C, Index ldc, bool acc) {
        rows.prepare(A, lda, m, M.m.K());
        lowp::gemm_units_ordered(rows, M.m, j0, j1, C, ldc, acc, M.path);
    }
    static constexpr bool kFusedColumnSum = true;  // from the pass that rounds A
    // The operands of the last weight-gradient GEMM in bf16, kept by the
    // caller for the next: dW_hh's and dW_ih's read the same dG (an LSTM's, a
    // GRU's first two gates), a GRU's two dW_ih products the same x; each is
    // rounded once. rows: A's first columns as rows (Aᵀ); packed: B's panels.
    struct GradRows {
        const float *A = nullptr, *B = nullptr;
        Index lda = 0, k = 0, n = 0;
        lowp::Bf16Rows rows;
        lowp::PackedBf16 packed;
    };
    static void gemm_tn(lowp::Path path, const float* A, Index lda, const float* B, float* C, Index m, Index n,
                        Index k, bool acc, float* colsum = nullptr, GradRows* shared = nullptr) {
        if (!shared || k == 0 || m == 0 || n == 0) return lowp::gemm_tn(A, lda, B, C, m, n, k, acc, path, colsum);
        GradRows& g = *shared;
        if (g.A != A || g.lda != lda || g.k != k || g.rows.m() < m || colsum) {
            g.rows.prepare_transposed(A, lda, m, k, colsum);
            g.A = A, g.lda = lda;
        }
        if (g.B != B || g.n != n || g.k != k) {
            g.packed.pack_kn(B, n, k, n);
            g.B = B, g.n = n;
        }
        g.k = k;
        g.rows.keep_rows(m);
        lowp::gemm_ordered(g.rows, g.packed, C, n, acc, path);
    }
    // Two GEMMs sharing A's rounded rows (shared), each pass over them with
    // its own packed B.
    static void gemm_tn2(lowp::Path path, const float* A, Index lda, const float* B1, float* C1, Index n1,
                         const float* B2, float* C2, Index n2, Index m, Index k, float* colsum, GradRows* shared) {
        gemm_tn(path, A, lda, B1, C1, m, n1, k, false, colsum, shared);
        gemm_tn(path, A, lda, B2, C2, m, n2, k, false, nullptr, shared);
    }
    static std::pair<Index, Index> units(Index j0, Index j1, Index H) { return lowp::unit_range(j0, j1, H); }
};

}  // namespace fastrnn
