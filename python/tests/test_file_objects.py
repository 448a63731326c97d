"""File objects as inputs, as rawpy, safetensors' `load` and Pillow accept them: `open(p, "rb")`,
`io.BytesIO`, anything with `read`; text-mode files and over-limit streams are refused."""

from __future__ import annotations

import io

import numpy as np
import pytest

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)


class Reader:
    """The least a file object has: `read(n)`."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)


def test_binary_files_bytesio_and_readers_decode_as_paths_do(write):
    png = samples.png(11, 7)
    path = write("photo.png", png)
    expected = sandload.decode_image(path)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(sandload.decode_image(f), expected)
    np.testing.assert_array_equal(sandload.decode_image(io.BytesIO(png)), expected)
    np.testing.assert_array_equal(sandload.decode_image(Reader(png)), expected)
    dng = write("a.dng", samples.dng(32, 24))
    with open(dng, "rb") as f:
        np.testing.assert_array_equal(sandload.imread(f).raw_image, sandload.imread(dng).raw_image)


def test_a_file_object_is_named_by_its_own_name_in_errors(write):
    path = write("evil.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    with open(path, "rb") as f, pytest.raises(sandload.Error) as e:
        sandload.decode_image(f)
    assert str(path) in str(e.value)
    with pytest.raises(sandload.Error) as e:
        sandload.decode_image(Reader(b"\x89PNG\r\n\x1a\n"))
    assert "<file>" in str(e.value)


def test_text_mode_files_are_refused_with_the_fix(write):
    path = write("photo.png", samples.png(4, 4))
    with open(path, "r", encoding="latin-1") as f, pytest.raises(TypeError) as e:
        sandload.decode_image(f)
    assert '"rb"' in str(e.value)


def test_a_stream_over_max_file_bytes_is_refused_without_reading_it_all():
    sandbox = sandload.Sandbox(max_file_bytes=1000)
    stream = io.BytesIO(samples.png(64, 64) + b"\0" * 5000)
    with pytest.raises(sandload.LimitExceeded) as e:
        sandbox.decode_image(stream)
    assert e.value.limit == "max_file_bytes" and e.value.value == 1001
    assert stream.tell() == 1001, "read one byte past the limit, not to the end"


def test_io_errors_are_the_matching_builtins_with_the_whole_path(tmp_path):
    import errno
    import pickle

    missing = tmp_path / "deep" / "er" / "missing.png"
    with pytest.raises(FileNotFoundError) as e:
        sandload.decode_image(missing)
    assert isinstance(e.value, sandload.IoError) and isinstance(e.value, sandload.Error)
    assert e.value.errno == errno.ENOENT and e.value.filename == str(missing) and e.value.path == str(missing)
    with pytest.raises(IsADirectoryError) as e:
        sandload.decode_image(tmp_path)
    assert e.value.errno == errno.EISDIR and e.value.filename == str(tmp_path), e.value.filename
    assert str(tmp_path) in str(e.value)
    # They cross process boundaries whole.
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is type(e.value) and again.errno == errno.EISDIR and again.filename == str(tmp_path)


def test_checkpoints_open_from_file_objects(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "m.safetensors"
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    safetensors.save_file(tensors, str(path))
    with open(path, "rb") as f:
        loaded = sandload.load_file(f)
    np.testing.assert_array_equal(loaded["w"], tensors["w"])
    with sandload.safe_open(io.BytesIO(path.read_bytes()), "np") as f:
        assert f.keys() == ["w"]
    assert sandload.inspect(io.BytesIO(path.read_bytes()))["verdict"] == "accepted"
    # A pickle behind a file object is refused as a pickle, as from a path.
    import pickle

    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.load_file(io.BytesIO(pickle.dumps({"w": [1, 2, 3]})))
    assert e.value.format == "pickle"


def test_fsspec_and_pyarrow_file_systems(write, tmp_path):
    """Object stores come as fsspec or pyarrow file systems: their files are file objects, read
    into memory under max_file_bytes (fsspec's memory:// and pyarrow's local file system stand in
    for s3/gcs/hdfs, which open files of the same classes' interfaces)."""
    fsspec = pytest.importorskip("fsspec")
    pafs = pytest.importorskip("pyarrow.fs")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}
    blob = safetensors_numpy.save(tensors)
    dng = samples.dng(32, 24)
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/model.safetensors", blob)
    fs.pipe("/bucket/shot.dng", dng)
    with fsspec.open("memory://bucket/model.safetensors", "rb") as f:
        np.testing.assert_array_equal(sandload.load(f.read())["w"], tensors["w"])
    with fs.open("/bucket/model.safetensors", "rb") as f:
        with sandload.safe_open(f, framework="np") as st:
            np.testing.assert_array_equal(st.get_tensor("w"), tensors["w"])
    with fs.open("/bucket/shot.dng", "rb") as f:
        np.testing.assert_array_equal(sandload.imread(f).raw_image, sandload.imread(dng).raw_image)
    # pyarrow: NativeFile streams and random-access files.
    path = write("model.safetensors", blob)
    local = pafs.LocalFileSystem()
    with local.open_input_file(str(path)) as f:
        np.testing.assert_array_equal(sandload.load_file(f)["w"], tensors["w"])
    with local.open_input_stream(str(path)) as f:
        np.testing.assert_array_equal(sandload.load_file(f)["w"], tensors["w"])
    # Over the limit, a remote file is refused without being read past max_file_bytes + 1.
    fs.pipe("/bucket/big.safetensors", blob + b"\0" * 4096)
    with fs.open("/bucket/big.safetensors", "rb") as f, pytest.raises(sandload.LimitExceeded) as e:
        sandload.Sandbox(max_file_bytes=len(blob)).load_file(f)
    assert e.value.limit == "max_file_bytes"
    assert f.tell() == len(blob) + 1
