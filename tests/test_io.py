import pytest

from pipeline import PipelineError
from pipeline.io import atomic_dirs, read_json, write_json


def test_atomic_dirs_replace_targets_only_on_success(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "old.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_dirs(a, b) as (ta, tb):
            (ta / "new.txt").write_text("half")
            (tb / "new.txt").write_text("half")
            raise RuntimeError("stage failed midway")
    assert [p.name for p in a.iterdir()] == ["old.txt"] and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # temps removed

    with atomic_dirs(a, b) as (ta, tb):
        (ta / "new.txt").write_text("done")
        (tb / "new.txt").write_text("done")
    assert [p.name for p in a.iterdir()] == ["new.txt"] and (b / "new.txt").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_write_json_round_trips_and_refuses_nan(tmp_path):
    path = tmp_path / "sub" / "x.json"
    write_json(path, {"b": 1, "a": [1.5, None]})
    assert read_json(path) == {"b": 1, "a": [1.5, None]}
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")})
    assert read_json(path) == {"b": 1, "a": [1.5, None]}  # the earlier file survives
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_read_json_names_the_missing_file(tmp_path):
    with pytest.raises(PipelineError, match=r"missing.json: metrics not found"):
        read_json(tmp_path / "missing.json", what="metrics")
