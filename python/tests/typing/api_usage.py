"""The whole public API as a user writes it, for the type checker (tests/test_typing.py runs mypy
on this file; it is never executed). `assert_type` fails the check if a return type is wrong."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from typing_extensions import assert_type

import sandload
from sandload import ImageSizes, RawPy, Sandbox, Thumbnail


def checkpoints(path: Path, data: bytes) -> None:
    sb = Sandbox(max_file_bytes=1 << 30, guest_memory_bytes=1 << 28, guest_time=5.0, data_access="read")
    assert_type(sb.limits, Dict[str, Union[int, float]])
    assert_type(sandload.load_file(path), Dict[str, np.ndarray])
    assert_type(sandload.load(data), Dict[str, np.ndarray])
    assert_type(sb.load_file(io.BytesIO(data)), Dict[str, np.ndarray])
    with sandload.safe_open(str(path), framework="np") as f:
        assert_type(f.keys(), List[str])
        assert_type(f.metadata(), Optional[Dict[str, str]])
        f.get_tensor("w")
        sl = f.get_slice("w")
        assert_type(sl.get_shape(), List[int])
        assert_type(sl.get_dtype(), str)
    assert_type(sandload.numpy_dtype("F16"), np.dtype)
    assert_type(sandload.inspect(path, digest=True), Dict[str, Any])
    report, opened = sb.open_with_report(path)
    assert_type(report, Dict[str, Any])


def raw_files(path: Path) -> None:
    with sandload.imread(path) as raw:
        assert_type(raw, RawPy)
        assert_type(raw.raw_image, np.ndarray)
        assert_type(raw.raw_image_visible, np.ndarray)
        assert_type(raw.sizes, ImageSizes)
        assert_type(raw.raw_pattern, Optional[np.ndarray])
        assert_type(raw.black_level_per_channel, List[int])
        assert_type(raw.white_level, int)
        assert_type(raw.camera_whitebalance, List[float])
        assert_type(raw.daylight_whitebalance, List[float])
        assert_type(raw.camera_white_level_per_channel, Optional[List[int]])
        assert_type(raw.raw_type, sandload.RawType)
        assert_type(raw.color_matrix, np.ndarray)
        assert_type(raw.postprocess(use_camera_wb=True, output_bps=16, half_size=True), np.ndarray)
        assert_type(raw.bayer_planes(), np.ndarray)
        assert_type(raw.extract_thumb(), Thumbnail)
        assert_type(raw.info, Dict[str, Any])


def images(path: Path) -> None:
    assert_type(sandload.decode_image(path), np.ndarray)
    pixels, info = sandload.decode_image(path, with_info=True)
    assert_type(pixels, np.ndarray)
    assert_type(info, Dict[str, Any])
    opened = sandload.open(path)
    if isinstance(opened, sandload.Image):
        assert_type(opened.pixels, np.ndarray)


def errors(path: Path) -> Tuple[str, Optional[str]]:
    try:
        sandload.load_file(path)
    except sandload.LimitExceeded as e:
        assert_type(e.limit, Optional[str])
        assert_type(e.value, Optional[int])
    except sandload.FileNotFound as e:
        as_builtin: FileNotFoundError = e  # also the builtin class
        assert_type(as_builtin.errno, Optional[int])
    except sandload.Error as e:
        return e.kind, e.rule
    return "", None
