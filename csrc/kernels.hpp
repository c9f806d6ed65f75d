// Entry points of the kernels: plain C++, no Python. bindings.cpp validates
// and allocates; these pick the cell policy once per call (never per step)
// and run a whole layer-direction through the drivers (core/driver.hpp).
// kernels.cpp instantiates them for float and double.
#pragma once

#include "core/driver.hpp"

#include <memory>

namespace fastrnn::kernels {

enum class CellKind { lstm, gru, rnn };

// A cell and its option: GRU reset_after, SimpleRNN relu (else tanh); LSTM
// has peepholes when Weights::peephole is set (option unused).
struct CellSpec {
    CellKind kind;
    bool option;
};

inline Index gates(CellKind k) { return k == CellKind::lstm ? 4 : k == CellKind::gru ? 3 : 1; }
inline int states(CellKind k) { return k == CellKind::lstm ? 2 : 1; }

// The weight format of an inference engine or of a training call
// (core/weights.hpp): the layer's dtype, or for float32 layers bfloat16 /
// int8 on a lowp kernel path (training: native or bfloat16).
enum class Precision { native, bf16, int8 };
struct Format {
    Precision precision = Precision::native;
    lowp::Path path = lowp::Path::scalar;  // bf16 and int8: the kernel path
};

// lengths: (B) in [0, T] or null. s0, s_n: (h, c) of (B, H), c only for LSTM.
// cache: all null for inference; a SimpleRNN whose options blend needs
// cache.gates (T, B, H). o: activations, leak, zoneout (core/types.hpp);
// backward takes the forward's. f: native, or bf16 (Bf16TrainFormat: float
// only, no recurrent mask; std::invalid_argument otherwise).
template <typename S>
void forward(const CellSpec& c, const Dims& d, const S* x, const Weights<S>& w, const Options<S>& o,
             const States<const S*>& s0, const std::int64_t* lengths, bool reverse, S* out, const States<S*>& s_n,
             const Cache<S>& cache, const Format& f = {});
template <typename S>
void backward(const CellSpec& c, const Dims& d, const S* x, const Weights<S>& w, const Options<S>& o,
              const std::int64_t* lengths, bool reverse, const Cache<S>& cache, const S* d_out,
              const States<const S*>& d_n, const Grads<S>& g, const Format& f = {});

// One layer-direction of an inference engine: the weights packed once for
// this CPU in a format (and copied: later changes to the caller's arrays do not leak in).
// run() is const and allocates its own scratch, so threads may share one.
template <typename S>
class LayerEngine {
public:
    virtual ~LayerEngine() = default;
    // x (T, B, I) -> out (T, B, H), final states; forward() in inference.
    virtual void run(Index T, Index B, const S* x, const States<const S*>& s0, const std::int64_t* lengths,
                     S* out, const States<S*>& s_n) const = 0;
};

// Throws std::invalid_argument for bf16 / int8 over double weights, and
// (int8) for weights with NaN or Inf, naming w_ih or w_hh.
template <typename S>
std::unique_ptr<LayerEngine<S>> make_engine(const CellSpec& c, const Weights<S>& w, Index I, Index H, bool reverse,
                                            const Format& f = {});

}  // namespace fastrnn::kernels
