"""Utilities named as in `torch.nn.utils`: `fastrnn.utils.rnn` (packed sequences)."""
from . import rnn

__all__ = ["rnn"]
