// SimpleRNN (Elman), DESIGN §2, docs/variants.md:
//   ĥ = act(W_ih x + b_ih + W_hh h + b_hh), then the driver's blend (leak,
//   zoneout) makes h'.
// Cache (training): hs (T+1, B, H), step layout; without a blend the states
// are the activations ĥ themselves, with one the cache's gates (T, B, H) keep ĥ.
#pragma once

#include "../activations.hpp"
#include "../core/cell.hpp"

namespace fastrnn {

template <typename S, typename Act>
struct RNNCell : CellBase<S> {
    static constexpr Index kGates = 1, kFolded = 1;
    static constexpr int kStates = 1;
    static constexpr std::array<Product, 1> kProducts{{{0, 1}}};
    // Training projects straight into where ĥ goes (gates, else hs[1:]), which
    // the step then overwrites.
    static S* projection(const Cache<S>& c, Index B, Index H) { return c.gates ? c.gates : c.hs + B * H; }

    template <typename Step>
    static void forward(const Step& st) {
        const Index H = st.H, u = st.u, n = st.len;
        const Act act{st.w.opt.act};
        S* hc = st.cache.gates ? st.gx : nullptr;  // where training keeps ĥ apart from h'
        st.product(0, st.prev[0], H, st.gh, H, false);
        st.each_row([&](Index r) {
            const Index o = r * H + u;
            ArrMap<S> hn(st.next[0] + o, n);
            hn = act.f(ConstArrMap<S>(st.gx + o, n) + ConstArrMap<S>(st.gh + o, n) + ConstArrMap<S>(st.bias() + u, n));
            if (hc) std::copy_n(hn.data(), n, hc + o);
        });
    }

    // da = dh⊙act'(ĥ) (dh: the cell's share, with d_out);  dh_prev = da·W_hh.
    template <typename Step>
    static void backward(const Step& st) {
        const Index H = st.H, u = st.u, n = st.len;
        const Act act{st.opt.act};
        const S* hc = st.gates ? st.gates : st.next[0];
        st.each_row([&](Index r) {
            const Index o = r * H + u;
            ArrMap<S>(st.dG + o, n) = ConstArrMap<S>(st.dstate[0] + o, n) * act.df(ConstArrMap<S>(hc + o, n));
        });
        st.sync();  // the product reads every unit of dG
        st.product(0, st.dG, H, st.dstate[0], H, false);
    }
};

}  // namespace fastrnn
