// Gate activations on Eigen arrays, and their derivatives written in terms of
// the activation's output y (so backward reuses the cached gates):
//   σ'(a) = y (1 − y)     tanh'(a) = 1 − y²     relu'(a) = [y > 0]
//
// σ and tanh give the same bits in Eigen's SIMD and scalar paths: the scalar
// path runs the SIMD code on one broadcast lane. Eigen runs an elementwise
// pass's unaligned head and its tail in scalar code, and where those fall
// depends on where a thread's share of units starts; with equal bits, results
// do not depend on the thread count. (+, −, × are IEEE in both paths; the
// build turns off FMA contraction, -ffp-contract=off, which could fuse them
// differently in the two.)
#pragma once

#include "common.hpp"

namespace fastrnn {

// Eigen's functor Op with its packet code also used for single scalars.
template <typename Op>
struct LaneExact {
    template <typename S>
    S operator()(const S& a) const {
        if constexpr (Eigen::internal::functor_traits<Op>::PacketAccess) {
            using P = typename Eigen::internal::packet_traits<S>::type;
            return Eigen::internal::pfirst(Op().packetOp(Eigen::internal::pset1<P>(a)));
        } else {
            return Op()(a);  // no SIMD path to agree with
        }
    }
    template <typename P>
    P packetOp(const P& a) const { return Op().packetOp(a); }
};

struct Sigmoid {
    template <typename A>
    static auto f(const A& a) {
        return a.unaryExpr(LaneExact<Eigen::internal::scalar_logistic_op<typename A::Scalar>>());
    }
    template <typename A>
    static auto df(const A& y) { return y * (1 - y); }
};

struct Tanh {
    template <typename A>
    static auto f(const A& a) {
        return a.unaryExpr(LaneExact<Eigen::internal::scalar_tanh_op<typename A::Scalar>>());
    }
    template <typename A>
    static auto df(const A& y) { return 1 - y.square(); }
};

struct Relu {
    template <typename A>
    static auto f(const A& a) { return a.max(typename A::Scalar(0)); }
    template <typename A>
    static auto df(const A& y) {
        using S = typename A::Scalar;
        return (y > S(0)).template cast<S>();
    }
};

}  // namespace fastrnn

namespace Eigen::internal {
template <typename Op>
struct functor_traits<fastrnn::LaneExact<Op>> {
    enum { Cost = functor_traits<Op>::Cost, PacketAccess = functor_traits<Op>::PacketAccess };
};
}  // namespace Eigen::internal
