"""What every stage shares: logging set-up and turning user errors into one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from pipeline import PipelineError


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a :class:`PipelineError` prints ``error: <message>`` and exits 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
