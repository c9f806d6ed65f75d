// Reuse of the memory of the arrays the kernels return (outputs, training
// caches, gradients).
//
// These arrays live on in Python, so they cannot come from the kernels'
// per-thread block cache (block_cache.cpp). From malloc, every large one is
// fresh pages each call: glibc maps it (or trims its heap after the last
// step's arrays were freed) and each 4 KiB page faults and is zeroed on first
// touch. A training step of a 2-layer LSTM (T = 64, B = 32, H = 256) returns
// about 35 MB and spent 9% of its CPU time in the kernel doing that.
//
// Here an array's block, when Python frees it, is kept in a process-wide free
// list per power-of-two size class (128 KiB … 64 MiB) and handed to the next
// array of that class, up to a cap on the bytes kept (FASTRNN_ARRAY_POOL_MB,
// default 256; 0 turns the pool off). Arrays are made and freed with the GIL
// held; the mutex keeps the pool correct without relying on that.
#include "common.hpp"

#include <array>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace fastrnn {

namespace {

constexpr int kMinClass = 17;  // 128 KiB: smaller blocks come from malloc's heap, faulted once
constexpr int kMaxClass = 26;  // 64 MiB
constexpr std::size_t kHeader = 64;  // a block starts with its size class; the array a line later

std::size_t pool_limit() {
#ifdef FASTRNN_NO_BLOCK_CACHE
    return 0;  // sanitizer builds: every array its own allocation
#else
    const char* env = std::getenv("FASTRNN_ARRAY_POOL_MB");
    char* end = nullptr;
    const long mb = env ? std::strtol(env, &end, 10) : 256;
    return (env && (end == env || mb < 0)) ? std::size_t(256) << 20 : std::size_t(mb) << 20;
#endif
}

struct Pool {
    std::mutex m;
    std::array<std::vector<void*>, kMaxClass - kMinClass + 1> free;
    std::size_t cached = 0;
    const std::size_t limit = pool_limit();
};

// Never destroyed: arrays may be freed after static destructors have run.
Pool& pool() {
    static Pool* p = new Pool;
    return *p;
}

int size_class(std::size_t bytes) {
    int c = kMinClass;
    while (c <= kMaxClass && (std::size_t(1) << c) < bytes) ++c;
    return c;
}

}  // namespace

void* allocate_array(std::size_t bytes) {
    Pool& p = pool();
    const int c = size_class(bytes + kHeader);
    const bool pooled = p.limit > 0 && c <= kMaxClass && bytes + kHeader > (std::size_t(1) << (kMinClass - 1));
    const std::size_t size = pooled ? std::size_t(1) << c : bytes + kHeader;
    void* block = nullptr;
    if (pooled) {
        std::lock_guard<std::mutex> lock(p.m);
        auto& list = p.free[c - kMinClass];
        if (!list.empty()) {
            block = list.back();
            list.pop_back();
            p.cached -= size;
        }
    }
    if (!block) block = ::operator new(size, kLineAlign, std::nothrow);
    if (!block) return nullptr;
    *static_cast<int*>(block) = pooled ? c : -1;
    return static_cast<char*>(block) + kHeader;
}

void free_array(void* data) noexcept {
    void* block = static_cast<char*>(data) - kHeader;
    const int c = *static_cast<int*>(block);
    if (c >= 0) {
        Pool& p = pool();
        const std::size_t size = std::size_t(1) << c;
        std::lock_guard<std::mutex> lock(p.m);
        if (p.cached + size <= p.limit) {
            try {
                p.free[c - kMinClass].push_back(block);
                p.cached += size;
                return;
            } catch (...) {  // no room for the pointer: free the block
            }
        }
    }
    ::operator delete(block, kLineAlign);
}

}  // namespace fastrnn
