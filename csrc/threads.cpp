// fastrnn's thread pool and the process-wide thread count (parallel.hpp).
//
// Workers are std::threads created on first use and kept; the calling thread
// is member 0 of every team. Waits (for a job, at a barrier, for the team to
// finish) spin for a short while, then sleep on a futex (a condition variable
// elsewhere): spinning keeps a step's barrier at ~1 µs on an idle machine,
// sleeping hands the core back when another process needs it, where a
// spinning waiter would steal it from the very thread it waits for.
//
// fork(): only the forking thread exists in the child. A pthread_atfork
// child handler drops (leaks) the parent's pool without touching it, and the
// child's first parallel call builds a new one; the thread count, plain
// memory, is inherited.
#include "parallel.hpp"

#include <chrono>
#include <cstdint>
#include <ctime>
#include <exception>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#ifdef __linux__
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <condition_variable>
#include <mutex>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace fastrnn {

namespace {

using Clock = std::chrono::steady_clock;
// How long a waiter spins before it sleeps: longer than a time step's
// barrier wait on an idle machine, far shorter than a scheduler time slice.
constexpr auto kSpin = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// A 32-bit word that threads wait to see change.
class Word {
public:
    explicit Word(std::uint32_t v = 0) : v_(v) {}
    std::uint32_t load() const { return v_.load(std::memory_order_acquire); }

    void wait_while(std::uint32_t old) {
        const auto until = Clock::now() + kSpin;
        for (int i = 1; v_.load(std::memory_order_acquire) == old; ++i) {
            cpu_relax();
            if (i % 64 == 0 && Clock::now() > until) return sleep_while(old);
        }
    }

    void store(std::uint32_t v) {
        v_.store(v, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) wake();
    }

private:
    // sleepers_ is raised before the word is checked again and the waker
    // reads it after changing the word (both seq_cst): a waiter either sees
    // the new value or is seen and woken.
    void sleep_while(std::uint32_t old) {
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
#ifdef __linux__
        while (v_.load(std::memory_order_seq_cst) == old)
            syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&v_), FUTEX_WAIT_PRIVATE, old, nullptr, nullptr, 0);
#else
        {
            std::unique_lock<std::mutex> lock(m_);
            cv_.wait(lock, [&] { return v_.load(std::memory_order_seq_cst) != old; });
        }
#endif
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }

    void wake() {
#ifdef __linux__
        syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&v_), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
#else
        std::lock_guard<std::mutex> lock(m_);
        cv_.notify_all();
#endif
    }

    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "futex word");
    std::atomic<std::uint32_t> v_;
    std::atomic<int> sleepers_{0};
#ifndef __linux__
    std::mutex m_;
    std::condition_variable cv_;
#endif
};

// Reusable barrier for a team of n; the last to arrive opens the next round.
class Barrier {
public:
    void reset(int n) { n_ = n; }
    void wait() {
        const std::uint32_t round = round_.load();
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
            arrived_.store(0, std::memory_order_relaxed);
            round_.store(round + 1);
        } else {
            round_.wait_while(round);
        }
    }

private:
    int n_ = 1;
    std::atomic<int> arrived_{0};
    Word round_;
};

thread_local Barrier* tl_barrier = nullptr;  // the team this thread is in
thread_local bool in_team = false;

class Pool {
public:
    // Runs fn on `threads` threads (this one and threads − 1 workers). The
    // caller holds the pool (busy) for the whole call.
    void run(int threads, TeamFn fn, void* ctx) {
        while (static_cast<int>(workers_.size()) < threads - 1) {
            const int index = static_cast<int>(workers_.size()) + 1;
            workers_.emplace_back([this, index, seen = job_.load()] { work(index, seen); });
        }
        fn_ = fn, ctx_ = ctx;
        barrier_.reset(threads);
        pending_.store(threads - 1, std::memory_order_relaxed);
        const std::uint32_t done = done_.load();
        // The job word carries the team size, so a worker reads it and the
        // job's sequence number in one load (kMaxThreads < 2^11).
        job_.store(((job_.load() >> 11) + 1) << 11 | static_cast<std::uint32_t>(threads));
        std::exception_ptr error;
        try {
            member(0, threads);
        } catch (...) {  // the workers still use the caller's frame: wait for them first
            error = std::current_exception();
        }
        while (pending_.load(std::memory_order_acquire) != 0) done_.wait_while(done);
        if (error) std::rethrow_exception(error);
    }

private:
    void member(int t, int nt) {
        struct Leave {
            ~Leave() { tl_barrier = nullptr, in_team = false; }
        } leave;
        tl_barrier = &barrier_, in_team = true;
        fn_(ctx_, t, nt);
    }

    [[noreturn]] void work(int index, std::uint32_t seen) {
        for (;;) {
            job_.wait_while(seen);
            seen = job_.load();
            const int nt = static_cast<int>(seen & 2047);
            if (index >= nt) continue;  // not in this team
            member(index, nt);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.store(done_.load() + 1);
        }
    }

