"""Checkpoints the way ``safetensors`` loads them: ``safe_open``, ``load_file``, ``load``."""

from __future__ import annotations

import importlib
import os
from typing import Any, BinaryIO, Dict, List, Optional, Tuple, Union

import numpy as np

from . import _sandload
from .errors import TensorNotFound
from .errors import Unsupported

__all__ = ["safe_open", "load_file", "load"]

# safetensors dtype names -> numpy dtypes (explicitly little-endian: the file's byte order).
_NUMPY = {
    "BOOL": "?",
    "U8": "u1",
    "I8": "i1",
    "I16": "<i2",
    "U16": "<u2",
    "F16": "<f2",
    "I32": "<i4",
    "U32": "<u4",
    "F32": "<f4",
    "F64": "<f8",
    "I64": "<i8",
    "U64": "<u8",
    "C64": "<c8",
}
# ... and those numpy lacks, as ml_dtypes names them.
_ML_DTYPES = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
}
# ... and as torch names them.
_TORCH = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
}

# A path, the contents, or a binary file object (anything with `read`, as `open(p, "rb")`).
PathOrBytes = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]


def _unsupported(path: str, name: str, message: str, rule: str) -> Unsupported:
    return Unsupported(f"{path}: tensor {name!r}: {message}", rule=rule, path=path)


def numpy_dtype(dtype: str, *, path: str = "<checkpoint>", name: str = "?") -> np.dtype:
    """The numpy dtype of a safetensors dtype name; ml_dtypes for BF16 and the float8 kinds.

    Raises:
        Unsupported: for the packed sub-byte floats (F4, F6_*), or when the dtype needs
            ml_dtypes and it is not installed.
    """
    if dtype in _NUMPY:
        return np.dtype(_NUMPY[dtype])
    if dtype in _ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise _unsupported(
                path,
                name,
                f"is {dtype}, which numpy has no dtype for; install ml_dtypes "
                f"(pip install ml_dtypes) to get it as ml_dtypes.{_ML_DTYPES[dtype]}, "
                "or use framework='pt'",
                "needs_ml_dtypes",
            ) from None
        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[dtype]))
    raise _unsupported(
        path,
        name,
        f"is {dtype}, packed below one byte per element: no numpy dtype holds it",
        "numpy_dtype",
    )


def _as_array(data: np.ndarray, dtype: str, shape, path: str, name: str) -> np.ndarray:
    """``data`` (uint8) viewed as the tensor: no copy when its address is aligned for the dtype,
    an aligned copy otherwise (as writable as ``data``)."""
    dt = numpy_dtype(dtype, path=path, name=name)
    if data.size and data.ctypes.data % dt.alignment:
        writeable = data.flags.writeable
        data = data.copy()
        data.flags.writeable = writeable
    return data.view(dt).reshape(tuple(shape))


def _torch():
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ModuleNotFoundError(
            "framework='pt' needs PyTorch, which is not importable here: pip install torch "
            "(or use framework='np')",
            name="torch",
        ) from None
    return torch


def _as_torch(data: np.ndarray, dtype: str, shape, path: str, name: str):
    """A CPU torch tensor of the tensor's bytes: over ``data`` itself when it is writable (a
    private copy-on-write mapping: no copy until torch writes a page), else one copy into memory
    torch may write (a tensor over a read-only mapping would crash the process on its first
    in-place write)."""
    torch = _torch()
    tdtype = getattr(torch, _TORCH.get(dtype, "?"), None)
    if tdtype is None:
        raise _unsupported(path, name, f"is {dtype}, which this torch ({torch.__version__}) has no dtype for", "torch_dtype")
    if data.size == 0:
        return torch.empty(tuple(shape), dtype=tdtype)
    buffer = data if data.flags.writeable else bytearray(data)
    return torch.frombuffer(buffer, dtype=tdtype).reshape(tuple(shape))


# The frameworks safetensors' `safe_open` accepts beyond numpy and torch: the module that converts,
# the pip package that provides it, and the function that makes its array from a numpy one (a
# copy into the framework's own memory, as safetensors' converters make).
_OTHER_FRAMEWORKS = {
    "flax": ("jax.numpy", "jax", "asarray"),
    "tf": ("tensorflow", "tensorflow", "convert_to_tensor"),
    "mlx": ("mlx.core", "mlx", "array"),
    "paddle": ("paddle", "paddlepaddle", "to_tensor"),
}

