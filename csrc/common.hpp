// fastrnn kernels: shared types.
//
// Dimension key (rightmost fastest, all arrays row-major / C order):
//   T  time steps        B  batch          I  input features
//   H  hidden units      G  gates (LSTM 4: i,f,g,o; GRU 3: r,z,n; SimpleRNN 1)
//
// Nothing below bindings.cpp sees Python: kernels take raw pointers plus sizes.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

namespace fastrnn {

using Index = std::int64_t;

template <typename S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename S>
using ConstMatMap = Eigen::Map<const Mat<S>>;
template <typename S>
using ArrMap = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
template <typename S>
using ConstArrMap = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;

// Large kernel buffers come from a per-thread cache of freed blocks
// (block_cache.cpp): a fresh block past malloc's mmap threshold page-faults on
// every 4 KiB at first touch, on every call. Blocks are 64-byte aligned.
constexpr std::align_val_t kLineAlign{64};
void* allocate_block(std::size_t bytes);
void free_block(void* p, std::size_t bytes) noexcept;
// The arrays the bindings return, 64-byte aligned, from a pool of the blocks
// of freed arrays (array_pool.cpp); null when out of memory.
void* allocate_array(std::size_t bytes);
void free_array(void* data) noexcept;

// Cache-line-aligned, uninitialising allocator: buffers that threads write in disjoint
// column ranges must not share a line at the range boundaries.
template <typename T>
struct LineAligned {
    using value_type = T;
    LineAligned() = default;
    template <typename U>
    LineAligned(const LineAligned<U>&) {}
    T* allocate(std::size_t n) { return static_cast<T*>(allocate_block(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) { free_block(p, n * sizeof(T)); }
    // Default-initialise: a Buffer of n floats is not zero-filled (a memset
    // of every cache per call) and may hold an earlier call's values, so
    // kernels must write before they read (test_threads.py checks).
    template <typename U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <typename U, typename... A>
    void construct(U* p, A&&... a) {
        ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
    }
    template <typename U>
    bool operator==(const LineAligned<U>&) const { return true; }
    template <typename U>
    bool operator!=(const LineAligned<U>&) const { return false; }
};
template <typename S>
using Buffer = std::vector<S, LineAligned<S>>;

struct Dims {
    Index T, B, I, H;
};

// One layer-direction's weights. b_ih, b_hh are never null (zeros when the
// layer has no bias); peephole (3, H) is null when absent (LSTM only).
template <typename S>
struct Weights {
    const S* w_ih;  // (G*H, I)
    const S* w_hh;  // (G*H, H)
    const S* b_ih;  // (G*H)
    const S* b_hh;  // (G*H)
    const S* peephole = nullptr;  // (3, H): p_i, p_f, p_o
    const S* w_hr = nullptr;      // (P, H) LSTM projection (proj_size P); then w_hh is (G*H, P)
    Index P = 0;                  // proj_size, 0 without w_hr
    // Width of the recurrent state h (and the output): P with a projection, else H.
    Index R(Index H) const { return w_hr ? P : H; }
};

}  // namespace fastrnn
