"""Camera RAW from real cameras, differential against rawpy (LibRaw 0.22) on the team's shared
files (``../shared/data/raw``: Apple QuickTake 100/150, Canon PowerShot G2/S40 CRW, Kodak
DC50/DC120 KDC, a lossy linear DNG, GoPro GPR; sources and licences in its SOURCES.md, LibRaw's
readings in manifest.json).

For every file LibRaw decodes: the same ``raw_image``, ``sizes``, levels and pattern as rawpy
(and as the manifest recorded), and ``postprocess()`` within 4 levels (mean absolute difference of
the 8-bit output; 16-bit divided by 257) of rawpy's with the same options, at rawpy's defaults and
with each option set below. Where rawler (sandload's decoder, in the guest) and LibRaw read a file
differently, the difference is written down here and what remains is still held to the line.
``benches/raw_vs_libraw.py`` prints the numbers.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rawpy

import sandload

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raw"
if not (SHARED / "manifest.json").is_file():
    pytest.skip(
        f"the team's real RAW files are not at {SHARED} (../shared beside the repository): "
        "the real-file differential against LibRaw needs them",
        allow_module_level=True,
    )

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
from raw_vs_libraw import mad, option_sets, stretched  # noqa: E402

MANIFEST = json.loads((SHARED / "manifest.json").read_text())
DECODED = [e for e in MANIFEST if e["libraw_decodes"]]
REFUSED = [e for e in MANIFEST if not e["libraw_decodes"]]
LIMIT = 4.0

# Where rawler's samples differ from LibRaw's: the most the mean absolute difference may be, and
# why. Every other file must have LibRaw's samples exactly.
SAMPLE_DIFFERENCES = {
    "apple-quicktake": (1.5, "the QuickTake decoders (rawler's and LibRaw's) round their "
                        "interpolation differently: about one level in 1023 or 16383"),
    "kodak-dc50": (1.5, "the RADC decoders round differently: under one level in 16383"),
    "kodak-dc120__P003911": (0.5, "the DC120 JPEG decoders differ by a level on some samples"),
    "kodak-dc120__P003913": (0.5, "the DC120 JPEG decoders differ by a level on some samples"),
    "lg-h815": (2.0, "lossy DNG: the JPEG decoders' IDCTs round differently by a level of 255, "
                "which the DNG's linearising polynomial stretches to up to ~850 of 65535; LibRaw "
                "also adds a fourth, zero, channel (sandload gives the three the file has)"),
}

# Where LibRaw develops with colour data rawler does not have: why, the options added on both
# sides (camera colour: no matrix on either side), and those added on sandload's side when an
# option set leaves the white balance to the defaults. What remains is held to the line; option
# sets that exist to test a matrix (output colour spaces) are left out for these cameras.
DEVELOP_DIFFERENCES = {
    # rawler files the Apple QuickTake's matrix for the DC50 (as dcraw once did); LibRaw 0.22
    # develops it with another camera -> sRGB matrix (fitted from rawpy's outputs: rows
    # [1.81 -0.34 -0.48] [-0.44 1.85 -0.42] [-0.68 -1.39 3.07]; rawpy exposes neither it nor
    # its source) and daylight multipliers 1, 1, 1.
    "kodak-dc50": (
        "colour matrix and daylight multipliers",
        {"output_color": rawpy.ColorSpace.raw},
        {"user_wb": [1.0, 1.0, 1.0, 1.0]},
    ),
    # LibRaw develops the DC120 with a matrix rawler does not know (fitted rows [1.48 -0.32 -0.16]
    # [-0.05 1.26 -0.21] [0.05 -0.40 1.34]; rawler gives sRGB's own as a stand-in) and stretches
    # its non-square pixels (pixel_aspect 1.53, which rawler does not report) to 1301 columns:
    # sandload's output is compared after LibRaw's stretch (nearest neighbour, as LibRaw does it).
    "kodak-dc120": ("colour matrix and pixel aspect", {"output_color": rawpy.ColorSpace.raw}, {}),
}
MATRIX_OPTION_SETS = ("Adobe", "ProPhoto", "XYZ", "raw_color")


def known(table: dict, name: str):
    return next((v for prefix, v in table.items() if name.startswith(prefix)), None)


def ids(entries):
    return [e["file"] for e in entries]


@pytest.mark.parametrize("entry", DECODED, ids=ids(DECODED))
def test_samples_sizes_and_levels_are_libraws(entry):
    path = SHARED / entry["file"]
    with sandload.imread(path) as ours, rawpy.imread(str(path)) as theirs:
        a, b = ours.raw_image, theirs.raw_image
        assert b.shape == tuple(entry["raw_shape"])
        if b.ndim == 3 and b.shape[2] == 4 and a.ndim == 3 and a.shape[2] == 3:
            assert not b[..., 3].any(), "LibRaw's fourth channel of a 3-colour linear DNG is zero"
            b = b[..., :3]
        assert a.shape == b.shape
        allowed = known(SAMPLE_DIFFERENCES, entry["file"])
        if allowed is None:
            np.testing.assert_array_equal(a, b)
        else:
            assert np.abs(a.astype(np.int64) - b).mean() <= allowed[0], allowed[1]
        s, t = ours.sizes, theirs.sizes
        fields = ("raw_height", "raw_width", "height", "width", "top_margin", "left_margin", "iheight", "iwidth", "flip")
        assert {f: getattr(s, f) for f in fields} == {f: getattr(t, f) for f in fields}
        assert [s.height, s.width] == entry["visible_shape"][:2]
        assert ours.black_level_per_channel == list(theirs.black_level_per_channel) == entry["black_level_per_channel"]
        assert ours.white_level == theirs.white_level == entry["white_level"]
        if entry["raw_pattern"] is not None and theirs.raw_pattern is not None and ours.raw_pattern is not None:
            np.testing.assert_array_equal(ours.raw_pattern, theirs.raw_pattern)
            assert ours.raw_pattern.tolist() == entry["raw_pattern"]


def develop_both(path: Path, options: dict, extra: dict, pixel_aspect: float):
    with sandload.imread(path) as ours, rawpy.imread(str(path)) as theirs:
        a = ours.postprocess(**{**options, **extra})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = theirs.postprocess(**options)
    a = stretched(a, pixel_aspect if not options.get("user_flip") else 1 / pixel_aspect)
    return a, b


@pytest.mark.parametrize("entry", DECODED, ids=ids(DECODED))
def test_developed_images_are_within_4_levels_of_libraws(entry):
    path = SHARED / entry["file"]
    with rawpy.imread(str(path)) as theirs:
        pixel_aspect = theirs.sizes.pixel_aspect
    sets = option_sets(entry)
    _, both, ours_only = known(DEVELOP_DIFFERENCES, entry["file"]) or ("", {}, {})
    if both:
        sets = {name: {**options, **both} for name, options in sets.items() if name not in MATRIX_OPTION_SETS}
    failures = {}
    for name, options in sets.items():
        # An option set that chooses the white balance itself needs no stand-in for LibRaw's.
        chooses_wb = any(k in options for k in ("use_camera_wb", "use_auto_wb", "user_wb", "no_auto_scale"))
        a, b = develop_both(path, options, {} if chooses_wb else ours_only, pixel_aspect)
        assert a.dtype == b.dtype, name
        if a.shape != b.shape:
            failures[name] = f"shape {a.shape} vs LibRaw's {b.shape}"
            continue
        value = mad(a, b)
        if value > LIMIT:
            failures[name] = f"mean absolute difference {value:.2f} levels"
    assert not failures, failures


@pytest.mark.parametrize("entry", REFUSED, ids=ids(REFUSED))
def test_files_neither_decodes_are_unsupported_naming_the_camera(entry):
    path = SHARED / entry["file"]
    with pytest.raises(rawpy.LibRawFileUnsupportedError):
        rawpy.imread(str(path)).raw_image
    with pytest.raises(sandload.Unsupported) as e:
        sandload.imread(path)
    message = str(e.value)
    assert '"GoPro"' in message and "compression 9" in message, message
    assert str(path) in message


# Where sandload's daylight multipliers differ from LibRaw's, and why (the developed images above
# hold the line regardless).
DAYLIGHT_DIFFERENCES = {
    "kodak-dc50": "LibRaw keeps 1, 1, 1 (see DEVELOP_DIFFERENCES)",
    # LibRaw 0.22 derives R and B 2.4 % and 0.8 % higher from the same ColorMatrix1 (D65); the
    # cause is not in anything rawpy exposes. The developed difference is 1.35 levels.
    "lg-h815": "R and B within 2.5 % of LibRaw's",
}


# Previews LibRaw finds that sandload does not extract (yet): the Kodak DC50/DC120 keep an 8-bit
# RGB bitmap (96x64, 80x60) in maker-specific places that rawler does not read. Asserted, so that
# the gap is visible and a fix turns this test red until the entry goes.
THUMBNAIL_GAPS = {"kodak-dc": "Kodak DC50/DC120 bitmap thumbnails are not extracted"}


@pytest.mark.parametrize("entry", DECODED, ids=ids(DECODED))
def test_rawpy_attributes_and_thumbnail(entry):
    from PIL import Image
    import io

    path = SHARED / entry["file"]
    with sandload.imread(path) as ours, rawpy.imread(str(path)) as theirs:
        assert ours.sizes._fields == theirs.sizes._fields
        assert ours.raw_type == theirs.raw_type and theirs.raw_type == ours.raw_type
        assert ours.camera_white_level_per_channel == theirs.camera_white_level_per_channel
        a, b = np.array(ours.daylight_whitebalance[:3]), np.array(theirs.daylight_whitebalance[:3])
        why = known(DAYLIGHT_DIFFERENCES, entry["file"])
        if why is None:
            np.testing.assert_allclose(a, b, rtol=2e-4)
        elif entry["file"].startswith("lg-h815"):
            np.testing.assert_allclose(a / a[1], b / b[1], rtol=0.025, err_msg=why)
        try:
            thumb = theirs.extract_thumb()
        except rawpy.LibRawNoThumbnailError:
            with pytest.raises(sandload.NoThumbnailError):
                ours.extract_thumb()
            return
        if known(THUMBNAIL_GAPS, entry["file"]):
            with pytest.raises(sandload.NoThumbnailError):
                ours.extract_thumb()
            return
        expected = np.asarray(Image.open(io.BytesIO(thumb.data)).convert("RGB")) if thumb.format == rawpy.ThumbFormat.JPEG else thumb.data
        got = ours.extract_thumb()
        assert got.format == sandload.ThumbFormat.BITMAP == rawpy.ThumbFormat.BITMAP
        assert got.data.shape == expected.shape
        assert np.abs(got.data.astype(np.int64) - expected).mean() <= 2.0
