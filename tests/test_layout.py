"""The layout of ``pipeline/`` shows the flow of the data, and its imports go one way."""

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
# the concerns in the order the data flows through them; the shared modules at the top level come first
ORDER = ("", "data", "training", "decision", "evaluation", "tracking", "report")


def concern(module: str) -> str:
    """``pipeline.training.train`` -> ``training``; a top-level module (``pipeline.config``) -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PIPELINE / parts[1]).is_dir() else ""


def imports(path: Path) -> set[str]:
    """The ``pipeline`` modules ``path`` imports, at its top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "pipeline")
    return out


def module_of(path: Path) -> str:
    return ".".join(("pipeline", *path.relative_to(PIPELINE).with_suffix("").parts)).removesuffix(".__init__")


def test_every_module_lies_in_a_known_concern():
    for path in PIPELINE.rglob("*.py"):
        assert concern(module_of(path)) in ORDER, path


def test_imports_go_from_later_concerns_to_earlier_ones():
    backwards = []
    for path in sorted(PIPELINE.rglob("*.py")):
        here = module_of(path)
        for target in imports(path):
            if ORDER.index(concern(target)) > ORDER.index(concern(here)):
                backwards.append(f"{here} imports {target}")
    assert not backwards, "imports into a later concern: " + "; ".join(backwards)


def test_the_check_sees_a_backward_import(tmp_path):
    later = tmp_path / "m.py"
    later.write_text("def f():\n    from pipeline.report.render import Run\n")
    assert imports(later) == {"pipeline.report.render"}
    assert ORDER.index(concern("pipeline.report.render")) > ORDER.index(concern("pipeline.data.prepare"))
    assert concern("pipeline.config") == "" and concern("pipeline.tracking") == "tracking"
