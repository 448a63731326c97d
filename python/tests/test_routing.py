"""One routing decision: the Python package and ``sandload inspect --json`` give every file of the
Rust suite's mixed set (``samples.mixed_corpus``) the same verdict, format, error and guest. The
library and ``sandload convert`` are compared with the CLI in ``tests/routing.rs``.

The CLI is the one the README's test command builds (``target/release/sandload``), or the one
``SANDLOAD_CLI`` names.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli() -> str:
    path = Path(os.environ.get("SANDLOAD_CLI", REPO / "target" / "release" / "sandload"))
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with `cargo build --release` (or set SANDLOAD_CLI)")
    return str(path)


def decision(record: dict) -> dict:
    """What must agree: the decision, not timings, digests or how paths are shown."""
    error = record.get("error") or {}
    receipt = record.get("receipt") or {}
    raw = record.get("raw") or {}
    image = record.get("image") or {}
    return {
        "verdict": record["verdict"],
        "format": record["format"],
        "kind": error.get("kind"),
        "rule": error.get("rule"),
        "limit": error.get("limit"),
        "guest": receipt.get("guest"),
        "raw": (raw.get("width"), raw.get("height")),
        "image": (image.get("width"), image.get("height")),
        "tensors": None if record.get("tensors") is None else len(record["tensors"]),
        "tensor_count": record.get("tensor_count"),
        "shards": None if record.get("shards") is None else [decision(s) for s in record["shards"]],
    }


def test_the_package_routes_every_file_as_the_cli_does(tmp_path, cli):
    paths = [str(p) for p in samples.mixed_corpus(str(tmp_path))]
    run = subprocess.run([cli, "inspect", "--json", "--jobs", "1", *paths], capture_output=True, text=True,
                         env={**os.environ, "SANDLOAD_CACHE_DIR": str(tmp_path / "cache")})
    assert run.returncode == 1, run.stderr  # some files are refused
    records = [json.loads(line) for line in run.stdout.splitlines()]
    records = [r for r in records if "path" in r]
    assert len(records) == len(paths)
    verdicts = set()
    for path, cli_record in zip(paths, records):
        ours = sandload.inspect(path)
        assert decision(ours) == decision(cli_record), path
        verdicts.add((ours["verdict"], ours["format"]))
    # The set is mixed: accepted and refused checkpoints, RAW files and images.
    for expected in [("accepted", "safetensors"), ("accepted", "dng"), ("accepted", "png"), ("accepted", "tiff"),
                     ("rejected", "pickle"), ("rejected", "safetensors")]:
        assert expected in verdicts, verdicts
