"""Imbalanced-classification experiment pipeline.

The sub-packages follow the data: ``data`` -> ``training`` -> ``decision`` -> ``evaluation`` ->
``tracking`` -> ``report``. A module imports from its own sub-package, an earlier one, or the
shared modules here (``config``, the loss and rule tables ``loss_specs`` and ``rule_specs``,
``artifacts``, the files the stages hand each other, and ``io``); never from a later one
(``tests/test_layout.py``). Everything here computes; the DVC entry points in ``stages/`` read
and write files, and ``pipeline.tracking.runs`` is the one module that talks to MLflow (besides
the logged model's own code, ``pipeline.tracking.mlflow_model``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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


def in_parallel(fn: Callable[..., Any], jobs: list[tuple], workers: int | None = None) -> list:
    """``[fn(*job) for job in jobs]``, in order, over forked worker processes (default: one per
    usable core, :func:`pipeline.config.usable_cores`, so none in a `dvc queue` worker).

    For CPU-bound Python (the rules' searches, drawing figures), where threads would not help.
    Forking shares ``fn`` and ``jobs`` with the workers without pickling them; only the results
    come back. An error, Ctrl-C or SIGTERM here terminates the workers at once, without waiting
    for the jobs still queued. The workers leave the signals to this process: SIGTERM ends one
    (its default), and Ctrl-C, which reaches the whole process group, is ignored there.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.config import usable_cores

    workers = min(workers or usable_cores(), len(jobs))
    if workers <= 1:
        return [fn(*job) for job in jobs]
    context = multiprocessing.get_context("fork")  # the workers get fn and jobs by forking: nothing pickled
    before = set(multiprocessing.active_children())
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=(fn, jobs)) as pool:
        try:
            futures = [pool.submit(_call, i) for i in range(len(jobs))]
            return [future.result() for future in futures]
        except BaseException:
            for worker in set(multiprocessing.active_children()) - before:  # this pool's
                worker.terminate()
            raise


_WORK = None  # (fn, jobs) in an in_parallel worker, set by _start


def _start(fn: Callable[..., Any], jobs: list[tuple]) -> None:
    """A worker's start: its jobs, and the signals left to the stage."""
    import signal

    global _WORK
    _WORK = (fn, jobs)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(i: int):
    fn, jobs = _WORK
    return fn(*jobs[i])


def interruption(exc: BaseException | None) -> BaseException | None:
    """The Ctrl-C (``KeyboardInterrupt``) or SIGTERM (:class:`Interrupted`) that ``exc`` is, or
    that it was raised while handling: a library's cleanup that fails on the way out (a temporary
    directory half-written when the signal came) turns the interruption into another error, which
    must stop the stage all the same."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            return exc
        seen.add(id(exc))
        exc = exc.__context__
    return None


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
