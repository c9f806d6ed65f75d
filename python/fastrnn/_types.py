"""Result types shared by `functional` and `reference`."""
from typing import NamedTuple, Optional

import numpy as np


class Grads(NamedTuple):
    """Gradients of a GRU or SimpleRNN layer-direction (shapes of the arguments)."""
    dx: np.ndarray
    dh0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray
    dln_gain: Optional[np.ndarray] = None     # GRU layer_norm only (docs/variants.md)


class LSTMGrads(NamedTuple):
    """Gradients of an LSTM layer-direction; `dpeephole`, `dw_hr` (proj_size), `dln_gain`
    and `dln_cell` (layer_norm) are None where the forward had no such parameter."""
    dx: np.ndarray
    dh0: np.ndarray
    dc0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray
    dpeephole: Optional[np.ndarray]
    dw_hr: Optional[np.ndarray] = None
    dln_gain: Optional[np.ndarray] = None
    dln_cell: Optional[np.ndarray] = None
