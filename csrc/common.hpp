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

// Cache-line-aligned, uninitialising allocator: buffers that threads write in disjoint
// column ranges must not share a line at the range boundaries.
template <typename T>
struct LineAligned {
    using value_type = T;
    static constexpr std::size_t kAlign = 64;
    LineAligned() = default;
    template <typename U>
    LineAligned(const LineAligned<U>&) {}
    T* allocate(std::size_t n) {
        // nothrow + our own throw: sanitizers then report a failed allocation
        // as null (allocator_may_return_null) and the bad_alloc path is tested.
        if (void* p = ::operator new(n * sizeof(T), std::align_val_t(kAlign), std::nothrow))
            return static_cast<T*>(p);
        throw std::bad_alloc();
    }
    void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kAlign)); }
    // Default-initialise: a Buffer of n floats is not zero-filled (a memset
    // of every cache per call), so kernels must write before they read.
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
};

}  // namespace fastrnn
