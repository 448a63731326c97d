"""Load + touch of a large checkpoint: sandload's copy-on-write arrays against safetensors.

What a pipeline does with a checkpoint: load every tensor, then read it (inference) or write it in
place (fine-tuning, in-place casts). Each measurement runs in a fresh Python process, so that its
peak RSS (VmHWM) is its own, and every configuration is measured in every round, interleaved, so a
noisy moment on the machine hits all of them alike. Reported: the median over rounds of load time,
touch time, peak RSS, anonymous memory (private copies) and file-backed resident memory, and the
median of the per-round ratios against safetensors with the same framework and touch.

Configurations (numpy, and torch when it is importable):
- ``sandload``: ``sandload.safe_open`` (writable arrays: each a private copy-on-write mapping of its
  tensor's range of the checked file; no copy until a page is written);
- ``sandload-readonly``: ``readonly=True`` (read-only views of one shared mapping; read touch only);
- ``safetensors``: ``safetensors.safe_open`` (each tensor copied out of safetensors' mapping).

Touch ``read`` sums every tensor (reads every byte), ``write`` adds 1 to every element in place.
The file is in the page cache for every run (written just before, and read once first).

    python benches/checkpoint_memory.py [--gib 1] [--rounds 5] [--tensors 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = ["sandload", "sandload-readonly", "safetensors"]


def status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(config: str, framework: str, touch: str, path: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import numpy as np

    if framework == "pt":
        import torch  # noqa: F401  (imported before the clock starts, as in a pipeline)
    import safetensors
    import sandload

    base = {k: status_mib(k) for k in ("VmRSS", "RssAnon", "RssFile")}
    t0 = time.perf_counter()
    if config == "safetensors":
        with safetensors.safe_open(path, framework=framework) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    else:
        with sandload.safe_open(path, framework=framework, readonly=config == "sandload-readonly") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    t1 = time.perf_counter()
    checksum = 0.0
    for t in tensors.values():
        if touch == "read":
            checksum += float(t.sum(dtype=np.float64)) if framework == "np" else float(t.sum(dtype=torch.float64))
        else:
            t += 1
            checksum += float(t[0])
    t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "load_s": t1 - t0,
                "touch_s": t2 - t1,
                "peak_rss_mib": status_mib("VmHWM") - base["VmRSS"],
                "anon_mib": status_mib("RssAnon") - base["RssAnon"],
                "file_mib": status_mib("RssFile") - base["RssFile"],
                "checksum": checksum,
            }
        )
    )


def write_checkpoint(path: str, gib: float, tensors: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    per = int(gib * (1 << 30)) // 4 // tensors
    # Distinct contents per tensor, so a checksum catches a tensor served from the wrong range.
    save_file({f"layer.{i}.weight": np.full(per, i % 7 + 0.5, np.float32) for i in range(tensors)}, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tensors", type=int, default=64)
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "FRAMEWORK", "TOUCH", "PATH"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    frameworks = ["np"]
    try:
        import torch  # noqa: F401

        frameworks.append("pt")
    except ImportError:
        print("torch is not importable: numpy rows only", file=sys.stderr)
    runs = [
        (config, fw, touch)
        for fw in frameworks
        for touch in ("read", "write")
        for config in CONFIGS
        if not (config == "sandload-readonly" and touch == "write")
    ]
    results: dict = {run: [] for run in runs}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
        path = os.path.join(d, "big.safetensors")
        write_checkpoint(path, args.gib, args.tensors)
        with open(path, "rb") as f:  # into the page cache for every run alike
            while f.read(1 << 24):
                pass
        for _ in range(args.rounds):
            for run in runs:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", *run, path], capture_output=True, text=True, check=True
                ).stdout
                results[run].append(json.loads(out.splitlines()[-1]))
    print(f"\n{args.gib:g} GiB checkpoint, {args.tensors} F32 tensors, {args.rounds} rounds (medians; ratio = median of per-round ratios vs safetensors)\n")
    print("| framework | touch | loader | load | touch | load + touch | ratio | peak RSS | anonymous | file-backed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        config, fw, touch = run
        rs = results[run]
        theirs = results[("safetensors", fw, touch)]
        sums = {round(r["checksum"], 3) for r in rs + theirs}
        assert len(sums) == 1, f"{run}: checksums differ from safetensors': {sums}"
        total = [r["load_s"] + r["touch_s"] for r in rs]
        ratio = statistics.median(a / (b["load_s"] + b["touch_s"]) for a, b in zip(total, theirs))
        med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
        print(
            f"| {fw} | {touch} | {config} | {med('load_s') * 1e3:.0f} ms | {med('touch_s') * 1e3:.0f} ms | "
            f"{statistics.median(total) * 1e3:.0f} ms | {ratio:.2f} | {med('peak_rss_mib'):.0f} MiB | "
            f"{med('anon_mib'):.0f} MiB | {med('file_mib'):.0f} MiB |"
        )


if __name__ == "__main__":
    main()
