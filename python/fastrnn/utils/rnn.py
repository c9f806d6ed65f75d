"""Packed sequences over NumPy, with `torch.nn.utils.rnn`'s semantics (docs/layers.md).

    packed = pack_padded_sequence(x, lengths, batch_first=False, enforce_sorted=True)
    out, h_n = gru(packed)                   # out: a PackedSequence, as PyTorch returns
    padded, lengths = pad_packed_sequence(out, batch_first=False, padding_value=0.0,
                                          total_length=None)
    pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right")
    pack_sequence(sequences, enforce_sorted=True)

A packed batch holds the valid steps only, time-major: `data` (N, *) has, for each time t,
the `batch_sizes[t]` sequences still running, longest first; `sorted_indices[j]` is the
batch entry of the j-th longest sequence and `unsorted_indices` its inverse (both None when
the batch was already sorted). Layers take this object or a torch `PackedSequence` and run
it through the variable-length kernels (`lengths=`), padding and packing once per call.
"""
from typing import NamedTuple, Optional

import numpy as np

from .._errors import ArgumentError, ArgumentTypeError

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence",
           "pack_sequence"]

_FIELDS = ("data", "batch_sizes", "sorted_indices", "unsorted_indices")


class PackedSequence(NamedTuple):
    """`torch.nn.utils.rnn.PackedSequence` over NumPy: data (N, *), batch_sizes (T,) int64,
    sorted_indices / unsorted_indices (B,) int64 or None."""
    data: np.ndarray
    batch_sizes: np.ndarray
    sorted_indices: Optional[np.ndarray] = None
    unsorted_indices: Optional[np.ndarray] = None


def is_packed(obj):
    """True for fastrnn's PackedSequence and anything shaped like torch's (duck-typed)."""
    return not isinstance(obj, np.ndarray) and all(hasattr(obj, f) for f in _FIELDS)


