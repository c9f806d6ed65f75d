// The CPU's fp32 FMA peak, measured: the ceiling every %roof figure sits
// under (docs/performance.md). Each thread runs independent chains of packed
// FMAs on registers (no memory traffic), enough chains to cover the FMA
// latency on every x86 core we know (4 cycles × 2 pipes), for about a second.
//   g++ -O2 -march=native -pthread benchmarks/fma_peak.cpp -o fma_peak && ./fma_peak [threads]
#include <immintrin.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <algorithm>
#include <vector>

#ifdef __AVX512F__
using V = __m512;
constexpr int kLanes = 16;
static V set1(float x) { return _mm512_set1_ps(x); }
static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static float sum(V v) { return _mm512_reduce_add_ps(v); }
#else
using V = __m256;
constexpr int kLanes = 8;
static V set1(float x) { return _mm256_set1_ps(x); }
static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static float sum(V v) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

constexpr int kChains = 12;

// FLOPs done in `iters` rounds of kChains FMAs; the result keeps the loop alive.
static float run(long iters) {
    V acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = set1(0.001f * i);
    const V a = set1(0.999999f), b = set1(1e-7f);
    for (long it = 0; it < iters; ++it)
#pragma GCC unroll 16  // the chains must live in registers
        for (int i = 0; i < kChains; ++i) acc[i] = fma(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < kChains; ++i) s += sum(acc[i]);
    return s;
}

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
    const long iters = 100'000'000;  // 1.2e9 FMAs per thread
    for (int rep = 0; rep < 3; ++rep) {
        std::vector<std::thread> team;
        std::vector<float> sink(threads);
        std::vector<double> cpu(threads);  // each thread's own CPU seconds: on a busy machine the rate while it ran
        const auto t0 = std::chrono::steady_clock::now();
        for (int t = 0; t < threads; ++t) team.emplace_back([&, t] {
                sink[t] = run(iters);
                timespec c;
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
                cpu[t] = c.tv_sec + 1e-9 * c.tv_nsec;
            });
        for (auto& th : team) th.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double flops = 2.0 * kLanes * kChains * double(iters) * threads;
        double busiest = 0;
        for (double c : cpu) busiest = std::max(busiest, c);
        std::printf("threads %d  %d-lane fp32 FMA  wall %.1f GF/s  per CPU-second %.1f GF/s per thread  (sink %g)\n",
                    threads, kLanes, flops / s / 1e9, flops / threads / busiest / 1e9, double(sink[0]));
    }
}
