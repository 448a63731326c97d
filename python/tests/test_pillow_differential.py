"""Images decoded by sandload and by Pillow, on a corpus generated here.

Every TIFF layout in common use is written with Pillow (its libtiff compressions: LZW, Deflate,
PackBits, JPEG, CCITT G3/G4) and with tifffile (every sample type, planar and tiled layouts,
predictors, BigTIFF), plus PNG, JPEG and WebP variants. Each file is decoded by sandload and by
Pillow: the same shape, and the same values (exactly for lossless files, within one level for
lossy ones). Where sandload deliberately keeps more than Pillow (16-bit RGB, uint32, int8; see
``sandload.decode_image``) the comparison maps sandload's values the way Pillow reads them; where
Pillow cannot open a file at all (float64, float16, 64-bit integers), the array that tifffile wrote
is the reference instead. Layouts no bundled decoder has must be refused as ``Unsupported``
naming the feature.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import pytest

import sandload

PIL = pytest.importorskip("PIL.Image")
tifffile = pytest.importorskip("tifffile")

H, W = 37, 53  # odd sizes: rows that do not fill a byte, tiles that overhang the image


@dataclass
class Case:
    name: str
    data: bytes
    source: Optional[np.ndarray] = None  # what was written, when the writer took an array
    lossy: bool = False
    # sandload's array -> what Pillow's np.asarray gives for the same file
    as_pillow: Callable[[np.ndarray], np.ndarray] = field(default=lambda a: a)
    # Pillow mode to convert to before np.asarray (palette images: sandload expands them to RGB)
    pillow_mode: Optional[str] = None


def pattern(shape, dtype) -> np.ndarray:
    """Values that use the whole range of `dtype` and differ between neighbours and channels."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        v = (i * 37 % 1001) / 1000.0 * 2 - 0.5  # [-0.5, 1.5): out of [0, 1] on purpose
        return v.reshape(shape).astype(dt)
    if dt.kind == "b":
        return ((i * 7 // 3) % 2 == 0).reshape(shape)
    # A multiplicative hash spread over the type's whole bit width (wrapping is the point).
    bits = i.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(12345)
    top = bits >> np.uint64(64 - 8 * dt.itemsize)
    return top.astype(np.dtype(f"u{dt.itemsize}")).view(dt).reshape(shape)


def smooth(shape) -> np.ndarray:
    """An 8-bit photograph-like image for lossy codecs (noise would make every codec differ)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    chans = shape[2] if len(shape) == 3 else 1
    planes = [(128 + 100 * np.sin(x / 9.0 + c) * np.cos(y / 7.0 - c)).astype(np.uint8) for c in range(chans)]
    return np.stack(planes, axis=-1) if len(shape) == 3 else planes[0]


def to_pil(array: np.ndarray, mode: str):
    """`array` as a Pillow image of `mode` (interleaved samples in Pillow's raw layout)."""
    return PIL.frombytes(mode, (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())


def pillow_file(image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def tifffile_bytes(array: np.ndarray, **params) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, array, **params)
    return out.getvalue()


def low_bit_tiff(values: np.ndarray, bits: int) -> bytes:
    """A one-strip, uncompressed little-endian grey TIFF of `bits`-bit samples (rows padded to
    bytes, most significant bits first), written by hand: neither Pillow nor tifffile (without
    imagecodecs) writes 2-, 4- or 12-bit grey."""
    h, w = values.shape
    rows = bytearray()
    for row in values:
        acc = 0
        for v in row:
            acc = (acc << bits) | int(v)
        pad = (-w * bits) % 8
        rows += (acc << pad).to_bytes((w * bits + pad) // 8, "big")
    entries = [
        (256, 3, 1, w),
        (257, 3, 1, h),
        (258, 3, 1, bits),
        (259, 3, 1, 1),
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, 1, 8),  # the strip right after the header
        (277, 3, 1, 1),
        (278, 3, 1, h),
        (279, 4, 1, len(rows)),
    ]
    ifd_at = 8 + len(rows)
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_at)) + rows
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        out += struct.pack("<HHI", tag, typ, count) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        )
    out += struct.pack("<I", 0)
    return bytes(out)


def tiff_cases() -> List[Case]:
    cases = []
    # Pillow's own modes and libtiff's compressions.
    modes = {
        "L": pattern((H, W), np.uint8),
        "LA": pattern((H, W, 2), np.uint8),
        "RGB": pattern((H, W, 3), np.uint8),
        "RGBA": pattern((H, W, 4), np.uint8),
        "CMYK": pattern((H, W, 4), np.uint8),
        "I;16": pattern((H, W), np.uint16),
        "I": pattern((H, W), np.int32),
        "F": pattern((H, W), np.float32),
    }
    for mode, array in modes.items():
        image = to_pil(array, mode)
        for compression in [None, "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"]:
            params = {"compression": compression} if compression else {}
            cases.append(Case(f"pillow-{mode}-{compression or 'raw'}.tif", pillow_file(image, "TIFF", **params), array))
    bilevel = pattern((H, W), np.bool_)
    for compression in [None, "group4", "packbits", "tiff_lzw"]:
        params = {"compression": compression} if compression else {}
        image = PIL.fromarray(bilevel)
        cases.append(Case(f"pillow-1-{compression or 'raw'}.tif", pillow_file(image, "TIFF", **params), bilevel))
    # Palette images (1-, 4- and 8-bit indices): sandload expands them to RGB, as it does palette
    # PNGs; Pillow gives the indices, so its image is converted to RGB for the comparison.
    for colours, compression in [(2, None), (16, "packbits"), (256, None), (256, "tiff_lzw")]:
        indices = to_pil(pattern((H, W), np.uint8), "L").quantize(colours)
        params = {"compression": compression} if compression else {}
        data = pillow_file(indices, "TIFF", **params)
        cases.append(Case(f"pillow-P{colours}-{compression or 'raw'}.tif", data, pillow_mode="RGB"))
    for mode in ["L", "RGB"]:
        array = smooth((H, W) if mode == "L" else (H, W, 3))
        data = pillow_file(to_pil(array, mode), "TIFF", compression="jpeg", quality=95)
        cases.append(Case(f"pillow-{mode}-jpeg.tif", data, array, lossy=True))

    # tifffile: every sample type, chunky and planar, strips and tiles, predictors, BigTIFF.
    for dtype in [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
                  np.float16, np.float32, np.float64]:
        for shape, photometric in [((H, W), "minisblack"), ((H, W, 3), "rgb"), ((H, W, 4), "rgb")]:
            array = pattern(shape, dtype)
            extras = {"extrasamples": [2]} if shape[-1:] == (4,) else {}  # unassociated alpha
            variants = {
                "strips": {},
                "tiles": {"tile": (16, 16)},
                # Horizontal differencing for integers up to 32 bits (tifffile's floating-point
                # predictor needs imagecodecs, which this environment does not install).
                "deflate": {"compression": "zlib", "predictor": np.dtype(dtype).kind in "ui" and np.dtype(dtype).itemsize <= 4},
                "bigtiff": {"bigtiff": True},
            }
            if len(shape) == 3:
                variants["planar"] = {"planarconfig": "separate"}
                variants["planar-tiles"] = {"planarconfig": "separate", "tile": (16, 16)}
            for variant, params in variants.items():
                name = f"tifffile-{np.dtype(dtype).name}-{photometric}{len(shape) == 3 and shape[2] or 1}-{variant}.tif"
                # tifffile takes a planar image as (samples, height, width).
                written = np.moveaxis(array, -1, 0) if "planar" in variant else array
                data = tifffile_bytes(written, photometric=photometric, metadata=None, **extras, **params)
                cases.append(Case(name, data, array, as_pillow=pillow_view(array)))
    for bits in (1, 2, 4):
        values = pattern((H, W), np.uint8) % (1 << bits)
        scaled = values.astype(bool) if bits == 1 else values * (255 // ((1 << bits) - 1))
        cases.append(Case(f"hand-{bits}bit.tif", low_bit_tiff(values, bits), scaled))
    for bits in (10, 12, 14):  # Pillow opens 12-bit (as I;16, unscaled); the others it cannot
        values = pattern((H, W), np.uint16) >> (16 - bits)
        cases.append(Case(f"hand-{bits}bit.tif", low_bit_tiff(values, bits), values))
    return cases


def pillow_view(source: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """How Pillow reads what sandload returns for a file holding `source`'s samples."""
    kind, size = source.dtype.kind, source.dtype.itemsize
    if kind == "u" and size == 2 and source.ndim == 3:
        return lambda a: (a >> 8).astype(np.uint8)  # "RGB;16": Pillow keeps the top byte
    if kind == "u" and size == 4:
        return lambda a: a.view(np.int32)  # "I;32N": uint32 read into mode I
    if kind == "i" and size == 1:
        return lambda a: a.view(np.uint8)  # Pillow reads int8 grey as L
    return lambda a: a


def sandload_dtype(written: np.dtype) -> np.dtype:
    """The dtype `sandload.decode_image` gives for samples written as `written`: the file's own,
    except signed 16-bit, widened to int32 as Pillow does."""
    return np.dtype(np.int32) if written == np.int16 else written


def other_cases() -> List[Case]:
    cases = []
    for mode, shape in [("L", (H, W)), ("LA", (H, W, 2)), ("RGB", (H, W, 3)), ("RGBA", (H, W, 4))]:
        array = pattern(shape, np.uint8)
        cases.append(Case(f"png-{mode}.png", pillow_file(to_pil(array, mode), "PNG"), array))
        if mode in ("RGB", "RGBA"):
            cases.append(
                Case(f"webp-lossless-{mode}.webp", pillow_file(to_pil(array, mode), "WEBP", lossless=True, exact=True), array)
            )
    grey16 = pattern((H, W), np.uint16)
    cases.append(Case("png-I16.png", pillow_file(to_pil(grey16, "I;16"), "PNG"), grey16))
    for mode in ["L", "RGB"]:
        array = smooth((H, W) if mode == "L" else (H, W, 3))
        for subsampling in ([0] if mode == "L" else [0, 2]):
            data = pillow_file(to_pil(array, mode), "JPEG", quality=95, subsampling=subsampling)
            cases.append(Case(f"jpeg-{mode}-sub{subsampling}.jpg", data, array, lossy=True))
        data = pillow_file(to_pil(array, mode), "JPEG", quality=95, progressive=True)
        cases.append(Case(f"jpeg-{mode}-progressive.jpg", data, array, lossy=True))
    from sandload._sandload import samples  # the Rust suite's writers (test-samples feature)

    grey16 = pattern((H, W), np.uint16)
    lossless = samples.lossless_jpeg(W, H, [int(v) for v in grey16.ravel()])
    cases.append(Case("jpeg-lossless-L16.jpg", lossless, grey16))
    rgb = smooth((H, W, 3))
    cases.append(Case("webp-lossy-RGB.webp", pillow_file(to_pil(rgb, "RGB"), "WEBP", quality=90), rgb, lossy=True))
    return cases


def unsupported_cases() -> List[tuple]:
    """(name, bytes, what the refusal must name)"""
    lab = PIL.new("LAB", (W, H), (50, 10, 20))
    return [
        ("pillow-LAB.tif", pillow_file(lab, "TIFF"), "CIELab"),
        # The tiff crate decodes CCITT Group 4 (T.6) but not Group 3 (T.4).
        ("pillow-1-group3.tif", pillow_file(PIL.fromarray(pattern((H, W), np.bool_)), "TIFF", compression="group3"), "Fax3"),
    ]


CASES = tiff_cases() + other_cases()

# Files Pillow 13 misreads, checked to be so: sandload must return what was written, and Pillow
# must still misread it (so that this list shrinks when Pillow is fixed). Planar 16-bit RGB(A)
# (strips or tiles): Pillow's planar "RGB;16L" path mixes up samples.
PILLOW_MISREADS = {
    f"tifffile-uint16-rgb{c}-planar{tiles}.tif" for c in (3, 4) for tiles in ("", "-tiles")
}

# Lossy files: zune-jpeg (sandload's JPEG decoder, through `image`) and libjpeg-turbo (Pillow's)
# round the colour conversion and chroma upsampling differently. Measured on this corpus: grey
# and JPEG-in-TIFF within 1 level; 4:4:4 RGB at most 2 (mean 0.016); 4:2:0 and progressive RGB at
# most 3 (mean 0.36), while both decoders are equally far from the pixels written (mean 1.32 and
# 1.27 levels). Lossy WebP decodes identically.
LOSSY_MAX = 3
LOSSY_MEAN = 0.5


def pillow_array(data: bytes, mode: Optional[str] = None) -> Optional[np.ndarray]:
    try:
        with PIL.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image.convert(mode) if mode else image)
    except Exception:
        return None


def test_the_corpus_covers_what_the_issue_lists():
    names = [c.name for c in CASES]
    assert len(CASES) >= 200, len(CASES)
    for needle in ["group4", "tiff_lzw", "packbits", "deflate", "jpeg.tif", "bigtiff", "planar",
                   "tiles", "float64", "float16", "int16", "uint32", "1bit", "2bit", "4bit", "12bit", "CMYK", "webp",
                   "-P2-", "-P16-", "-P256-", "lossless"]:
        assert any(needle in n for n in names), needle


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sandload_decodes_as_pillow_does(case: Case, tmp_path):
    path = tmp_path / case.name
    path.write_bytes(case.data)
    ours = sandload.decode_image(path)
    theirs = pillow_array(case.data, case.pillow_mode)
    if theirs is None:
        # Pillow cannot open it (float16/float64, 64-bit integers, ...): the written array decides.
        assert case.source is not None, f"neither Pillow nor a source array for {case.name}"
        assert ours.shape == case.source.shape, (ours.shape, case.source.shape)
        assert ours.dtype == sandload_dtype(case.source.dtype), (ours.dtype, case.source.dtype)
        np.testing.assert_array_equal(ours, case.source)
        return
    mapped = case.as_pillow(ours)
    assert mapped.shape == theirs.shape, f"shape {ours.shape} vs Pillow's {theirs.shape}"
    if case.name in PILLOW_MISREADS:
        assert not np.array_equal(case.as_pillow(case.source), theirs), "Pillow reads it right now: drop it from the list"
    elif case.lossy:
        diff = np.abs(mapped.astype(np.int32) - theirs.astype(np.int32))
        assert diff.max() <= LOSSY_MAX and diff.mean() <= LOSSY_MEAN, f"max difference {diff.max()} (mean {diff.mean():.3f})"
    else:
        assert mapped.dtype == theirs.dtype, f"dtype {ours.dtype} (as Pillow: {mapped.dtype}) vs Pillow's {theirs.dtype}"
        np.testing.assert_array_equal(mapped, theirs)
    # Lossless files also give back exactly what was written.
    if case.source is not None and not case.lossy:
        np.testing.assert_array_equal(ours, case.source)


@pytest.mark.parametrize("name,data,what", unsupported_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_layouts_no_decoder_has_are_unsupported_and_named(name, data, what, tmp_path):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(sandload.Unsupported) as e:
        sandload.decode_image(path)
    assert what in str(e.value), str(e.value)
