"""Camera RAW through sandload.imread, differential against rawpy (LibRaw) on the DNGs sandload
writes, plus hostile RAW files."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)

# (cfa pattern as colour indices 0 R, 1 G, 2 B, row-major 2x2) -> name
PATTERNS = {(0, 1, 1, 2): "RGGB", (2, 1, 1, 0): "BGGR", (1, 0, 2, 1): "GRBG", (1, 2, 0, 1): "GBRG"}


@pytest.mark.parametrize("cfa", list(PATTERNS))
@pytest.mark.parametrize("ljpeg", [False, True])
@pytest.mark.parametrize("active_area", [None, (2, 4, 62, 92)])
def test_raw_image_matches_rawpy(write, cfa, ljpeg, active_area):
    width, height = 96, 64
    data = samples.dng(width, height, lossless_jpeg=ljpeg, cfa=list(cfa), active_area=list(active_area) if active_area else None)
    path = write("frame.dng", data)
    expected = samples.dng_samples(width, height).reshape(height, width)
    with sandload.imread(path) as ours, rawpy.imread(str(path)) as theirs:
        np.testing.assert_array_equal(ours.raw_image, expected)
        np.testing.assert_array_equal(ours.raw_image, theirs.raw_image)
        np.testing.assert_array_equal(ours.raw_image_visible, theirs.raw_image_visible)
        np.testing.assert_array_equal(ours.raw_pattern, theirs.raw_pattern)
        np.testing.assert_array_equal(ours.raw_colors_visible, theirs.raw_colors_visible)
        assert ours.black_level_per_channel == list(theirs.black_level_per_channel)
        assert ours.white_level == theirs.white_level
        s, t = ours.sizes, theirs.sizes
        assert (s.raw_height, s.raw_width, s.height, s.width, s.top_margin, s.left_margin) == (
            t.raw_height,
            t.raw_width,
            t.height,
            t.width,
            t.top_margin,
            t.left_margin,
        )
        assert s.flip == t.flip
        assert ours.raw_image.dtype == np.uint16 and not ours.raw_image.flags.writeable


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_orientation_is_rawpys_flip(write, orientation):
    path = write("o.dng", samples.dng(32, 32, orientation=orientation))
    with sandload.imread(path) as ours, rawpy.imread(str(path)) as theirs:
        assert ours.sizes.flip == theirs.sizes.flip


def test_colour_metadata_matches_libraws(write):
    # A camera-like XYZ -> camera matrix and a green-heavy as-shot neutral.
    matrix = [0.6722, -0.0635, -0.0963, -0.4287, 1.246, 0.2046, -0.0908, 0.2253, 0.5984]
    path = write("c.dng", samples.dng(64, 64, color_matrix=matrix, as_shot_neutral=[0.45, 1.0, 0.62]))
    with sandload.imread(path) as ours, rawpy.imread(str(path)) as theirs:
        # Camera -> sRGB as LibRaw derives it from the file's matrix.
        np.testing.assert_allclose(ours.color_matrix, theirs.color_matrix, atol=2e-4)
        wb_ours, wb_theirs = np.array(ours.camera_whitebalance[:3]), np.array(theirs.camera_whitebalance[:3])
        np.testing.assert_allclose(wb_ours / wb_ours[1], wb_theirs / wb_theirs[1], rtol=1e-4)
        # sandload also gives the file's own matrix (LibRaw leaves rgb_xyz_matrix zero for DNGs).
        np.testing.assert_allclose(ours.rgb_xyz_matrix[:3].ravel(), matrix, rtol=1e-4)


def test_postprocess_and_bayer_planes(write):
    import rawpy

    path = write("p.dng", samples.dng(128, 96))
    with sandload.imread(path) as raw:
        rgb8 = raw.postprocess()
        rgb16 = raw.postprocess(output_bps=16)
        planes = raw.bayer_planes()
        assert rgb8.shape == (96, 128, 3) and rgb8.dtype == np.uint8
        assert rgb16.shape == (96, 128, 3) and rgb16.dtype == np.uint16
        assert planes.shape == (4, 48, 64) and planes.dtype == np.float32
        assert 0.0 <= planes.min() and planes.max() <= 1.0
        # Plane R is the R sites, scaled by black and white level.
        black, white = raw.black_level_per_channel[0], raw.white_level
        r = (raw.raw_image_visible[0::2, 0::2].astype(np.float32) - black) / (white - black)
        np.testing.assert_allclose(planes[0], np.clip(r, 0, 1), rtol=1e-6, atol=1e-7)
        # rawpy's options, as keywords or in a rawpy.Params, field by field; what sandload does
        # not implement raises, never silently ignored.
        np.testing.assert_array_equal(raw.postprocess(rawpy.Params()), rgb8)
        same = rawpy.Params(use_camera_wb=True, no_auto_bright=True, output_bps=16)
        np.testing.assert_array_equal(raw.postprocess(same), raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16))
        half = raw.postprocess(rawpy.Params(half_size=True, gamma=(1, 1)))
        assert half.shape == (48, 64, 3)
        np.testing.assert_array_equal(half, raw.postprocess(half_size=True, gamma=(1, 1)))
        with pytest.raises(NotImplementedError, match="four_color_rgb"):
            raw.postprocess(four_color_rgb=True)
        with pytest.raises(NotImplementedError, match="med_passes"):
            raw.postprocess(rawpy.Params(median_filter_passes=2))
        with pytest.raises(NotImplementedError, match="demosaic_algorithm=1"):
            raw.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.VNG)
        with pytest.raises(ValueError, match="output_bps"):
            raw.postprocess(output_bps=12)
        with pytest.raises(TypeError, match="unexpected keyword"):
            raw.postprocess(no_such_option=True)
        assert raw.info["make"] == "Sandload"
        assert raw.receipt["guest"]


def test_bytes_input(write):
    data = samples.dng(32, 16)
    with sandload.imread(data) as raw:
        assert raw.raw_image.shape == (16, 32)


def test_hostile_raw_files(write):
    # Dimensions in the tags far beyond the data: refused before allocation.
    lying = write("lie.dng", samples.dng(64, 64, declared_size=(60000, 60000)))
    with pytest.raises(sandload.Error) as e:
        sandload.imread(lying)
    assert e.value.kind in ("limit_exceeded", "malformed"), e.value.record
    # A frame larger than max_pixels.
    with pytest.raises(sandload.LimitExceeded) as e:
        sandload.Sandbox(max_pixels=1000).imread(write("big.dng", samples.dng(64, 64)))
    assert (e.value.limit, e.value.limit_value, e.value.value) == ("max_pixels", 1000, 4096)
    # Not a RAW file at all.
    with pytest.raises(sandload.Error) as e:
        sandload.imread(write("x.dng", b"\0" * 1000))
    # A truncated DNG.
    whole = samples.dng(64, 64)
    with pytest.raises(sandload.Error):
        sandload.imread(write("cut.dng", whole[: len(whole) // 2]))