_FRAMEWORKS = {
    "np": "np", "numpy": "np", "pt": "pt", "torch": "pt", "pytorch": "pt",
    "flax": "flax", "jax": "flax", "tf": "tf", "tensorflow": "tf", "mlx": "mlx", "paddle": "paddle",
}


def _framework_module(framework: str):
    """The module that converts to `framework`, or ModuleNotFoundError naming its pip package."""
    module, package, _ = _OTHER_FRAMEWORKS[framework]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModuleNotFoundError(
            f"framework={framework!r} needs {package}, which is not importable here: pip install {package} "
            "(or use framework='np')",
            name=module.split(".")[0],
        ) from None


def _as_framework(framework: str, data: np.ndarray, dtype: str, shape, path: str, name: str):
    """The tensor as `framework`'s array, converted from the numpy view."""
    array = _as_array(data, dtype, shape, path, name)
    return getattr(_framework_module(framework), _OTHER_FRAMEWORKS[framework][2])(array)


class _Slice:
    """A tensor not yet read, as ``safe_open(...).get_slice(name)`` returns it: index it to read
    the part you need (ints and slices per dimension, ``...``)."""

    def __init__(self, file: "safe_open", name: str) -> None:
        self._file = file
        self._name = name
        self._dtype, shape = file._info(name)
        self._shape = list(shape)

    def get_shape(self) -> List[int]:
        return list(self._shape)

    def get_dtype(self) -> str:
        return self._dtype

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __getitem__(self, key) -> Any:
        if not isinstance(key, tuple):
            key = (key,)
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (len(self._shape) - len(key) + 1) + key[i + 1 :]
        if len(key) > len(self._shape):
            raise IndexError(f"too many indices for a tensor of {len(self._shape)} dimensions: {len(key)}")
        # The box that holds the selection is read by sandload (only those bytes are touched);
        # steps and dropped dimensions are then applied by numpy to that box.
        ranges: List[Tuple[int, int]] = []
        rest: List[Any] = []
        for dim, k in zip(self._shape, key):
            if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
                j = int(k) + dim if k < 0 else int(k)
                if not 0 <= j < dim:
                    raise IndexError(f"index {int(k)} is out of bounds for a dimension of size {dim}")
                ranges.append((j, j + 1))
                rest.append(0)
            elif isinstance(k, slice):
                start, stop, step = k.indices(dim)
                if step > 0:
                    stop = max(start, stop)
                    ranges.append((start, stop))
                    rest.append(slice(None, None, step))
                else:
                    ranges.append((0, dim))
                    rest.append(k)
            else:
                raise TypeError(f"tensor slices take ints, slices and '...', not {type(k).__name__}")
        if self._file._framework == "pt" and any(isinstance(r, slice) and (r.step or 1) < 0 for r in rest):
            raise ValueError("negative steps are not supported with framework='pt' (torch tensors have none)")
        data, shape = self._file._checkpoint._slice(self._name, ranges)
        if not self._file._readonly:
            data = data.copy()  # a slice is a new, writable array, as safetensors gives it
        box = self._file._convert(data, self._dtype, shape, self._name)
        return box[tuple(rest)] if rest else box


