"""Files/s of the Ray Data example pipeline with sandload vs the same pipeline with rawpy,
safetensors and Pillow in-process, on the same generated corpus, in one run:

    python benches/ray_throughput.py [--files 400] [--cpus 2] [--raw-size 2000x1500]

Each engine runs twice on a warm Ray; the second run is reported (the first pays actor start-up
and, for sandload, loading compiled guests from the cache).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import corpus  # noqa: E402
import ray_ingest  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--raw-size", default="2000x1500")
    args = parser.parse_args()
    w, h = (int(x) for x in args.raw_size.split("x"))
    examples = str(Path(__file__).resolve().parents[1] / "examples")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": examples}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "corpus"
        corpus.make_corpus(root, args.files, raw_size=(w, h))
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"corpus: {args.files} files, {size / 2**20:.0f} MiB, RAW frames {w}x{h}; {args.cpus} CPUs, {args.cpus} actors")
        print("| engine | files/s | seconds | accepted | rejected | worker peak RSS |")
        print("|---|---|---|---|---|---|")
        for engine in ("sandload", "native"):
            for attempt in range(2):
                out = Path(d) / f"out-{engine}-{attempt}"
                result = ray_ingest.run(str(root), str(out), workers=args.cpus, engine=engine)
            print(
                f"| {engine} | {result['files_per_second']:.1f} | {result['seconds']:.1f} | {result['accepted']} | "
                f"{result['rejected']} | {result['worker_peak_rss_bytes'] / 2**20:.0f} MiB |"
            )
            table = pd.read_parquet(result["table"])
            if engine == "native":
                accepted = table[table.verdict == "accepted"].path.map(lambda p: os.path.relpath(p, root))
                hostile = [p for p in accepted if any(k in p for k in ("pickle", "polyglot", "pytorch", "bomb", "dup", "lying", "cut"))]
                print(f"|   native accepted {len(hostile)} hostile files: {sorted(set(Path(p).name.rstrip('0123456789.safetensorsdngpnbi') for p in hostile))} |")
    ray.shutdown()


if __name__ == "__main__":
    main()
