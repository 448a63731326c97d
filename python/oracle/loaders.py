"""The loader catalogue, run for real.

Each entry is a loader that ML code hands downloaded files to. ``run(path)`` hands one file to
every loader, each in its own long-lived worker process with ``sys.addaudithook`` recording what
the load reached: ``pickle.find_class`` (an unpickler looking up a global: the step before any
import or call), ``exec``, ``compile``, ``os.system``, ``subprocess.Popen``, ``marshal.loads``,
and ``open`` of the marker path that the test payloads create. A loader that *returns* is said to
have ``opened`` the file; for the archive and container loaders (zip, tar, HDF5, gzip) that is the
step before the pickles inside them are read.

Where a loader cannot be installed here (PyTorch: several GB of CUDA wheels), its entry replays
the loader's own steps from its source with the standard library, and says so in ``how``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

# Events that mean "the file made the loader reach code". `exec` and `compile` count only for
# code that is not a module's own file: a loader importing one of its modules lazily (tarfile
# importing gzip) also raises them, and `marshal.loads` only ever for that.
CODE_EVENTS = {
    "pickle.find_class",
    "exec",
    "compile",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "subprocess.Popen",
}


def _module_code(event: str, args: tuple) -> bool:
    """True for the exec/compile of an importable module's own source or bytecode."""
    if event == "exec":
        filename = getattr(args[0], "co_filename", "") if args else ""
    elif event == "compile":
        filename = args[1] if len(args) > 1 else ""
    else:
        return False
    return isinstance(filename, str) and filename.endswith(".py") and os.path.isfile(filename)


@dataclasses.dataclass(frozen=True)
class Loader:
    name: str
    # How the loader decides what the file is.
    how: str
    # The sandload rule that rules the file out (or why the loader cannot open a safetensors file).
    rule: str
    # Whether "the loader returned" already counts against an accepted file (archives and
    # containers whose members other loaders unpickle), or only code does.
    opening_counts: bool
    load: Callable[[str], object]
    needs: str = ""


# --- the loaders ---------------------------------------------------------------------------------


def _pickle_c(path: str) -> object:
    with open(path, "rb") as f:
        return pickle.load(f)


def _pickle_py(path: str) -> object:
    with open(path, "rb") as f:
        return pickle._Unpickler(f).load()


def _joblib(path: str) -> object:
    import joblib

    return joblib.load(path)


def _numpy(path: str) -> object:
    import numpy as np

    out = np.load(path, allow_pickle=True)
    if hasattr(out, "files"):  # an .npz: members load (and unpickle) when read
        return {k: out[k] for k in out.files}
    return out


def _dill(path: str) -> object:
    import dill

    with open(path, "rb") as f:
        return dill.load(f)


def _cloudpickle(path: str) -> object:
    import cloudpickle

    with open(path, "rb") as f:
        return cloudpickle.load(f)


def _pandas(path: str) -> object:
    import pandas

    return pandas.read_pickle(path)


def _zipfile(path: str) -> object:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        for n in names:
            z.read(n)
        if not names:
            raise zipfile.BadZipFile("no members")
        return names


def _tarfile(path: str) -> object:
    # mode "r:*": what tarfile.open does by default, transparent gzip/bz2/xz included.
    with tarfile.open(path) as t:
        members = t.getmembers()
        if not members:
            raise tarfile.ReadError("no members")
        return [m.name for m in members]


def _decompress_then_unpickle(opener) -> Callable[[str], object]:
    def load(path: str) -> object:
        with opener(path) as f:
            try:
                return pickle.load(f)
            except (AttributeError, ImportError, TypeError, ValueError, pickle.UnpicklingError):
                # pandas.read_pickle(compression=...) falls back to the pure-Python unpickler.
                f.seek(0)
                return pickle._Unpickler(f).load()

    return load


def _gzip_open(path):
    import gzip

    return gzip.open(path, "rb")


def _bz2_open(path):
    import bz2

    return bz2.open(path, "rb")


def _lzma_open(path):
    import lzma

    return lzma.open(path, "rb")


def _h5py(path: str) -> object:
    import h5py

    with h5py.File(path, "r") as f:
        return list(f.keys())


def _yaml(path: str) -> object:
    import yaml

    with open(path, "rb") as f:
        return yaml.unsafe_load(f)


# torch.load, weights_only=False (the setting that runs code). The real one when torch is
# installed; the test environment does not install it (its PyPI wheels bring about 6 GB of CUDA
# libraries), so there it is replayed from torch/serialization.py (2.5-2.9) with the standard
# library: the same dispatch, the same calls, in the same order, and miniz's own zip reading
# (oracle/miniz.py, checked against torch 2.5.1, 2.6.0 and 2.9.0 on 100,000+ archives).

_TORCH_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


def _torch_is_zipfile(f) -> bool:
    # serialization._is_zipfile: the first four bytes only.
    start = f.tell()
    read = f.read(4)
    f.seek(start)
    return read == b"PK\x03\x04"


