"""'Accepted' proven against the real loaders.

Every hole class is a file built here that the reference ``safetensors`` package loads, that a
real loader of the catalogue (``oracle.loaders``: joblib, pickle._Unpickler, pandas, tarfile,
torch.load's steps, ...) runs, creating a marker file or reaching ``find_class``, and that
sandload refuses with the rule that stands for that loader. The prefixes that cannot be
polyglots are shown infeasible with the real decompressors. Then the property itself, over
generated candidates of every family: if sandload accepts a file, no loader reaches code.
"""

from __future__ import annotations

import bz2
import lzma
import random
import re
import struct
import zlib
from pathlib import Path

import pytest

import sandload
from oracle import polyglots as P
from oracle.loaders import CATALOGUE, Oracle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def oracle():
    with Oracle() as o:
        yield o


def refusal(path) -> dict:
    report = sandload.inspect(path)
    assert report["verdict"] == "rejected", report
    return report["error"]


def reached_code(verdicts, loader: str) -> bool:
    v = verdicts[loader]
    return any(e.startswith("pickle.find_class") or e == "open:marker" for e in v.events)


HOLES = [
    # (id, builder(marker), sandload rule, loaders that run it, loaders that open it)
    ("gzip-stored-blocks", lambda m: P.gzip_polyglot(m, 0), "compressed_polyglot", {"joblib", "gzip + pickle"}, set()),
    ("gzip-ftext", lambda m: P.gzip_polyglot(m, 1), "compressed_polyglot", {"joblib", "gzip + pickle"}, set()),
    ("gzip-fextra", lambda m: P.gzip_polyglot(m, 4), "compressed_polyglot", {"joblib", "gzip + pickle"}, set()),
    ("py-float-whitespace", lambda m: P.pickle_hop(m, b"B", P.PYTHON_ONLY_PRELUDES["float-space"]), "pickle_polyglot",
     {"pickle._Unpickler", "joblib", "pandas"}, set()),
    ("py-float-underscore", lambda m: P.pickle_hop(m, b"X", P.PYTHON_ONLY_PRELUDES["float-underscore"]), "pickle_polyglot",
     {"pickle._Unpickler", "joblib", "pandas"}, set()),
    ("py-memo-key-over-64-bits", lambda m: P.pickle_hop(m, b"T", P.PYTHON_ONLY_PRELUDES["memo-key-over-64-bits"]),
     "pickle_polyglot", {"pickle._Unpickler", "joblib"}, set()),
    # pandas falls back to its pure-Python unpickler only on ValueError & co., not on these.
    ("py-short-frame", lambda m: P.pickle_hop(m, b"B", short_frame=True), "pickle_polyglot",
     {"pickle._Unpickler", "joblib"}, set()),
    ("py-global-at-eof", lambda m: P.pickle_hop(m, b"B", with_payload=False, at_eof=b"cos\nsystemX"), "pickle_polyglot",
     {"pickle._Unpickler", "joblib"}, set()),
    ("py-inst-without-mark", lambda m: P.pickle_hop(m, b"B", with_payload=False, at_eof=b"ibuiltins\nopen\n"),
     "pickle_polyglot", {"pickle._Unpickler", "joblib"}, set()),
    ("tar-checksum-0o-prefix", lambda m: P.tar_polyglot(m, "0o-prefix"), "tar_polyglot", {"torch.load"}, {"tarfile"}),
    ("tar-checksum-underscores", lambda m: P.tar_polyglot(m, "underscores"), "tar_polyglot", {"torch.load"}, {"tarfile"}),
    ("tar-checksum-plus-sign", lambda m: P.tar_polyglot(m, "plus-sign"), "tar_polyglot", {"torch.load"}, {"tarfile"}),
    ("tar-checksum-file-separators", lambda m: P.tar_polyglot(m, "file-separator", short_header=True), "tar_polyglot",
     {"torch.load"}, {"tarfile"}),
    ("tar-checksum-octal", lambda m: P.tar_polyglot(m, "octal"), "tar_polyglot", {"torch.load"}, {"tarfile"}),
    ("zip-from-the-end", lambda m: P.zip_polyglot(m), "zip_polyglot", set(), {"zipfile"}),
    ("zip-with-comment", lambda m: P.zip_polyglot(m, comment=60_000), "zip_polyglot", set(), {"zipfile"}),
    # Header length 0x04034B50 spells PK\3\4, so torch.load takes its zip path; 66,000 bytes after
    # the archive put its end record beyond zipfile's window and inside miniz's.
    ("zip-only-miniz-finds", lambda m: P.zip_polyglot(m, pk_prefix=True, trailing=66_000), "zip_polyglot",
     {"torch.load"}, set()),
    ("hdf5-userblock-512", lambda m: P.hdf5_polyglot(512), "hdf5_polyglot", set(), {"h5py"}),
    ("hdf5-userblock-64k", lambda m: P.hdf5_polyglot(65536), "hdf5_polyglot", set(), {"h5py"}),
]


