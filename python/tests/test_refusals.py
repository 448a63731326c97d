"""Everything that is not safetensors is refused by content, whatever its name, with an
exception of the right class that says what the file is; nothing is ever unpickled."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)
from conftest import evil_pickle, safetensors_bytes, torch_legacy_tar, torch_zip, with_header

MISLEADING_NAMES = ["model.safetensors", "weights.bin", "model.pt", "noext"]


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("name", MISLEADING_NAMES)
def test_pickles_of_every_protocol_are_refused_and_never_run(write, tmp_path, protocol, name):
    marker = tmp_path / "unpickled"
    path = write(name, evil_pickle(marker, protocol))
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.load_file(path)
    err = e.value
    assert (err.kind, err.format, err.path) == ("refused_format", "pickle", str(path))
    assert "pickle" in str(err).lower() and "safetensors" in str(err)
    assert isinstance(err, sandload.Error) and not isinstance(err, sandload.LimitExceeded)
    assert not marker.exists()
    # The report names what unpickling would have called.
    report = sandload.inspect(path)
    assert report["verdict"] == "rejected"
    assert "open" in json.dumps(report["pickle"])


@pytest.mark.parametrize(
    "layout,fmt",
    [(torch_zip, "pytorch-zip"), (torch_legacy_tar, "pytorch-tar")],
)
def test_pytorch_layouts_are_refused(write, tmp_path, layout, fmt):
    marker = tmp_path / "unpickled"
    path = write("model.safetensors", layout(evil_pickle(marker, 2)))
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.safe_open(path)
    assert e.value.format == fmt, e.value.record
    assert not marker.exists()


@pytest.mark.parametrize(
    "data,fmt",
    [
        (lambda: samples.hdf5(), "hdf5"),
        (lambda: samples.gguf(), "gguf"),
        (lambda: b"\x93NUMPY" + bytes([1, 0]) + struct.pack("<H", 118) + b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }".ljust(117) + b"\n" + pickle.dumps([1]), "numpy"),
    ],
)
def test_other_formats_are_named(write, data, fmt):
    path = write("model.safetensors", data())
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.load_file(path)
    assert e.value.format == fmt, e.value.record


@pytest.mark.parametrize(
    "make,rule",
    [
        (lambda: samples.pickle_polyglot("os", "system", "echo pwned"), "pickle_polyglot"),
        (lambda: samples.zip_polyglot(), "zip_polyglot"),
    ],
)
def test_polyglots_are_refused_with_their_rule(write, make, rule):
    path = write("model.safetensors", make())
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.load_file(path)
    assert e.value.rule == rule
    assert e.value.offset is not None


@pytest.mark.parametrize(
    "header,rule",
    [
        ('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', "duplicate_key"),
        ('{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', None),
        ('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]', None),
        ('{"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}', None),
    ],
)
def test_corrupt_headers_are_malformed(write, header, rule):
    path = write("model.safetensors", with_header(header, b"\0" * 8))
    with pytest.raises(sandload.Malformed) as e:
        sandload.load_file(path)
    assert e.value.kind == "malformed" and e.value.path == str(path)
    if rule:
        assert e.value.rule == rule
    import safetensors.numpy

    if rule == "duplicate_key":
        # The parser disagreement this rule exists for: the reference keeps one of the copies.
        assert list(safetensors.numpy.load_file(str(path))) == ["a"]
    else:
        with pytest.raises(Exception):
            safetensors.numpy.load_file(str(path))


def test_header_bomb_is_a_limit_before_allocation(write):
    # The length prefix claims a 2 GiB header in a 40-byte file.
    path = write("model.safetensors", (2**31).to_bytes(8, "little") + b"{" * 32)
    with pytest.raises((sandload.LimitExceeded, sandload.Malformed)) as e:
        sandload.load_file(path)
    sb = sandload.Sandbox(max_header_bytes=1024)
    big = write("big.safetensors", safetensors_bytes({f"t{i}": np.zeros(1, np.float32) for i in range(100)}))
    with pytest.raises(sandload.LimitExceeded) as e:
        sb.load_file(big)
    assert (e.value.limit, e.value.limit_value) == ("max_header_bytes", 1024)
    assert e.value.value > 1024


def test_tensor_count_and_file_size_limits(write):
    path = write("many.safetensors", safetensors_bytes({f"t{i}": np.zeros(1, np.uint8) for i in range(50)}))
    with pytest.raises(sandload.LimitExceeded) as e:
        sandload.Sandbox(max_tensors=10).load_file(path)
    assert (e.value.limit, e.value.limit_value) == ("max_tensors", 10)
    assert e.value.value > 10  # the guest stops counting past the limit
    with pytest.raises(sandload.LimitExceeded) as e:
        sandload.Sandbox(max_file_bytes=100).load_file(path)
    assert e.value.limit == "max_file_bytes"


def test_missing_file_is_an_io_error_and_an_oserror(tmp_path):
    with pytest.raises(sandload.IoError) as e:
        sandload.load_file(tmp_path / "nope.safetensors")
    assert isinstance(e.value, OSError) and e.value.kind == "io"
    with pytest.raises(OSError):
        sandload.imread(tmp_path / "nope.dng")
    with pytest.raises(sandload.IoError, match="not a regular file"):
        sandload.load_file(tmp_path)  # a directory without an index


def test_errors_pickle_across_processes(write):
    path = write("x.safetensors", pickle.dumps([1]))
    with pytest.raises(sandload.Error) as info:
        sandload.load_file(path)
    e = info.value
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is sandload.RefusedFormat
    assert (again.kind, again.path, again.format, str(again)) == (e.kind, e.path, e.format, str(e))


def test_wrong_argument_types():
    with pytest.raises(TypeError, match="path"):
        sandload.load_file(42)
    with pytest.raises(ValueError, match="data_access"):
        sandload.Sandbox(data_access="mmap")
    with pytest.raises(ValueError, match="guest_time"):
        sandload.Sandbox(guest_time=-1)
