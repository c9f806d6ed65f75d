// Gate activations on Eigen arrays, and their derivatives written in terms of
// the activation's output y (so backward reuses the cached gates):
//   σ'(a) = y (1 − y)     tanh'(a) = 1 − y²     relu'(a) = [y > 0]
#pragma once

#include "common.hpp"

namespace fastrnn {

struct Sigmoid {
    template <typename A>
    static auto f(const A& a) { return a.logistic(); }
    template <typename A>
    static auto df(const A& y) { return y * (1 - y); }
};

struct Tanh {
    template <typename A>
    static auto f(const A& a) { return a.tanh(); }
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
