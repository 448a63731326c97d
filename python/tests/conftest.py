"""Fixtures: one sandbox for the session, and writers of the files the tests break rules with.

Every file is generated here: pickles by CPython's own `pickle`, safetensors files by the real
`safetensors` package, PyTorch layouts with `zipfile`/`tarfile`, DNGs, PNGs and bombs by
sandload's sample writers (the same code the Rust suite uses).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import sandload
import sandload._sandload

if not hasattr(sandload._sandload, "samples"):
    raise pytest.UsageError(
        "this sandload extension was built without the `test-samples` feature, which the tests' file "
        "generators need: run scripts/python-tests (MATURIN_PEP517_ARGS='--features test-samples')"
    )


@pytest.fixture(scope="session")
def sandbox() -> sandload.Sandbox:
    return sandload.Sandbox()


class Evil:
    """Unpickling this would create the file named `marker`: proof that nothing was unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(marker: Path, protocol: int) -> bytes:
    return pickle.dumps({"weight": Evil(str(marker))}, protocol=protocol)


def torch_zip(payload: bytes) -> bytes:
    """The layout `torch.save` writes (zip, `archive/data.pkl` + storages), stored."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0" * 16)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def torch_legacy_tar(payload: bytes) -> bytes:
    """The pre-1.6 tar layout (`sys_info`, `pickle`, `storages`, `tensors`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            data = payload if name == "pickle" else pickle.dumps({}, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tensors_of_every_dtype() -> dict:
    rng = np.random.default_rng(7)
    return {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f64": rng.standard_normal((2, 2, 2)),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i8": rng.integers(-128, 127, (4, 4), dtype=np.int8),
        "u8": rng.integers(0, 255, (9,), dtype=np.uint8),
        "i16": rng.integers(-1000, 1000, (3,), dtype=np.int16),
        "u16": rng.integers(0, 60000, (2, 3), dtype=np.uint16),
        "i32": rng.integers(-(2**31), 2**31 - 1, (5,), dtype=np.int32),
        "u32": rng.integers(0, 2**32 - 1, (5,), dtype=np.uint32),
        "i64": rng.integers(-(2**62), 2**62, (2, 1), dtype=np.int64),
        "u64": rng.integers(0, 2**63, (3,), dtype=np.uint64),
        "bool": rng.integers(0, 2, (6,)).astype(bool),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "c64": (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64),
    }


@pytest.fixture()
def write(tmp_path: Path):
    """write(name, bytes) -> Path in a fresh directory."""

    def _write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return _write


def safetensors_bytes(tensors: dict, metadata=None) -> bytes:
    from safetensors.numpy import save

    return save(tensors, metadata=metadata)


def with_header(header: str, data: bytes = b"") -> bytes:
    h = header.encode()
    return len(h).to_bytes(8, "little") + h + data


# The differential oracle (python/oracle: the loader catalogue and the polyglot builders) is not
# part of the package; the tests import it from the source tree.
import sys as _sys

_sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
