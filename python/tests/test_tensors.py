"""Checkpoints through sandload.safe_open / load_file, differential against the safetensors
package on the same files, and the zero-copy promise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import sandload
from conftest import safetensors_bytes, tensors_of_every_dtype, with_header


def test_load_file_matches_safetensors_on_every_dtype(write):
    path = write("model.safetensors", safetensors_bytes(tensors_of_every_dtype(), {"format": "np", "k": "v"}))
    ours = sandload.load_file(path)
    theirs = safetensors.numpy.load_file(str(path))
    assert sorted(ours) == sorted(theirs)
    for name, expected in theirs.items():
        got = ours[name]
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        assert got.tobytes() == expected.tobytes(), name
        assert got.flags.writeable == expected.flags.writeable, name  # writable, as safetensors'


def test_safe_open_mirrors_safetensors(write):
    path = write("model.safetensors", safetensors_bytes(tensors_of_every_dtype(), {"format": "np"}))
    with sandload.safe_open(path, framework="np") as ours, safetensors.safe_open(str(path), framework="np") as theirs:
        assert ours.keys() == list(theirs.keys())
        assert ours.metadata() == theirs.metadata()
        for name in theirs.keys():
            np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name))
            assert ours.get_slice(name).get_shape() == theirs.get_slice(name).get_shape()
            assert ours.get_slice(name).get_dtype() == theirs.get_slice(name).get_dtype()
        assert set(ours.offset_keys()) == set(ours.keys())


@pytest.mark.parametrize(
    "index",
    [
        np.s_[1:3],
        np.s_[:, 2],
        np.s_[-1],
        np.s_[1:6:2, ::-1],
        np.s_[..., 1],
        np.s_[2:2],
        np.s_[0, 0, :],
        np.s_[:],
    ],
)
def test_get_slice_is_numpy_indexing(write, index):
    full = np.arange(6 * 4 * 3, dtype=np.float32).reshape(6, 4, 3)
    path = write("m.safetensors", safetensors_bytes({"t": full}))
    with sandload.safe_open(path) as f:
        got = f.get_slice("t")[index]
    np.testing.assert_array_equal(got, full[index])


def test_get_slice_matches_safetensors_slicing(write):
    full = np.arange(10 * 8, dtype=np.int32).reshape(10, 8)
    path = write("m.safetensors", safetensors_bytes({"t": full}))
    with sandload.safe_open(path) as ours, safetensors.safe_open(str(path), framework="np") as theirs:
        for index in (np.s_[2:5], np.s_[:, 1:3], np.s_[7]):
            np.testing.assert_array_equal(ours.get_slice("t")[index], theirs.get_slice("t")[index])


def test_slice_errors_are_index_errors(write):
    path = write("m.safetensors", safetensors_bytes({"t": np.zeros((2, 2), np.float32)}))
    with sandload.safe_open(path) as f:
        with pytest.raises(IndexError):
            f.get_slice("t")[5]
        with pytest.raises(IndexError):
            f.get_slice("t")[0, 0, 0]
        with pytest.raises(TypeError):
            f.get_slice("t")[[0, 1]]
        with pytest.raises(KeyError):
            f.get_tensor("missing")


def _mapping_of(path: Path):
    """(start, end) of the read-only mappings of `path` in this process."""
    spans = []
    real = os.path.realpath(path)
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == real:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                spans.append((start, end, fields[1]))
    return spans


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_tensors_are_views_of_the_mapped_file(write):
    tensors = {"a": np.arange(1000, dtype=np.float32), "b": np.arange(4096, dtype=np.float64)}
    path = write("model.safetensors", safetensors_bytes(tensors))
    with sandload.safe_open(path, readonly=True) as f:
        a, b = f.get_tensor("a"), f.get_tensor("b")
        spans = _mapping_of(path)
        assert spans, "the file is not mapped"
        for arr in (a, b):
            addr = arr.ctypes.data
            assert any(start <= addr and addr + arr.nbytes <= end and perms.startswith("r-") for start, end, perms in spans), (
                hex(addr),
                spans,
            )
        # The distance between the arrays is their distance in the file.
        header_len = int.from_bytes(path.read_bytes()[:8], "little")
        hdr = json.loads(path.read_bytes()[8 : 8 + header_len])
        assert b.ctypes.data - a.ctypes.data == hdr["b"]["data_offsets"][0] - hdr["a"]["data_offsets"][0]
        assert a.base is not None and not a.flags.owndata and not a.flags.writeable
    # The arrays keep the mapping alive after the file object is gone.
    del f
    np.testing.assert_array_equal(a, tensors["a"])


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_writable_tensors_are_private_copy_on_write_mappings(write):
    """Writable like safetensors' arrays, without a copy: each array is a private mapping of its
    range of the checked file; writes stay in the process and in that array."""
    tensors = {"a": np.arange(100_000, dtype=np.float32), "b": np.arange(7, dtype=np.int64)}
    path = write("model.safetensors", safetensors_bytes(tensors))
    before = path.read_bytes()
    with sandload.safe_open(path) as f:
        a, again = f.get_tensor("a"), f.get_tensor("a")
        assert a.flags.writeable and again.flags.writeable
        spans = _mapping_of(path)
        addr = a.ctypes.data
        assert any(start <= addr and addr + a.nbytes <= end and perms == "rw-p" for start, end, perms in spans), (hex(addr), spans)
        a *= 2
        a[0] = -1.0
        np.testing.assert_array_equal(again, tensors["a"])  # another array: untouched
        np.testing.assert_array_equal(f.get_tensor("a"), tensors["a"])
        np.testing.assert_array_equal(f.get_slice("a")[:3], tensors["a"][:3])
        b = sandload.load_file(path)["b"]
        b += 1
        np.testing.assert_array_equal(b, tensors["b"] + 1)
    assert path.read_bytes() == before  # nothing reached the file
    del f
    assert a[0] == -1.0 and a[1] == 2.0  # the array keeps its mapping


def test_writable_arrays_from_bytes_read_mode_and_slices_are_copies(write):
    blob = safetensors_bytes({"a": np.arange(10, dtype=np.int64)})
    path = write("model.safetensors", blob)
    for arrays in (sandload.load(blob), sandload.Sandbox(data_access="read").load_file(path)):
        arrays["a"][:] = 0
        assert arrays["a"].flags.writeable and not arrays["a"].any()
    assert not sandload.load(blob, readonly=True)["a"].flags.writeable
    with sandload.safe_open(path) as f:
        part = f.get_slice("a")[2:5]
        part[:] = 9
        np.testing.assert_array_equal(f.get_tensor("a"), np.arange(10))


def test_read_mode_copies_once_and_keeps_values(write):
    path = write("model.safetensors", safetensors_bytes({"a": np.arange(10, dtype=np.int64)}))
    sb = sandload.Sandbox(data_access="read")
    a = sb.load_file(path)["a"]
    assert not _mapping_of(path)
    np.testing.assert_array_equal(a, np.arange(10))


def test_misaligned_tensor_is_an_aligned_copy(write):
    # U8 of 3 bytes first pushes the F32 tensor to offset 3: not 4-aligned.
    header = {
        "u": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
        "f": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]},
    }
    text = json.dumps(header)
    text += " " * ((8 - len(text) % 8) % 8)
    data = bytes([1, 2, 3]) + np.array([1.5, -2.0], "<f4").tobytes()
    path = write("odd.safetensors", with_header(text, data))
    out = sandload.load_file(path)
    np.testing.assert_array_equal(out["f"], np.array([1.5, -2.0], np.float32))
    assert out["f"].flags.aligned
    np.testing.assert_array_equal(out["f"], safetensors.numpy.load_file(str(path))["f"])


def test_bytes_input_and_load(write):
    data = safetensors_bytes({"x": np.ones((2, 2), np.float32)})
    np.testing.assert_array_equal(sandload.load(data)["x"], np.ones((2, 2)))
    np.testing.assert_array_equal(sandload.load(bytearray(data))["x"], np.ones((2, 2)))
    np.testing.assert_array_equal(sandload.load(memoryview(data))["x"], np.ones((2, 2)))
    with pytest.raises(TypeError):
        sandload.load("model.safetensors")


def test_bf16_and_float8_come_back_as_ml_dtypes(write):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([1.0, -2.5, 3.0, 0.125], np.float32)
    tensors = {
        "bf16": values.astype(ml_dtypes.bfloat16),
        "e4m3": values.astype(ml_dtypes.float8_e4m3fn),
        "e5m2": values.astype(ml_dtypes.float8_e5m2),
    }
    raw = {k: v.view(np.uint8) for k, v in tensors.items()}
    dtypes = {"bf16": "BF16", "e4m3": "F8_E4M3", "e5m2": "F8_E5M2"}
    header, offset, blob = {}, 0, b""
    for k, v in tensors.items():
        b = v.tobytes()
        header[k] = {"dtype": dtypes[k], "shape": list(v.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blob += b
    path = write("m.safetensors", with_header(json.dumps(header), blob))
    out = sandload.load_file(path)
    for k, v in tensors.items():
        assert out[k].dtype == v.dtype
        np.testing.assert_array_equal(out[k].astype(np.float32), values)
    # The same bytes as the reference reads them (it returns ml_dtypes too when it can).
    with safetensors.safe_open(str(path), framework="np") as ref:
        for k in tensors:
            try:
                expected = ref.get_tensor(k)
            except Exception:
                continue
            assert out[k].tobytes() == expected.tobytes()


def test_bf16_without_ml_dtypes_names_it(write, tmp_path):
    path = write("m.safetensors", with_header(json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}), b"\0" * 4))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["ml_dtypes"] = None  # import fails as if it were not installed
        import sandload
        with sandload.safe_open({str(path)!r}) as f:
            assert f.keys() == ["w"]
            try:
                f.get_tensor("w")
            except sandload.Unsupported as e:
                print(e.kind, e.rule, e)
            else:
                raise SystemExit("no error")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.startswith("unsupported needs_ml_dtypes "), out
    assert "pip install ml_dtypes" in out and "BF16" in out


def test_sub_byte_floats_are_unsupported_not_misread(write):
    path = write("m.safetensors", with_header(json.dumps({"w": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}), b"\0\0"))
    with sandload.safe_open(path) as f:
        with pytest.raises(sandload.Unsupported, match="below one byte"):
            f.get_tensor("w")


def test_framework_pt(write):
    path = write("m.safetensors", safetensors_bytes({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}))
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match="pip install torch"):
            sandload.safe_open(path, framework="pt")
        return
    with sandload.safe_open(path, framework="pt") as f:
        t = f.get_tensor("x")
        assert tuple(t.shape) == (2, 3) and str(t.dtype) == "torch.float32"
        assert t.tolist() == [[0, 1, 2], [3, 4, 5]]
        t.add_(1)  # writable: a private mapping, never the file
        assert f.get_slice("x")[1].tolist() == [3, 4, 5]
        assert f.get_tensor("x").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_unknown_framework_and_device(write):
    path = write("m.safetensors", safetensors_bytes({"x": np.zeros(1, np.float32)}))
    with pytest.raises(ValueError, match="framework"):
        sandload.safe_open(path, framework="caffe")
    with pytest.raises(ValueError, match="device"):
        sandload.safe_open(path, device="cuda:0")


def _sharded(tmp_path: Path):
    a = {"layer.0.w": np.arange(4, dtype=np.float32), "layer.0.b": np.ones(2, np.float32)}
    b = {"layer.1.w": np.arange(6, dtype=np.int16).reshape(2, 3)}
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(safetensors_bytes(a))
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(safetensors_bytes(b))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in a}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in b})
    total = sum(v.nbytes for v in list(a.values()) + list(b.values()))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return {**a, **b}


def test_sharded_checkpoint_through_its_index(tmp_path):
    expected = _sharded(tmp_path)
    for target in (tmp_path / "model.safetensors.index.json", tmp_path):
        with sandload.safe_open(target) as f:
            assert f.keys() == sorted(expected)
            for k, v in expected.items():
                np.testing.assert_array_equal(f.get_tensor(k), v)
            assert f.metadata() == {"total_size": str(sum(v.nbytes for v in expected.values()))} or f.metadata() is not None
            assert len(f.receipts()) == 2


def test_sharded_index_naming_a_missing_shard(tmp_path):
    _sharded(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(sandload.Error) as e:
        sandload.load_file(tmp_path / "model.safetensors.index.json")
    assert e.value.rule == "shard_missing"


def test_sharded_index_pointing_outside_its_directory(tmp_path):
    _sharded(tmp_path)
    (tmp_path / "outside.safetensors").write_bytes(safetensors_bytes({"x": np.zeros(1, np.float32)}))
    inner = tmp_path / "model"
    inner.mkdir()
    index = {"metadata": {}, "weight_map": {"x": "../outside.safetensors"}}
    (inner / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(sandload.Malformed) as e:
        sandload.load_file(inner)
    assert e.value.rule == "shard_path"


def test_a_pickle_under_an_index_name_is_still_a_pickle(tmp_path):
    import pickle

    (tmp_path / "model.safetensors.index.json").write_bytes(pickle.dumps({"weight_map": {}}, protocol=4))
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.load_file(tmp_path / "model.safetensors.index.json")
    assert e.value.format == "pickle"


def test_a_missing_tensor_raises_what_safetensors_raises(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    import safetensors.numpy

    path = tmp_path / "m.safetensors"
    safetensors.numpy.save_file({"a": np.zeros(3, np.float32)}, str(path))
    with safetensors.safe_open(str(path), "np") as theirs:
        with pytest.raises(safetensors.SafetensorError) as expected:
            theirs.get_tensor("b")
    with sandload.safe_open(path, "np") as ours:
        for call in (ours.get_tensor, ours.get_slice):
            with pytest.raises(sandload.SafetensorError) as got:
                call("b")
            assert str(got.value) == str(expected.value)
            assert isinstance(got.value, KeyError)


@pytest.mark.parametrize(
    "framework,module,package",
    [("flax", "jax", "jax"), ("jax", "jax", "jax"), ("tf", "tensorflow", "tensorflow"),
     ("mlx", "mlx", "mlx"), ("paddle", "paddle", "paddlepaddle")],
)
def test_other_frameworks_convert_or_name_the_package(framework, module, package, tmp_path, monkeypatch):
    import importlib.util
    import sys
    import types

    safetensors = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "m.safetensors"
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    safetensors.save_file({"w": weights}, str(path))
    if importlib.util.find_spec(module) is None:
        # Not installed here: the error names what to install, before anything is read.
        with pytest.raises(ModuleNotFoundError, match=f"pip install {package}") as e:
            sandload.safe_open(path, framework)
        assert e.value.name == module
    # With the framework importable (a stand-in module that records what it was handed), each
    # tensor is converted by that framework's own function from the numpy view.
    converted = []

    class Converted:
        def __init__(self, array):
            self.array = np.array(array)  # a copy, as the frameworks make

        def __getitem__(self, key):
            return Converted(self.array[key])

    def convert(array):
        converted.append(Converted(array))
        return converted[-1]

    convert_name = {"flax": "asarray", "jax": "asarray", "tf": "convert_to_tensor", "mlx": "array", "paddle": "to_tensor"}
    fake = types.ModuleType("fake")
    setattr(fake, convert_name[framework], convert)
    names = {"flax": ["jax", "jax.numpy"], "jax": ["jax", "jax.numpy"], "tf": ["tensorflow"],
             "mlx": ["mlx", "mlx.core"], "paddle": ["paddle"]}[framework]
    for name in names:
        monkeypatch.setitem(sys.modules, name, fake)
    with sandload.safe_open(path, framework) as f:
        whole = f.get_tensor("w")
        part = f.get_slice("w")[1:, ::2]
    assert isinstance(whole, Converted) and isinstance(part, Converted) and len(converted) == 2
    np.testing.assert_array_equal(whole.array, weights)
    np.testing.assert_array_equal(part.array, weights[1:, ::2])
