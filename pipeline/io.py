"""File helpers for the stages: atomic writes, so a failed stage leaves nothing half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import PipelineError


def read_json(path: str | Path, *, what: str = "file") -> Any:
    """Parsed JSON of ``path``; a missing file is a one-line error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: {what} not found (run the stage that writes it first)") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_parquet(path: str | Path, *, what: str = "file", columns: list[str] | None = None) -> pd.DataFrame:
    """The frame in ``path`` (only ``columns`` when given); a missing or unreadable file is a
    one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: {what} not found (run the stage that writes it first)")
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PipelineError(
            f"{path}: {what} is not a readable Parquet file ({first}); re-run the stage that writes it"
        ) from None


def dumps(obj: Any) -> str:
    """JSON text with stable key order and a trailing newline (diff- and DVC-friendly)."""
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temp file, then rename)."""
    write_text(path, dumps(obj))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (temp file, then rename), mode 0644 under the
    usual umask (the temp file's own 0600 would otherwise stay)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dirs(*paths: str | Path) -> Iterator[list[Path]]:
    """Fill fresh temp directories, then swap each into place; on error remove them all.

    Yields one temp directory per path (siblings of the targets, so the final rename stays on
    one file system). Existing targets are replaced only once the whole block has succeeded.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            temps.append(Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)))
            os.chmod(temps[-1], 0o777 & ~_umask())  # mkdtemp's 0700 would stay on the output
        yield temps
        for tmp, target in zip(temps, targets):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
