"""Reading a legacy (pre-zip) PyTorch ``.pth`` state dict without torch: an allow-list unpickler that runs
no pickle code, and the raw tensor storages read as numpy arrays."""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class RefusedGlobalError(pickle.UnpicklingError, ValueError):
    """The pickle asked for a global outside the allow-list (code it would have run, or data we don't know)."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only remembers the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _StorageRef:
    """A storage named by a persistent id; its bytes follow the pickles in the file."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorRef:
    """What ``torch._utils._rebuild_tensor_v2`` was asked to build: a strided view of a storage."""

    def __init__(self, storage: _StorageRef, offset: int, shape: tuple, stride: tuple):
        if not isinstance(storage, _StorageRef):
            raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
        self.storage, self.offset, self.shape, self.stride = storage, int(offset), tuple(shape), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    return _TensorRef(storage, offset, size, stride)


class SafeTorchUnpickler(pickle.Unpickler):
    """Unpickles a legacy PyTorch state dict, refusing every global outside a small allow-list.

    Allowed: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
    ``torch.*Storage`` types; anything else raises :class:`RefusedGlobalError` (a
    :class:`pickle.UnpicklingError`) naming it.
    Tensors come back as :class:`_TensorRef` (storage key, offset, shape, stride), not data.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise RefusedGlobalError(f"refusing to load global {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, *view = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        if view and view[0] is not None:
            raise pickle.UnpicklingError("storage views (torch < 0.4 files) are not supported")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _read_storages(f: BinaryIO, keys: list, refs: dict[str, _StorageRef], path: Path) -> dict[str, np.ndarray]:
    """Each storage's elements as a flat array, read in the order of ``keys``."""
    storages = {}
    for key in keys:
        ref = refs.get(key)
        header = f.read(8)
        if ref is None or len(header) < 8:
            raise ValueError(f"{path}: storage {key!r} is missing or the file is truncated")
        (numel,) = struct.unpack("<q", header)
        if numel != ref.numel or numel < 0:
            raise ValueError(f"{path}: storage {key!r} holds {numel} elements, the pickle said {ref.numel}")
        data = f.read(numel * ref.dtype.itemsize)
        if len(data) != numel * ref.dtype.itemsize:
            raise ValueError(f"{path}: the file is truncated inside storage {key!r}")
        storages[key] = np.frombuffer(data, dtype=ref.dtype)
    return storages


def _tensor_array(tensor: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    """The tensor's own C-contiguous copy (its storage may be laid out in another order)."""
    flat = storages[tensor.storage.key]
    itemsize = flat.dtype.itemsize
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride) if n > 0)
    if tensor.offset < 0 or min(tensor.stride, default=0) < 0 or (all(tensor.shape) and last >= flat.size):
        raise ValueError(f"tensor view {tensor.shape}/{tensor.stride} runs past its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset:], shape=tensor.shape, strides=[s * itemsize for s in tensor.stride], writeable=False
    )
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")


def _load_pickle(f: BinaryIO, path: Path) -> Any:
    """The next pickle in ``f``; refused globals propagate, any other failure is a ``ValueError``."""
    try:
        return SafeTorchUnpickler(f).load()
    except RefusedGlobalError as error:
        raise RefusedGlobalError(f"{path}: {error}; replace the file (a weights file holds tensors only)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{path} is not a legacy PyTorch state dict file ({error})") from None


def read_torch_state_dict(path: Union[str, Path]) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format PyTorch ``.pth`` state dict, by name, as numpy arrays.

    Float tensors come back ``float32`` (``float16``/``float64`` as stored), counters such as
    ``num_batches_tracked`` as ``int64`` scalars. Raises ``ValueError`` naming the file when it is
    not a legacy (pre-zip, ``_use_new_zipfile_serialization=False``) little-endian state dict;
    raises :class:`RefusedGlobalError` (also a ``ValueError``) naming the file when a pickle asks for
    anything outside the allow-list.
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            raise ValueError(f"{path} is a zip-format PyTorch file; only the legacy format can be read without torch")
        f.seek(0)
        magic, protocol, sys_info = (_load_pickle(f, path) for _ in range(3))
        if magic != _TORCH_MAGIC or protocol != _TORCH_PROTOCOL:
            raise ValueError(f"{path} is not a legacy PyTorch file (magic {magic!r}, protocol {protocol!r})")
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian", False)):
            raise ValueError(f"{path}: only little-endian PyTorch files are supported")
        state = _load_pickle(f, path)
        keys = _load_pickle(f, path)
        if not isinstance(state, dict) or not all(isinstance(t, _TensorRef) for t in state.values()):
            raise ValueError(f"{path} does not hold a state dict of tensors")
        if not isinstance(keys, list):
            raise ValueError(f"{path}: expected the list of storage keys after the state dict")
        refs = {t.storage.key: t.storage for t in state.values()}
        storages = _read_storages(f, list(keys), refs, path)
    return {name: _tensor_array(tensor, storages) for name, tensor in state.items()}
