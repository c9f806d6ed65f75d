// The order in which a layer-direction visits (time, sequence) pairs.
//
// Sequences are kept in "sorted" order inside the kernels: rows sorted by
// length, longest first (stable), so at step s the sequences still running
// are rows [0, active(s)) and every recurrent GEMM runs on a contiguous
// prefix of the state — padded steps cost nothing. Without lengths the order
// is the identity. Row r of step s reads and writes time index time(s, r):
// s going forward, lengths[r]-1-s in reverse (DESIGN §3).
#pragma once

#include "common.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

namespace fastrnn {

class Schedule {
public:
    // lengths: (B) values in [0, T], or null meaning all T.
    Schedule(Index T, Index B, const std::int64_t* lengths, bool reverse)
        : B_(B), reverse_(reverse), perm_(B), len_(B, T) {
        std::iota(perm_.begin(), perm_.end(), Index(0));
        if (lengths) {
            std::stable_sort(perm_.begin(), perm_.end(),
                             [&](Index a, Index b) { return lengths[a] > lengths[b]; });
            for (Index r = 0; r < B; ++r) len_[r] = lengths[perm_[r]];
        }
        steps_ = B > 0 ? len_[0] : 0;
        // active_[s] = number of rows with length > s; non-increasing in s.
        active_.assign(steps_, 0);
        for (Index r = 0; r < B; ++r)
            for (Index s = 0; s < len_[r]; ++s) ++active_[s];
        identity_ = !reverse;
        for (Index r = 0; r < B && identity_; ++r)
            identity_ = perm_[r] == r && len_[r] == T;
    }

    Index steps() const { return steps_; }         // steps with any row running
    Index active(Index s) const { return active_[s]; }
    Index row(Index r) const { return perm_[r]; }  // batch index of sorted row r
    Index length(Index r) const { return len_[r]; }
    Index time(Index s, Index r) const { return reverse_ ? len_[r] - 1 - s : s; }
    // True when step s row r is exactly (time s, batch r) for all s, r.
    bool identity() const { return identity_; }

    // dst row r <- src row perm[r]   (batch order -> sorted order), rows of n.
    template <typename S>
    void gather(const S* src, S* dst, Index n) const {
        for (Index r = 0; r < B_; ++r) std::copy_n(src + perm_[r] * n, n, dst + r * n);
    }
    // dst row perm[r] <- src row r   (sorted order -> batch order).
    template <typename S>
    void scatter(const S* src, S* dst, Index n) const {
        for (Index r = 0; r < B_; ++r) std::copy_n(src + r * n, n, dst + perm_[r] * n);
    }

private:
    Index B_;
    bool reverse_;
    bool identity_;
    Index steps_;
    std::vector<Index> perm_, len_, active_;
};

// Writes len values of row r of step s into out (T, B, H) at (time(s, r), row(r)).
template <typename S>
inline void write_output(const Schedule& sch, Index s, Index r, const S* h, S* out, Index B, Index H,
                         Index len) {
    std::copy_n(h, len, out + (sch.time(s, r) * B + sch.row(r)) * H);
}

// Where the recurrent state lives. Training keeps every step (slot s = state
// before step s, T+1 slots, the cache); inference alternates two slots, which
// lets threads write their units of the new state while others still read
// the old one. Rows that have ended are never written again, so a row's final
// state stays in slot(length).
struct StateSlots {
    bool keep_all;
    Index slot(Index s) const { return keep_all ? s : s % 2; }
};

// Row r's d_out at step s, read from (T, B, H).
template <typename S>
inline const S* read_output(const Schedule& sch, Index s, Index r, const S* d_out, Index B, Index H) {
    return d_out + (sch.time(s, r) * B + sch.row(r)) * H;
}

}  // namespace fastrnn
