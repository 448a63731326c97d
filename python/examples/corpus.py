"""A mixed corpus of untrusted files, the kind a scraped dataset holds: camera RAW files,
images, checkpoints, and hostile files (pickles under misleading names, PyTorch archives,
polyglots, decompression bombs, lying and truncated headers, junk).

Every file is generated here (pickles by CPython, safetensors by the `safetensors` package, DNGs,
PNGs and bombs by sandload's sample writers), and `make_corpus` returns what sandload must say of
each one, so a pipeline's table can be checked row by row.

    python corpus.py DIR [N]
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)

# path (relative) -> (verdict, format or None, error kind or None)
Expected = Dict[str, Tuple[str, str, str]]


class _Evil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/sandload-pwned')",))


def _torch_zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0" * 64)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def _header(text: str, data: bytes = b"") -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(8, "little") + raw + data


def make_corpus(root: Path, n: int = 200, raw_size: Tuple[int, int] = (1024, 768)) -> Expected:
    """Writes `n` files under `root` (in sub-directories, as a crawl would), cycling through the
    kinds below, and returns what sandload must report for each."""
    from safetensors.numpy import save

    root = Path(root)
    rng = np.random.default_rng(0)
    w, h = raw_size
    kinds = [
        # (name, verdict, format, error kind, writer)
        ("raw/frame{i}.dng", "accepted", "dng", None, lambda i: samples.dng(w, h)),
        ("raw/frame{i}_ljpeg.dng", "accepted", "dng", None, lambda i: samples.dng(w, h, lossless_jpeg=True)),
        ("raw/small{i}.dng", "accepted", "dng", None, lambda i: samples.dng(64 + 2 * (i % 8), 48, cfa=[2, 1, 1, 0])),
        ("img/photo{i}.png", "accepted", "png", None, lambda i: samples.png(64 + i % 64, 48)),
        (
            "models/model{i}.safetensors",
            "accepted",
            "safetensors",
            None,
            lambda i: save({"w": rng.standard_normal((64, 32)).astype(np.float32), "b": np.arange(i % 7 + 1, dtype=np.int64)}, metadata={"format": "np"}),
        ),
        ("models/pytorch_model{i}.bin", "rejected", "pytorch-zip", "refused_format", lambda i: _torch_zip(pickle.dumps({"w": _Evil()}, protocol=2))),
        ("models/model{i}_pickle.safetensors", "rejected", "pickle", "refused_format", lambda i: pickle.dumps({"w": _Evil()}, protocol=i % 6)),
        ("models/polyglot{i}.safetensors", "rejected", "safetensors", "refused_format", lambda i: samples.pickle_polyglot("os", "system", "echo pwned")),
        ("models/header_bomb{i}.safetensors", "rejected", "safetensors", "limit_exceeded", lambda i: (150_000_000 + i).to_bytes(8, "little") + b'{"a":' + b" " * 64),
        (
            "models/dup{i}.safetensors",
            "rejected",
            "safetensors",
            "malformed",
            lambda i: _header('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"),
        ),
        ("img/bomb{i}.png", "rejected", "png", "limit_exceeded", lambda i: samples.png_with_header(50000 + i, 50000, 0, b"\0" * 64)),
        ("raw/lying{i}.dng", "rejected", "dng", None, lambda i: samples.dng(64, 64, declared_size=(65000, 65000))),
        ("raw/cut{i}.dng", "rejected", "dng", None, lambda i: samples.dng(256, 256)[:20000]),
        ("misc/junk{i}.dat", "rejected", None, None, lambda i: bytes(rng.integers(0, 256, 4096, dtype=np.uint8))),
    ]
    expected: Expected = {}
    for i in range(n):
        name, verdict, fmt, kind, writer = kinds[i % len(kinds)]
        rel = name.format(i=i)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(writer(i))
        expected[rel] = (verdict, fmt, kind)
    return expected


if __name__ == "__main__":
    out = Path(sys.argv[1])
    expected = make_corpus(out, int(sys.argv[2]) if len(sys.argv) > 2 else 200)
    Path(str(out) + ".expected.json").write_text(json.dumps(expected, indent=1))
    print(f"{len(expected)} files in {out}")
