"""One Sandbox from many Python threads; the GIL is released while a guest runs."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import sandload
from sandload._sandload import samples  # test file generators (built with the test-samples feature)
from conftest import safetensors_bytes


def _outcome(sb, path):
    try:
        kind, _ = sb._open(path)
        return ("ok", kind)
    except sandload.Error as e:
        return (e.kind, e.rule)


def test_thread_pool_gives_the_sequential_results(write):
    sb = sandload.Sandbox(max_concurrent=4)
    paths = []
    for i in range(12):
        paths.append(write(f"m{i}.safetensors", safetensors_bytes({"w": np.full((i + 1, 3), i, np.float32)})))
        paths.append(write(f"p{i}.bin", pickle.dumps(list(range(i)), protocol=i % 6)))
        paths.append(write(f"d{i}.dng", samples.dng(32 + 2 * i, 32)))
        paths.append(write(f"i{i}.png", samples.png(8 + i, 8)))
    sequential = [_outcome(sb, p) for p in paths]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda p: _outcome(sb, p), paths * 3))
    assert parallel == sequential * 3
    assert sequential.count(("ok", "checkpoint")) == 12 and sequential.count(("ok", "raw")) == 12
    with ThreadPoolExecutor(8) as pool:
        arrays = list(pool.map(lambda i: sb.load_file(paths[4 * i])["w"], range(12)))
    for i, a in enumerate(arrays):
        np.testing.assert_array_equal(a, np.full((i + 1, 3), i, np.float32))


def test_the_gil_is_released_while_a_guest_runs(write):
    # Another Python thread can only see `guests_running == 1` if the decoding thread let go of
    # the GIL while its guest ran.
    sb = sandload.Sandbox()
    path = write("big.dng", samples.dng(3000, 2000, lossless_jpeg=True))
    done = threading.Event()
    seen = []

    def decode():
        try:
            for _ in range(3):
                sb.imread(path)
        finally:
            done.set()

    t = threading.Thread(target=decode)
    t.start()
    while not done.is_set():
        seen.append(sb.guests_running)
    t.join()
    assert 1 in seen, f"never saw a guest running in {len(seen)} polls"
