"""Per-file cost of `sandload.decode_image` against Pillow (`np.asarray(Image.open(p))`, the
in-process decode a pipeline would otherwise run) on large generated images, in one run:

    python benches/images_vs_pillow.py [--megapixels 24] [--rounds 7]

Each round decodes every file once with each decoder, alternating which goes first, so that a
noisy moment hits both; the table gives the median time of each and the median of the per-round
ratios (sandload / Pillow).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import sandload


def smooth(h: int, w: int, channels: int, dtype) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 1.0
    planes = [(0.5 + 0.45 * np.sin(x / 37.0 + c) * np.cos(y / 23.0 - c)) * top for c in range(channels)]
    a = np.stack(planes, axis=-1) if channels > 1 else planes[0]
    return a.astype(dtype)


def files(megapixels: float, out: Path) -> dict:
    w = int((megapixels * 1e6 * 3 / 2) ** 0.5)
    h = int(w * 2 / 3)
    rgb8 = smooth(h, w, 3, np.uint8)
    made = {}

    def save(name, image, **params):
        path = out / name
        image.save(path, **params)
        made[name] = path

    save("rgb8.png", Image.fromarray(rgb8))
    save("rgb8-q90.jpg", Image.fromarray(rgb8), quality=90)
    save("rgb8-lzw.tif", Image.fromarray(rgb8), compression="tiff_lzw")
    save("rgb8-lossless.webp", Image.fromarray(rgb8), lossless=True)
    save("grey16-deflate.tif", Image.fromarray(smooth(h, w, 1, np.uint16)), compression="tiff_deflate")
    save("float32-raw.tif", Image.fromarray(smooth(h, w, 1, np.float32)))
    return made


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=24)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        made = files(args.megapixels, Path(tmp))
        sandbox = sandload.Sandbox()

        def ours(p):
            return sandbox.decode_image(p)

        def theirs(p):
            with Image.open(p) as im:
                return np.asarray(im)

        # Warm-up: compiled guests, page cache, and a check that both agree on the shape.
        for name, path in made.items():
            assert ours(path).shape == theirs(path).shape, name
        print(f"| file ({args.megapixels:g} MP) | bytes | Pillow ms | sandload ms | ratio |")
        print("|---|---|---|---|---|")
        for name, path in made.items():
            t_ours, t_theirs, ratios = [], [], []
            for r in range(args.rounds):
                if r % 2:
                    a, b = timed(lambda: ours(path)), timed(lambda: theirs(path))
                else:
                    b, a = timed(lambda: theirs(path)), timed(lambda: ours(path))
                t_ours.append(a)
                t_theirs.append(b)
                ratios.append(a / b)
            size = path.stat().st_size
            print(
                f"| {name} | {size:,} | {statistics.median(t_theirs) * 1e3:.1f} | "
                f"{statistics.median(t_ours) * 1e3:.1f} | {statistics.median(ratios):.2f} |"
            )


if __name__ == "__main__":
    main()
