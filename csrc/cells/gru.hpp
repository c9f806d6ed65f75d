// GRU, gate order r, z, n (PyTorch), DESIGN §2, docs/variants.md; ract = σ
// and act = tanh by default:
//   r = ract(W_ir x + b_ir + W_hr h + b_hr)      z = ract(… same with z …)
//   reset_after:  n = act(W_in x + b_in + r⊙(W_hn h + b_hn))
//   reset before: n = act(W_in x + b_in + W_hn (r⊙h) + b_hn)
//   h' = (1−z)⊙n + z⊙h, then the driver's blend (leak, zoneout)
//
// Cache (training): gates (T, B, 3H) activated [r z n], hs (T+1, B, H), and
// for reset_after hn = W_hn h + b_hn (T, B, H); step layout (schedule.hpp).
// Recurrent products: reset_after one with all of W_hh; reset before two a
// step, W_hr,z on h, then W_hn on q = r⊙h.
#pragma once

#include "../activations.hpp"
#include "../core/cell.hpp"

namespace fastrnn {

template <typename S, bool ResetAfter, typename Act = Tanh, typename RAct = Sigmoid>
struct GRUCell : CellBase<S> {
    static constexpr Index kGates = 3;
    static constexpr Index kFolded = ResetAfter ? 2 : 3;  // reset_after: b_hn stays inside r⊙(…)
    static constexpr int kStates = 1;
    static constexpr auto kProducts = [] {
        if constexpr (ResetAfter)
            return std::array<Product, 1>{{{0, 3}}};
        else
            return std::array<Product, 2>{{{0, 2}, {2, 1}}};
    }();
    static S* projection(const Cache<S>& c, Index, Index) { return c.gates; }

    // Forward scratch: inference keeps gates apart from gh (the n gate still
    // reads gh), then reset before's q = r⊙h.
    static Index forward_scratch(Index B, Index H, bool train) { return (train ? 0 : 3 * B * H) + (ResetAfter ? 0 : B * H); }
    // Backward scratch: reset_after's dan (the n part as W_ih sees it, every
    // step); reset before's dq (one step).
    static Index backward_scratch(Index B, Index H, Index steps, const Options<S>&) {
        return ResetAfter ? steps * B * H : B * H;
    }

    template <typename Step>
    static void forward(const Step& st) {
        const Index B = st.B, H = st.H, GH = 3 * H, u = st.u, len = st.len;
        const Act act{st.w.opt.act};
        const RAct ract{st.w.opt.ract};
        const S *hp = st.prev[0], *bias = st.bias();
        S *gx = st.gx, *gh = st.gh, *hnew = st.next[0];
        S* gates = st.train() ? gx : st.scratch;
        // Row r: gates r, z = σ(gx + bias + gh).
        auto rz = [&](Index r) {
            for (Index k = 0; k < 2; ++k) {
                const Index o = r * GH + k * H + u;
                ArrMap<S>(gates + o, len) = ract.f(ConstArrMap<S>(gx + o, len) + ConstArrMap<S>(gh + o, len) +
                                                   ConstArrMap<S>(bias + k * H + u, len));
            }
        };
        // Row r: n and h' from r, z and ghn (the n part of gh).
        auto update = [&](Index r, const S* ghn) {
            const S* a = gates + r * GH + u;
            ConstArrMap<S> rg(a, len), z(a + H, len), h(hp + r * H + u, len);
            ArrMap<S> ng(gates + r * GH + 2 * H + u, len);
            const auto xn = ConstArrMap<S>(gx + r * GH + 2 * H + u, len) + ConstArrMap<S>(bias + 2 * H + u, len);
            if constexpr (ResetAfter)
                ng = act.f(xn + rg * ConstArrMap<S>(ghn, len));
            else
                ng = act.f(xn + ConstArrMap<S>(ghn, len));
            ArrMap<S>(hnew + r * H + u, len) = ng + z * (h - ng);
        };
        st.product(0, hp, H, gh, GH, false);
        if constexpr (ResetAfter) {
            S* hn_cache = st.train() ? st.cache.hn + st.s * B * H : nullptr;
            const S* b_hn = st.w.b_hh.data() + 2 * H + u;
            st.each_row([&](Index r) {
                ArrMap<S> ghn(gh + r * GH + 2 * H + u, len);
                ghn += ConstArrMap<S>(b_hn, len);
                if (hn_cache) std::copy_n(ghn.data(), len, hn_cache + r * H + u);
                rz(r);
                update(r, ghn.data());
            });
        } else {
            S* q = st.scratch + (st.train() ? 0 : B * GH);
            for (Index r = st.r0(); r < st.re; ++r) {
                rz(r);
                ArrMap<S>(q + r * H + u, len) = ConstArrMap<S>(gates + r * GH + u, len) * ConstArrMap<S>(hp + r * H + u, len);
            }
            st.sync();  // W_hn's product reads every unit of q
            st.product(1, q, H, gh + 2 * H, GH, false);
            st.each_row([&](Index r) { update(r, gh + r * GH + 2 * H + u); });
        }
    }

