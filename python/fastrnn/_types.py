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


class LSTMGrads(NamedTuple):
    """Gradients of an LSTM layer-direction; `dpeephole` is None without peepholes."""
    dx: np.ndarray
    dh0: np.ndarray
    dc0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray
    dpeephole: Optional[np.ndarray]
