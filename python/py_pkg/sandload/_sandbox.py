"""The sandbox object, the lazily built default one, images and ``inspect``."""

from __future__ import annotations

import threading
from typing import Any, Dict, Literal, Optional, Tuple, Union, overload

import numpy as np

from . import _sandload
from ._raw import RawPy
from ._tensors import PathOrBytes, load_file, safe_open
from .errors import _pythonic_record

__all__ = ["Sandbox", "Image", "default_sandbox", "decode_image", "inspect", "open"]


class Sandbox(_sandload.Sandbox):
    """The compiled parsers, the limits and the pool of guest instances. Build one per process
    (or per worker) and share it: every method is safe to call from many threads at once, and
    releases the GIL while a guest runs.

    Every limit defaults to sandload's safe default (``Sandbox().limits`` lists them)::

        sb = sandload.Sandbox(max_file_bytes=2 << 30, guest_memory_bytes=1 << 30, guest_time=10.0)
        with sb.safe_open("model.safetensors") as f: ...

    Args:
        max_file_bytes: largest file opened at all.
        max_header_bytes: largest safetensors header (and sharded index file).
        max_tensors: most tensors in one checkpoint.
        max_pixels: most pixels in a decoded RAW frame or image (checked before allocating).
        max_shards: most shard files of a sharded checkpoint.
        guest_memory_bytes: memory a parser may use.
        guest_time: seconds a parser may run.
        data_access: ``"map"`` (memory-map files; tensors share the file's pages) or ``"read"``
            (read each file once into memory: for files others may truncate or rewrite, where a
            mapping could fault).
        max_concurrent: guest calls that may run at once (others wait).
        cache: where compiled guests are kept between processes: ``True`` (the default) for the
            per-user cache (``$SANDLOAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/sandload``, else
            ``~/.cache/sandload``; ``SANDLOAD_CACHE_DIR=off`` disables it), ``False`` for none,
            or a directory. Entries are native code: the directory must be owned by you and not
            writable by others, or it is not used. Without a cache every new process (every Ray
            worker) compiles the RAW decoder again, ~8 s on 2 cores.
    """

    def safe_open(self, filename: PathOrBytes, framework: str = "np", device: str = "cpu", *, readonly: bool = False) -> safe_open:
        """:func:`sandload.safe_open` with this sandbox."""
        return safe_open(filename, framework=framework, device=device, readonly=readonly, sandbox=self)

    def load_file(self, filename: PathOrBytes, device: str = "cpu", *, readonly: bool = False) -> Dict[str, np.ndarray]:
        """:func:`sandload.load_file` with this sandbox."""
        return load_file(filename, device=device, readonly=readonly, sandbox=self)

    def imread(self, source: PathOrBytes) -> RawPy:
        """:func:`sandload.imread` with this sandbox."""
        return RawPy(self._decode_raw(source))

    @overload
    def decode_image(self, source: PathOrBytes, *, with_info: Literal[False] = ...) -> np.ndarray: ...
    @overload
    def decode_image(self, source: PathOrBytes, *, with_info: Literal[True]) -> Tuple[np.ndarray, Dict[str, Any]]: ...

    def decode_image(self, source: PathOrBytes, *, with_info: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, Dict[str, Any]]]:
        """:func:`sandload.decode_image` with this sandbox."""
        pixels, fmt, orientation, icc, receipt = self._decode_image(source)
        if not with_info:
            return pixels
        return pixels, {"format": fmt, "orientation": orientation, "icc_profile": icc, "receipt": receipt}

    def inspect(self, source: PathOrBytes, *, digest: bool = False, name: Optional[str] = None) -> Dict[str, Any]:
        """:func:`sandload.inspect` with this sandbox."""
        return _pythonic_report(self._inspect(source, digest, name))

    def open(self, source: PathOrBytes, *, name: Optional[str] = None) -> Opened:
        """:func:`sandload.open` with this sandbox."""
        return _wrap(*self._open(source, name))

    def open_with_report(self, source: PathOrBytes, *, digest: bool = False, name: Optional[str] = None) -> Tuple[Dict[str, Any], Any]:
        """``(inspect(source), open(source))`` from one run of the guests: the report (never
        raises for a bad file) and the opened file, or None when it was rejected (and for a
        sharded checkpoint, which is reported but not kept open)."""
        record, kind, opened = self._open_report(source, digest, name)
        return _pythonic_report(record), (None if kind is None else _wrap(kind, opened))


def _pythonic_report(report: Dict[str, Any]) -> Dict[str, Any]:
    """An inspect record whose messages name the Python API, not the Rust one."""
    if isinstance(report.get("error"), dict):
        _pythonic_record(report["error"])
    for shard in report.get("shards") or []:
        if isinstance(shard, dict) and isinstance(shard.get("error"), dict):
            _pythonic_record(shard["error"])
    return report


