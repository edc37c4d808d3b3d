"""What every stage shares: logging set-up, one-line errors, and a clean stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from pipeline import Interrupted, PipelineError, exit_interrupted, interruption


def quiet_console() -> None:
    """A line or two per stage: this package's INFO lines, MLflow's only from WARNING up (its
    per-model INFO lines and system-metrics notices say nothing a user acts on). ``LOGLEVEL=DEBUG``
    shows everything, MLflow's too. MLflow reads ``MLFLOW_LOGGING_LEVEL`` when imported, here and
    in the processes a stage starts; a level the user set stays."""
    level = os.environ.get("LOGLEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if level == "DEBUG" else "WARNING")


def _on_sigterm(signum, frame):
    raise Interrupted(signum)


def _unraisable(hook_args) -> None:
    """A stop raised where Python cannot raise one (a weakref callback, a finalizer: it prints
    "Exception ignored" and goes on) is delivered again a moment later, where it can stop the
    stage; anything else goes to Python's own hook."""
    if isinstance(hook_args.exc_value, Interrupted):
        again = threading.Timer(0.05, os.kill, (os.getpid(), hook_args.exc_value.signum))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(hook_args)


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main``.

    A :class:`PipelineError` prints ``error: <message>`` and exits 2. Ctrl-C (SIGINT) or SIGTERM
    unwinds the stage as an exception would: temporary files and directories are removed, open
    MLflow runs end as KILLED; then one line says so and the exit status is 128 + the signal
    number (130, 143), as a shell reports a process killed by it. No thread is waited for then
    (:func:`pipeline.exit_interrupted`): one a library was starting when the signal came would
    keep the stage from ever exiting.

    Then the process exits without the garbage collector's last passes over every object its
    imports made (:func:`gc.freeze`): files, atexit handlers and finalizers are still closed
    and run as ever, and the exit of a stage that imported torch takes a third of the time (``python -m bench.exit``).
    """
    quiet_console()
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.unraisablehook = _unraisable
    stage = os.environ.get("DVC_STAGE") or os.path.basename(sys.argv[0]).removesuffix(".py")
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BaseException as exc:
        stop = interruption(exc)  # a Ctrl-C or SIGTERM, or an error a library raised on its way out of one
        if stop is None:
            raise
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"interrupted: {stage} stopped by {name}; its temporary files are removed and its "
            "outputs were not replaced",
            file=sys.stderr,
        )
        exit_interrupted(signum)
    finally:
        gc.freeze()
