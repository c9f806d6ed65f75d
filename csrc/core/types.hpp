// What crosses between a cell, the drivers and their callers: the training
// cache, the gradients, and how a cell describes its recurrent products.
//
// One struct each for every cell; a cell leaves unused fields null.
// Arrays are in step layout (schedule.hpp): (steps, B, ·), rows in schedule order.
#pragma once

#include <array>

#include "../activations.hpp"

namespace fastrnn {

// Training cache of one layer-direction; all null for inference.
template <typename S>
struct Cache {
    S* gates = nullptr;  // (T, B, G·H) activated gates: LSTM [i f g o], GRU [r z n]; SimpleRNN
                         // with a blend (Options::blends): the cell's output ĥ, else none
    S* hs = nullptr;     // (T+1, B, R) h before each step (slot 0 = h0), and the last;
                         // R = H, or P with an LSTM projection (Weights::R)
    S* cs = nullptr;     // (T+1, B, H) LSTM c, as hs
    S* hn = nullptr;     // (T, B, H) GRU reset_after: W_hn h + b_hn
    S* ms = nullptr;     // (T, B, H) LSTM projection: m = o⊙act(c') before h = m·W_hrᵀ
    // layer_norm (core/layer_norm.hpp): x̂ of the input term, of the recurrent
    // term (T, B, G·H each), of the LSTM's c' (T, B, H), and the rstd of each
    // (T, B, 3); rows that have ended are zeros.
    S *lnx = nullptr, *lnh = nullptr, *lnc = nullptr, *rstd = nullptr;
    // State k of the cell's states (h, c).
    S* state(int k) const { return k == 0 ? hs : cs; }
};

// Gradients of one layer-direction (the arguments' shapes); cells without a
// state or parameter leave its pointer null (dc0: LSTM only; dpeephole: with peepholes).
template <typename S>
struct Grads {
    S *dx = nullptr, *dh0 = nullptr, *dc0 = nullptr;
    S *dw_ih = nullptr, *dw_hh = nullptr, *db_ih = nullptr, *db_hh = nullptr;
    S* dpeephole = nullptr;
    S* dw_hr = nullptr;                          // with a projection: (P, H)
    S *dln_gain = nullptr, *dln_cell = nullptr;  // with layer_norm: (2, G·H), LSTM (2, H)
    S* dstate0(int k) const { return k == 0 ? dh0 : dc0; }
};

// The options of a cell beyond its weights (docs/variants.md); the defaults
// are the plain cell. After the cell computes its new states, each state k
// is blended with the old one (leak, then zoneout):
//   s' = keep ⊙ s + (1 − keep) ⊙ cell(s),  keep = 1 − (1 − z)·α
// with α = leak (h only; 1 for c) and z the zoneout mask's entry, or the
// probability p where no mask is given (inference: the expectation).
template <typename S>
struct Options {
    Activation act = Activation::tanh;       // LSTM g and the output, GRU n, SimpleRNN
    Activation ract = Activation::sigmoid;   // LSTM i, f, o; GRU r, z
    S leak = 1;                              // GRU, SimpleRNN
    S zoneout = 0;                           // p, used where zmask[k] is null
    std::array<const S*, 2> zmask{};         // (T, B, ·) for h and c, caller's order; null: p
    const S* rmask = nullptr;                // (G, B, H) recurrent dropout: gate k reads h ⊙ rmask[k]
    // layer_norm: gains (2, G·H) of LN(W_ih x) and LN(W_hh h); the LSTM's gain
    // and shift (2, H) of LN(c'). Cells with one recurrent product only.
    const S *ln_gain = nullptr, *ln_cell = nullptr;

    bool blends(int k) const { return zmask[k] != nullptr || zoneout != 0 || (k == 0 && leak != 1); }
    bool blends() const { return blends(0) || blends(1); }
};

// A recurrent product of a cell: gates [gate0, gate0 + gates) of W_hh
// (rows gate0·H …). Forward multiplies the step's input state (h, or what
// the cell makes of it) by those rows; backward multiplies dG's columns of
// those gates by them, and dW_hh of those rows is Σ dGᵀ · input. With a
// recurrent mask the drivers make it one product per gate k, of input ⊙ m_k
// (and backward's result ⊙ m_k): cells never see the masks.
struct Product {
    Index gate0, gates;
};

// Part of the input side's gradient: dG-like rows (steps·B, cols) with row
// stride ld, for gates starting at column g0 of W_ih (what W_ih and b_ih see).
template <typename S>
struct InputGrad {
    const S* dg;
    Index ld, g0, cols;
};

}  // namespace fastrnn
