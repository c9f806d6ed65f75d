// GRU, gate order r, z, n (PyTorch), DESIGN §2:
//   r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(… same with z …)
//   reset_after:  n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))
//   reset before: n = tanh(W_in x + b_in + W_hn (r⊙h) + b_hn)
//   h' = (1−z)⊙n + z⊙h
//
// Cache (training): gates (T, B, 3H) activated [r z n], hs (T+1, B, H), and
// for reset_after hn = W_hn h + b_hn (T, B, H); step layout (schedule.hpp).
#pragma once

#include "activations.hpp"
#include "time_loop.hpp"

#include <vector>

namespace fastrnn {

template <typename S>
struct GRUCache {
    S* gates = nullptr;  // (T, B, 3H)
    S* hs = nullptr;     // (T+1, B, H)
    S* hn = nullptr;     // (T, B, H), reset_after only
};

template <typename S>
struct GradsOut {
    S *dx, *dh0, *dw_ih, *dw_hh, *db_ih, *db_hh;
};

// Input-side bias: b_ih plus every part of b_hh that is not multiplied by r.
template <typename S>
std::vector<S> gru_input_bias(const Weights<S>& w, Index H, bool reset_after) {
    std::vector<S> b(3 * H);
    ArrMap<S> bv(b.data(), 3 * H);
    bv = ConstArrMap<S>(w.b_ih, 3 * H) + ConstArrMap<S>(w.b_hh, 3 * H);
    if (reset_after) bv.segment(2 * H, H) = ConstArrMap<S>(w.b_ih + 2 * H, H);
    return b;
}

template <typename S, bool ResetAfter>
void gru_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const Schedule& sch,
                 S* out, S* h_n, GRUCache<S> cache) {
    const Index B = d.B, H = d.H, GH = 3 * H;
    const bool train = cache.gates != nullptr;
    const StateSlots slots{train};
    const std::vector<S> bias = gru_input_bias(w, H, ResetAfter);
    InputProjection<S> proj(d, x, w.w_ih, GH, sch, cache.gates);
    // Inference keeps gates in ga, apart from gh: the n gate still reads gh.
    Buffer<S> gh(B * GH), ga(train ? 0 : B * GH), q(ResetAfter ? 0 : B * H), h_buf(train ? 0 : 2 * B * H);
    S* hs = train ? cache.hs : h_buf.data();
    // reset_after: one product with all of W_hh; before: W_hr,z then W_hn.
    PackedMatrix<S> w_rz_or_all, w_n;
    w_rz_or_all.pack(w.w_hh, ResetAfter ? 3 : 2, H, H, H, false);
    if (!ResetAfter) w_n.pack(w.w_hh + 2 * H * H, 1, H, H, H, false);
    sch.gather(h0, hs, H);
    const Index P = w_rz_or_all.per_group();
    forward_loop(proj, sch, B, P, plan_team(sch, P, B, 2 * B * H * GH), [&](Index s, const Part& p) {
        const Index re = p.end(sch.active(s)), m = re - p.r0;
        S *hp = hs + slots.slot(s) * B * H, *hnew = hs + slots.slot(s + 1) * B * H;
        S* gx = proj.at(s);
        S* gates = train ? gx : ga.data();
        const auto [u, len] = unit_range<S>(p.j0, p.j1, H);
        // Row r: gates r, z = σ(gx + bias + gh).
        auto rz = [&](Index r) {
            for (Index k = 0; k < 2; ++k) {
                const Index o = r * GH + k * H + u;
                ArrMap<S>(gates + o, len) = Sigmoid::f(ConstArrMap<S>(gx + o, len) + ConstArrMap<S>(gh.data() + o, len) +
                                                       ConstArrMap<S>(bias.data() + k * H + u, len));
            }
        };
        // Row r: n and h' from r, z and ghn (the n part of gh).
        auto update = [&](Index r, const S* ghn) {
            const S* a = gates + r * GH + u;
            ConstArrMap<S> rg(a, len), z(a + H, len), h(hp + r * H + u, len);
            ArrMap<S> ng(gates + r * GH + 2 * H + u, len);
            const auto xn = ConstArrMap<S>(gx + r * GH + 2 * H + u, len) + ConstArrMap<S>(bias.data() + 2 * H + u, len);
            if constexpr (ResetAfter)
                ng = Tanh::f(xn + rg * ConstArrMap<S>(ghn, len));
            else
                ng = Tanh::f(xn + ConstArrMap<S>(ghn, len));
            ArrMap<S>(hnew + r * H + u, len) = ng + z * (h - ng);
            write_output(sch, s, r, hnew + r * H + u, out + u, B, H, len);
        };
        packed_gemm_units(hp + p.r0 * H, H, m, w_rz_or_all, p.j0, p.j1, gh.data() + p.r0 * GH, GH, false);
        if constexpr (ResetAfter) {
            S* hn_cache = train ? cache.hn + s * B * H : nullptr;
            for (Index r = p.r0; r < re; ++r) {
                ArrMap<S> ghn(gh.data() + r * GH + 2 * H + u, len);
                ghn += ConstArrMap<S>(w.b_hh + 2 * H + u, len);
                if (hn_cache) std::copy_n(ghn.data(), len, hn_cache + r * H + u);
                rz(r);
                update(r, ghn.data());
            }
        } else {
            for (Index r = p.r0; r < re; ++r) {
                rz(r);
                ArrMap<S>(q.data() + r * H + u, len) =
                    ConstArrMap<S>(gates + r * GH + u, len) * ConstArrMap<S>(hp + r * H + u, len);
            }
            p.sync();  // W_hn's product reads every unit of q
            packed_gemm_units(q.data() + p.r0 * H, H, m, w_n, p.j0, p.j1, gh.data() + 2 * H + p.r0 * GH, GH, false);
            for (Index r = p.r0; r < re; ++r) update(r, gh.data() + r * GH + 2 * H + u);
        }
        if (train) zero_rows(hnew, re, p.r1, H, 1, H, u, len);
    });
    for (Index r = 0; r < B; ++r)
        std::copy_n(hs + slots.slot(sch.length(r)) * B * H + r * H, H, h_n + sch.row(r) * H);
}

