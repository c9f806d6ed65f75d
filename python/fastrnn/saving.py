"""`fastrnn.save` / `fastrnn.load`: state dicts to and from .npz files, no pickle of code."""
import os
import zipfile

import numpy as np

__all__ = ["save", "load"]


def save(obj, path):
    """Write `obj` to `path` (a file name or a binary file object) as an .npz archive.

    `obj` is a state dict (a mapping name -> array-like; torch tensors are read as NumPy
    arrays) or anything with `state_dict()` (a layer, cell or block). Only numeric and bool
    arrays are written; nothing is pickled, and `path` is used as given (no suffix added).
    """
    state = obj.state_dict() if callable(getattr(obj, "state_dict", None)) else obj
    if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
        raise TypeError("obj must be a state dict (a mapping name -> array) or have "
                        f"state_dict(), got {type(obj).__name__}")
    arrays = {}
    for name in state.keys():
        if not isinstance(name, str) or not name:
            raise TypeError(f"state dict keys must be non-empty str, got {name!r}")
        value = state[name]
        if hasattr(value, "detach"):                 # a torch tensor: read, never import torch
            value = value.detach().cpu().numpy()
        a = np.asarray(value)
        if a.dtype.kind not in "biufc":
            raise TypeError(f"obj[{name!r}] must hold numbers or bools, got dtype {a.dtype}")
        arrays[name] = a
    if not isinstance(path, (str, os.PathLike)) and not hasattr(path, "write"):
        raise TypeError(f"path must be a file name or a binary file object, "
                        f"got {type(path).__name__}")
    # zip entries written one by one: np.savez(**arrays) would clash on a key named "file"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)


def load(path):
    """Read a state dict written by `save` (or `np.savez`): a dict name -> ndarray, in the
    saved order. Object arrays are refused (allow_pickle=False), so loading runs no code."""
    z = np.load(path, allow_pickle=False)
    if not hasattr(z, "files"):
        raise ValueError(f"path must be an .npz archive, got a single array in {path!r}")
    with z:
        return {name: z[name] for name in z.files}