class safe_open:
    """Opens a safetensors checkpoint for reading, as ``safetensors.safe_open`` does, with every
    byte of the header parsed inside the sandbox first::

        with sandload.safe_open("model.safetensors", framework="np") as f:
            for name in f.keys():
                w = f.get_tensor(name)          # writable numpy array, copied only where written
            part = f.get_slice("emb")[:1000]    # reads only the rows asked for

    ``filename`` is a path (``str``/``os.PathLike``), the checkpoint's bytes, a directory holding
    ``model.safetensors.index.json``, or an index file: a sharded checkpoint opens as one.

    Arrays are writable and independent, as safetensors' are, without a copy: each
    ``get_tensor`` maps its tensor's bytes of the checked file privately (copy-on-write, with
    ``Sandbox(data_access="map")``, the default), so pages are read from the page cache when
    touched and copied only when written; writes never reach the file or another array. With
    ``readonly=True`` arrays are read-only views of one shared mapping instead (nothing is ever
    copied, and in-place writes raise). A tensor whose offset is not aligned for its dtype, bytes
    passed in memory, ``data_access="read"`` and sharded checkpoints give copies where writable
    arrays are asked for. BF16 and float8 tensors need ``ml_dtypes``. ``framework="pt"`` gives
    torch tensors over the same writable memory (no copy; with ``readonly=True``, one copy each
    into memory torch may write); ``"flax"``/``"jax"``, ``"tf"``, ``"mlx"`` and
    ``"paddle"`` give that framework's arrays, converted from the numpy view (one copy each), and
    a ``ModuleNotFoundError`` naming the pip package when it is not installed.

    Raises:
        sandload.Error: the subclass for the reason the file was not accepted (a pickle or any
            other format is ``RefusedFormat``, never loaded).
    """

    def __init__(
        self, filename: PathOrBytes, framework: str = "np", device: str = "cpu", *, readonly: bool = False, sandbox=None
    ) -> None:
        try:
            self._framework = _FRAMEWORKS[framework]
        except (KeyError, TypeError):
            raise ValueError(
                f"framework {framework!r} is not supported: use 'np' (numpy), 'pt' (PyTorch), 'flax'/'jax', "
                "'tf', 'mlx' or 'paddle'"
            ) from None
        if self._framework == "pt":
            _torch()
        elif self._framework in _OTHER_FRAMEWORKS:
            _framework_module(self._framework)
        if device != "cpu":
            raise ValueError(f"device {device!r} is not supported: sandload loads to 'cpu'; move the tensors after loading")
        from ._sandbox import default_sandbox

        sandbox = sandbox if sandbox is not None else default_sandbox()
        self._readonly = bool(readonly)
        self._checkpoint = sandbox._open_checkpoint(filename)
        self._path = os.fsdecode(self._checkpoint.file)

    @classmethod
    def _from_checkpoint(cls, checkpoint, framework: str = "np") -> "safe_open":
        self = cls.__new__(cls)
        self._framework = _FRAMEWORKS[framework]
        self._readonly = False
        self._checkpoint = checkpoint
        self._path = os.fsdecode(checkpoint.file)
        return self

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def _convert(self, data: np.ndarray, dtype: str, shape, name: str):
        if self._framework == "pt":
            return _as_torch(data, dtype, shape, self._path, name)
        if self._framework in _OTHER_FRAMEWORKS:
            return _as_framework(self._framework, data, dtype, shape, self._path, name)
        return _as_array(data, dtype, shape, self._path, name)

    def keys(self) -> List[str]:
        """The tensor names, sorted."""
        return self._checkpoint.keys()

    def offset_keys(self) -> List[str]:
        """The tensor names in the order of their data in the file."""
        return self._checkpoint._offset_keys()

    def metadata(self) -> Optional[Dict[str, str]]:
        """The header's ``__metadata__`` (for a sharded checkpoint, the index's ``metadata``)."""
        return self._checkpoint.metadata()

    def _info(self, name: str):
        """(dtype, shape) of tensor ``name``; :class:`sandload.TensorNotFound` (a
        ``SafetensorError`` and a ``KeyError``) with safetensors' message if there is none."""
        try:
            return self._checkpoint._info(name)
        except KeyError:
            raise TensorNotFound(f"File does not contain tensor {name}") from None

    def get_tensor(self, name: str) -> Any:
        """The whole tensor ``name``. Raises :class:`sandload.TensorNotFound` (a
        ``SafetensorError``, as safetensors raises, and a ``KeyError``) if there is none."""
        dtype, shape = self._info(name)
        data = self._checkpoint._bytes(name) if self._readonly else self._checkpoint._writable(name)
        return self._convert(data, dtype, shape, name)

    def get_slice(self, name: str) -> _Slice:
        """The tensor ``name``, read only when indexed."""
        return _Slice(self, name)

    def receipts(self) -> List[Dict[str, Any]]:
        """What the sandbox did to open the file (one receipt per file read)."""
        return list(self._checkpoint._receipts())

    def __len__(self) -> int:
        return len(self._checkpoint)


def load_file(filename: PathOrBytes, device: str = "cpu", *, readonly: bool = False, sandbox=None) -> Dict[str, np.ndarray]:
    """Every tensor of a checkpoint as numpy arrays, as ``safetensors.numpy.load_file`` gives
    them: writable, each mapped copy-on-write from the checked file (``readonly=True``: read-only
    views of one shared mapping; see :class:`safe_open`)."""
    with safe_open(filename, framework="np", device=device, readonly=readonly, sandbox=sandbox) as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def load(data: Union[bytes, bytearray, memoryview], *, readonly: bool = False, sandbox=None) -> Dict[str, np.ndarray]:
    """``load_file`` for a checkpoint's bytes, as ``safetensors.numpy.load`` reads them (writable
    copies; ``readonly=True``: read-only views of the bytes)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load() takes the checkpoint's bytes; for a path use load_file(), got {type(data).__name__}")
    return load_file(data, readonly=readonly, sandbox=sandbox)
