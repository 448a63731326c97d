"""Images through sandload.decode_image, and image bombs."""

from __future__ import annotations

import numpy as np
import pytest

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)


def test_png_pixels(write):
    path = write("a.png", samples.png(40, 30))
    pixels = sandload.decode_image(path)
    assert pixels.shape == (30, 40) and pixels.dtype == np.uint8
    pixels, info = sandload.decode_image(path, with_info=True)
    assert info["format"] == "png" and info["orientation"] == 1 and info["icc_profile"] is None
    assert info["receipt"]["guest"]


def test_png_against_a_reference_decoder(write):
    PIL = pytest.importorskip("PIL.Image")
    import io

    data = samples.png(17, 9)
    np.testing.assert_array_equal(sandload.decode_image(data), np.asarray(PIL.open(io.BytesIO(data))))


def test_png_bomb_is_refused_before_allocation(write):
    # 60000 x 60000 grey pixels claimed over one row of data.
    path = write("bomb.png", samples.png_with_header(60000, 60000, 0, b"\0" * 60001))
    with pytest.raises(sandload.LimitExceeded) as e:
        sandload.decode_image(path)
    assert e.value.limit == "max_pixels" and e.value.value == 60000 * 60000
    jpeg = write("bomb.jpg", samples.jpeg_with_dimensions(65000, 65000))
    with pytest.raises(sandload.LimitExceeded):
        sandload.decode_image(jpeg)


def test_a_checkpoint_is_not_an_image(write):
    with pytest.raises(sandload.Error):
        sandload.decode_image(write("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 10))
