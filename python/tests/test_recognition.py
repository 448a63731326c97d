"""Refusals say what the file is: big and framed pickles are pickles, a pickle hidden in a zip
is found by content, 7z is 7z, the receipt shows the guest that walked the pickle, and Python
users get Python advice."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

import sandload


def test_a_large_framed_protocol_4_pickle_is_a_pickle(write):
    obj = {"weights": [float(i) for i in range(60_000)], "config": collections.OrderedDict(layers=3)}
    data = pickle.dumps(obj, protocol=4)
    assert len(data) > 500_000
    report = sandload.inspect(write("model.bin", data))
    assert report["format"] == "pickle", report
    assert "collections.OrderedDict" in report["pickle"]["imports"]


def test_a_pickle_whose_last_frame_is_short_is_a_pickle(write):
    data = pickle.dumps({"w": list(range(30_000)), "d": collections.OrderedDict()}, protocol=5)
    # Claim a longer last frame than the file holds: pickle._Unpickler still runs what is there.
    last = data.rfind(b"\x95")
    (length,) = struct.unpack_from("<Q", data, last + 1)
    short = data[: last + 1] + struct.pack("<Q", length + 10_000) + data[last + 9 :]
    report = sandload.inspect(write("model.bin", short))
    assert report["format"] == "pickle", report


def test_a_pickle_in_a_zip_is_found_by_content(write, tmp_path):
    marker = tmp_path / "MARKER"
    from conftest import evil_pickle

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("readme.md", "hello")
        z.writestr("data.txt", evil_pickle(marker, 2))
    report = sandload.inspect(write("model.safetensors", buf.getvalue()))
    assert report["verdict"] == "rejected"
    assert "data.txt" in report["error"]["message"], report["error"]
    assert any(i.endswith(".open") for i in report["pickle"]["imports"]), report["pickle"]
    assert report["pickle"]["streams"] == ["data.txt"]


def test_object_arrays_in_an_npz_are_walked(write):
    buf = io.BytesIO()
    np.savez(buf, plain=np.arange(4), objects=np.array([collections.OrderedDict(a=1), None], dtype=object))
    report = sandload.inspect(write("weights.npz", buf.getvalue()))
    assert report["format"] == "numpy", report
    assert "collections.OrderedDict" in report["pickle"]["imports"], report["pickle"]
    assert any("objects.npy" in s for s in report["pickle"]["streams"])


def test_7z_is_named(write):
    data = b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24) + b"payload"
    report = sandload.inspect(write("model.safetensors", data))
    assert (report["verdict"], report["format"]) == ("rejected", "7z"), report


def test_the_receipt_shows_the_guest_that_walked_the_pickle(write, tmp_path):
    from conftest import evil_pickle

    report = sandload.inspect(write("model.pt", evil_pickle(tmp_path / "m", 2)))
    assert report["receipt"]["guest"] == "pickle-scan", report["receipt"]
    assert report["receipt"]["guest_peak_memory_bytes"] > 0


class Estimator:
    """Stands in for a fitted scikit-learn estimator (its module is what the advice keys on)."""


def test_advice_matches_what_the_pickle_holds(write):
    sklearn_like = pickle.dumps({"coef": np.arange(3.0)}, protocol=4)  # imports numpy
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.load_file(write("model.joblib", sklearn_like))
    assert "joblib.load" in str(e.value) and "torch.load" not in str(e.value), str(e.value)
    # A torch pickle keeps the torch recipe.
    torch_like = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00."
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.load_file(write("model.pt", torch_like))
    assert "torch.load(path, weights_only=True)" in str(e.value), str(e.value)


def test_python_messages_name_the_python_api(write):
    # The library's advice for a PNG handed to the RAW decoder names `Sandbox::decode_image`.
    png = b"\x89PNG\r\n\x1a\n" + bytes(32)
    with pytest.raises(sandload.RefusedFormat) as e:
        sandload.imread(write("shot.dng", png))
    assert "Sandbox::" not in str(e.value) and "sandload.decode_image" in str(e.value), str(e.value)
    assert "sandload.decode_image" in e.value.record["message"]


def test_a_global_across_a_frame_boundary_is_reported_as_cpython_resolves_it(write):
    # FRAME(2) holds "co"; the GLOBAL's line goes on after the frame. CPython's C unpickler
    # reads the line across the boundary and looks up os.system (the pure-Python one refuses).
    data = b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00cos\nsystem\n."
    import pickle

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            self.found = (module, name)
            raise RuntimeError("recorded")

    r = Recorder(io.BufferedReader(io.BytesIO(data)))
    with pytest.raises(RuntimeError):
        r.load()
    assert r.found == ("os", "system")
    report = sandload.inspect(write("model.pkl", data))
    assert report["format"] == "pickle" and report["pickle"]["imports"] == ["os.system"], report
