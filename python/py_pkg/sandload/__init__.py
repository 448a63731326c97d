"""sandload: open untrusted checkpoints, camera RAW files and images safely.

Every parser of the file's bytes runs as WebAssembly in a wasmtime sandbox with a memory cap, a
deadline and no file system, network or environment; the host re-checks everything it returns.
Only safetensors are accepted as checkpoints, and nothing is ever unpickled.

The APIs mirror the packages ML code already uses, so switching is a changed import::

    import sandload                                  # instead of safetensors / rawpy
    with sandload.safe_open("model.safetensors", framework="np") as f:
        w = f.get_tensor("weight")
    tensors = sandload.load_file("model.safetensors")
    with sandload.imread("IMG_0001.dng") as raw:
        rgb = raw.postprocess()
    pixels = sandload.decode_image("photo.jpg")
    report = sandload.inspect("download.bin")       # the CLI's JSON record, as a dict

A file that is not accepted raises a subclass of :class:`sandload.Error` naming the file, the
rule it broke and the limit or offset involved.
"""

from . import errors
from ._raw import ImageSizes, NoThumbnailError, RawPy, RawType, Thumbnail, ThumbFormat, imread
from ._sandbox import Image, Sandbox, decode_image, default_sandbox, inspect, open
from ._sandload import ABI_VERSION
from ._tensors import load, load_file, numpy_dtype, safe_open
from .errors import (
    Error,
    GuestOutOfMemory,
    GuestTimeout,
    GuestTrap,
    InternalError,
    IoError,
    FileNotFound,
    IsADirectory,
    NotADirectory,
    PermissionDenied,
    SafetensorError,
    TensorNotFound,
    LimitExceeded,
    Malformed,
    RefusedFormat,
    Unsupported,
)

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "Error",
    "GuestOutOfMemory",
    "GuestTimeout",
    "GuestTrap",
    "Image",
    "ImageSizes",
    "InternalError",
    "IoError",
    "FileNotFound",
    "IsADirectory",
    "NotADirectory",
    "PermissionDenied",
    "SafetensorError",
    "TensorNotFound",
    "LimitExceeded",
    "Malformed",
    "NoThumbnailError",
    "RawPy",
    "RawType",
    "RefusedFormat",
    "Sandbox",
    "ThumbFormat",
    "Thumbnail",
    "Unsupported",
    "decode_image",
    "default_sandbox",
    "errors",
    "imread",
    "inspect",
    "load",
    "load_file",
    "numpy_dtype",
    "safe_open",
]
# `sandload.open` is public but not exported by `from sandload import *`, which would shadow the
# builtin `open`.
