"""The compiled-guest cache: what lets a new process (a Ray worker) skip compiling guests."""

from __future__ import annotations

import os
import subprocess
import sys

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)


def test_a_cache_directory_receives_compiled_guests(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    sb = sandload.Sandbox(cache=cache)
    sb.decode_image(samples.png(4, 4))
    assert any(name.startswith("image-decoder-") for name in os.listdir(cache))


def test_no_cache_writes_nothing(tmp_path):
    env = dict(os.environ, SANDLOAD_CACHE_DIR=str(tmp_path / "c"))
    code = "import sandload; from sandload._sandload import samples; sandload.Sandbox(cache=False).decode_image(samples.png(4, 4))"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert not (tmp_path / "c").exists()


def test_the_user_cache_follows_the_environment(tmp_path):
    env = dict(os.environ, SANDLOAD_CACHE_DIR=str(tmp_path / "c"))
    code = "import sandload; from sandload._sandload import samples; sandload.Sandbox().decode_image(samples.png(4, 4))"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    assert os.listdir(tmp_path / "c")


def test_a_cache_others_can_write_is_not_used(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = dict(os.environ, SANDLOAD_CACHE_DIR=str(shared))
    code = "import sandload; from sandload._sandload import samples; sandload.Sandbox().decode_image(samples.png(4, 4))"
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "writable by group or others" in run.stderr and "RuntimeWarning" in run.stderr
    assert os.listdir(shared) == []
