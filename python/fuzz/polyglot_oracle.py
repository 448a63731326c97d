"""Coverage-guided search for polyglots that sandload accepts and a real loader runs (atheris).

The fuzzer's bytes drive the structure-aware generator (``oracle.polyglots.generate``: which
family, which hop encoding, wrapper, prelude and payload placement), then mutate a few bytes of
the tensor data; coverage comes from the loaders' own Python code (``pickle._Unpickler``,
``tarfile``, ``zipfile``, ``gzip``, joblib), instrumented by atheris. A candidate the reference
``safetensors`` accepts, that sandload accepts, and that any loader of the catalogue runs (an
audit event from ``pickle.find_class``, ``exec``, ``os.system``, ... or the marker file) or, for
archives, opens, is a crash.

    python python/fuzz/polyglot_oracle.py -max_total_time=3600 [corpus_dir]

Loaders written in Python run in this process (one audit hook, installed once), so a run is
fast and their coverage guides the search. Loaders built on CPython's C unpickler (pickle, numpy,
torch.load, dill, cloudpickle, pandas) run in a forked child that is killed past 2 GiB of
resident memory: the C unpickler grows its memo to twice the largest index a file names, so a
file can make it allocate gigabytes before it fails (its own denial of service, not code), and
its C code gives no Python coverage anyway. The test suite and ``python -m oracle campaign`` run
each loader in its own process.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    import gzip  # noqa: F401
    import pickle  # noqa: F401
    import tarfile  # noqa: F401
    import zipfile  # noqa: F401

    import joblib  # noqa: F401

import sandload  # noqa: E402
from oracle import polyglots as P  # noqa: E402
from oracle.loaders import CATALOGUE, CODE_EVENTS, _module_code, warm_up  # noqa: E402

TMP = Path(tempfile.mkdtemp(prefix="sandload-polyglot-fuzz-"))
MARKER = str(TMP / "MARKER")
PATH = TMP / "candidate.safetensors"
EVENTS: list[str] = []
ACTIVE = [False]
# Loaders that import heavy modules or write files elsewhere stay out of the in-process loop; the
# campaign runs them. h5py's C library is not Python coverage either.
IN_PROCESS = [loader for loader in CATALOGUE if loader.name not in ("h5py", "yaml.unsafe_load")]


for _loader in IN_PROCESS:
    warm_up(_loader)


def hook(event, args):
    if not ACTIVE[0]:
        return
    if event in CODE_EVENTS and not _module_code(event, args):
        EVENTS.append(event)
    elif event == "open" and args and str(args[0]) == MARKER:
        EVENTS.append("open:marker")


sys.addaudithook(hook)


class FuzzedRandom(random.Random):
    """random.Random whose draws come from the fuzzer's bytes (then from a seed when they run out)."""

    def __init__(self, fdp: atheris.FuzzedDataProvider) -> None:
        self.fdp = fdp
        super().__init__(0)

    def random(self) -> float:
        if self.fdp.remaining_bytes():
            return self.fdp.ConsumeProbability()
        return super().random()

    def getrandbits(self, k: int) -> int:
        if self.fdp.remaining_bytes():
            return self.fdp.ConsumeInt((k + 7) // 8) % (1 << k) if k else 0
        return super().getrandbits(k)


# Built on the C unpickler: run in a child whose memory is watched (see the module's docs).
FORKED = {"pickle", "numpy", "torch.load", "dill", "cloudpickle", "pandas"}
CHILD_RSS_LIMIT = 2 << 30


def run_loader(loader) -> tuple[bool, list]:
    """(opened, events) of one loader on PATH: in this process, or in a watched child."""
    if loader.name not in FORKED:
        EVENTS.clear()
        opened = False
        ACTIVE[0] = True
        try:
            loader.load(str(PATH))
            opened = True
        except BaseException:  # noqa: BLE001 - a failure is a verdict
            pass
        finally:
            ACTIVE[0] = False
        return opened, list(EVENTS)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, leave without cleanup
        os.close(read)
        EVENTS.clear()
        opened = False
        ACTIVE[0] = True
        try:
            loader.load(str(PATH))
            opened = True
        except BaseException:  # noqa: BLE001
            pass
        ACTIVE[0] = False
        os.write(write, ("1" if opened else "0").encode() + ",".join(EVENTS).encode())
        os._exit(0)
    os.close(write)
    page = os.sysconf("SC_PAGE_SIZE")
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * page
        except OSError:
            rss = 0
        if rss > CHILD_RSS_LIMIT:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    out = b""
    while chunk := os.read(read, 65536):
        out += chunk
    os.close(read)
    if not out:
        return False, []  # killed over its memory limit: no verdict, no code
    events = [e for e in out[1:].decode().split(",") if e]
    return out[:1] == b"1", events


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    rng = FuzzedRandom(fdp)
    desc, candidate = P.generate(rng, MARKER, big=False)
    candidate = bytearray(candidate)
    # A few byte edits in the tensor data, where every family keeps its payload.
    header_end = 8 + int.from_bytes(candidate[:8], "little")
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        if len(candidate) > header_end:
            at = fdp.ConsumeIntInRange(header_end, len(candidate) - 1)
            candidate[at] = fdp.ConsumeIntInRange(0, 255)
    candidate = bytes(candidate)
    if not P.reference_loads(candidate):
        return
    if sandload.inspect(candidate, name="candidate.safetensors")["verdict"] != "accepted":
        return
    PATH.write_bytes(candidate)
    for loader in IN_PROCESS:
        if os.path.exists(MARKER):
            os.unlink(MARKER)
        opened, events = run_loader(loader)
        if os.path.exists(MARKER):
            events.append("open:marker")
        if events or (opened and loader.opening_counts):
            raise AssertionError(f"accepted by sandload, but {loader.name} reached {events or 'open'}: {desc}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