def _wrap(kind: str, opened: Any) -> Opened:
    if kind == "checkpoint":
        return safe_open._from_checkpoint(opened)
    if kind == "raw":
        return RawPy(opened)
    pixels, fmt, orientation, icc, receipt = opened
    return Image(pixels, fmt, orientation, icc, receipt)


class Image:
    """A decoded image, as :func:`sandload.open` returns one."""

    def __init__(self, pixels: np.ndarray, format: str, orientation: int, icc_profile: Optional[bytes], receipt: Dict[str, Any]) -> None:
        #: ``H x W`` or ``H x W x C`` pixels in the file's sample type, not rotated.
        self.pixels = pixels
        #: The format the decoder recognised (``"png"``, ``"jpeg"``, ...).
        self.format = format
        #: EXIF orientation, 1-8.
        self.orientation = orientation
        #: The embedded ICC profile, if any.
        self.icc_profile = icc_profile
        #: What the sandbox did.
        self.receipt = receipt

    def __repr__(self) -> str:
        return f"Image(format={self.format!r}, shape={self.pixels.shape}, dtype={self.pixels.dtype})"


#: What :func:`sandload.open` returns: a checkpoint, a camera RAW frame or an image.
Opened = Union[safe_open, RawPy, "Image"]

_default: Optional[Sandbox] = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The sandbox the module-level functions use: built on first use, with default limits."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Sandbox()
    return _default


@overload
def decode_image(source: PathOrBytes, *, with_info: Literal[False] = ..., sandbox: Optional[Sandbox] = None) -> np.ndarray: ...
@overload
def decode_image(source: PathOrBytes, *, with_info: Literal[True], sandbox: Optional[Sandbox] = None) -> Tuple[np.ndarray, Dict[str, Any]]: ...


def decode_image(source: PathOrBytes, *, with_info: bool = False, sandbox: Optional[Sandbox] = None) -> Union[np.ndarray, Tuple[np.ndarray, Dict[str, Any]]]:
    """Decodes a PNG, JPEG, TIFF or WebP image in the sandbox.

    Returns the pixels as a numpy array shaped as Pillow's ``np.asarray(Image.open(path))``:
    ``H x W`` for grey and ``H x W x C`` otherwise (C = 2, 3, 4 for grey+alpha, RGB, RGBA and
    CMYK, 5 for CMYK+alpha), not rotated by the EXIF orientation. The dtype is Pillow's wherever
    Pillow keeps every value: ``bool`` for bilevel images, ``uint8`` (2- and 4-bit grey scaled to
    0-255 as Pillow scales them), ``uint16`` grey, ``int32`` for signed 16- and 32-bit grey,
    ``float32``. Where Pillow would lose values, the file's own type is kept instead: 16-bit RGB(A)
    stays ``uint16`` (Pillow keeps the top byte), unsigned 32-bit stays ``uint32`` (Pillow wraps it
    into ``int32``), signed 8-bit stays ``int8``, and ``float16``, ``float64`` and 64-bit integers,
    which Pillow does not open, are returned as such. 10- to 14-bit grey comes back as ``uint16``
    values as stored. A palette PNG or TIFF comes back as RGB(A) (Pillow gives the indices).
    With ``with_info=True``, returns ``(pixels, info)`` where info holds
    ``format``, ``orientation`` (1-8), ``icc_profile`` (bytes or None) and ``receipt``.
    """
    sb = sandbox or default_sandbox()
    return sb.decode_image(source, with_info=True) if with_info else sb.decode_image(source)


def inspect(source: PathOrBytes, *, digest: bool = False, name: Optional[str] = None, sandbox: Optional[Sandbox] = None) -> Dict[str, Any]:
    """What ``sandload inspect --json`` reports for one file, as a dict with the same schema
    (``schema/inspect.schema.json``): verdict, format, the error (kind, rule, limit, offset...)
    for a refused file, tensors/dimensions for an accepted one, the receipt; with
    ``digest=True`` also SHA-256 digests. Never raises for a bad file: the verdict says it.
    ``name`` names bytes in the report."""
    return (sandbox or default_sandbox()).inspect(source, digest=digest, name=name)


def open(source: PathOrBytes, *, name: Optional[str] = None, sandbox: Optional[Sandbox] = None) -> Opened:
    """Opens whatever the content says the file is (never the name): a checkpoint (a
    :class:`safe_open`), a camera RAW file (a :class:`RawPy`) or an image (an :class:`Image`).

    Raises:
        sandload.Error: the subclass for why the file was not accepted.
    """
    return (sandbox or default_sandbox()).open(source, name=name)
