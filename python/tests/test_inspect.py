"""sandload.inspect gives the CLI's JSON records, valid against the committed schema."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)
from conftest import safetensors_bytes

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schema" / "inspect.schema.json").read_text())


def _validate(record):
    jsonschema.validate(record, SCHEMA)


def test_records_for_every_kind_validate(write, tmp_path):
    files = {
        "model.safetensors": safetensors_bytes({"w": np.ones((2, 3), np.float32)}, {"format": "np"}),
        "frame.dng": samples.dng(64, 48),
        "image.png": samples.png(8, 8),
        "weights.safetensors": pickle.dumps({"a": 1}, protocol=4),
        "bomb.png": samples.png_with_header(60000, 60000, 0, b"\0" * 10),
        "junk.bin": b"\x00\x01garbage" * 10,
    }
    verdicts = {}
    for name, data in files.items():
        record = sandload.inspect(write(name, data), digest=True)
        _validate(record)
        assert record["schema_version"] == 1
        verdicts[name] = (record["verdict"], record["format"], (record.get("error") or {}).get("kind"))
    assert verdicts["model.safetensors"] == ("accepted", "safetensors", None)
    assert verdicts["frame.dng"][0] == "accepted"
    assert verdicts["image.png"][0] == "accepted"
    assert verdicts["weights.safetensors"] == ("rejected", "pickle", "refused_format")
    assert verdicts["bomb.png"][2] == "limit_exceeded"
    assert verdicts["junk.bin"][0] == "rejected"


def test_inspect_never_raises_for_a_bad_file(tmp_path):
    record = sandload.inspect(tmp_path / "missing")
    _validate(record)
    assert record["verdict"] == "rejected" and record["error"]["kind"] == "io"


def test_inspect_bytes_with_a_name():
    record = sandload.inspect(pickle.dumps([1]), name="upload.bin")
    assert record["path"] == "upload.bin" and record["format"] == "pickle"


def test_inspect_a_validator_that_can_fail():
    # The schema really constrains: a record with a wrong verdict fails.
    record = sandload.inspect(pickle.dumps([1]), name="x")
    record["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        _validate(record)
