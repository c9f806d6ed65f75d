// The process-wide thread count (parallel.hpp).
#include "parallel.hpp"

#include <algorithm>
#include <atomic>

namespace fastrnn {

namespace {
std::atomic<int> g_threads{0};  // 0: not yet set, use OpenMP's default
}

int num_threads() {
    int n = g_threads.load(std::memory_order_relaxed);
#ifdef _OPENMP
    if (n <= 0) n = omp_get_max_threads();
#else
    n = 1;
#endif
    return std::max(n, 1);
}

void set_num_threads(int n) {
    g_threads.store(std::max(n, 1), std::memory_order_relaxed);
    Eigen::setNbThreads(num_threads());
}

}  // namespace fastrnn