    // Backward, per row of a step (dh includes d_out):
    //   dn = dh⊙(1−z)   dan = dn⊙act'(n)   daz = dh⊙(h−n)⊙ract'(z)   dh_prev = dh⊙z + …
    //   reset_after:  dar = dan⊙hn⊙ract'(r); W_hh sees [dar daz dan⊙r], W_ih sees [dar daz dan]
    //                 dh_prev += [dar daz dan⊙r]·W_hh
    //   reset before: dq = dan·W_hn (q = r⊙h)   dar = dq⊙h⊙ract'(r)
    //                 dh_prev += dq⊙r + [dar daz]·W_hr,z;   dW_hn = Σ danᵀ q
    template <typename Step>
    static void backward(const Step& st) {
        const Index B = st.B, H = st.H, GH = 3 * H, u = st.u, len = st.len;
        const Act act{st.opt.act};
        const RAct ract{st.opt.ract};
        S *dGs = st.dG, *dh = st.dstate[0];
        const S* hp = st.prev[0];
        // Row r: dan, daz; dh ← dh⊙z (the direct path).
        auto common = [&](Index r) {
            const S* a = st.gates + r * GH + u;
            ConstArrMap<S> z(a + H, len), ng(a + 2 * H, len), h(hp + r * H + u, len);
            ArrMap<S> dhv(dh + r * H + u, len);
            ArrMap<S> da_n(dGs + r * GH + 2 * H + u, len);
            da_n = dhv * (1 - z) * act.df(ng);
            ArrMap<S>(dGs + r * GH + H + u, len) = dhv * (h - ng) * ract.df(z);
            dhv *= z;
        };
        if constexpr (ResetAfter) {
            S* dan = st.scratch + st.s * B * H;
            st.each_row([&](Index r) {
                common(r);
                ConstArrMap<S> rg(st.gates + r * GH + u, len), hn(st.cache.hn + (st.s * B + r) * H + u, len);
                ArrMap<S> da_n(dGs + r * GH + 2 * H + u, len);
                std::copy_n(da_n.data(), len, dan + r * H + u);
                ArrMap<S>(dGs + r * GH + u, len) = da_n * hn * ract.df(rg);
                da_n *= rg;
            });
            st.zero_ended(dan, H, 1);
            st.sync();  // the product reads every unit of dG
            st.product(0, dGs, GH, dh, H, true);
        } else {
            S* dq = st.scratch;
            st.each_row(common);
            st.sync();  // W_hn's product reads every unit of dG's n part
            st.product(1, dGs + 2 * H, GH, dq, H, false);
            for (Index r = st.r0(); r < st.re; ++r) {
                ConstArrMap<S> rg(st.gates + r * GH + u, len), h(hp + r * H + u, len), dqv(dq + r * H + u, len);
                ArrMap<S>(dGs + r * GH + u, len) = dqv * h * ract.df(rg);
                ArrMap<S>(dh + r * H + u, len) += dqv * rg;
            }
            st.sync();  // the product reads every unit of dG's r and z parts
            st.product(0, dGs, GH, dh, H, true);
        }
    }

    // reset before: W_hn multiplied q = r⊙h.
    static const S* product_input(std::size_t k, const Cache<S>& c, Index rows, Index H, Buffer<S>& tmp) {
        if (ResetAfter || k == 0) return c.hs;
        tmp.resize(rows * H);
        for (Index i = 0; i < rows; ++i)
            ArrMap<S>(tmp.data() + i * H, H) = ConstArrMap<S>(c.gates + i * 3 * H, H) * ConstArrMap<S>(c.hs + i * H, H);
        return tmp.data();
    }

    // reset_after: W_ih sees [dar daz] from dG and dan (scratch) for the n gate.
    static auto input_grads(const S* dG, const S* scratch, Index H, Index GH) {
        if constexpr (ResetAfter)
            return std::array<InputGrad<S>, 2>{{{dG, GH, 0, 2 * H}, {scratch, H, 2 * H, H}}};
        else
            return CellBase<S>::input_grads(dG, scratch, H, GH);
    }
};

}  // namespace fastrnn
