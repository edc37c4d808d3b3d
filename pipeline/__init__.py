"""Imbalanced-classification experiment pipeline.

The sub-packages follow the data: ``data`` -> ``training`` -> ``decision`` -> ``evaluation`` ->
``tracking`` -> ``report``. A module imports from its own sub-package, an earlier one, or the
shared modules here (``config``, the loss and rule tables ``loss_specs`` and ``rule_specs``,
``artifacts``, the files the stages hand each other, and ``io``); never from a later one
(``tests/test_layout.py``). Everything here computes; the DVC entry points in ``stages/`` read
and write files, and ``pipeline.tracking.runs`` is the one module that talks to MLflow.
"""


class PipelineError(Exception):
    """Bad input a user can fix: the message is one line naming the file, key or column."""


def resolve(path: str, what: str):
    """The function a table names as ``"<module>:<function>"`` (a loss's or a decision rule's);
    a one-line error naming ``what`` when it cannot be imported."""
    import importlib

    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise PipelineError(f"{what} {path!r} cannot be imported") from None


class Interrupted(BaseException):
    """The stage was asked to stop (SIGTERM); raised where it stood, like KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def exit_interrupted(signum: int) -> None:
    """End a process stopped by ``signum`` (Ctrl-C, SIGTERM) once it has unwound: its atexit
    handlers run (logging's flush, libraries' temporary directories), then it exits with
    128 + ``signum`` without waiting for its threads.

    A signal lands wherever the process stood, in a library too. Raised while a thread pool
    starts a worker (MLflow downloads through one while it logs a model), it leaves that worker
    known to no pool and waiting for work for ever; a normal exit would wait for it and hang."""
    import atexit
    import os
    import sys

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(128 + signum)