class _TorchUnpickler(pickle.Unpickler):
    # serialization._load's UnpicklerWrapper: find_class through the pickle module, and a
    # persistent_load that returns the storage it names.
    def persistent_load(self, saved_id):
        return saved_id


def _torch_load(path: str) -> object:
    try:
        import torch
    except ImportError:
        return _torch_load_replayed(path)
    return torch.load(path, weights_only=False, map_location="cpu")


def _torch_load_replayed(path: str) -> object:
    with open(path, "rb") as f:
        if _torch_is_zipfile(f):
            # PyTorchStreamReader: miniz finds the archive from its end (its own window and
            # directory offset, replayed in oracle/miniz.py); the record it unpickles is
            # "<archive>/data.pkl".
            from .miniz import miniz_members, torch_zip_would_open

            data = f.read()
            if not torch_zip_would_open(data):
                raise RuntimeError("PytorchStreamReader failed reading zip archive")
            members = miniz_members(data)
            names = [n for n in members if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                raise RuntimeError("PytorchStreamReader failed locating file data.pkl")
            return _TorchUnpickler(io.BytesIO(members[names[0]])).load()
        # _legacy_load: the tar path first, when the file is at offset 0.
        try:
            with tarfile.open(fileobj=f, mode="r:", format=tarfile.PAX_FORMAT) as tar, tempfile.TemporaryDirectory() as tmp:
                tar.extract("storages", path=tmp)
                with open(os.path.join(tmp, "storages"), "rb", 0) as s:
                    num_storages = pickle.load(s)
                    for _ in range(num_storages):
                        pickle.load(s)
                tar.extract("tensors", path=tmp)
                with open(os.path.join(tmp, "tensors"), "rb", 0) as t:
                    num_tensors = pickle.load(t)
                    for _ in range(num_tensors):
                        pickle.load(t)
                pickle_file = tar.extractfile("pickle")
                return _TorchUnpickler(pickle_file).load()
        except tarfile.TarError:
            if _torch_is_zipfile(f):
                raise RuntimeError("torch.jit archive")
            f.seek(0)
        # The legacy pickle path: four pickles in a row, then the data.
        magic_number = pickle.load(f)
        if magic_number != _TORCH_MAGIC_NUMBER:
            raise RuntimeError("Invalid magic number; corrupt file?")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        return _TorchUnpickler(f).load()


CATALOGUE: list[Loader] = [
    Loader("pickle", "pickle.load (C unpickler): opcodes from byte 0, no magic number", "pickle_polyglot (opcode walk from byte 0)", False, _pickle_c),
    Loader("pickle._Unpickler", "pure-Python unpickler (joblib, dill, pandas' fallback subclass it): opcodes from byte 0", "pickle_polyglot (the walk is a superset of both unpicklers)", False, _pickle_py),
    Loader("joblib", "joblib.load: first bytes pick a decompressor (ZF, zlib x, gzip 1f8b, bz2 BZ, xz, lzma 5d00, lz4), then pickle._Unpickler", "compressed_polyglot (gzip); zlib/lzma/bz2/xz/lz4/ZF infeasible; pickle_polyglot", False, _joblib, "joblib"),
    Loader("numpy", "numpy.load(allow_pickle=True): PK\\3\\4 or PK\\5\\6 -> NpzFile, \\x93NUMPY -> npy, else pickle.load", "zip_polyglot; \\x93NUMPY and PK\\5\\6 infeasible; pickle_polyglot", False, _numpy, "numpy"),
    Loader("torch.load", "torch.load(weights_only=False) (replayed from torch/serialization.py without torch): PK\\3\\4 -> miniz zip + data.pkl; else tarfile 'r:' (storages, tensors, pickle); else 4 pickle.load calls", "zip_polyglot (zipfile and miniz windows); tar_polyglot; pickle_polyglot", False, _torch_load),
    Loader("dill", "dill.load: dill.Unpickler subclasses pickle.Unpickler (the C one)", "pickle_polyglot", False, _dill, "dill"),
    Loader("cloudpickle", "cloudpickle.load is pickle.load", "pickle_polyglot", False, _cloudpickle, "cloudpickle"),
    Loader("pandas", "pandas.read_pickle: compression by extension; pickle.load, then pickle_compat.Unpickler (pure Python) on errors", "pickle_polyglot", False, _pandas, "pandas"),
    Loader("zipfile", "zipfile.ZipFile: end record in the last 64 KiB + 22 bytes, central directory before it", "zip_polyglot", True, _zipfile),
    Loader("tarfile", "tarfile.open (r:*): first 512-byte header, checksum by tarfile.nti; gzip/bz2/xz by magic", "tar_polyglot; compressed_polyglot", True, _tarfile),
    Loader("gzip + pickle", "gzip.open (pandas compression='gzip'): 1f 8b, then the unpicklers", "compressed_polyglot", True, _decompress_then_unpickle(_gzip_open)),
    Loader("bz2 + pickle", "bz2.open: BZh1-9", "infeasible (header length over 100 MB)", True, _decompress_then_unpickle(_bz2_open)),
    Loader("lzma + pickle", "lzma.open (FORMAT_AUTO: xz, or .lzma alone with a picky header check)", "infeasible (bytes 4-7 zero; picky .lzma size)", True, _decompress_then_unpickle(_lzma_open)),
    Loader("h5py", "libhdf5: superblock signature at 0, 512, 1024, ... (powers of two)", "hdf5_polyglot", True, _h5py, "h5py"),
    Loader("yaml.unsafe_load", "PyYAML: the whole stream must be printable (python/object tags run code)", "infeasible (bytes 4-7 are NUL, which the reader refuses)", False, _yaml, "yaml"),
]

BY_NAME = {loader.name: loader for loader in CATALOGUE}


# --- the worker: one process per loader ------------------------------------------------------


def warm_up(loader: Loader) -> None:
    """Runs ``loader`` once on an ordinary safetensors file and once on an ordinary pickle, so
    that its lazy imports and generated code happen before anything is recorded."""
    if loader.needs:
        __import__(loader.needs)
    if loader.name == "torch.load":
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
    import struct as _struct

    header = b'{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}'
    samples = [_struct.pack("<Q", len(header)) + header + b"\0\0", pickle.dumps({"a": [1, 2.5, "x"]}, protocol=4)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(samples):
            path = os.path.join(tmp, f"warm{i}")
            with open(path, "wb") as f:
                f.write(data)
            try:
                loader.load(path)
            except BaseException:  # noqa: BLE001 - only the side effects matter
                pass


def _worker(name: str) -> None:
    """Reads JSON requests {"path", "marker"} from stdin, answers one JSON line each."""
    import resource

    # A loader that decompresses a bomb must fail, not take the machine.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    loader = BY_NAME[name]
    state = {"marker": None, "events": []}

    def hook(event, args):
        if event in CODE_EVENTS and not _module_code(event, args):
            what = event
            if event == "pickle.find_class":
                what = f"{event}:{args[0]}.{args[1]}"
            state["events"].append(what)
        elif event == "open" and state["marker"] and args and str(args[0]) == state["marker"]:
            state["events"].append("open:marker")

    # Before the hook: what the loader imports and generates lazily on its first file (pandas
    # builds dataclasses with exec, tarfile imports gzip) must not count as the file's doing.
    warm_up(loader)
    sys.addaudithook(hook)
    for line in sys.stdin:
        req = json.loads(line)
        state["marker"], state["events"] = req["marker"], []
        opened, error = False, None
        try:
            loader.load(req["path"])
            opened = True
        except BaseException as e:  # noqa: BLE001 - any failure is a verdict
            error = f"{type(e).__name__}: {str(e)[:200]}"
        events, state["marker"] = state["events"], None
        sys.stdout.write(json.dumps({"opened": opened, "events": events, "error": error}) + "\n")
        sys.stdout.flush()


@dataclasses.dataclass
class Verdict:
    loader: str
    opened: bool
    events: list
    error: str | None

    @property
    def code(self) -> bool:
        return bool(self.events)

    @property
    def counts(self) -> bool:
        """Whether this verdict breaks the promise for an accepted file."""
        return self.code or (self.opened and BY_NAME[self.loader].opening_counts)


class Oracle:
    """Hands files to every loader of the catalogue, each in its own worker process."""

    def __init__(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        self.names = names or [loader.name for loader in CATALOGUE]
        self.timeout = timeout
        self.workers: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        return subprocess.Popen(
            [sys.executable, "-c", f"from oracle.loaders import _worker; _worker({name!r})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def _ask(self, name: str, path: str, marker: str) -> Verdict:
        worker = self.workers.get(name)
        if worker is None or worker.poll() is not None:
            worker = self.workers[name] = self._spawn(name)
        worker.stdin.write(json.dumps({"path": path, "marker": marker}) + "\n")
        worker.stdin.flush()
        line = worker.stdout.readline()
        if not line:  # the loader killed its process (a crash is not code; say what happened)
            self.workers.pop(name, None)
            return Verdict(name, False, [], f"worker died (status {worker.wait()})")
        answer = json.loads(line)
        return Verdict(name, answer["opened"], answer["events"], answer["error"])

    def run(self, path: str | os.PathLike, marker: str | os.PathLike) -> dict[str, Verdict]:
        """Every loader's verdict on the file at ``path``. ``marker`` is the path the payloads of
        the generated files open; a loader that creates it ran the payload."""
        path, marker = str(path), str(marker)
        verdicts = {}
        for name in self.names:
            if os.path.exists(marker):
                os.unlink(marker)
            v = self._ask(name, path, marker)
            if os.path.exists(marker) and "open:marker" not in v.events:
                v.events.append("open:marker")
            verdicts[name] = v
        if os.path.exists(marker):
            os.unlink(marker)
        return verdicts

    def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()
            worker.wait()
        self.workers.clear()

    def __enter__(self) -> "Oracle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
