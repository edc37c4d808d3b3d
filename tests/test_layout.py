"""The layout of ``pipeline/`` shows the flow of the data, and its imports go one way."""

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
# the concerns in the order the data flows through them; the shared modules at the top level come first
ORDER = ("", "data", "training", "decision", "evaluation", "tracking", "report")


def concern(module: str, root: Path = PIPELINE) -> str:
    """``pipeline.training.train`` -> ``training``; a top-level module (``pipeline.config``) -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (root / parts[1]).is_dir() else ""


def imports(path: Path) -> set[str]:
    """The ``pipeline`` modules ``path`` may import, at its top or inside a function (``from
    pipeline import x`` names ``pipeline`` and ``pipeline.x``); a relative import is an error."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import; write it as pipeline.<concern>.<module>"
            if node.module.split(".")[0] == "pipeline":
                out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "pipeline")
    return out


def module_of(path: Path, root: Path = PIPELINE) -> str:
    return ".".join(("pipeline", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")


def backward_imports(root: Path = PIPELINE) -> list[str]:
    """``"<module> imports <module>"`` for each import from a concern into a later one."""
    found = []
    for path in sorted(root.rglob("*.py")):
        here = module_of(path, root)
        for target in sorted(imports(path)):
            if ORDER.index(concern(target, root)) > ORDER.index(concern(here, root)):
                found.append(f"{here} imports {target}")
    return found


def test_every_module_lies_in_a_known_concern():
    for path in PIPELINE.rglob("*.py"):
        assert concern(module_of(path)) in ORDER, path


def test_imports_go_from_later_concerns_to_earlier_ones():
    backwards = backward_imports()
    assert not backwards, "imports into a later concern: " + "; ".join(backwards)


def test_the_check_sees_a_backward_import_in_any_form(tmp_path):
    for package in ("data", "report"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "config.py").write_text("from pipeline.data import prepare\n")  # shared -> data: backwards
    (tmp_path / "report" / "render.py").write_text("from pipeline.data.prepare import prepare\n")  # fine
    (tmp_path / "data" / "prepare.py").write_text("def f():\n    from pipeline import report\n")  # inside a function
    assert backward_imports(tmp_path) == [
        "pipeline.config imports pipeline.data",
        "pipeline.config imports pipeline.data.prepare",
        "pipeline.data.prepare imports pipeline.report",
    ]
