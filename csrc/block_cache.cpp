// Per-thread reuse of the kernels' large buffers (common.hpp, LineAligned).
//
// A buffer past glibc's mmap threshold is fresh pages from the kernel on every
// call, and each 4 KiB page faults on first touch: a batch-1 LSTM call (H=128)
// spent a quarter of its time in page faults, a one-step call three quarters.
// Freed blocks of 16 KiB … 8 MiB are kept here, per thread and per power-of-two
// size class, and handed to the next request of the same class; at most 32 MiB
// per thread, the rest is freed at once. Threads that exit free their blocks.
#include "common.hpp"

#include <array>

namespace fastrnn {

namespace {

constexpr int kMinClass = 14;                        // 16 KiB
constexpr int kMaxClass = 23;                        // 8 MiB
constexpr std::size_t kMaxCached = std::size_t(32) << 20;

void* new_block(std::size_t bytes) {
    // nothrow + our own throw: sanitizers then report a failed allocation as
    // null (allocator_may_return_null) and the bad_alloc path is tested.
    if (void* p = ::operator new(bytes, kLineAlign, std::nothrow)) return p;
    throw std::bad_alloc();
}

// Size class of a request, ceil(log2(bytes)), or -1 when the block bypasses
// the cache (outside [kMinClass, kMaxClass], or the cache is built out).
int cached_class(std::size_t bytes) {
#ifdef FASTRNN_NO_BLOCK_CACHE
    (void)bytes;
    return -1;
#else
    if (bytes <= (std::size_t(1) << (kMinClass - 1)) || bytes > (std::size_t(1) << kMaxClass)) return -1;
    int c = kMinClass;
    while ((std::size_t(1) << c) < bytes) ++c;
    return c;
#endif
}

class BlockCache {
public:
    ~BlockCache() {
        for (auto& list : free_)
            for (void* p : list) ::operator delete(p, kLineAlign);
    }
    void* take(int c) {
        auto& list = free_[c - kMinClass];
        if (list.empty()) return new_block(std::size_t(1) << c);
        void* p = list.back();
        list.pop_back();
        cached_ -= std::size_t(1) << c;
        return p;
    }
    void give(void* p, int c) {
        const std::size_t bytes = std::size_t(1) << c;
        if (cached_ + bytes > kMaxCached) return ::operator delete(p, kLineAlign);
        free_[c - kMinClass].push_back(p);  // may throw: the block is then freed by the caller
        cached_ += bytes;
    }

private:
    std::array<std::vector<void*>, kMaxClass - kMinClass + 1> free_;
    std::size_t cached_ = 0;
};

thread_local BlockCache cache;  // constructed on a thread's first cached request

}  // namespace

void* allocate_block(std::size_t bytes) {
    if (const int c = cached_class(bytes); c >= 0) return cache.take(c);
    return new_block(bytes);
}

void free_block(void* p, std::size_t bytes) noexcept {
    if (const int c = cached_class(bytes); c >= 0) {
        try {
            cache.give(p, c);
        } catch (...) {
            ::operator delete(p, kLineAlign);
        }
        return;
    }
    ::operator delete(p, kLineAlign);
}

}  // namespace fastrnn
