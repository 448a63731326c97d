"""Developed RAW, sandload against rawpy (LibRaw), on the team's real camera files
(``../shared/data/raw``): mean absolute difference of the 8-bit outputs (16-bit ones divided by
257) per file and option set, and how the raw data and metadata compare.

    python benches/raw_vs_libraw.py [--options NAME ...]

The test suite (tests/test_raw_real_files.py) holds the same comparisons to their limits; this
prints the numbers behind them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import rawpy

import sandload

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raw"


def option_sets(entry):
    """rawpy postprocess options, by name; some depend on the file's levels."""
    black = entry["black_level_per_channel"][0]
    white = entry["white_level"]
    D, C = rawpy.DemosaicAlgorithm, rawpy.ColorSpace
    return {
        "defaults": {},
        "LINEAR": dict(demosaic_algorithm=D.LINEAR),
        "AHD": dict(demosaic_algorithm=D.AHD),
        "use_camera_wb": dict(use_camera_wb=True),
        "use_auto_wb": dict(use_auto_wb=True),
        "user_wb": dict(user_wb=[2.0, 1.0, 1.5, 1.0]),
        "no_auto_bright": dict(no_auto_bright=True),
        "bright": dict(bright=1.8),
        "auto_bright_thr": dict(auto_bright_thr=0.05),
        "gamma_srgb": dict(gamma=(2.4, 12.92)),
        "gamma_linear": dict(gamma=(1, 1), no_auto_bright=True),
        "output_bps_16": dict(output_bps=16),
        "half_size": dict(half_size=True),
        "user_flip": dict(user_flip=6),
        "raw_color": dict(output_color=C.raw),
        "Adobe": dict(output_color=C.Adobe),
        "ProPhoto": dict(output_color=C.ProPhoto),
        "XYZ": dict(output_color=C.XYZ),
        "user_black": dict(user_black=black + 8),
        "user_sat": dict(user_sat=int(white * 0.9)),
        "no_auto_scale": dict(no_auto_scale=True),
        "adjust_maximum_0": dict(adjust_maximum_thr=0.0),
    }


def stretched(image: np.ndarray, pixel_aspect: float) -> np.ndarray:
    """LibRaw's `stretch()` for non-square pixels: columns (or rows) repeated, nearest
    neighbour, the source index accumulated as LibRaw accumulates it."""
    if pixel_aspect == 1:
        return image
    axis, step = (1, 1 / pixel_aspect) if pixel_aspect > 1 else (0, pixel_aspect)
    n = image.shape[axis]
    newdim = int(n * pixel_aspect + 0.5) if pixel_aspect > 1 else int(n / pixel_aspect + 0.5)
    index, rc = [], 0.0
    for _ in range(newdim):
        index.append(min(int(rc), n - 1))
        rc += step
    return np.take(image, index, axis=axis)


def mad(ours: np.ndarray, theirs: np.ndarray) -> float:
    scale = 257.0 if theirs.dtype == np.uint16 else 1.0
    return float(np.abs(ours.astype(np.float64) - theirs).mean() / scale)


def compare(path: Path, options: dict, pixel_aspect: float):
    """(MAD, our shape, their shape) for one option set."""
    with sandload.imread(path) as ours, rawpy.imread(str(path)) as theirs:
        a = ours.postprocess(**options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = theirs.postprocess(**options)
    a = stretched(a, pixel_aspect if not options.get("user_flip") else 1 / pixel_aspect)
    if a.shape != b.shape:
        return None, a.shape, b.shape
    return mad(a, b), a.shape, b.shape


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--options", nargs="*", help="option sets to run (default: all)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"no shared RAW files at {SHARED}", file=sys.stderr)
        return 2
    manifest = json.loads((SHARED / "manifest.json").read_text())
    for entry in manifest:
        path = SHARED / entry["file"]
        if not entry["libraw_decodes"]:
            try:
                sandload.imread(path)
                print(f"{entry['file']}: LibRaw cannot decode it; sandload decodes it")
            except sandload.Error as e:
                print(f"{entry['file']}: LibRaw cannot decode it; sandload: {type(e).__name__}: {e}")
            continue
        with rawpy.imread(str(path)) as t:
            aspect = t.sizes.pixel_aspect
        sets = option_sets(entry)
        names = args.options or list(sets)
        started = time.perf_counter()
        row = []
        for name in names:
            value, a, b = compare(path, sets[name], aspect)
            row.append(f"{name}={value:.2f}" if value is not None else f"{name}=shape {a} vs {b}")
        print(f"{entry['file']} ({time.perf_counter() - started:.1f} s): " + ", ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
