"""Each stage in dvc.yaml lists, in its deps, every project module its command imports.

Otherwise editing that module would not re-run the stage and DVC's cache would silently go
stale. Imports are read with ``ast`` (every ``import`` statement, at any depth), followed through
the project's own modules only.
"""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def _module_file(name: str) -> Path | None:
    """The project file of a dotted module name, or None outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    path = ROOT.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _run_time_nodes(tree: ast.AST):
    """Every node, except the bodies of ``if TYPE_CHECKING:`` (never executed)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in (child, *_run_time_nodes(child)))
            continue
        yield node
        yield from _run_time_nodes(node)


def _imports(path: Path) -> set[str]:
    """Dotted names of the modules ``path`` imports (``from a import b`` may name module a.b)."""
    names = set()
    for node in _run_time_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_imports(module: str) -> set[str]:
    """Repository-relative paths of every project file that importing ``module`` executes."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py too
        for i in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imports(path))
    return {str(p.relative_to(ROOT)) for p in seen}


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def _declared(stage: dict) -> set[str]:
    return {d for d in stage.get("deps", []) if isinstance(d, str)}


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_declares_every_project_module_it_imports(name):
    stage = _stages()[name]
    module = re.search(r"python -m ([\w.]+)", stage["cmd"]).group(1)
    declared = _declared(stage)
    missing = sorted(
        f
        for f in project_imports(module)
        if f not in declared and not any(f.startswith(d.rstrip("/") + "/") for d in declared)
    )
    assert not missing, f"stage {name} imports {missing} but does not list them in dvc.yaml deps"


def test_the_import_reader_follows_imports_through_modules(tmp_path):
    # stages.train reaches pipeline.training.model only through pipeline.training.sweep / pipeline.training.train
    found = project_imports("stages.train")
    assert {
        "stages/train.py",
        "stages/__init__.py",
        "pipeline/__init__.py",
        "pipeline/training/model.py",
        "pipeline/training/sweep.py",
        "pipeline/loss_specs.py",
    } <= found
    assert "pipeline/report/render.py" not in found


def test_train_stage_declares_the_modules_of_every_loss_in_the_table():
    from pipeline.loss_specs import LOSS_SPECS

    declared = _declared(_stages()["train"])
    for spec in LOSS_SPECS.values():
        for path in filter(None, (spec.function, spec.inputs)):
            module_file = _module_file(path.partition(":")[0])
            assert module_file is not None and str(module_file.relative_to(ROOT)) in declared, (spec.name, path)