// Backward, per row of a step (dh includes d_out):
//   dn = dh⊙(1−z)   dan = dn⊙(1−n²)   daz = dh⊙(h−n)⊙z(1−z)   dh_prev = dh⊙z + …
//   reset_after:  dar = dan⊙hn⊙r(1−r); W_hh sees [dar daz dan⊙r], W_ih sees [dar daz dan]
//                 dh_prev += [dar daz dan⊙r]·W_hh
//   reset before: dq = dan·W_hn (q = r⊙h)   dar = dq⊙h⊙r(1−r)
//                 dh_prev += dq⊙r + [dar daz]·W_hr,z;   dW_hn = Σ danᵀ q
template <typename S, bool ResetAfter>
void gru_backward(const Dims& d, const S* x, const Weights<S>& w, const Schedule& sch,
                  const GRUCache<S>& cache, const S* d_out, const S* d_h_n, const GradsOut<S>& g) {
    const Index B = d.B, H = d.H, GH = 3 * H, steps = sch.steps();
    // dG: what W_hh sees per step (reset_after) or what both see (reset before).
    // dan: reset_after's n part as W_ih sees it. dq: reset before's dq scratch.
    // Every row of dG and dan is written.
    Buffer<S> dG(steps * B * GH), dan(ResetAfter ? steps * B * H : 0), dq(ResetAfter ? 0 : B * H), dh(B * H);
    // Transposed for dh_prev = dG · W: all of W_hh (reset_after), or W_hr,z and W_hn.
    PackedMatrix<S> wt_rz_or_all, wt_n;
    wt_rz_or_all.pack(w.w_hh, 1, H, ResetAfter ? GH : 2 * H, H, true);
    if (!ResetAfter) wt_n.pack(w.w_hh + 2 * H * H, 1, H, H, H, true);
    sch.gather(d_h_n, dh.data(), H);
    const Index P = wt_rz_or_all.per_group();
    backward_loop(sch, B, P, plan_team(sch, P, B, 2 * B * GH * H), [&](Index s, const Part& p) {
        const Index re = p.end(sch.active(s)), m = re - p.r0;
        S* dGs = dG.data() + s * B * GH;
        const S* hp = cache.hs + s * B * H;
        const auto [u, len] = unit_range<S>(p.j0, p.j1, H);
        // Row r: dh += d_out; dan, daz; dh ← dh⊙z (the direct path).
        auto common = [&](Index r) {
            const S* a = cache.gates + (s * B + r) * GH + u;
            ConstArrMap<S> z(a + H, len), ng(a + 2 * H, len), h(hp + r * H + u, len);
            ArrMap<S> dhv(dh.data() + r * H + u, len);
            dhv += ConstArrMap<S>(read_output(sch, s, r, d_out, B, H) + u, len);
            ArrMap<S> da_n(dGs + r * GH + 2 * H + u, len);
            da_n = dhv * (1 - z) * Tanh::df(ng);
            ArrMap<S>(dGs + r * GH + H + u, len) = dhv * (h - ng) * Sigmoid::df(z);
            dhv *= z;
        };
        if constexpr (ResetAfter) {
            for (Index r = p.r0; r < re; ++r) {
                common(r);
                const S* a = cache.gates + (s * B + r) * GH + u;
                ConstArrMap<S> rg(a, len), hn(cache.hn + (s * B + r) * H + u, len);
                ArrMap<S> da_n(dGs + r * GH + 2 * H + u, len);
                std::copy_n(da_n.data(), len, dan.data() + (s * B + r) * H + u);
                ArrMap<S>(dGs + r * GH + u, len) = da_n * hn * Sigmoid::df(rg);
                da_n *= rg;
            }
            zero_rows(dGs, re, p.r1, GH, 3, H, u, len);
            zero_rows(dan.data() + s * B * H, re, p.r1, H, 1, H, u, len);
            p.sync();  // the product reads every unit of dG
            packed_gemm_units(dGs + p.r0 * GH, GH, m, wt_rz_or_all, p.j0, p.j1, dh.data() + p.r0 * H, H, true);
        } else {
            for (Index r = p.r0; r < re; ++r) common(r);
            zero_rows(dGs, re, p.r1, GH, 3, H, u, len);
            p.sync();  // W_hn's product reads every unit of dG's n part
            packed_gemm_units(dGs + 2 * H + p.r0 * GH, GH, m, wt_n, p.j0, p.j1, dq.data() + p.r0 * H, H, false);
            for (Index r = p.r0; r < re; ++r) {
                ConstArrMap<S> rg(cache.gates + (s * B + r) * GH + u, len), h(hp + r * H + u, len),
                    dqv(dq.data() + r * H + u, len);
                ArrMap<S>(dGs + r * GH + u, len) = dqv * h * Sigmoid::df(rg);
                ArrMap<S>(dh.data() + r * H + u, len) += dqv * rg;
            }
            p.sync();  // the product reads every unit of dG's r and z parts
            packed_gemm_units(dGs + p.r0 * GH, GH, m, wt_rz_or_all, p.j0, p.j1, dh.data() + p.r0 * H, H, true);
        }
    });
    sch.scatter(dh.data(), g.dh0, H);
    if constexpr (ResetAfter) {
        gemm_tn(dG.data(), cache.hs, g.dw_hh, GH, H, steps * B, false);
        column_sum(dG.data(), g.db_hh, steps * B, GH);
        // W_ih sees [dar daz] from dG and dan for the n gate.
        input_backward(d, x, w.w_ih, sch, dG.data(), GH, 0, 2 * H, g.dw_ih, g.dx, false);
        input_backward(d, x, w.w_ih, sch, dan.data(), H, 2 * H, H, g.dw_ih, g.dx, true);
        std::copy_n(g.db_hh, 2 * H, g.db_ih);
        column_sum(dan.data(), g.db_ih + 2 * H, steps * B, H);
    } else {
        gemm_tn(dG.data(), cache.hs, g.dw_hh, 2 * H, H, steps * B, false, GH);
        Buffer<S> q(steps * B * H);  // q = r⊙h, the input of W_hn
        for (Index k = 0; k < steps * B; ++k)
            ArrMap<S>(q.data() + k * H, H) = ConstArrMap<S>(cache.gates + k * GH, H) * ConstArrMap<S>(cache.hs + k * H, H);
        gemm_tn(dG.data() + 2 * H, q.data(), g.dw_hh + 2 * H * H, H, H, steps * B, false, GH);
        column_sum(dG.data(), g.db_ih, steps * B, GH);
        std::copy_n(g.db_ih, GH, g.db_hh);
        input_backward(d, x, w.w_ih, sch, dG.data(), GH, 0, GH, g.dw_ih, g.dx, false);
    }
}

}  // namespace fastrnn
