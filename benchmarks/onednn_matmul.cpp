// oneDNN against fastrnn's own low-precision GEMMs on the engine's shapes
// (issue #22's dependency decision; docs/precision.md "oneDNN"). Not part of
// the package build: built by hand against a separate venv holding the PyPI
// wheels `onednn` and `onednn-devel` (benchmarks/onednn_matmul.sh).
//
// The PyPI build has no ukernel (BRGeMM) API (dnnl_config.h leaves
// DNNL_EXPERIMENTAL_UKERNEL undefined; libdnnl.so exports no dnnl_brgemm_*),
// so this times its matmul primitive, created once per shape, weights
// reordered once into the layout it asks for (as the engine packs once).
// In oneDNN's favour: its activations arrive already in bf16 / s8 (one
// per-tensor scale), while fastrnn's time includes rounding or quantising
// A per row from fp32, as the engine runs it.
//
// Prints one line per shape: median µs per call of fastrnn fp32, bf16, int8
// and oneDNN bf16, int8, over interleaved rounds.
#include <oneapi/dnnl/dnnl.hpp>

#include "packed_gemm.hpp"
#include "parallel.hpp"
#include "precision/lowp.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <unordered_map>
#include <vector>

using namespace fastrnn;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

namespace {

double now_us() {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::uint16_t bf16(float f) {
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    return std::uint16_t((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

struct Shape {
    const char* name;
    Index m, K, N;
};

// oneDNN matmul C(m, N) f32 = A(m, K) · W(N, K)ᵀ, A in `a_dt`; W reordered once.
struct OneDnn {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};
    dnnl::matmul prim;
    dnnl::memory a, w, c, a_scale, w_scale;
    std::unordered_map<int, dnnl::memory> args;

    OneDnn(const Shape& s, dt a_dt, const std::vector<float>& W, const std::vector<float>& A) {
        const dt w_dt = a_dt == dt::bf16 ? dt::bf16 : dt::s8;
        dnnl::memory::desc a_md({s.m, s.K}, a_dt, tag::ab), w_md({s.K, s.N}, w_dt, tag::any),
            c_md({s.m, s.N}, dt::f32, tag::ab);
        dnnl::primitive_attr attr;
        if (a_dt == dt::s8) {
            attr.set_scales_mask(DNNL_ARG_SRC, 0);
            attr.set_scales_mask(DNNL_ARG_WEIGHTS, 1 << 1);  // per output column
        }
        dnnl::matmul::primitive_desc pd(eng, a_md, w_md, c_md, attr);
        prim = dnnl::matmul(pd);
        // W (N, K) row-major is the (K, N) matrix in format ba.
        std::vector<float> wf(W);
        std::vector<float> ws(s.N, 1.0f);
        std::vector<std::int8_t> wq;
        std::vector<std::uint16_t> wb;
        dnnl::memory user_w;
        if (w_dt == dt::bf16) {
            wb.resize(W.size());
            for (std::size_t i = 0; i < W.size(); ++i) wb[i] = bf16(W[i]);
            user_w = dnnl::memory({{s.K, s.N}, dt::bf16, tag::ba}, eng, wb.data());
        } else {
            wq.resize(W.size());
            for (Index n = 0; n < s.N; ++n) {
                float amax = 0;
                for (Index k = 0; k < s.K; ++k) amax = std::max(amax, std::fabs(W[n * s.K + k]));
                ws[n] = amax / 127;
                for (Index k = 0; k < s.K; ++k) wq[n * s.K + k] = std::int8_t(std::lrint(W[n * s.K + k] / ws[n]));
            }
            user_w = dnnl::memory({{s.K, s.N}, dt::s8, tag::ba}, eng, wq.data());
        }
        w = dnnl::memory(pd.weights_desc(), eng);
        dnnl::reorder(user_w, w).execute(strm, user_w, w);
        a = dnnl::memory(a_md, eng);
        c = dnnl::memory(c_md, eng);
        if (a_dt == dt::bf16) {
            auto* p = static_cast<std::uint16_t*>(a.get_data_handle());
            for (std::size_t i = 0; i < A.size(); ++i) p[i] = bf16(A[i]);
        } else {
            float amax = 0;
            for (float v : A) amax = std::max(amax, std::fabs(v));
            auto* p = static_cast<std::int8_t*>(a.get_data_handle());
            for (std::size_t i = 0; i < A.size(); ++i) p[i] = std::int8_t(std::lrint(A[i] / (amax / 127)));
            a_scale = dnnl::memory({{1}, dt::f32, tag::x}, eng);
            *static_cast<float*>(a_scale.get_data_handle()) = amax / 127;
            w_scale = dnnl::memory({{s.N}, dt::f32, tag::x}, eng);
            std::memcpy(w_scale.get_data_handle(), ws.data(), s.N * sizeof(float));
            args[DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC] = a_scale;
            args[DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS] = w_scale;
        }
        strm.wait();
        args[DNNL_ARG_SRC] = a;
        args[DNNL_ARG_WEIGHTS] = w;
        args[DNNL_ARG_DST] = c;
    }
    void run() {
        prim.execute(strm, args);
        strm.wait();
    }
};

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
    const Shape shapes[] = {{"step H=512", 1, 512, 2048},
                            {"mid_b32 recurrent", 32, 256, 1024},
                            {"mid_b32 projection", 3200, 256, 1024},
                            {"big_b64 recurrent", 64, 512, 2048},
                            {"big_b64 projection", 3200, 512, 2048}};
    std::printf("| shape (m, K, N) | fastrnn fp32 µs | fastrnn bf16 µs | oneDNN bf16 µs | fastrnn int8 µs | "
                "oneDNN int8 µs | fastrnn bf16 ÷ oneDNN bf16 | fastrnn int8 ÷ oneDNN int8 |\n|---|---|---|---|---|---|---|---|\n");
    for (const Shape& s : shapes) {
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(s.K)), 1.0f / std::sqrt(float(s.K)));
        std::normal_distribution<float> nd;
        std::vector<float> W(s.N * s.K), A(s.m * s.K), C(s.m * s.N);
        for (float& v : W) v = u(rng);
        for (float& v : A) v = std::tanh(nd(rng));
        PackedMatrix<float> f32;
        f32.pack(W.data(), 1, s.N, s.K, s.K, false);
        lowp::PackedBf16 pb;
        pb.pack(W.data(), 1, s.N, s.K, s.K, false);
        lowp::PackedS8 pq;
        pq.pack(W.data(), 1, s.N, s.K, s.K, false, "w");
        lowp::Bf16Rows rb;
        lowp::S8Rows rq;
        const lowp::Path bp = lowp::bf16_path(), ip = lowp::int8_path();
        OneDnn db(s, dt::bf16, W, A), dq(s, dt::s8, W, A);
        std::vector<std::function<void()>> fns = {
            [&] { packed_gemm(A.data(), s.K, s.m, f32, C.data(), s.N, false); },
            [&] {
                rb.prepare(A.data(), s.K, s.m, s.K);
                lowp::gemm(rb, pb, C.data(), s.N, false, bp);
            },
            [&] { db.run(); },
            [&] {
                rq.prepare(A.data(), s.K, s.m, s.K, ip);
                lowp::gemm(rq, pq, C.data(), s.N, false);
            },
            [&] { dq.run(); }};
        const int reps = std::max<int>(1, int(2e6 / double(s.m * s.K * s.N) * 20));
        std::vector<std::vector<double>> t(fns.size());
        for (auto& f : fns) f();  // warm up
        for (int r = 0; r < rounds; ++r)
            for (std::size_t i = 0; i < fns.size(); ++i) {
                const double t0 = now_us();
                for (int k = 0; k < reps; ++k) fns[i]();
                t[i].push_back((now_us() - t0) / reps);
            }
        double med[5];
        for (std::size_t i = 0; i < fns.size(); ++i) {
            std::sort(t[i].begin(), t[i].end());
            med[i] = t[i][t[i].size() / 2];
        }
        std::printf("| %s (%ld, %ld, %ld) | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f× | %.2f× |\n", s.name, long(s.m),
                    long(s.K), long(s.N), med[0], med[1], med[2], med[3], med[4], med[1] / med[2], med[3] / med[4]);
        std::fflush(stdout);
    }
    return 0;
}
