"""Ingest a directory of untrusted files with Ray Data and sandload: one row per file in a
Parquet table, plus Bayer planes and a thumbnail for every accepted RAW file.

    python ray_ingest.py INPUT_DIR OUTPUT_DIR [--workers N] [--read-bytes] [--engine native]

How it spreads: Ray Data splits the file list into blocks; `map_batches` sends each batch to an
actor of an `ActorPoolStrategy` pool, and each actor builds one `sandload.Sandbox` when it starts
(compiled guests come from the on-disk cache after the first) and reuses it for every file. On a
cluster, `ray.init(address="auto")` and the same script spread the actors over every node; the
input must then be on storage every node reads (a shared file system for paths, or any
`pyarrow` file system, S3 included, with `--read-bytes`).

A hostile file never fails a task: sandload turns it into a row with the error's kind, rule and
message, and a parser that crashes, hangs or runs out of memory does so inside its wasmtime
guest, not in the worker.

`--engine native` runs the same pipeline with the in-process decoders a pipeline would use
without sandload (rawpy, safetensors, Pillow), dispatched by file extension as such pipelines
do, to compare throughput on the same corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import stat
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

import pyarrow as pa

#: The table's columns and types. Explicit, because a batch in which every file was rejected has
#: only nulls where another batch has numbers, and Parquet needs one schema for both.
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("verdict", pa.string()),
        ("format", pa.string()),
        ("error_kind", pa.string()),
        ("error_rule", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("tensor_count", pa.int64()),
        ("sha256", pa.string()),
        ("pixels_sha256", pa.string()),
        ("guest", pa.string()),
        ("guest_time_us", pa.int64()),
        ("total_time_us", pa.int64()),
        ("guest_peak_memory_bytes", pa.int64()),
        ("planes_path", pa.string()),
        ("thumbnail_path", pa.string()),
        ("worker_pid", pa.int64()),
        ("worker_peak_rss_bytes", pa.int64()),
    ]
)
COLUMNS = SCHEMA.names


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _file_sha256(source, max_bytes: int) -> Optional[str]:
    """SHA-256 of the file's bytes (None for a file sandload would not read, or cannot)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest() if len(source) <= max_bytes else None
    # Opened as sandload opens files: non-blocking (a FIFO swapped in for the file cannot hang the
    # worker), and only a regular file, checked on the descriptor, is read.
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    meta = os.fstat(fd)
    if not stat.S_ISREG(meta.st_mode) or meta.st_size > max_bytes:
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        digest = hashlib.sha256()
        try:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        except OSError:
            return None
        return digest.hexdigest()


