// Gate activations on Eigen arrays, and their derivatives written in terms of
// the activation's output y (so backward reuses the cached gates;
// docs/variants.md):
//   σ'(a) = y (1 − y)     tanh'(a) = 1 − y²     relu'(a) = [y > 0]
//   hard_sigmoid (Keras 3, relu6(a + 3) / 6)' = 1/6 where 0 < y < 1
//   linear' = 1           softsign'(a) = (1 − |y|)²
//
// Cells take their activations as template parameters, so the common ones
// stay fused and vectorised (kernels.cpp instantiates those); Dynamic is the
// generic one for every other choice: a switch per element on a value fixed
// for the call (no function pointer, but scalar code).
//
// σ and tanh give the same bits in Eigen's SIMD and scalar paths: the scalar
// path runs the SIMD code on one broadcast lane. Eigen runs an elementwise
// pass's unaligned head and its tail in scalar code, and where those fall
// depends on where a thread's share of units starts; with equal bits, results
// do not depend on the thread count. (+, −, ×, min, max are IEEE in both paths;
// the build turns off FMA contraction, -ffp-contract=off, which could fuse them
// differently in the two. Dynamic is scalar everywhere.)
#pragma once

#include "common.hpp"

#include <algorithm>
#include <cmath>

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

enum class Activation : int { tanh, sigmoid, hard_sigmoid, relu, linear, softsign };

// Static activations ignore the runtime choice they are built from.
struct StaticActivation {
    constexpr explicit StaticActivation(Activation = Activation::tanh) {}
};

struct Sigmoid : StaticActivation {
    using StaticActivation::StaticActivation;
    template <typename A>
    static auto f(const A& a) {
        return a.unaryExpr(LaneExact<Eigen::internal::scalar_logistic_op<typename A::Scalar>>());
    }
    template <typename A>
    static auto df(const A& y) { return y * (1 - y); }
};

struct Tanh : StaticActivation {
    using StaticActivation::StaticActivation;
    template <typename A>
    static auto f(const A& a) {
        return a.unaryExpr(LaneExact<Eigen::internal::scalar_tanh_op<typename A::Scalar>>());
    }
    template <typename A>
    static auto df(const A& y) { return 1 - y.square(); }
};

struct HardSigmoid : StaticActivation {
    using StaticActivation::StaticActivation;
    template <typename A>
    static auto f(const A& a) {
        using S = typename A::Scalar;
        return (a + S(3)).max(S(0)).min(S(6)) * S(1.0 / 6);  // a multiply: a division costs more
    }
    template <typename A>
    static auto df(const A& y) {
        using S = typename A::Scalar;
        return ((y > S(0)) && (y < S(1))).template cast<S>() * S(1.0 / 6);
    }
};

struct Relu : StaticActivation {
    using StaticActivation::StaticActivation;
    template <typename A>
    static auto f(const A& a) { return a.max(typename A::Scalar(0)); }
    template <typename A>
    static auto df(const A& y) {
        using S = typename A::Scalar;
        return (y > S(0)).template cast<S>();
    }
};

// Any of the six, chosen at run time.
struct Dynamic {
    Activation kind;
    constexpr explicit Dynamic(Activation k) : kind(k) {}
    template <typename S>
    static S f1(Activation k, S a) {
        switch (k) {
            case Activation::tanh: return std::tanh(a);
            case Activation::sigmoid: return S(1) / (S(1) + std::exp(-a));
            case Activation::hard_sigmoid: return std::min(std::max(a + S(3), S(0)), S(6)) / S(6);
            case Activation::relu: return std::max(a, S(0));
            case Activation::linear: return a;
            case Activation::softsign: return a / (S(1) + std::abs(a));
        }
        return a;
    }
    template <typename S>
    static S df1(Activation k, S y) {
        switch (k) {
            case Activation::tanh: return S(1) - y * y;
            case Activation::sigmoid: return y * (S(1) - y);
            case Activation::hard_sigmoid: return y > S(0) && y < S(1) ? S(1) / S(6) : S(0);
            case Activation::relu: return y > S(0) ? S(1) : S(0);
            case Activation::linear: return S(1);
            case Activation::softsign: return (S(1) - std::abs(y)) * (S(1) - std::abs(y));
        }
        return S(1);
    }
    template <typename A>
    auto f(const A& a) const {
        return a.unaryExpr([k = kind](typename A::Scalar v) { return f1(k, v); });
    }
    template <typename A>
    auto df(const A& y) const {
        return y.unaryExpr([k = kind](typename A::Scalar v) { return df1(k, v); });
    }
};

}  // namespace fastrnn

namespace Eigen::internal {
template <typename Op>
struct functor_traits<fastrnn::LaneExact<Op>> {
    enum { Cost = functor_traits<Op>::Cost, PacketAccess = functor_traits<Op>::PacketAccess };
};
}  // namespace Eigen::internal