    std::vector<std::thread> workers_;
    Word job_, done_;
    Barrier barrier_;
    std::atomic<int> pending_{0};
    TeamFn fn_ = nullptr;
    void* ctx_ = nullptr;
};

// The pool and its lock; both dropped, never destroyed, in a forked child
// (their workers do not exist there) and at exit (workers may be asleep in
// it). The pool is built, and grown, only by a thread holding g_busy.
Pool* g_pool = nullptr;
std::atomic<bool> g_busy{false};
std::atomic<int> g_threads{0};  // 0: not yet decided
std::atomic<bool (*)()> g_interrupt_hook{nullptr};

void forget_pool_in_child() {
    g_pool = nullptr;
    g_busy.store(false, std::memory_order_relaxed);
}

[[maybe_unused]] const bool g_atfork_registered = [] {
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
    return true;
}();

constexpr int kMaxThreads = 1024;

// OMP_NUM_THREADS (its first entry, as OpenMP reads it) if set, else the CPUs
// this process may run on (its affinity mask: taskset, cgroup cpusets).
int default_threads() {
    if (const char* env = std::getenv("OMP_NUM_THREADS")) {
        char* end = nullptr;
        const long n = std::strtol(env, &end, 10);
        if (end != env && n >= 1) return static_cast<int>(std::min<long>(n, kMaxThreads));
    }
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

void run_team_impl(int threads, TeamFn fn, void* ctx) {
    if (in_team || g_busy.exchange(true, std::memory_order_acquire)) {
        fn(ctx, 0, 1);
        return;
    }
    struct Release {
        ~Release() { g_busy.store(false, std::memory_order_release); }
    } release;
    if (!g_pool) g_pool = new Pool;
    g_pool->run(std::min(threads, kMaxThreads), fn, ctx);
}

void team_barrier_impl() {
    if (tl_barrier) tl_barrier->wait();
}

int num_threads() {
#ifdef FASTRNN_SINGLE_THREADED
    return 1;
#else
    int n = g_threads.load(std::memory_order_relaxed);
    if (n <= 0) {
        int expected = 0;
        n = default_threads();
        if (!g_threads.compare_exchange_strong(expected, n, std::memory_order_relaxed)) n = expected;
    }
    return n;
#endif
}

void set_num_threads(int n) { g_threads.store(std::clamp(n, 1, kMaxThreads), std::memory_order_relaxed); }

namespace {
// Until when (steady clock, ns) barrier teams run as one thread (parallel.hpp).
std::atomic<std::int64_t> g_contended_until{0};
// The barrier teams' wall time and their calling threads' CPU time (ns) since
// the last verdict.
std::atomic<std::int64_t> g_window_wall{0}, g_window_cpu{0};
// A verdict comes after this much team wall time, not team by team: one
// preemption of a team member (a 60 µs step that took 1.6 ms, its caller on
// the CPU for 0.2 ms of it, seen about once a second on these VMs) must not
// run every barrier team on one thread for the next second, while a core that
// another process keeps busy shows in most teams of the window.
constexpr std::int64_t kWindowNs = 20'000'000;
std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

bool barrier_teams_contended() { return steady_ns() < g_contended_until.load(std::memory_order_relaxed); }

void report_barrier_team(double wall, double cpu) {
    const auto wall_ns = static_cast<std::int64_t>(wall * 1e9), cpu_ns = static_cast<std::int64_t>(cpu * 1e9);
    g_window_cpu.fetch_add(cpu_ns, std::memory_order_relaxed);
    if (g_window_wall.fetch_add(wall_ns, std::memory_order_relaxed) + wall_ns < kWindowNs) return;
    // The thread that closes the window takes the sums; a team reported at the
    // same moment by another thread counts in this window or the next.
    const std::int64_t w = g_window_wall.exchange(0, std::memory_order_relaxed);
    const std::int64_t c = g_window_cpu.exchange(0, std::memory_order_relaxed);
    if (w >= kWindowNs && 3 * c < 2 * w) g_contended_until.store(steady_ns() + 1'000'000'000, std::memory_order_relaxed);
}

double BarrierTeamClock::thread_cpu_seconds() {
#ifdef __linux__
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
#else
    return 0;  // no per-thread clock: never judged contended
#endif
}

void set_interrupt_hook(bool (*hook)()) { g_interrupt_hook.store(hook, std::memory_order_release); }

bool interrupt_requested() {
    bool (*hook)() = g_interrupt_hook.load(std::memory_order_acquire);
    return hook && hook();
}

}  // namespace fastrnn

// For threadpoolctl (python/fastrnn/_threadpool.py): the pool's size, read
// and set through ctypes on the loaded kernel module.
extern "C" {
__attribute__((visibility("default"))) int fastrnn_get_num_threads() { return fastrnn::num_threads(); }
__attribute__((visibility("default"))) void fastrnn_set_num_threads(int n) { fastrnn::set_num_threads(n); }
}
