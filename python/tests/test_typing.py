"""The package's types match what it does: mypy's stubtest compares the extension module's stub
(`_sandload.pyi`) with the module itself, and mypy checks the package and a program that uses the
whole public API (`typing/api_usage.py`, with `assert_type` on what each call returns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")
HERE = Path(__file__).resolve().parent


def mypy(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args, "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        timeout=600,
    )


def test_stub_matches_the_extension_module(tmp_path):
    # Disjoint bases (PEP 800) are not marked: typing has no marker for them before 3.14.
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases", "sandload"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_package_and_a_program_using_its_api_type_check(tmp_path):
    run = mypy("mypy", "-p", "sandload", cache=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    run = mypy("mypy", str(HERE / "typing" / "api_usage.py"), cache=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_star_import_does_not_shadow_builtins():
    import builtins

    import sandload

    shadowed = sorted(set(sandload.__all__) & set(dir(builtins)))
    assert not shadowed, shadowed
    assert all(hasattr(sandload, name) for name in sandload.__all__)
