// The input side of a layer-direction: everything that has no recurrence.
//
// Forward:  Gx[s, r] = x[time(s, r), row(r)] · W_ihᵀ, one GEMM over many steps.
// Backward: dW_ih += Σ dG[s, r]ᵀ x[time(s, r), row(r)] and dx[...] = dG · W_ih,
//           also GEMMs over many steps, after the time loop.
// Gx and dG live in step layout (steps, B, GH) with rows in schedule order.
// The x-side products use the packed kernel with W_ih packed by the caller
// (once per call, or once per inference engine) in a weight format W
// (core/weights.hpp); the weight gradients (sums over T·B rows) use Eigen's GEMM.
// When the schedule is the identity, x is used in place; otherwise x's rows
// are gathered chunk by chunk, so the extra memory is bounded.
#pragma once

#include "core/weights.hpp"
#include "grad_gemm.hpp"
#include "packed_gemm.hpp"
#include "schedule.hpp"

#include <algorithm>
#include <vector>

namespace fastrnn {

// Rows per GEMM chunk: large enough for GEMM efficiency, small enough that
// inference memory does not grow with T.
constexpr Index kChunkRows = 1024;

inline Index chunk_steps(Index B) {
    return std::max<Index>(1, kChunkRows / std::max<Index>(B, 1));
}

// x rows of steps [s0, s1) in schedule order; rows no step visits are zero.
template <typename S>
void gather_steps(const Dims& d, const S* x, const Schedule& sch, Index s0, Index s1, S* buf) {
    const Index B = d.B, I = d.I;
    std::fill_n(buf, (s1 - s0) * B * I, S(0));
    for (Index s = s0; s < s1; ++s)
        for (Index r = 0; r < sch.active(s); ++r)
            std::copy_n(x + (sch.time(s, r) * B + sch.row(r)) * I, I, buf + ((s - s0) * B + r) * I);
}

template <typename S, typename W = NativeFormat<S>>
class InputProjection {
public:
    // w: W_ih packed (1 group of GH rows, K = I). full: (steps, B, GH)
    // destination kept by the caller (training), or null to compute chunks
    // on demand into a bounded buffer (inference).
    InputProjection(const Dims& d, const S* x, const typename W::Matrix& w, Index GH, const Schedule& sch, S* full)
        : d_(d), x_(x), w_(w), GH_(GH), sch_(sch), full_(full), chunk_(chunk_steps(d.B)) {
        if (full_) {
            for (Index s0 = 0; s0 < sch_.steps(); s0 += chunk_)
                compute(s0, std::min(sch_.steps(), s0 + chunk_), full_ + s0 * d_.B * GH_);
        } else {
            buf_.resize(std::min(chunk_, sch_.steps()) * d_.B * GH_);
        }
    }

    // Makes steps [s, end) available to at() and returns end: all steps when
    // training, else the chunk from s, which replaces the previous chunk.
    Index prepare(Index s) {
        if (full_) return sch_.steps();
        s0_ = s;
        s1_ = std::min(sch_.steps(), s + chunk_);
        compute(s0_, s1_, buf_.data());
        return s1_;
    }

    // Step s's (B, GH) block; s must lie in the range of the last prepare().
    S* at(Index s) { return full_ ? full_ + s * d_.B * GH_ : buf_.data() + (s - s0_) * d_.B * GH_; }

private:
    void compute(Index s0, Index s1, S* dst) {
        const Index rows = (s1 - s0) * d_.B;
        if (sch_.identity()) {
            W::gemm(prepared_, x_ + s0 * d_.B * d_.I, d_.I, rows, w_, dst, GH_, false);
        } else {
            xbuf_.resize(rows * d_.I);
            gather_steps(d_, x_, sch_, s0, s1, xbuf_.data());
            W::gemm(prepared_, xbuf_.data(), d_.I, rows, w_, dst, GH_, false);
        }
    }

    Dims d_;
    const S* x_;
    const typename W::Matrix& w_;
    Index GH_;
    const Schedule& sch_;
    S* full_;
    Index chunk_;
    Index s0_ = 0, s1_ = 0;
    Buffer<S> buf_, xbuf_;
    typename W::Rows prepared_;  // x rows in W's activation format
};

// Input gradients for the gate block [g0, g0 + cols) of W_ih:
//   dw_ih[g0:g0+cols] = Σ dGᵀ x     dx (+)= dG · W_ih[g0:g0+cols]
// dw_ih null: dW_ih is done (by dW_hh's pass over the same dG, driver.hpp).
// dG: (steps, B, ·) step layout with row stride ldg; rows of inactive
// (step, sequence) pairs must be zero. Every (time, sequence) pair a step
// visits is written; the caller zeroes dx when lengths leave padding.
// W: the weight format both products run in (native or bf16 training).
template <typename S, typename W = NativeFormat<S>>
void input_backward(const Dims& d, const S* x, const S* w_ih, const Schedule& sch, const S* dG,
                    Index ldg, Index g0, Index cols, S* dw_ih, S* dx, bool accumulate_dx,
                    const typename W::Config& cfg = {}, typename W::GradRows* shared = nullptr) {
    const Index B = d.B, I = d.I, steps = sch.steps();
    S* dw = dw_ih ? dw_ih + g0 * I : nullptr;
    typename W::Matrix wt;  // dx = dG · W_ih[g0:g0+cols] = dG · (W_ih[g0:g0+cols]ᵀ)ᵀ
    W::pack_t(wt, cfg, w_ih + g0 * I, I, cols, I);
    typename W::Rows prepared;  // dG rows in W's activation format
    if (sch.identity()) {
        if (dw) W::gemm_tn(cfg, dG, ldg, x, dw, cols, I, steps * B, false, nullptr, shared);
        W::gemm(prepared, dG, ldg, steps * B, wt, dx, I, accumulate_dx);
        return;
    }
    if (dw) std::fill_n(dw, cols * I, S(0));
    const Index chunk = chunk_steps(B);
    Buffer<S> xbuf, dxbuf;
    for (Index s0 = 0; s0 < steps; s0 += chunk) {
        const Index s1 = std::min(steps, s0 + chunk), rows = (s1 - s0) * B;
        const S* g = dG + s0 * B * ldg;
        xbuf.resize(rows * I);
        dxbuf.resize(rows * I);
        gather_steps(d, x, sch, s0, s1, xbuf.data());
        if (dw) W::gemm_tn(cfg, g, ldg, xbuf.data(), dw, cols, I, rows, true);
        W::gemm(prepared, g, ldg, rows, wt, dxbuf.data(), I, false);
        for (Index s = s0; s < s1; ++s)
            for (Index r = 0; r < sch.active(s); ++r) {
                ArrMap<S> dst(dx + (sch.time(s, r) * B + sch.row(r)) * I, I);
                ConstArrMap<S> src(dxbuf.data() + ((s - s0) * B + r) * I, I);
                if (accumulate_dx)
                    dst += src;
                else
                    dst = src;
            }
    }
}

}  // namespace fastrnn
