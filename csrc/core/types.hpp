// What crosses between a cell, the drivers and their callers: the training
// cache, the gradients, and how a cell describes its recurrent products.
//
// One struct each for every cell; a cell leaves unused fields null.
// Arrays are in step layout (schedule.hpp): (steps, B, ·), rows in schedule order.
#pragma once

#include "../common.hpp"

namespace fastrnn {

// Training cache of one layer-direction; all null for inference.
template <typename S>
struct Cache {
    S* gates = nullptr;  // (T, B, G·H) activated gates: LSTM [i f g o], GRU [r z n]; SimpleRNN none
    S* hs = nullptr;     // (T+1, B, H) h before each step (slot 0 = h0), and the last
    S* cs = nullptr;     // (T+1, B, H) LSTM c, as hs
    S* hn = nullptr;     // (T, B, H) GRU reset_after: W_hn h + b_hn
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
    S* dstate0(int k) const { return k == 0 ? dh0 : dc0; }
};

// A recurrent product of a cell: gates [gate0, gate0 + gates) of W_hh
// (rows gate0·H …). Forward multiplies the step's input state (h, or what
// the cell makes of it) by those rows; backward multiplies dG's columns of
// those gates by them, and dW_hh of those rows is Σ dGᵀ · input.
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
