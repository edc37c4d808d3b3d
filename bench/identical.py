"""Do two commits produce the same results? Fresh clones of each, a fresh `dvc repro` of each, compared.

    python -m bench.identical OLD_REF [NEW_REF]        # NEW_REF defaults to HEAD

Each ref is cloned from this repository into a temporary directory and reproduced there with
this checkout's environment (``.venv``) and a new MLflow store of its own, one after the other on
this machine (torch's results differ between CPUs in the 8th digit, so only runs on one machine
compare). Then, for the default data:

- ``reports/metrics.json`` and ``reports/audit.json``: byte for byte;
- every model's training summary (its entry in ``outputs/models/<group>/training.json``): equal;
- every predictions Parquet file: equal frames (same columns, values bit for bit);
- every checkpoint's tensors: ``torch.equal``, whatever the container around them.

Prints one line per comparison and a verdict; exits 1 on any difference. A benchmark, not a
test: a later change to these outputs is made on purpose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def reproduce(ref: str, where: Path) -> float:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    subprocess.run(["git", "checkout", "-q", ref], cwd=where, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    proc = subprocess.run(["dvc", "repro"], cwd=where, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"dvc repro failed at {ref} in {where}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def _tensors(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def compare(old: Path, new: Path) -> list[str]:
    """One line per difference (empty when identical)."""
    import pandas as pd
    import torch

    diffs, checked = [], 0
    for name in ("reports/metrics.json", "reports/audit.json"):
        checked += 1
        if (old / name).read_bytes() != (new / name).read_bytes():
            diffs.append(f"{name}: bytes differ")
    for summary in sorted((old / "outputs/models").glob("*/training.json")):
        rel = summary.relative_to(old)
        a, b = json.loads(summary.read_text()), json.loads((new / rel).read_text())
        for model, entry in a["runs"].items():
            checked += 1
            if b["runs"].get(model) != entry:
                diffs.append(f"{rel}: {model}'s training summary differs")
    for pred in sorted((old / "reports/predictions").rglob("*.parquet")):
        rel = pred.relative_to(old)
        checked += 1
        if not (new / rel).is_file():
            diffs.append(f"{rel}: missing")
        elif not pd.read_parquet(pred).equals(pd.read_parquet(new / rel)):
            diffs.append(f"{rel}: predictions differ")
    for ckpt in sorted((old / "outputs/models").rglob("*.pt")):
        rel = ckpt.relative_to(old)
        a, b = _tensors(ckpt), _tensors(new / rel)
        checked += 1
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            diffs.append(f"{rel}: tensors differ")
    print(f"compared {checked} outputs")
    return diffs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="the reference commit")
    ap.add_argument("new", nargs="?", default="HEAD")
    ap.add_argument("--keep", action="store_true", help="keep the two clones (their paths are printed)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="identical-"))
    try:
        for label, ref in (("old", args.old), ("new", args.new)):
            seconds = reproduce(ref, work / label)
            print(f"{label} {ref}: dvc repro in {seconds:.1f} s ({work / label})")
        diffs = compare(work / "old", work / "new")
        for line in diffs:
            print("DIFFERENT", line)
        print("identical" if not diffs else f"{len(diffs)} difference(s)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
