"""fastrnn: fused C++ recurrent layers (LSTM, GRU, SimpleRNN) for NumPy code."""
from . import functional, reference
from .functional import get_num_threads, set_num_threads
from . import nn, optim
from . import distributed          # imports mpi4py only when used
from ._types import Grads, LSTMGrads
from .layers import GRU, LSTM, SimpleRNN
from .engine import InferenceEngine
from . import interop
from ._config import config, show_config
from .interop import from_keras, from_torch, to_keras_weights, to_torch_state_dict
from .esn import EchoStateNetwork

__version__ = "0.1.0"

__all__ = ["functional", "reference", "set_num_threads", "get_num_threads", "nn", "optim", "Grads", "LSTMGrads", "__version__",
           "LSTM", "GRU", "SimpleRNN", "InferenceEngine", "interop", "from_torch", "to_torch_state_dict",
           "from_keras", "to_keras_weights", "distributed", "config", "show_config",
           "EchoStateNetwork"]
