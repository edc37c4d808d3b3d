"""The code is written in one style, ``ruff format`` at the project's line length (pyproject.toml):
``make format`` writes it so, and this test fails on code that is not."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_code_is_formatted():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "pipeline", "stages", "bench", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"run `make format`:\n{out.stdout}{out.stderr}"