@pytest.mark.parametrize("builder,rule,runs,opens", [h[1:] for h in HOLES], ids=[h[0] for h in HOLES])
def test_each_hole_class_runs_in_its_loader_and_is_refused(tmp_path, oracle, builder, rule, runs, opens):
    marker = tmp_path / "MARKER"
    data = builder(str(marker))
    assert P.reference_loads(data), "the reference safetensors package must load the polyglot"
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    verdicts = oracle.run(path, marker)
    for loader in runs:
        assert reached_code(verdicts, loader), (loader, verdicts[loader])
    for loader in opens:
        assert verdicts[loader].opened, (loader, verdicts[loader])
    error = refusal(path)
    assert (error["kind"], error["rule"]) == ("refused_format", rule), error
    assert not marker.exists()


# --- prefixes that cannot be polyglots, shown with the real decompressors ------------------------

# A JSON header's second byte: whitespace, the quote of the first key, or the '}' of '{}'.
SECOND_BYTES = b' \t\n\r"}'


def test_zlib_prefix_never_starts_a_stream():
    """joblib reads a file starting with 'x' (0x78) as zlib. Every header length <= 100 MB whose
    low byte is 0x78: zlib refuses the stream within the first 45 bytes whatever the JSON says
    (HCLEN is 0 because byte 3 <= 5, so all code-length codes read from the zero bytes 4-7 have
    length 0 and the block has no end-of-block code)."""
    rng = random.Random(78)
    accepted_prefix = 0
    for n in range(0x78, 100_000_001, 256):
        prefix = struct.pack("<Q", n) + b"{"
        try:
            zlib.decompressobj().decompress(prefix)
        except zlib.error:
            continue
        accepted_prefix += 1
        for second in SECOND_BYTES:
            for _ in range(3):
                rest = bytes([second]) + bytes(rng.randrange(0x20, 0x100) for _ in range(63))
                d = zlib.decompressobj()
                with pytest.raises(zlib.error):
                    d.decompress(prefix + rest)
    assert accepted_prefix == 1440  # the survivors of the first 9 bytes, all refused later


def test_lzma_prefix_is_refused_by_liblzma():
    """joblib's lzma prefix is ']\\0'; lzma.LZMAFile (FORMAT_AUTO) reads an .lzma 'alone' header
    whose uncompressed size (bytes 5-12) holds the '{' and JSON bytes: liblzma refuses it."""
    for b2 in range(256):
        for b3 in range(6):
            n = 0x5D | b2 << 16 | b3 << 24
            for second in SECOND_BYTES:
                data = struct.pack("<Q", n) + b"{" + bytes([second]) + b'"a":{"dtype":"U8"'
                with pytest.raises(lzma.LZMAError):
                    lzma.LZMADecompressor(lzma.FORMAT_AUTO).decompress(data)


def test_other_magic_numbers_cannot_be_header_lengths():
    limit = 100_000_000  # the format's maximum header, a rule of its own (header_too_large)
    for magic in (b"BZh1", b"BZh9", b"\x04\x22\x4d\x18", b"\x28\xb5\x2f\xfd", b"\x50\x2a\x4d\x18"):
        assert int.from_bytes(magic, "little") > limit, magic
    # bz2 needs 'BZh' and a level digit; with 'BZ' and anything else bz2 refuses.
    with pytest.raises(OSError):
        bz2.decompress(struct.pack("<Q", 0x005A42) + b'{"')
    # xz's 6-byte magic needs bytes 4-5 non-zero; a safetensors prefix has them zero.
    assert b"\xfd7zXZ\x00"[4:6] != b"\0\0"


def test_joblib_refuses_the_infeasible_prefixes(tmp_path, oracle):
    marker = tmp_path / "MARKER"
    cases = {
        "zlib": 0x9C_78 | 0x04 << 16,  # a zlib header the first 9 bytes pass
        "lzma": 0x5D | 0x10 << 16,
        "ZF": 0x465A,
        "bz2-short": 0x5A42,
    }
    for name, n in cases.items():
        body = P.payload(str(marker))
        closing = P.tail(len(body))
        header = b'{"' + b"k" * (n - 2 - len(closing)) + closing
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(P.frame(header, body))
        assert P.reference_loads(path.read_bytes()), name
        verdicts = oracle.run(path, marker)
        assert not any(v.code for v in verdicts.values()), (name, verdicts)
        assert verdicts["joblib"].error, (name, verdicts["joblib"])
        assert sandload.inspect(path)["verdict"] == "accepted", name


# --- the catalogue ----------------------------------------------------------------------------------


