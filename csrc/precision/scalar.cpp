// Portable low-precision kernels: correct on every CPU, and the order of
// operations the other paths are checked against. Compiled with the module's
// own flags (the compiler may vectorise across columns; each output keeps its
// sequential order over k).
#include "precision/kernels.hpp"

#include <cstring>

namespace fastrnn {
namespace lowp {
namespace {

float widen(std::uint16_t b) {
    const std::uint32_t bits = std::uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

void store(float* c, const float* v, std::ptrdiff_t cols, bool accumulate) {
    for (std::ptrdiff_t j = 0; j < cols; ++j) c[j] = accumulate ? c[j] + v[j] : v[j];
}

}  // namespace

// Per output: acc += a[2q+1]·b[2q+1], then acc += a[2q]·b[2q], q ascending (the
// order vdpbf16ps documents). bf16 products are exact in fp32, so fused or not
// every step rounds once, the same way.
void bf16_panel_scalar(const Bf16Args& p) {
    for (std::ptrdiff_t i = 0; i < p.m; ++i) {
        const std::uint16_t* a = p.a + i * p.lda;
        float acc[kNR] = {};
        for (std::ptrdiff_t q = 0; q < p.kp2 / 2; ++q) {
            const float a0 = widen(a[2 * q]), a1 = widen(a[2 * q + 1]);
            const std::uint16_t* b = p.panel + q * 2 * kNR;
            for (int j = 0; j < kNR; ++j) {
                acc[j] += a1 * widen(b[2 * j + 1]);
                acc[j] += a0 * widen(b[2 * j]);
            }
        }
        store(p.c + i * p.ldc, acc, p.cols, p.accumulate);
    }
}

// s8 · s8 in s32, exactly; the activations are s8 here (no +128 offset).
void s8_panel_scalar(const S8Args& p) {
    for (std::ptrdiff_t i = 0; i < p.m; ++i) {
        const std::int8_t* a = p.a + i * p.lda;
        std::int32_t acc[kNR] = {};
        for (std::ptrdiff_t q = 0; q < p.kq / 4; ++q) {
            const std::int8_t* b = p.panel + q * 4 * kNR;
            for (int j = 0; j < kNR; ++j)
                for (int t = 0; t < 4; ++t) acc[j] += std::int32_t(a[4 * q + t]) * b[4 * j + t];
        }
        float v[kNR];
        for (int j = 0; j < kNR; ++j) v[j] = float(acc[j]) * (p.row_scale[i] * p.col_scale[j]);
        store(p.c + i * p.ldc, v, p.cols, p.accumulate);
    }
}

}  // namespace lowp
}  // namespace fastrnn