def _numpy(value):
    """A torch tensor as a NumPy array (read, never imported); anything else unchanged."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _int_vector(name, value):
    a = np.asarray(_numpy(value))
    if a.size and (a.dtype == np.bool_ or a.dtype.kind not in "iu"):
        raise TypeError(f"{name} must be a 1-D integer array, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ArgumentError(f"{name} must be 1-D, got shape {a.shape}")
    return a.astype(np.int64)


class Layout:
    """Where the N rows of a packed `data` sit in a padded time-major (T, B, *) array, in the
    original batch order; built once per packed argument (`layout_of`)."""

    def __init__(self, batch_sizes, sorted_indices, source):
        self.batch_sizes, self.sorted_indices, self.source = batch_sizes, sorted_indices, source
        self.T, self.B = len(batch_sizes), int(batch_sizes[0])
        order = np.arange(self.B) if sorted_indices is None else sorted_indices
        lens_sorted = (batch_sizes[:, None] > np.arange(self.B)[None, :]).sum(axis=0)
        self.lengths = np.empty(self.B, np.int64)
        self.lengths[order] = lens_sorted
        # row-major nonzero walks t, then the sorted position j: exactly the packed order
        t, j = np.nonzero(np.arange(self.T)[:, None] < lens_sorted[None, :])
        self.rows = (t, order[j])

    def pad(self, data, padding_value=0):
        out = np.full((self.T, self.B) + data.shape[1:], padding_value, dtype=data.dtype)
        out[self.rows] = data
        return out

    def pack(self, padded):
        return padded[self.rows]

    def wrap(self, data):
        """`data` packed like the source: fastrnn's PackedSequence, or torch's for torch."""
        src = self.source
        if hasattr(src.data, "detach"):
            torch = __import__("torch")          # the source is a torch object: torch is there
            return type(src)(torch.from_numpy(np.ascontiguousarray(data)), src.batch_sizes,
                             src.sorted_indices, src.unsorted_indices)
        return PackedSequence(data, src.batch_sizes, src.sorted_indices, src.unsorted_indices)


def layout_of(name, sequence):
    """(Layout, data as an ndarray) of a packed `sequence`, its fields checked for consistency."""
    if not is_packed(sequence):
        raise TypeError(f"{name} must be a PackedSequence (fastrnn.utils.rnn or torch), "
                        f"got {type(sequence).__name__}")
    data = _numpy(sequence.data)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{name}.data must be a numpy.ndarray or a torch tensor, "
                        f"got {type(data).__name__}")
    if data.ndim < 1:
        raise ArgumentError(f"{name}.data must have shape (N, *), got {data.shape}")
    sizes = _int_vector(f"{name}.batch_sizes", sequence.batch_sizes)
    if sizes.size == 0 or sizes.min() < 1 or np.any(np.diff(sizes) > 0):
        raise ArgumentError(f"{name}.batch_sizes must be a non-empty, non-increasing sequence "
                            f"of positive counts, got {sizes.tolist()}")
    if sizes.sum() != data.shape[0]:
        raise ArgumentError(f"{name}.batch_sizes must add up to the {data.shape[0]} rows of "
                            f"{name}.data, got a sum of {sizes.sum()}")
    B = int(sizes[0])
    order = sequence.sorted_indices
    if order is not None:
        order = _int_vector(f"{name}.sorted_indices", order)
        if order.shape != (B,) or not np.array_equal(np.sort(order), np.arange(B)):
            raise ArgumentError(f"{name}.sorted_indices must be a permutation of "
                                f"0..{B - 1} (B = batch_sizes[0]), got {order.tolist()}")
    inverse = sequence.unsorted_indices
    if inverse is not None:
        inverse = _int_vector(f"{name}.unsorted_indices", inverse)
        expected = np.argsort(order) if order is not None else np.arange(B)
        if not np.array_equal(inverse, expected):
            raise ArgumentError(f"{name}.unsorted_indices must be the inverse permutation of "
                                f"sorted_indices, {expected.tolist()}, got {inverse.tolist()}")
    return Layout(sizes, order, sequence), data


def _check_lengths(lengths, B, T):
    arr = _int_vector("lengths", lengths)
    if arr.shape != (B,):
        raise ArgumentError(f"lengths must have one entry per sequence, {B} (the batch size), "
                            f"got {arr.shape[0]}")
    if arr.size and arr.min() <= 0:
        raise ArgumentError(f"lengths must be positive (a packed batch has no empty "
                            f"sequence), got {arr.min()}")
    if arr.size and arr.max() > T:
        raise ArgumentError(f"lengths must be at most {T} (the time axis of input), "
                            f"got {arr.max()}")
    return arr


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch: input (T, B, *) or (B, T, *) with `batch_first`; lengths (B,)
    positive ints. With `enforce_sorted` the lengths must be non-increasing (the batch is
    used as given: sorted_indices None); otherwise the batch is sorted, longest first."""
    if not isinstance(input, np.ndarray):
        raise TypeError(f"input must be a numpy.ndarray (T, B, *), got {type(input).__name__}")
    if input.ndim < 2:
        raise ArgumentError(f"input must have shape (T, B, *) or (B, T, *), got {input.shape}")
    batch_first, enforce_sorted = _flag("batch_first", batch_first), _flag("enforce_sorted",
                                                                           enforce_sorted)
    padded = input.swapaxes(0, 1) if batch_first else input
    T, B = padded.shape[:2]
    lengths = _check_lengths(lengths, B, T)
    if B == 0:
        raise ArgumentError("input must hold at least one sequence (batch size 0)")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise ArgumentError("lengths must be sorted in decreasing order when "
                                f"enforce_sorted=True, got {lengths.tolist()}; pass "
                                "enforce_sorted=False to sort them here")
        sorted_indices = unsorted_indices = None
    else:
        sorted_indices = np.argsort(-lengths, kind="stable")
        unsorted_indices = np.argsort(sorted_indices)
    batch_sizes = (lengths[None, :] > np.arange(lengths.max())[:, None]).sum(axis=1)
    layout = Layout(batch_sizes, sorted_indices, None)
    return PackedSequence(layout.pack(padded), batch_sizes, sorted_indices, unsorted_indices)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo `pack_padded_sequence`: -> (padded (T, B, *) or (B, T, *), lengths (B,) int64),
    both in the original batch order; T = total_length if given (at least the longest)."""
    layout, data = layout_of("sequence", sequence)
    batch_first = _flag("batch_first", batch_first)
    padded = layout.pad(data, padding_value)
    if total_length is not None:
        if isinstance(total_length, bool) or not isinstance(total_length, (int, np.integer)):
            raise TypeError(f"total_length must be None or an int, "
                            f"got {type(total_length).__name__}")
        if total_length < layout.T:
            raise ValueError(f"total_length must be at least the length of the longest "
                             f"sequence, {layout.T}, got {total_length}")
        extra = np.full((total_length - layout.T,) + padded.shape[1:], padding_value,
                        dtype=padded.dtype)
        padded = np.concatenate([padded, extra])
    if batch_first:
        padded = np.ascontiguousarray(padded.swapaxes(0, 1))
    return padded, layout.lengths.copy()


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack arrays (L_i, *) of one dtype and trailing shape into (T, B, *) ((B, T, *) with
    `batch_first`), T = max L_i, padded with `padding_value` on `padding_side`."""
    seqs = _sequence_list(sequences)
    batch_first = _flag("batch_first", batch_first)
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    T = max(len(s) for s in seqs)
    out = np.full((len(seqs), T) + seqs[0].shape[1:], padding_value, dtype=seqs[0].dtype)
    for b, s in enumerate(seqs):
        if padding_side == "right":
            out[b, :len(s)] = s
        else:
            out[b, T - len(s):] = s
    return out if batch_first else np.ascontiguousarray(out.swapaxes(0, 1))


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of arrays (L_i, *) of positive lengths (see pack_padded_sequence)."""
    seqs = _sequence_list(sequences)
    return pack_padded_sequence(pad_sequence(seqs), [len(s) for s in seqs],
                                enforce_sorted=enforce_sorted)


def _sequence_list(sequences):
    if isinstance(sequences, np.ndarray) or not hasattr(sequences, "__iter__"):
        raise TypeError(f"sequences must be a list of numpy arrays, "
                        f"got {type(sequences).__name__}")
    seqs = list(sequences)
    if not seqs:
        raise ArgumentError("sequences must hold at least one array, got an empty list")
    for i, s in enumerate(seqs):
        if not isinstance(s, np.ndarray):
            raise TypeError(f"sequences[{i}] must be a numpy.ndarray, got {type(s).__name__}")
        if s.ndim < 1:
            raise ArgumentError(f"sequences[{i}] must have shape (L, *), got a 0-d array")
        if s.shape[1:] != seqs[0].shape[1:]:
            raise ArgumentError(f"sequences[{i}] must have trailing shape {seqs[0].shape[1:]} "
                                f"(that of sequences[0]), got {s.shape[1:]}")
        if s.dtype != seqs[0].dtype:
            raise ArgumentTypeError(f"sequences[{i}] must have dtype {seqs[0].dtype} (that of "
                             f"sequences[0]), got {s.dtype}")
    return seqs
