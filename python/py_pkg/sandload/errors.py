"""The exceptions sandload raises: one class per ``Error::kind`` of the Rust library.

Every exception carries the facts of the refusal, the same flat record ``sandload inspect
--json`` prints under ``"error"``::

    try:
        sandload.load_file("model.bin")
    except sandload.RefusedFormat as e:
        print(e.kind, e.rule, e.path, e.format)   # refused_format None model.bin pickle
    except sandload.LimitExceeded as e:
        print(e.limit, e.limit_value, e.value)
    except sandload.Error as e:                  # every other kind
        print(e.kind, e)
"""

from __future__ import annotations

import errno
import os

from typing import Any, Dict, Optional, Type

__all__ = [
    "Error",
    "RefusedFormat",
    "LimitExceeded",
    "Malformed",
    "Unsupported",
    "GuestTimeout",
    "GuestOutOfMemory",
    "GuestTrap",
    "IoError",
    "FileNotFound",
    "IsADirectory",
    "NotADirectory",
    "PermissionDenied",
    "InternalError",
    "SafetensorError",
    "TensorNotFound",
]


class Error(Exception):
    """Base class: sandload did not accept the file, or could not read it.

    Attributes:
        kind: the error kind (``"refused_format"``, ``"limit_exceeded"``, ``"malformed"``, ...).
        rule: the rule the file broke (e.g. ``"pickle_polyglot"``, ``"duplicate_key"``), or None.
        path: the file, as given (or the name given to bytes).
        message: the full message: what the file is, why it was refused, how to convert it.
        format: the format recognised from content (``"pickle"``, ``"pytorch_zip"``, ...), or None.
        limit, limit_value, value: for a limit, its name, the value in force and the file's value.
        offset: the byte offset of the problem, when known.
        guest: the guest that ran, for guest failures.
        record: all of the above as a dict (the CLI's JSON error record).
    """

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        kind: Optional[str] = None,
        rule: Optional[str] = None,
        path: Optional[str] = None,
        record: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind or type(self).kind
        self.rule = rule
        self.path = path
        self.record: Dict[str, Any] = dict(record or {})
        self.record.setdefault("kind", self.kind)
        self.record.setdefault("rule", rule)
        self.record.setdefault("file", path)
        self.record.setdefault("message", message)
        self.format: Optional[str] = self.record.get("format")
        self.limit: Optional[str] = self.record.get("limit")
        self.limit_value: Optional[int] = self.record.get("limit_value")
        self.value: Optional[int] = self.record.get("value")
        self.offset: Optional[int] = self.record.get("offset")
        self.guest: Optional[str] = self.record.get("guest")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable, so errors cross process boundaries (Ray, multiprocessing)
        return (_rebuild, (type(self), self.message, self.kind, self.rule, self.path, self.record))


def _rebuild(cls, message, kind, rule, path, record):
    return cls(message, kind=kind, rule=rule, path=path, record=record)


class RefusedFormat(Error):
    """The file is a format sandload does not accept here (a pickle, a PyTorch file, a zip, an
    HDF5 file, a polyglot...), recognised from its content, never its name. ``format`` names it."""

    kind = "refused_format"


class LimitExceeded(Error):
    """A configured limit was exceeded (``limit``, ``limit_value``, ``value``), before the
    allocation it protects."""

    kind = "limit_exceeded"


class Malformed(Error):
    """The file claims to be a supported format but breaks its rules (``rule``, ``offset``)."""

    kind = "malformed"


class Unsupported(Error):
    """A valid file, or a request, that sandload does not handle (e.g. a dtype numpy lacks)."""

    kind = "unsupported"


class GuestTimeout(Error):
    """The parser ran past the sandbox's time limit and was stopped."""

    kind = "guest_timeout"


class GuestOutOfMemory(Error):
    """The parser needed more memory than the sandbox's memory limit."""

    kind = "guest_out_of_memory"


class GuestTrap(Error):
    """The parser crashed inside the sandbox (the host process is unaffected)."""

    kind = "guest_trap"


class IoError(Error, OSError):
    """The file could not be read (missing, not a regular file, a path escaping its directory).
    Also an ``OSError``."""

    kind = "io"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        # What OSError(errno, strerror, filename) carries, with the whole path as given.
        code = self.record.get("errno")
        self.errno = code
        self.strerror = os.strerror(code) if code is not None else None
        self.filename = self.path


class FileNotFound(IoError, FileNotFoundError):
    """The file does not exist (also a ``FileNotFoundError``, ``errno`` ENOENT)."""


class IsADirectory(IoError, IsADirectoryError):
    """The path is a directory (also an ``IsADirectoryError``)."""


class NotADirectory(IoError, NotADirectoryError):
    """A component of the path is not a directory (also a ``NotADirectoryError``)."""


class PermissionDenied(IoError, PermissionError):
    """The file may not be read (also a ``PermissionError``)."""


# The builtin OSError subclass for an errno, as `OSError(errno, ...)` itself picks one.
_BY_ERRNO = {
    errno.ENOENT: FileNotFound,
    errno.EISDIR: IsADirectory,
    errno.ENOTDIR: NotADirectory,
    errno.EACCES: PermissionDenied,
    errno.EPERM: PermissionDenied,
}


class SafetensorError(Exception):
    """What ``safetensors`` raises (``safetensors.SafetensorError``) when a valid checkpoint
    cannot answer a request, such as a tensor it does not hold: code that catches safetensors'
    class catches this one after ``from sandload import SafetensorError``."""


class TensorNotFound(SafetensorError, KeyError):
    """No tensor of that name (also a ``KeyError``, which sandload raised before)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InternalError(Error):
    """A bug in sandload itself; please report it."""

    kind = "internal"


_BY_KIND: Dict[str, Type[Error]] = {
    cls.kind: cls
    for cls in (
        RefusedFormat,
        LimitExceeded,
        Malformed,
        Unsupported,
        GuestTimeout,
        GuestOutOfMemory,
        GuestTrap,
        IoError,
        InternalError,
    )
}


# The Rust API names the library's messages use, and what a Python user calls instead.
_PYTHON_NAMES = {
    "`Sandbox::open_safetensors`": "`sandload.safe_open` (or `sandload.load_file`)",
    "`Sandbox::open_sharded`": "`sandload.safe_open` on the index",
    "`Sandbox::decode_raw`": "`sandload.imread`",
    "`Sandbox::raw_preview`": "`RawPy.extract_thumb`",
    "`Sandbox::decode_image`": "`sandload.decode_image`",
    "`Sandbox::open`": "`sandload.open`",
}


def _pythonic(message: str) -> str:
    """A library message with its Rust method names replaced by the Python package's."""
    for rust, python in _PYTHON_NAMES.items():
        message = message.replace(rust, python)
    return message


def _pythonic_record(record: dict) -> dict:
    if isinstance(record.get("message"), str):
        record["message"] = _pythonic(record["message"])
    return record


def _from_record(record: dict) -> Error:
    """The exception for an error's record, a dict built from the typed error (the extension
    module's one place where errors cross into Python)."""
    record = _pythonic_record(record)
    cls: Type[Error] = _BY_KIND.get(str(record.get("kind")), Error)
    code = record.get("errno")
    if cls is IoError and code in _BY_ERRNO:
        cls = _BY_ERRNO[code]
    exception = cls(
        record.get("message") or "",
        kind=record.get("kind"),
        rule=record.get("rule"),
        path=record.get("file"),
        record=record,
    )
    return exception
