"""The ``sandload`` command a ``pip install`` puts on PATH (and ``python -m sandload``) is the Rust
binary's command line, run from the extension module: on the Rust suite's mixed set of files it
prints the same records (same schema, same decisions) and exits with the same statuses as
``target/release/sandload`` (or ``SANDLOAD_CLI``); usage errors, unreadable files, ``schema`` and
``convert`` too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandload._sandload import samples  # test file generators (built with the test-samples feature)

from test_routing import cli, decision  # noqa: F401 (cli is a fixture)

VOLATILE = ("receipt", "elapsed_us")


@pytest.fixture(scope="module")
def rust_cli(cli) -> str:
    """The Rust binary (test_routing's fixture: target/release/sandload or SANDLOAD_CLI)."""
    return cli


@pytest.fixture(scope="module")
def pip_cli() -> str:
    """The console script pip installed beside this interpreter."""
    path = Path(sys.executable).parent / "sandload"
    if not path.is_file():
        found = shutil.which("sandload")
        assert found, "the package did not install a `sandload` command"
        path = Path(found)
    return str(path)


def run(cmd, *args, tmp_path):
    env = {**os.environ, "SANDLOAD_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=600)


def stable(value):
    """A record without what differs from run to run (receipts: timings, peak memory), at any
    depth (a sharded checkpoint's shards have their own)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def test_pip_command_prints_and_exits_as_the_rust_binary(tmp_path, rust_cli, pip_cli):
    paths = [str(p) for p in samples.mixed_corpus(str(tmp_path))] + [str(tmp_path / "missing.bin")]
    ours = run([pip_cli], "inspect", "--json", "--jobs", "1", *paths, tmp_path=tmp_path)
    theirs = run([rust_cli], "inspect", "--json", "--jobs", "1", *paths, tmp_path=tmp_path)
    assert ours.returncode == theirs.returncode == 3, ours.stderr  # refused files and a missing one
    a = [json.loads(line) for line in ours.stdout.splitlines()]
    b = [json.loads(line) for line in theirs.stdout.splitlines()]
    assert len(a) == len(b) == len(paths) + 1  # a record per file, then the summary
    for x, y in zip(a, b):
        if "path" in x:
            assert decision(x) == decision(y), x["path"]
            assert stable(x) == stable(y), x["path"]
            assert sorted(x) == sorted(y)
    # Human output and its exit status.
    ours = run([pip_cli], "inspect", *paths[:3], tmp_path=tmp_path)
    theirs = run([rust_cli], "inspect", *paths[:3], tmp_path=tmp_path)
    assert ours.returncode == theirs.returncode
    assert ours.stdout.splitlines()[0].split()[:2] == theirs.stdout.splitlines()[0].split()[:2]


def test_usage_schema_and_convert_match(tmp_path, rust_cli, pip_cli):
    for args in (["--no-such-flag"], ["inspect"], ["--version"], ["schema"]):
        ours = run([pip_cli], *args, tmp_path=tmp_path)
        theirs = run([rust_cli], *args, tmp_path=tmp_path)
        assert ours.returncode == theirs.returncode, args
        assert ours.stdout == theirs.stdout, args
    assert run([pip_cli], "--no-such-flag", tmp_path=tmp_path).returncode == 2
    schema = json.loads(run([sys.executable, "-m", "sandload"], "schema", tmp_path=tmp_path).stdout)
    assert schema == json.loads(run([rust_cli], "schema", tmp_path=tmp_path).stdout)
    dng = tmp_path / "shot.dng"
    dng.write_bytes(samples.dng(64, 48))
    ours = run([pip_cli], "convert", str(dng), "--output", str(tmp_path / "a.png"), tmp_path=tmp_path)
    theirs = run([rust_cli], "convert", str(dng), "--output", str(tmp_path / "b.png"), tmp_path=tmp_path)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