def _thumbnail(rgb: np.ndarray, longest: int = 256) -> np.ndarray:
    step = max(1, -(-max(rgb.shape[:2]) // longest))
    return np.ascontiguousarray(rgb[::step, ::step])


class _Ingest:
    """What both engines' actors share: the output directories, the batch loop, the outputs of
    an accepted RAW file, and the worker columns. Subclasses turn one file into one row."""

    def __init__(self, output_dir: str, outputs: bool) -> None:
        self.output_dir = Path(output_dir)
        self.outputs = outputs
        (self.output_dir / "planes").mkdir(parents=True, exist_ok=True)
        (self.output_dir / "thumbnails").mkdir(parents=True, exist_ok=True)

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        if "bytes" in batch:
            rows = [self.one(p, data) for p, data in zip(batch["path"], batch["bytes"])]
        else:
            rows = [self.one(p, None) for p in batch["path"]]
        for row in rows:
            row["worker_pid"] = os.getpid()
            row["worker_peak_rss_bytes"] = _peak_rss()
        return pa.Table.from_pylist(rows, schema=SCHEMA)

    def one(self, path: str, data: Optional[bytes]) -> Dict[str, Any]:
        """The row of the file at `path` (whose bytes are `data` when Ray read them)."""
        raise NotImplementedError

    def save_outputs(self, row: Dict[str, Any], key: str, planes: np.ndarray, rgb: np.ndarray) -> None:
        """Writes the Bayer planes (float16) and a thumbnail of `rgb`, named by `key`."""
        planes_path = self.output_dir / "planes" / f"{key}.npy"
        thumb_path = self.output_dir / "thumbnails" / f"{key}.npy"
        np.save(planes_path, planes.astype(np.float16))
        np.save(thumb_path, _thumbnail(rgb))
        row.update(planes_path=str(planes_path), thumbnail_path=str(thumb_path))


class SandloadIngest(_Ingest):
    """A Ray Data actor: one Sandbox for the actor's lifetime, one row per file."""

    def __init__(self, output_dir: str, limits: Optional[Dict[str, Any]] = None, outputs: bool = True) -> None:
        super().__init__(output_dir, outputs)
        import sandload

        self.sandload = sandload
        # "read", not the library's "map": a listed file that is truncated while a worker reads it
        # must be one failed row (an I/O error), not a SIGBUS that kills the worker.
        self.sandbox = sandload.Sandbox(**{"data_access": "read", **(limits or {})})

    def one(self, path: str, data: Optional[bytes]) -> Dict[str, Any]:
        source = path if data is None else data
        report, opened = self.sandbox.open_with_report(source, digest=True, name=path)
        file_sha256 = _file_sha256(source, self.sandbox.limits["max_file_bytes"])
        receipt = report.get("receipt") or {}
        error = report.get("error") or {}
        raw = report.get("raw") or {}
        image = report.get("image") or {}
        row = {
            "path": path,
            "verdict": report["verdict"],
            "format": report["format"],
            "error_kind": error.get("kind"),
            "error_rule": error.get("rule"),
            "error_message": error.get("message"),
            "width": raw.get("width", image.get("width")),
            "height": raw.get("height", image.get("height")),
            "tensor_count": report.get("tensor_count", len(report.get("tensors") or []) or None),
            "sha256": file_sha256,
            "pixels_sha256": raw.get("pixels_sha256", image.get("pixels_sha256")),
            "guest": receipt.get("guest"),
            "guest_time_us": receipt.get("guest_time_us"),
            "total_time_us": receipt.get("total_time_us"),
            "guest_peak_memory_bytes": receipt.get("guest_peak_memory_bytes"),
            "planes_path": None,
            "thumbnail_path": None,
        }
        if self.outputs and isinstance(opened, self.sandload.RawPy):
            key = file_sha256 or hashlib.sha256(path.encode()).hexdigest()
            self.save_outputs(
                row, key, opened.bayer_planes(), opened.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8)
            )
        return row


class NativeIngest(_Ingest):
    """The same pipeline without a sandbox: rawpy, safetensors and Pillow in the worker process,
    chosen by extension. An exception becomes a row; a crash or a hang takes the worker down."""

    RAW = {".dng", ".nef", ".cr2", ".arw", ".raf", ".orf", ".rw2"}
    IMAGES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}

    def __init__(self, output_dir: str, limits=None, outputs: bool = True) -> None:
        super().__init__(output_dir, outputs)

    def one(self, path: str, data: Optional[bytes]) -> Dict[str, Any]:
        import io

        started = time.perf_counter()
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        ext = os.path.splitext(path)[1].lower()
        row: Dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(path=path, verdict="accepted", sha256=hashlib.sha256(data).hexdigest())
        try:
            if ext in self.RAW:
                import rawpy

                with rawpy.imread(io.BytesIO(data)) as raw:
                    mosaic = raw.raw_image_visible.astype(np.float32)
                    black = np.array(raw.black_level_per_channel, np.float32)
                    white = float(raw.white_level)
                    colors = raw.raw_colors_visible
                    norm = np.clip((mosaic - black[colors]) / (white - black[colors]), 0, 1)
                    h2, w2 = norm.shape[0] // 2 * 2, norm.shape[1] // 2 * 2
                    planes = np.stack([norm[0:h2:2, 0:w2:2], norm[0:h2:2, 1:w2:2], norm[1:h2:2, 0:w2:2], norm[1:h2:2, 1:w2:2]])
                    rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8)
                    row.update(format="dng", height=mosaic.shape[0], width=mosaic.shape[1])
                    if self.outputs:
                        self.save_outputs(row, row["sha256"], planes, rgb)
            elif ext == ".safetensors":
                from safetensors.numpy import load

                tensors = load(data)
                row.update(format="safetensors", tensor_count=len(tensors))
            elif ext in self.IMAGES:
                from PIL import Image

                pixels = np.asarray(Image.open(io.BytesIO(data)))
                row.update(format=ext[1:], height=pixels.shape[0], width=pixels.shape[1])
            else:
                row.update(verdict="rejected", error_kind="unknown_extension")
        except Exception as e:  # what in-process decoders raise on bad input
            row.update(verdict="rejected", error_kind=type(e).__name__, error_message=str(e)[:500])
        row["total_time_us"] = int((time.perf_counter() - started) * 1e6)
        return row