def test_security_md_lists_the_catalogue():
    """SECURITY.md's loader table has one row per loader the oracle runs, in the same order."""
    text = (REPO / "SECURITY.md").read_text()
    section = text.split("### The loader catalogue", 1)[1].split("\n### ", 1)[0]
    rows = [line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")]
    assert rows == [loader.name for loader in CATALOGUE]


def test_the_miniz_replay_and_zipfile_disagree_where_expected(tmp_path):
    """The torch entry's zip reader is miniz (replayed in oracle/miniz.py), not zipfile: an end
    record 66,000 bytes from the end is found by miniz only, 75,000 bytes by neither."""
    import zipfile

    from oracle.miniz import torch_zip_would_open

    for trailing, miniz, zipf in [(0, True, True), (66_000, True, False), (75_000, False, False)]:
        data = P.zip_polyglot(str(tmp_path / "m"), trailing=trailing)
        path = tmp_path / "z.zip"
        path.write_bytes(data)
        try:
            opened = bool(zipfile.ZipFile(path).namelist())
        except zipfile.BadZipFile:
            opened = False
        assert (torch_zip_would_open(data), opened) == (miniz, zipf), trailing


def test_every_loader_is_exercised():
    """Each loader of the catalogue is in a hole test above, or in the property test below."""
    named = set().union(*(h[3] | h[4] for h in HOLES))
    property_only = {loader.name for loader in CATALOGUE} - named
    # These never open a safetensors file; the property test shows it on every candidate.
    assert property_only == {"pickle", "numpy", "dill", "cloudpickle", "bz2 + pickle", "lzma + pickle", "yaml.unsafe_load"}


# --- the property -----------------------------------------------------------------------------------


def test_no_accepted_candidate_reaches_code_in_any_loader(tmp_path, oracle):
    """A fixed seed set of generated candidates of every family; the campaign
    (``python -m oracle campaign``) runs the same property for hours."""
    marker = tmp_path / "MARKER"
    rng = random.Random(2026_12_04)
    families, accepted, caught = {}, 0, 0
    for i in range(90):
        desc, data = P.generate(rng, str(marker), big=False)
        if not P.reference_loads(data):
            continue
        path = tmp_path / f"c{i}.safetensors"
        path.write_bytes(data)
        report = sandload.inspect(path)
        verdicts = oracle.run(path, marker)
        counted = [name for name, v in verdicts.items() if v.counts]
        family = desc.split()[0]
        families[family] = families.get(family, 0) + 1
        if report["verdict"] == "accepted":
            accepted += 1
            assert not counted, (desc, {n: verdicts[n] for n in counted})
        elif counted:
            caught += 1
        path.unlink()
    assert set(families) == set(P.FAMILIES), families
    # The generator aims at the loaders: most candidates reach one, and sandload refused them.
    assert caught >= 40 and accepted >= 5, (caught, accepted, families)


def test_reference_writer_files_are_never_refused(tmp_path):
    """The other half of the promise: what safetensors.numpy.save writes is accepted (the
    campaign measures it over 100,000 files)."""
    rng = random.Random(7)
    for i in range(2_000):
        _, data = _reference(rng)
        report = sandload.inspect(data, name=f"r{i}.safetensors")
        assert report["verdict"] == "accepted", report


def _reference(rng: random.Random):
    import numpy as np
    from safetensors.numpy import save

    tensors = {}
    for i in range(rng.randint(1, 8)):
        shape = [rng.randint(0, 9) for _ in range(rng.randint(0, 3))]
        dtype = rng.choice([np.float32, np.float16, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_])
        count = int(np.prod(shape))
        arr = np.frombuffer(rng.randbytes(count * np.dtype(dtype).itemsize), dtype=dtype).reshape(shape)
        if dtype is np.bool_:
            arr = arr.astype(bool)
        tensors["".join(rng.choice("abcxyz._/0123456789") for _ in range(rng.randint(1, 40)))] = arr
    return "reference", save(tensors, metadata={"format": "pt"} if rng.random() < 0.5 else None)


def test_no_loader_gives_the_first_pickle_a_persistent_load(tmp_path, oracle):
    """Why the gate ends the first pickle at a persistent ID (WalkLimits::first_has_persistent_load):
    a file that would run a payload after one runs it in no loader of the catalogue."""
    marker = tmp_path / "MARKER"
    for first in (b"Pabc\n", b"K\x01Q"):
        path = tmp_path / "persid.pkl"
        path.write_bytes(first + P.payload(str(marker)))
        verdicts = oracle.run(path, marker)
        assert not any(v.code for v in verdicts.values()), {n: v for n, v in verdicts.items() if v.code}
    # With a persistent_load (what torch gives data.pkl), the same bytes do run.
    import pickle

    class WithPersistentLoad(pickle.Unpickler):
        def persistent_load(self, pid):
            return pid

    WithPersistentLoad(open(path, "rb")).load()
    assert marker.exists()
