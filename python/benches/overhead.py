"""What the Python layer costs, measured against the Rust API and the packages it replaces:

1. per-file time of `sandload.imread` (Python) vs the Rust API on the same DNG in the same run
   (`examples/raw_loop`, built by `cargo build --release --example raw_loop`), and vs rawpy;
2. per-file time of `sandload.load_file` vs `safetensors.numpy.load_file` on a small checkpoint;
3. zero-copy: anonymous memory (RssAnon) after loading and reading every byte of a 1 GiB
   checkpoint with sandload (a view of the mapped file) and with safetensors (a copy).

    python benches/overhead.py [--skip-rust] [--gib 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)

ROOT = Path(__file__).resolve().parents[2]


def median_ms(fn, n: int) -> float:
    fn()  # warm-up (compiles or loads the guest, faults the file in)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def rss_anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon")


def raw_rows(skip_rust: bool):
    import rawpy

    sb = sandload.Sandbox()
    print("| DNG | sandload Python | sandload Rust API | Python - Rust | rawpy (LibRaw in-process) |")
    print("|---|---|---|---|---|")
    for w, h, n in [(1024, 1024, 200), (4000, 3000, 20)]:
        data = samples.dng(w, h)
        with tempfile.NamedTemporaryFile(suffix=".dng") as f:
            f.write(data)
            f.flush()
            py = median_ms(lambda: sb.imread(data).raw_image, n)
            py_path = median_ms(lambda: sb.imread(f.name).raw_image, n)
            lib = median_ms(lambda: rawpy.imread(f.name).raw_image.copy(), n)
        rust = float("nan")
        if not skip_rust:
            exe = ROOT / "target" / "release" / "examples" / "raw_loop"
            out = subprocess.run([str(exe), "sandload", str(w), str(h), str(n)], capture_output=True, text=True, check=True).stdout
            # "median 0.61 ms ..." is the first number after "median"
            words = out.split()
            rust = float(words[words.index("median") + 1])
        print(f"| {w}x{h} uncompressed | {py:.2f} ms (bytes), {py_path:.2f} ms (path) | {rust:.2f} ms | {py - rust:+.2f} ms | {lib:.2f} ms |")


def checkpoint_rows():
    from safetensors.numpy import load_file as st_load_file
    from safetensors.numpy import save_file

    sb = sandload.Sandbox()
    with tempfile.TemporaryDirectory() as d:
        for name, tensors in [
            ("10 tensors, 40 KiB", {f"t{i}": np.ones(1024, np.float32) for i in range(10)}),
            ("1000 tensors, 4 MiB", {f"t{i}": np.ones(1024, np.float32) for i in range(1000)}),
        ]:
            path = os.path.join(d, "m.safetensors")
            save_file(tensors, path)
            ours = median_ms(lambda: sb.load_file(path), 50)
            theirs = median_ms(lambda: st_load_file(path), 50)
            print(f"| load_file, {name} | sandload {ours:.2f} ms | safetensors {theirs:.2f} ms | ratio {ours / theirs:.2f} |")


def zero_copy(gib: float):
    from safetensors.numpy import load_file as st_load_file

    n = int(gib * (1 << 30)) // 4
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
        path = os.path.join(d, "big.safetensors")
        header = ('{"w":{"dtype":"F32","shape":[%d],"data_offsets":[0,%d]}}' % (n, n * 4)).encode()
        header += b" " * (-len(header) % 8)
        with open(path, "wb") as f:
            f.write(len(header).to_bytes(8, "little") + header)
            chunk = np.ones(1 << 24, np.float32).tobytes()
            for _ in range(n // (1 << 24)):
                f.write(chunk)
        for label, load in [("sandload.load_file", lambda: sandload.load_file(path)), ("safetensors.numpy.load_file", lambda: st_load_file(path))]:
            before = rss_anon_kib()
            t = time.perf_counter()
            w = load()["w"]
            total = float(w.sum(dtype=np.float64))  # reads every byte
            seconds = time.perf_counter() - t
            grew = (rss_anon_kib() - before) / 1024
            print(f"| {label} | {gib:g} GiB file | anonymous memory +{grew:.0f} MiB | load + sum {seconds:.2f} s | sum {total:.0f} |")
            del w


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-rust", action="store_true")
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    raw_rows(args.skip_rust)
    print()
    checkpoint_rows()
    print()
    zero_copy(args.gib)


if __name__ == "__main__":
    main()
