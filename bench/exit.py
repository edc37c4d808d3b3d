"""What a stage's exit costs, with and without :func:`gc.freeze` (what ``stages._cli.run`` does last).

    python -m bench.exit [--repeats 5]

For each set of imports a stage makes (torch; scikit-learn; MLflow; pandas and pyarrow), starts
Python, imports them, prints the time and exits, as it is and with ``gc.freeze()`` before the
exit, alternating the two ``--repeats`` times; the exit's cost is the time from that print to
the process's end as its parent sees it. Prints the medians and their ratio. A benchmark: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

IMPORTS = {
    "torch (train stages)": "torch",
    "scikit-learn (prepare, baselines, decide)": "sklearn.linear_model",
    "mlflow (evaluate, report)": "mlflow",
    "pandas, pyarrow (weights, plan)": "pandas, pyarrow",
}


def exit_seconds(imports: str, freeze: bool) -> float:
    code = f"import {imports}, gc, time\nprint(time.time(), flush=True)\n" + ("gc.freeze()\n" if freeze else "")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    end = time.time()
    return end - float(proc.stdout.split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print("| imports | exit s, as it is | exit s, gc.freeze() first | ratio |\n| --- | --- | --- | --- |")
    for label, imports in IMPORTS.items():
        plain, frozen = [], []
        for _ in range(args.repeats):
            plain.append(exit_seconds(imports, False))
            frozen.append(exit_seconds(imports, True))
        a, b = statistics.median(plain), statistics.median(frozen)
        print(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
