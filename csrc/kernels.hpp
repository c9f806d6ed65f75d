// Entry points of the kernels: plain C++, no Python. bindings.cpp validates
// and allocates; these dispatch once per call on cell options (never per
// step) and run a whole layer-direction. lstm.cpp, gru.cpp and rnn.cpp instantiate them
// for float and double.
#pragma once

#include "gru.hpp"
#include "lstm.hpp"
#include "rnn.hpp"

namespace fastrnn::kernels {

// lengths: (B) in [0, T] or null. Caches are null pointers for inference.
template <typename S>
void lstm_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const S* c0,
                  const std::int64_t* lengths, bool reverse, S* out, S* h_n, S* c_n, LSTMCache<S> cache);
template <typename S>
void lstm_backward(const Dims& d, const S* x, const Weights<S>& w, const std::int64_t* lengths, bool reverse,
                   const LSTMCache<S>& cache, const S* d_out, const S* d_h_n, const S* d_c_n,
                   const LSTMGradsOut<S>& g);

template <typename S>
void gru_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const std::int64_t* lengths,
                 bool reverse, bool reset_after, S* out, S* h_n, GRUCache<S> cache);
template <typename S>
void gru_backward(const Dims& d, const S* x, const Weights<S>& w, const std::int64_t* lengths, bool reverse,
                  bool reset_after, const GRUCache<S>& cache, const S* d_out, const S* d_h_n, const GradsOut<S>& g);

template <typename S>
void rnn_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const std::int64_t* lengths,
                 bool reverse, bool relu, S* out, S* h_n, S* hs);
template <typename S>
void rnn_backward(const Dims& d, const S* x, const Weights<S>& w, const std::int64_t* lengths, bool reverse,
                  bool relu, const S* hs, const S* d_out, const S* d_h_n, const GradsOut<S>& g);

}  // namespace fastrnn::kernels
