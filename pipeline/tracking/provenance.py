"""Where results come from: git state, package versions, the DVC lock file."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.artifacts import flatten

KEY_MODULES = ("torch", "sklearn", "imblearn", "xgboost", "numpy", "pandas", "mlflow", "dvc", "matplotlib")


def _git(*args: str, cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_tags(cwd: str | Path | None = None) -> dict[str, str]:
    """``git_commit`` and ``git_dirty`` (code or params differ from the commit; the pipeline's own
    records, ``dvc.lock`` and ``reports/``, do not count), ``unknown`` outside a git repo."""
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!dvc.lock", ":!reports", cwd=cwd)
    return {
        "git_commit": commit or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
    }


def commit_date(cwd: str | Path | None = None) -> str:
    """The HEAD commit's date (ISO 8601), or ``unknown``."""
    return _git("show", "-s", "--format=%cI", "HEAD", cwd=cwd) or "unknown"


def package_versions(modules: tuple[str, ...] = KEY_MODULES) -> dict[str, str]:
    """``module -> version`` of the distribution that provides each importable module, found by
    the module's import name (``xgboost`` is installed as ``xgboost-cpu``, ``sklearn`` as
    ``scikit-learn``); ``version (distribution)`` when the names differ, ``not installed`` if none."""
    providers = metadata.packages_distributions()
    out = {}
    for module in modules:
        dists = providers.get(module, [])
        dist = module if module in dists else (dists[0] if dists else None)
        if dist is None:
            out[module] = "not installed"
            continue
        version = metadata.version(dist)
        out[module] = version if dist == module else f"{version} ({dist})"
    return out


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_lock(path: str | Path) -> dict[str, Any]:
    """The parsed ``dvc.lock`` at ``path`` ({} where there is none yet)."""
    import yaml

    path = Path(path)
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def lock_hashes(lock: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Each stage's ``dvc.lock`` entry as a short sha256 (what it ran on and made), ``skip`` left out."""
    import json

    return {
        stage: hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:16]
        for stage, entry in _stages(lock, skip).items()
    }


def _stages(lock: dict[str, Any] | None, skip: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in sorted((lock or {}).get("stages", {}).items()) if k not in skip}


def lock_outputs(lock: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """``stage -> output path -> md5`` from a parsed ``dvc.lock``, stages in ``skip`` left out."""
    return {
        stage: {o["path"]: o.get("md5", "") for o in entry.get("outs", [])}
        for stage, entry in _stages(lock, skip).items()
    }


def lock_params(lock: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every parameter the stages recorded in ``dvc.lock``, flattened to ``block.key``."""
    flat: dict[str, Any] = {}
    for entry in _stages(lock, skip).values():
        for values in entry.get("params", {}).values():
            flat.update(flatten(values, sep="."))
    return dict(sorted(flat.items()))
