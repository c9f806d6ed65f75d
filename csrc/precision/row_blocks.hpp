// The row blocks of an AVX-512 panel kernel over m rows, and the prefetch of
// their outputs: blocks of 8 rows (16 accumulators, half the zmm registers),
// then one block of the last 1–7. rows(MR, KS, i0) runs MR rows from row i0
// with each sum over k split KS ways (interleaved partial sums: more
// independent FMA chains when few rows share a broadcast). SplitTails = false
// keeps KS = 1 for every block, so a row's sums run in one order whatever block
// it falls in (training needs that for thread-count independent bits).
// MR and KS arrive as std::integral_constant, usable as template arguments.
// Inside an anonymous namespace: each instruction-set unit that includes it
// compiles its own copy (lowp.hpp: no copy may be merged across -m flags).
#pragma once

#include <cstddef>
#include <type_traits>

namespace fastrnn {
namespace lowp {
namespace {

template <int N>
using Int = std::integral_constant<int, N>;

template <bool SplitTails, typename Rows>
inline void for_row_blocks(std::ptrdiff_t m, Rows&& rows) {
    constexpr int kSplit2 = SplitTails ? 2 : 1, kSplit4 = SplitTails ? 4 : 1;
    std::ptrdiff_t i = 0;
    for (; i + 8 <= m; i += 8) rows(Int<8>{}, Int<1>{}, i);
    switch (m - i) {
        case 7: rows(Int<7>{}, Int<1>{}, i); break;
        case 6: rows(Int<6>{}, Int<1>{}, i); break;
        case 5: rows(Int<5>{}, Int<1>{}, i); break;
        case 4: rows(Int<4>{}, Int<1>{}, i); break;
        case 3: rows(Int<3>{}, Int<kSplit2>{}, i); break;
        case 2: rows(Int<2>{}, Int<kSplit2>{}, i); break;
        case 1: rows(Int<1>{}, Int<kSplit4>{}, i); break;
        default: break;
    }
}

// Asks for the output lines of a block's MR rows (32 columns from c) before
// its k loop, where the caller found C larger than L2 (the input projection's
// C of thousands of rows): those lines are out of cache, and the block's
// stores at the end of the loop would wait for them. Measured on Zen 4, runs
// alternated: bf16 +4-8% on 3200-row projections, int8 within ±2%. A step's
// product, whose C stays in L2, skips it (int8 lost 2% there with it).
template <int MR>
inline void prefetch_out(const float* c, std::ptrdiff_t ldc, bool cold) {
    if (!cold) return;
    for (int i = 0; i < MR; ++i) {
        __builtin_prefetch(c + i * ldc, 1);
        __builtin_prefetch(c + i * ldc + 16, 1);
    }
}

}  // namespace
}  // namespace lowp
}  // namespace fastrnn
