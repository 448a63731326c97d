"""The campaigns behind the promise, for hours rather than a test's seconds.

    python -m oracle campaign --seconds 3600 [--seed S] [--findings DIR]
        generated polyglot candidates of every family through sandload and every loader of the
        catalogue; any accepted file that a loader runs (or opens, for archives) is a finding,
        written to DIR with what each loader did. Prints counts per family as JSON.
    python -m oracle reference --count 100000 [--seed S]
        files from the reference writer (safetensors.numpy.save, random names, dtypes, shapes
        and data; safetensors.torch.save_file calls the same serializer): counts false refusals.

Needs the sandload package and the loaders (scripts/python-tests installs both).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from . import polyglots as P
from .loaders import Oracle


def campaign(seconds: float, seed: int, findings: Path, big: bool) -> dict:
    import sandload

    rng = random.Random(seed)
    stats: dict = {"seed": seed, "candidates": 0, "not_safetensors": 0, "accepted": 0, "refused": 0,
                   "reached_a_loader": 0, "refused_and_reached": 0, "findings": 0, "families": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, Oracle() as oracle:
        marker = os.path.join(tmp, "MARKER")
        path = Path(tmp) / "candidate.safetensors"
        while time.monotonic() - started < seconds:
            desc, data = P.generate(rng, marker, big=big)
            stats["candidates"] += 1
            family = stats["families"].setdefault(desc.split()[0], {"candidates": 0, "accepted": 0, "reached": 0})
            family["candidates"] += 1
            if not P.reference_loads(data):
                stats["not_safetensors"] += 1
                continue
            path.write_bytes(data)
            accepted = sandload.inspect(path)["verdict"] == "accepted"
            verdicts = oracle.run(path, marker)
            counted = {n: v.__dict__ for n, v in verdicts.items() if v.counts}
            stats["accepted" if accepted else "refused"] += 1
            family["accepted"] += accepted
            if counted:
                stats["reached_a_loader"] += 1
                family["reached"] += 1
                stats["refused_and_reached"] += not accepted
            if accepted and counted:
                stats["findings"] += 1
                findings.mkdir(parents=True, exist_ok=True)
                name = f"finding-{stats['findings']:04d}"
                (findings / f"{name}.safetensors").write_bytes(data)
                (findings / f"{name}.json").write_text(json.dumps({"candidate": desc, "loaders": counted}, indent=1))
    stats["seconds"] = round(time.monotonic() - started, 1)
    return stats


def reference(count: int, seed: int) -> dict:
    import numpy as np
    import sandload
    from safetensors.numpy import save

    rng = random.Random(seed)
    dtypes = [np.float32, np.float16, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.bool_]
    refused, header_lengths, started = [], set(), time.monotonic()
    for i in range(count):
        tensors = {}
        for t in range(rng.randint(1, 12)):
            shape = [rng.randint(0, 9) for _ in range(rng.randint(0, 4))]
            dtype = rng.choice(dtypes)
            n = int(np.prod(shape))
            kind = rng.random()
            if kind < 0.6:
                raw = rng.randbytes(n * np.dtype(dtype).itemsize)
            elif kind < 0.8:
                raw = bytes(n * np.dtype(dtype).itemsize)
            else:  # text-like and small-integer data, where pickle opcodes live
                raw = bytes(rng.choice(b"0123456789 .\n()cisSVp") for _ in range(n * np.dtype(dtype).itemsize))
            arr = np.frombuffer(raw, dtype=np.uint8).view(dtype if dtype is not np.bool_ else np.uint8).reshape(shape)
            if dtype is np.bool_:
                arr = np.asarray((arr & 1).astype(bool)).reshape(shape)
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz._/0123456789") for _ in range(rng.randint(1, 60)))
            tensors[name] = arr
        meta = {"format": "pt"} if rng.random() < 0.5 else None
        data = save(tensors, metadata=meta)
        header_lengths.add(int.from_bytes(data[:8], "little"))
        report = sandload.inspect(data, name=f"ref-{i}.safetensors")
        if report["verdict"] != "accepted":
            refused.append({"index": i, "error": report["error"]})
    return {"files": count, "refused": len(refused), "examples": refused[:10],
            "distinct_header_lengths": len(header_lengths), "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m oracle")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("campaign")
    c.add_argument("--seconds", type=float, default=3600)
    c.add_argument("--seed", type=int, default=int(time.time()))
    c.add_argument("--findings", type=Path, default=Path("oracle-findings"))
    c.add_argument("--no-big", action="store_true", help="skip the 67-85 MB variants")
    r = sub.add_parser("reference")
    r.add_argument("--count", type=int, default=100_000)
    r.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.cmd == "campaign":
        out = campaign(args.seconds, args.seed, args.findings, not args.no_big)
        print(json.dumps(out, indent=1))
        return 1 if out["findings"] else 0
    out = reference(args.count, args.seed)
    print(json.dumps(out, indent=1))
    return 1 if out["refused"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