def list_files(root: str) -> List[str]:
    """Every regular file under `root` (symlinks are not followed), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out.append(path)
    return out


def build_dataset(input_dir: str, output_dir: str, *, workers: int = 2, read_bytes: bool = False, engine: str = "sandload", batch_size: int = 8, limits=None, outputs: bool = True):
    """The pipeline as a lazy Ray Dataset of rows (see COLUMNS)."""
    import ray

    if read_bytes:
        # Object stores: Ray reads whole files; sandload still applies its size limit, but only
        # after the reader task holds the bytes. The read tasks need CPUs the actors do not
        # hold: leave at least one free (`workers` < CPUs), or they are never scheduled.
        ds = ray.data.read_binary_files(input_dir, include_paths=True)
    else:
        # Paths: sandload opens each file itself (size limit before reading, files mapped).
        ds = ray.data.from_items([{"path": p} for p in list_files(input_dir)])
    ingest = {"sandload": SandloadIngest, "native": NativeIngest}[engine]
    return ds.map_batches(
        ingest,
        fn_constructor_kwargs={"output_dir": output_dir, "limits": limits, "outputs": outputs},
        batch_size=batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )


def run(input_dir: str, output_dir: str, **options) -> Dict[str, Any]:
    """Runs the pipeline, writes `OUTPUT_DIR/table` (Parquet), returns counts and files/s."""
    started = time.perf_counter()
    ds = build_dataset(input_dir, output_dir, **options)
    table_dir = os.path.join(output_dir, "table")
    ds.write_parquet(table_dir)
    seconds = time.perf_counter() - started
    table = pd.read_parquet(table_dir)
    return {
        "files": len(table),
        "accepted": int((table["verdict"] == "accepted").sum()),
        "rejected": int((table["verdict"] == "rejected").sum()),
        "seconds": seconds,
        "files_per_second": len(table) / seconds,
        "worker_peak_rss_bytes": int(table["worker_peak_rss_bytes"].max()),
        "table": table_dir,
    }


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input_dir")
    parser.add_argument("output_dir")
    parser.add_argument("--workers", type=int, default=None, help="actors (default: CPUs, or CPUs - 1 with --read-bytes)")
    parser.add_argument("--read-bytes", action="store_true", help="read files with ray.data.read_binary_files")
    parser.add_argument("--engine", choices=["sandload", "native"], default="sandload")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    args = parser.parse_args()
    cpus = os.cpu_count() or 2
    if args.workers is None:
        args.workers = max(1, cpus - 1) if args.read_bytes else cpus
    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False)
    result = run(args.input_dir, args.output_dir, workers=args.workers, read_bytes=args.read_bytes, engine=args.engine)
    print(result)


if __name__ == "__main__":
    main()
