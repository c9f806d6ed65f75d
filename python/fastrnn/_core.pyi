"""Type stub of the compiled kernel modules (csrc/bindings.cpp).

There is no module `fastrnn._core`: every kernel module (_core_native,
_core_baseline, _core_avx2, _core_avx512; _isa.py loads one at import) has
this interface, and the modules that use it import this stub under
TYPE_CHECKING. Private: use fastrnn.functional and fastrnn.engine.
Arrays are C-ordered float32 or float64 of one dtype (float64 picks the
double kernels); lengths int64 (B,).
"""
from typing import List, Optional, Tuple, Union

import numpy as np

class LSTMCache:
    """Training cache of an LSTM layer-direction (read-only)."""
    @property
    def cell(self) -> str: ...
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    peephole: Optional[np.ndarray]
    lengths: Optional[np.ndarray]
    reverse: bool
    gates: np.ndarray  # (T, B, 4H) activated i, f, g, o; step layout
    hs: np.ndarray     # (T+1, B, R), R = P with a projection, else H
    cs: np.ndarray     # (T+1, B, H)
    w_hr: Optional[np.ndarray]  # (P, H) projection (proj_size), else None

class GRUCache:
    """Training cache of a GRU layer-direction (read-only)."""
    @property
    def cell(self) -> str: ...
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: Optional[np.ndarray]
    reverse: bool
    reset_after: bool
    gates: np.ndarray          # (T, B, 3H) activated r, z, n
    hs: np.ndarray             # (T+1, B, H)
    hn: Optional[np.ndarray]   # (T, B, H) W_hn h + b_hn, reset_after only

class RNNCache:
    """Training cache of a SimpleRNN layer-direction (read-only)."""
    @property
    def cell(self) -> str: ...
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: Optional[np.ndarray]
    reverse: bool
    @property
    def nonlinearity(self) -> str: ...
    hs: np.ndarray             # (T+1, B, H)

class ForwardResult:
    out: np.ndarray                    # (T, B, H)
    h_n: np.ndarray                    # (B, H)
    c_n: Optional[np.ndarray]          # LSTM only
    cache: Optional[Union[LSTMCache, GRUCache, RNNCache]]  # training only

class GradsResult:
    dx: np.ndarray
    dh0: np.ndarray
    dc0: Optional[np.ndarray]          # LSTM only
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray
    dpeephole: Optional[np.ndarray]    # peephole LSTM only
    dln_gain: Optional[np.ndarray]     # layer_norm only (docs/variants.md)
    dln_cell: Optional[np.ndarray]     # layer-norm LSTM only
    dw_hr: Optional[np.ndarray]        # projected LSTM only (P, H)

def lstm_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                 b_hh: np.ndarray, h0: np.ndarray, c0: np.ndarray, peephole: Optional[np.ndarray],
                 lengths: Optional[np.ndarray], reverse: bool, training: bool, *,
                 activation: str = ..., recurrent_activation: str = ..., zoneout: float = ...,
                 zoneout_mask: Optional[np.ndarray] = ..., zoneout_mask_c: Optional[np.ndarray] = ...,
                 recurrent_mask: Optional[np.ndarray] = ..., ln_gain: Optional[np.ndarray] = ...,
                 ln_cell: Optional[np.ndarray] = ...,
                 w_hr: Optional[np.ndarray] = ..., precision: str = ...,
                 path: Optional[str] = ...) -> ForwardResult: ...
def gru_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                b_hh: np.ndarray, h0: np.ndarray, lengths: Optional[np.ndarray], reverse: bool,
                training: bool, reset_after: bool, *, activation: str = ...,
                recurrent_activation: str = ..., leak_rate: float = ..., zoneout: float = ...,
                zoneout_mask: Optional[np.ndarray] = ..., recurrent_mask: Optional[np.ndarray] = ...,
                ln_gain: Optional[np.ndarray] = ..., precision: str = ...,
                path: Optional[str] = ...) -> ForwardResult: ...
def rnn_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                b_hh: np.ndarray, h0: np.ndarray, lengths: Optional[np.ndarray], reverse: bool,
                training: bool, relu: bool, *, activation: str = ..., leak_rate: float = ...,
                zoneout: float = ..., zoneout_mask: Optional[np.ndarray] = ...,
                recurrent_mask: Optional[np.ndarray] = ..., precision: str = ...,
                path: Optional[str] = ...) -> ForwardResult: ...
# precision: "float32" or "bfloat16" (float32 arrays; path: a bf16 kernel path, None = the
# process's); the backward's is the forward's, passed again (docs/precision.md, "Training").
def lstm_backward(cache: LSTMCache, d_out: np.ndarray, d_h_n: np.ndarray,
                  d_c_n: np.ndarray, *, precision: str = ...,
                  path: Optional[str] = ...) -> GradsResult: ...
def gru_backward(cache: GRUCache, d_out: np.ndarray, d_h_n: np.ndarray, *, precision: str = ...,
                 path: Optional[str] = ...) -> GradsResult: ...
def rnn_backward(cache: RNNCache, d_out: np.ndarray, d_h_n: np.ndarray, *, precision: str = ...,
                 path: Optional[str] = ...) -> GradsResult: ...

class EngineLayer:
    """One layer-direction of an inference engine: weights copied and packed once."""
    def __init__(self, cell: str, option: bool, w_ih: np.ndarray, w_hh: np.ndarray,
                 b_ih: np.ndarray, b_hh: np.ndarray, peephole: Optional[np.ndarray],
                 reverse: bool, precision: str = "float32",
                 path: Optional[str] = None) -> None: ...
    @property
    def path(self) -> Optional[str]: ...
    @property
    def input_size(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def reverse(self) -> bool: ...
    @property
    def dtype(self) -> np.dtype: ...
    @property
    def states(self) -> int: ...
    def run(self, x: np.ndarray, h0: np.ndarray, c0: Optional[np.ndarray],
            lengths: Optional[np.ndarray], out: Optional[np.ndarray] = None,
            h_n: Optional[np.ndarray] = None,
            c_n: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]: ...

class EngineStack:
    """The layers of a unidirectional engine (EngineLayers, first to last), stepped together."""
    def __init__(self, layers: List[EngineLayer]) -> None: ...
    def step(self, x: np.ndarray, state: Union[None, np.ndarray, Tuple[np.ndarray, np.ndarray]],
             out: Optional[Tuple[np.ndarray, Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]]]
             ) -> Optional[Tuple[np.ndarray, Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]]]:
        """One time step of every layer in one GIL-released call; None (nothing run) when an
        argument is not exactly what the fast path takes (fastrnn.engine then checks it)."""
        ...

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _report_barrier_team(wall: float, cpu: float) -> None: ...
def _barrier_teams_contended() -> bool: ...
def build_config() -> dict: ...
