// Low-precision packed GEMM: C(m, G·H) (=|+=) A(m, K) · Mᵀ with A fp32
// activations and M packed once, as packed_gemm.hpp does for fp32, in
//   bf16: M rounded to bfloat16 (nearest even); A rounded likewise per call;
//         fp32 accumulation.
//   int8: dynamic quantisation. M as s8 with one symmetric scale per output
//         column (scale = max|row of M| / 127); each row of A quantised per
//         call to s8, symmetric, scale = max|row| / 127; s32 accumulation;
//         C = float(acc) · (row scale · column scale), fp32. A matrix may ask
//         for its activations in two terms (activation_terms() = 2): each
//         row as s₁q₁ + s₂q₂, q₂ the quantised residual x − s₁q₁, run as two
//         passes over the panel (twice the multiply-adds, about 15 bits).
// Activations are prepared once per call (Bf16Rows / S8Rows) and then read
// by every panel, so a time loop prepares h_t once per step and lets each
// thread run its own unit panels (gemm_units), like packed_gemm_units.
// Panels hold kNR = 32 output columns of one group (gate) on every path and
// in every module, so any path can run any packed matrix. docs/precision.md.
#pragma once

#include "common.hpp"
#include "precision/kernels.hpp"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace fastrnn {
namespace lowp {

enum class Path { scalar, avx2, avx512_bf16, avx512_vnni };
const char* path_name(Path p);

// Paths this CPU runs, best first (CPUID; scalar always).
std::vector<Path> bf16_paths_available();
std::vector<Path> int8_paths_available();
// The path used when none is given: the best available, or the one that
// FASTRNN_BF16_PATH / FASTRNN_INT8_PATH names (read once). An unknown name, or
// one this CPU lacks, throws std::invalid_argument listing what is available.
Path bf16_path();
Path int8_path();
// `name` as a path of the kind (bf16 or int8) checked against this CPU: the
// same error as above, naming `what` (the variable or argument).
Path bf16_path_named(const std::string& name, const std::string& what);
Path int8_path_named(const std::string& name, const std::string& what);

// Panel geometry shared by both packed formats (PackedMatrix's accessors).
class PanelLayout {
public:
    Index panels() const { return G_ * per_group_; }
    Index groups() const { return G_; }
    Index per_group() const { return per_group_; }
    Index K() const { return K_; }
    Index N() const { return G_ * H_; }
    Index column(Index p) const { return (p / per_group_) * H_ + (p % per_group_) * kNR; }
    Index width(Index p) const { return std::min<Index>(kNR, H_ - (p % per_group_) * kNR); }

protected:
    void shape(Index G, Index H, Index K) { G_ = G, H_ = H, K_ = K, per_group_ = (H + kNR - 1) / kNR; }
    Index G_ = 0, H_ = 0, K_ = 0, per_group_ = 0;
};

// f rounded to bfloat16, to nearest even; NaN stays a (quiet) NaN.
inline std::uint16_t to_bf16(float f) {
    std::uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return std::uint16_t((b >> 16) | 0x40u);
    return std::uint16_t((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

// M (G·H, K): M[g·H + u, k] = src[(g·H + u)·ld + k], or with transpose
// M[n, k] = src[k·ld + n] (PackedMatrix::pack's convention).
class PackedBf16 : public PanelLayout {
public:
    void pack(const float* src, Index G, Index H, Index K, Index ld, bool transpose);
    // One group, M[n, k] = src[k·ld + n] (pack's transpose), read row by row of
    // src (bf16_train.cpp): for the tall operands of the training GEMMs.
    void pack_kn(const float* src, Index N, Index K, Index ld);
    Index kp2() const { return (K_ + 1) / 2 * 2; }
    const std::uint16_t* panel(Index p) const { return data_.data() + p * kp2() * kNR; }

private:
    Buffer<std::uint16_t> data_;
};

class PackedS8 : public PanelLayout {
public:
    // Throws std::invalid_argument naming `name` if M has NaN or Inf, or if
    // K > 65536 (the s32 sums could overflow).
    void pack(const float* src, Index G, Index H, Index K, Index ld, bool transpose, const std::string& name);
    Index kq() const { return (K_ + 3) / 4 * 4; }
    const std::int8_t* panel(Index p) const { return data_.data() + p * kq() * kNR; }
    const std::int32_t* col_sum(Index p) const { return col_sum_.data() + p * kNR; }
    const float* col_scale(Index p) const { return col_scale_.data() + p * kNR; }
    // 1 or 2 terms per activation row (S8Rows::prepare); set after pack().
    int activation_terms() const { return terms_; }
    void set_activation_terms(int terms);

private:
    int terms_ = 1;
    Buffer<std::int8_t> data_;
    Buffer<std::int32_t> col_sum_;  // Σ_k q[n, k] per packed column (0 past the width)
    Buffer<float> col_scale_;
};

// A(m, K) as bf16 rows for the kernels.
class Bf16Rows {
public:
    void prepare(const float* A, Index lda, Index m, Index K);
    // Row i = column i of A (K rows, row stride lda): Aᵀ (bf16_train.cpp);
    // colsum (m) = Σ_k A's columns in k order from the same pass, or null.
    void prepare_transposed(const float* A, Index lda, Index m, Index K, float* colsum = nullptr);
    // Keeps the first m rows (a GEMM over a prefix of prepared rows).
    void keep_rows(Index m) { m_ = std::min(m_, m); }
    Index m() const { return m_; }
    Index K() const { return K_; }
    Index ld() const { return ld_; }  // K rounded up to a pair
    const std::uint16_t* row(Index i) const { return data_.data() + i * ld_; }

private:
    Index m_ = 0, K_ = 0, ld_ = 0;
    Buffer<std::uint16_t> data_;
};

// A(m, K) quantised per row for the kernels of `path` (which must be the path
// of the gemm that reads them). A row with NaN or Inf gets a NaN scale, so its
// outputs are NaN, as in fp32. With terms = 2, term 1 quantises each row's
// residual A − s₁q₁ the same way (scale s₂ ≈ s₁/254).
class S8Rows {
public:
    void prepare(const float* A, Index lda, Index m, Index K, Path path, int terms = 1);
    Index m() const { return m_; }
    Path path() const { return path_; }
    int terms() const { return terms_; }
    // Row i of term t: s8 (u8 - 128 for VNNI), and its scale.
    const std::int8_t* row(Index i, int t = 0) const { return data_.data() + (t * m_ + i) * ld_; }
    float scale(Index i, int t = 0) const { return scale_[t * m_ + i]; }

private:
    friend void gemm_units(const S8Rows&, const PackedS8&, Index, Index, float*, Index, bool);
    friend void gemm(const S8Rows&, const PackedS8&, float*, Index, bool);
    Index m_ = 0, K_ = 0, ld_ = 0;
    int terms_ = 1;
    Path path_ = Path::scalar;
    Buffer<std::int8_t> data_;
    Buffer<float> scale_, residual_;
};

// C(m, N) (=|+=) A · Mᵀ over all panels, threads splitting (row block, panel)
// items as packed_gemm does.
void gemm(const Bf16Rows& A, const PackedBf16& M, float* C, Index ldc, bool accumulate, Path path);
void gemm(const S8Rows& A, const PackedS8& M, float* C, Index ldc, bool accumulate);
// The columns of unit panels [j0, j1) of every group, on the calling thread.
void gemm_units(const Bf16Rows& A, const PackedBf16& M, Index j0, Index j1, float* C, Index ldc, bool accumulate,
                Path path);
void gemm_units(const S8Rows& A, const PackedS8& M, Index j0, Index j1, float* C, Index ldc, bool accumulate);

// bf16 training (docs/precision.md): gemm and gemm_units with
// each output's sum in one order whatever rows a call covers (the avx512_bf16
// path's few-row split sums are not used), so a time loop's results are
// bit-identical for every thread count, as in fp32.
void gemm_ordered(const Bf16Rows& A, const PackedBf16& M, float* C, Index ldc, bool accumulate, Path path);
void gemm_units_ordered(const Bf16Rows& A, const PackedBf16& M, Index j0, Index j1, float* C, Index ldc,
                        bool accumulate, Path path);
// C(m, n) (=|+=) Aᵀ · B (bf16_train.cpp), A (k, m) with row stride lda, B (k, n) and C (m, n)
// dense: the weight gradients Σ dGᵀ x over k = T·B rows, bf16 operands, fp32
// sums in a fixed order (threads split rows of C and panels, never k);
// colsum (m) or null: Σ over k of A's columns (a bias gradient), fp32, in k
// order as column_sum, from the pass that rounds A.
void gemm_tn(const float* A, Index lda, const float* B, float* C, Index m, Index n, Index k, bool accumulate,
             Path path, float* colsum = nullptr);

// The hidden units [u0, u0 + len) that unit panels [j0, j1) cover.
inline std::pair<Index, Index> unit_range(Index j0, Index j1, Index H) {
    const Index u0 = j0 * kNR;
    return {u0, std::min(H, j1 * kNR) - u0};
}

}  // namespace lowp
}  // namespace fastrnn
