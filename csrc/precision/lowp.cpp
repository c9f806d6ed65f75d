// Packing, activation preparation, path selection and the GEMM loops of the
// low-precision paths (lowp.hpp); the micro-kernels are in the per-ISA units.
#include "precision/lowp.hpp"

#include "parallel.hpp"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace fastrnn {
namespace lowp {
namespace {

constexpr Index kRowBlock = 128;  // rows of A per work item: a multiple of the kernels' 8 rows

bool cpu_has(Path p) {
    switch (p) {
        case Path::scalar: return true;
#if defined(FASTRNN_LOWP_X86)
        // __builtin_cpu_supports also checks (XGETBV) that the OS saves the registers.
        case Path::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case Path::avx512_bf16:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512bf16");
        case Path::avx512_vnni:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vnni");
#endif
        default: return false;
    }
}

std::vector<Path> available(std::initializer_list<Path> best_first) {
    std::vector<Path> out;
    for (Path p : best_first)
        if (cpu_has(p)) out.push_back(p);
    return out;
}

std::string joined(const std::vector<Path>& paths) {
    std::string s;
    for (Path p : paths) s += (s.empty() ? "" : ", ") + std::string(path_name(p));
    return s;
}

Path named(const std::string& name, const std::string& what, std::initializer_list<Path> kind,
           const std::vector<Path>& avail) {
    for (Path p : kind) {
        if (name != path_name(p)) continue;
        if (cpu_has(p)) return p;
        throw std::invalid_argument(what + "='" + name + "' cannot be used: this CPU lacks it; available here: " +
                                    joined(avail));
    }
    std::vector<Path> all(kind);
    throw std::invalid_argument(what + "='" + name + "' is not one of " + joined(all) +
                                "; available here: " + joined(avail));
}

Path from_env(const char* var, std::initializer_list<Path> kind, const std::vector<Path>& avail) {
    const char* v = std::getenv(var);
    if (!v || !*v) return avail.front();
    return named(v, var, kind, avail);
}

constexpr std::initializer_list<Path> kBf16 = {Path::avx512_bf16, Path::avx2, Path::scalar};
constexpr std::initializer_list<Path> kInt8 = {Path::avx512_vnni, Path::avx2, Path::scalar};

using Bf16Kernel = void (*)(const Bf16Args&);
using S8Kernel = void (*)(const S8Args&);

// ordered: every row's sums run over k in one order whatever the row block
// (training: bits independent of the thread count); the scalar and AVX2
// kernels always do.
Bf16Kernel bf16_kernel(Path p, bool ordered = false) {
    switch (p) {
        case Path::scalar: return bf16_panel_scalar;
#if defined(FASTRNN_LOWP_X86)
        case Path::avx2: return bf16_panel_avx2;
        case Path::avx512_bf16: return ordered ? bf16_panel_avx512_bf16_ordered : bf16_panel_avx512_bf16;
#endif
        default: throw std::invalid_argument(std::string("lowp: ") + path_name(p) + " is not a bf16 path");
    }
}

S8Kernel s8_kernel(Path p) {
    switch (p) {
        case Path::scalar: return s8_panel_scalar;
#if defined(FASTRNN_LOWP_X86)
        case Path::avx2: return s8_panel_avx2;
        case Path::avx512_vnni: return s8_panel_avx512_vnni;
#endif
        default: throw std::invalid_argument(std::string("lowp: ") + path_name(p) + " is not an int8 path");
    }
}

// q[k] = clamp(rint(x[k] / s), ±127) + offset for k < K, offset past K (up to
// kq); returns s = max|x| / 127. s = 0 for an all-zero row; s = NaN (and q
// = offset) for a row with NaN or Inf.
float quantise(const float* x, Index K, Index kq, int offset, std::int8_t* q) {
    // max |x| from the bit patterns: an integer reduction that vectorises, and
    // non-finite values are the patterns ≥ 0x7F800000.
    std::uint32_t top = 0;
    for (Index k = 0; k < K; ++k) {
        std::uint32_t b;
        std::memcpy(&b, x + k, sizeof b);
        b &= 0x7FFFFFFFu;
        top = b > top ? b : top;
    }
    float amax;
    std::memcpy(&amax, &top, sizeof amax);
    const bool finite = top < 0x7F800000u;
    const float s = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
    for (Index k = 0; k < kq; ++k) {
        float r = 0.0f;
        if (k < K && finite && amax > 0.0f) {
            // x / s rounded to nearest even: adding and subtracting 1.5·2²³
            // does it for |v| < 2²², with no libm call in any build.
            const float v = x[k] / s;
            r = (v + 12582912.0f) - 12582912.0f;
            r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
        }
        q[k] = std::int8_t(std::uint8_t(int(r) + offset));
    }
    return s;
}

// Row n of M into row (length K).
void m_row(const float* src, Index n, Index K, Index ld, bool transpose, float* row) {
    for (Index k = 0; k < K; ++k) row[k] = transpose ? src[k * ld + n] : src[n * ld + k];
}

}  // namespace

const char* path_name(Path p) {
    switch (p) {
        case Path::scalar: return "scalar";
        case Path::avx2: return "avx2";
        case Path::avx512_bf16: return "avx512_bf16";
        case Path::avx512_vnni: return "avx512_vnni";
    }
    return "?";
}

std::vector<Path> bf16_paths_available() { return available(kBf16); }
std::vector<Path> int8_paths_available() { return available(kInt8); }

Path bf16_path() {
    static const Path p = from_env("FASTRNN_BF16_PATH", kBf16, bf16_paths_available());
    return p;
}

Path int8_path() {
    static const Path p = from_env("FASTRNN_INT8_PATH", kInt8, int8_paths_available());
    return p;
}

Path bf16_path_named(const std::string& name, const std::string& what) {
    return named(name, what, kBf16, bf16_paths_available());
}

Path int8_path_named(const std::string& name, const std::string& what) {
    return named(name, what, kInt8, int8_paths_available());
}

void PackedBf16::pack(const float* src, Index G, Index H, Index K, Index ld, bool transpose) {
    shape(G, H, K);
    const Index kp = kp2();
    data_.assign(panels() * kp * kNR, 0);
    std::vector<float> row(K);
    for (Index p = 0; p < panels(); ++p)
        for (Index c = 0; c < width(p); ++c) {
            m_row(src, column(p) + c, K, ld, transpose, row.data());
            std::uint16_t* d = data_.data() + p * kp * kNR;
            for (Index k = 0; k < K; ++k) d[(k / 2) * 2 * kNR + 2 * c + k % 2] = to_bf16(row[k]);
        }
}

void PackedS8::pack(const float* src, Index G, Index H, Index K, Index ld, bool transpose, const std::string& name) {
    if (K > 65536)
        throw std::invalid_argument(name + ": int8 needs at most 65536 inputs per output (s32 sums), got " +
                                    std::to_string(K));
    shape(G, H, K);
    const Index kp = kq();
    data_.assign(panels() * kp * kNR, 0);
    col_sum_.assign(panels() * kNR, 0);
    col_scale_.assign(panels() * kNR, 0.0f);
    std::vector<float> row(K);
    std::vector<std::int8_t> q(kp);
    for (Index p = 0; p < panels(); ++p)
        for (Index c = 0; c < width(p); ++c) {
            const Index n = column(p) + c;
            m_row(src, n, K, ld, transpose, row.data());
            const float s = quantise(row.data(), K, kp, 0, q.data());
            if (!(s == s))
                throw std::invalid_argument(name + " has NaN or Inf (output " + std::to_string(n) +
                                            "); int8 quantisation needs finite weights");
            col_scale_[p * kNR + c] = s;
            std::int8_t* d = data_.data() + p * kp * kNR;
            std::int32_t sum = 0;
            for (Index k = 0; k < K; ++k) {
                d[(k / 4) * 4 * kNR + 4 * c + k % 4] = q[k];
                sum += q[k];
            }
            col_sum_[p * kNR + c] = sum;
        }
}

void PackedS8::set_activation_terms(int terms) {
    if (terms != 1 && terms != 2) throw std::invalid_argument("lowp: activation terms must be 1 or 2");
    terms_ = terms;
}

void Bf16Rows::prepare(const float* A, Index lda, Index m, Index K) {
    m_ = m, K_ = K, ld_ = (K + 1) / 2 * 2;
    data_.resize(m * ld_);
    for (Index i = 0; i < m; ++i) {
        std::uint16_t* d = data_.data() + i * ld_;
        for (Index k = 0; k < K; ++k) d[k] = to_bf16(A[i * lda + k]);
        if (K < ld_) d[K] = 0;
    }
}

void S8Rows::prepare(const float* A, Index lda, Index m, Index K, Path path, int terms) {
    s8_kernel(path);  // rejects a bf16 path
    m_ = m, K_ = K, ld_ = (K + 3) / 4 * 4, path_ = path, terms_ = terms;
    data_.resize(terms * m * ld_);
    scale_.resize(terms * m);
    if (terms > 1) residual_.resize(K);
    const int offset = path == Path::avx512_vnni ? 128 : 0;  // vpdpbusd reads u8
    for (Index i = 0; i < m; ++i) {
        const float* x = A + i * lda;
        std::int8_t* q = data_.data() + i * ld_;
        const float s = scale_[i] = quantise(x, K, ld_, offset, q);
        if (terms == 1) continue;
        // x − s₁q₁ (no FMA contraction in this module: the NumPy model's order)
        for (Index k = 0; k < K; ++k) residual_[k] = x[k] - s * float(std::int8_t(std::uint8_t(q[k]) - offset));
        scale_[m + i] = quantise(residual_.data(), K, ld_, offset, data_.data() + (m + i) * ld_);
    }
}

namespace {

void check_k(Index rows_k, Index packed_k) {
    if (rows_k != packed_k)
        throw std::invalid_argument("lowp: activations have " + std::to_string(rows_k) +
                                    " columns, the packed matrix " + std::to_string(packed_k));
}

// C (m, ldc) larger than L2, so that its lines are out of cache when a kernel stores them.
bool cold(Index m, Index ldc) { return m * ldc * Index(sizeof(float)) > (Index(1) << 20); }

Bf16Args bf16_args(const std::uint16_t* a, Index lda, Index m, const PackedBf16& M, Index p, float* C, Index ldc,
                   bool accumulate, bool cold_c = false) {
    return {a, lda, m, M.panel(p), M.kp2(), C + M.column(p), ldc, M.width(p), accumulate, cold_c};
}

void bf16_gemm(const Bf16Rows& A, const PackedBf16& M, float* C, Index ldc, bool accumulate, Bf16Kernel kernel) {
    check_k(A.K(), M.K());
    const Index m = A.m(), np = M.panels(), nb = (m + kRowBlock - 1) / kRowBlock;
    if (m == 0) return;
    const bool cold_c = cold(m, ldc);
    parallel_rows(nb * np, std::min(m, kRowBlock) * M.K() * kNR / 32, [&](Index item) {
        const Index r0 = (item / np) * kRowBlock;
        kernel(bf16_args(A.row(r0), A.ld(), std::min(kRowBlock, m - r0), M, item % np,
                         C + r0 * ldc, ldc, accumulate, cold_c));
    });
}

void bf16_gemm_units(const Bf16Rows& A, const PackedBf16& M, Index j0, Index j1, float* C, Index ldc,
                     bool accumulate, Bf16Kernel kernel) {
    check_k(A.K(), M.K());
    for (Index r0 = 0; r0 < A.m(); r0 += kRowBlock)
        for (Index g = 0; g < M.groups(); ++g)
            for (Index j = j0; j < j1; ++j)
                kernel(bf16_args(A.row(r0), A.ld(), std::min(kRowBlock, A.m() - r0), M,
                                 g * M.per_group() + j, C + r0 * ldc, ldc, accumulate));
}

S8Args s8_args(const std::int8_t* a, Index lda, Index m, const float* row_scale, const PackedS8& M, Index p, float* C,
               Index ldc, bool accumulate, bool cold_c = false) {
    return {a, lda, m, row_scale, M.panel(p), M.kq(), M.col_sum(p), M.col_scale(p), C + M.column(p), ldc,
            M.width(p), accumulate, cold_c};
}

}  // namespace

void gemm(const Bf16Rows& A, const PackedBf16& M, float* C, Index ldc, bool accumulate, Path path) {
    bf16_gemm(A, M, C, ldc, accumulate, bf16_kernel(path));
}

void gemm_ordered(const Bf16Rows& A, const PackedBf16& M, float* C, Index ldc, bool accumulate, Path path) {
    bf16_gemm(A, M, C, ldc, accumulate, bf16_kernel(path, true));
}

void gemm_units(const Bf16Rows& A, const PackedBf16& M, Index j0, Index j1, float* C, Index ldc, bool accumulate,
                Path path) {
    bf16_gemm_units(A, M, j0, j1, C, ldc, accumulate, bf16_kernel(path));
}

void gemm_units_ordered(const Bf16Rows& A, const PackedBf16& M, Index j0, Index j1, float* C, Index ldc,
                        bool accumulate, Path path) {
    bf16_gemm_units(A, M, j0, j1, C, ldc, accumulate, bf16_kernel(path, true));
}

void gemm(const S8Rows& A, const PackedS8& M, float* C, Index ldc, bool accumulate) {
    check_k(A.K_, M.K());
    const S8Kernel kernel = s8_kernel(A.path_);
    const Index m = A.m_, np = M.panels(), nb = (m + kRowBlock - 1) / kRowBlock;
    if (m == 0) return;
    // VNNI, several rows: items of two panels, each broadcast feeding both (1.07–1.16× on
    // the input projections, side by side; docs/precision.md). Same sums in any grouping.
    const bool pairs = A.path_ == Path::avx512_vnni && m > 1;
    const Index per = pairs ? 2 : 1, items = (np + per - 1) / per;
    const bool cold_c = cold(m, ldc);
    // Work counted as for bf16, not a quarter of fp32's: a one-row product (a step) is bound
    // by reading the weights, and splitting it took a 2-thread int8 LSTM step at H = 512
    // from 26.6 to 20.7 µs (1 thread: 28.4).
    parallel_rows(nb * items, per * A.terms_ * std::min(m, kRowBlock) * M.K() * kNR / 32, [&](Index item) {
        const Index r0 = (item / items) * kRowBlock, p0 = (item % items) * per;
        for (int t = 0; t < A.terms_; ++t) {  // term 1 adds onto term 0, on the same thread
            auto args = [&](Index p) {
                return s8_args(A.row(r0, t), A.ld_, std::min(kRowBlock, m - r0), A.scale_.data() + t * m + r0, M,
                               p, C + r0 * ldc, ldc, accumulate || t > 0, cold_c);
            };
#if defined(FASTRNN_LOWP_X86)
            if (pairs && p0 + 1 < np) { s8_panel_pair_avx512_vnni(args(p0), args(p0 + 1)); continue; }
#endif
            kernel(args(p0));
        }
    });
}

void gemm_units(const S8Rows& A, const PackedS8& M, Index j0, Index j1, float* C, Index ldc, bool accumulate) {
    check_k(A.K_, M.K());
    const S8Kernel kernel = s8_kernel(A.path_);
    for (Index r0 = 0; r0 < A.m_; r0 += kRowBlock)
        for (Index g = 0; g < M.groups(); ++g)
            for (Index j = j0; j < j1; ++j)
                for (int t = 0; t < A.terms_; ++t)
                    kernel(s8_args(A.row(r0, t), A.ld_, std::min(kRowBlock, A.m_ - r0),
                                   A.scale_.data() + t * A.m_ + r0, M, g * M.per_group() + j, C + r0 * ldc, ldc,
                                   accumulate || t > 0));
}

}  // namespace lowp
}  // namespace fastrnn
