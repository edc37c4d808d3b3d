"""A user's own CSV and params, end to end: what they see when something is wrong, what is kept."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.services import default_sigint
from tests.test_stages import run_pipeline, write_params

ROOT = Path(__file__).resolve().parents[1]
ODD = ["a<b", "c,d", 'e "f"', "g & h %", "n/a", "007", "7"]


def _stage(args, cwd, env):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)


def _one_line(proc, code=2):
    """The one line a failed stage says, besides its progress log (INFO/WARNING lines)."""
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith(("INFO ", "WARNING "))]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _odd_csv(path, n_per_class=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for k, label in enumerate(ODD):
        centre = np.eye(len(ODD), 4)[k] * 3
        for i in range(n_per_class):
            rows.append(
                {
                    "x1": centre[0] + rng.normal(),
                    "x2": centre[1] + rng.normal(),
                    "x3": centre[2] + rng.normal(),
                    "x4": centre[3] + rng.normal(),
                    "class": label,
                }
            )
    frame = pd.DataFrame(rows).sample(frac=1, random_state=seed)
    frame.to_csv(path, index=False)
    return path


def test_header_only_csv_stops_prepare_with_one_line(tmp_path, stage_env):
    csv = tmp_path / "t.csv"
    csv.write_text("x,label\n")
    params = write_params(tmp_path / "params.yaml", {"data": {"source": "csv", "path": str(csv), "target": "label"}})
    proc = _stage(["stages.prepare", "--params", str(params), "--out", str(tmp_path / "out")], tmp_path, stage_env)
    assert _one_line(proc) == f"error: data.path: {csv} has a header but no rows"
    assert not (tmp_path / "out").exists()


def test_a_duplicated_target_column_stops_prepare(tmp_path, stage_env):
    csv = tmp_path / "t.csv"
    csv.write_text("x,label,label\n" + "".join(f"{i},{i % 2},{i % 2}\n" for i in range(30)))
    params = write_params(tmp_path / "params.yaml", {"data": {"source": "csv", "path": str(csv), "target": "label"}})
    proc = _stage(["stages.prepare", "--params", str(params), "--out", str(tmp_path / "out")], tmp_path, stage_env)
    assert "column 'label' appears twice" in _one_line(proc)
    assert not (tmp_path / "out").exists()


def test_classes_mlflow_would_write_alike_stop_prepare(tmp_path, stage_env):
    csv = tmp_path / "t.csv"
    csv.write_text("x,label\n" + "".join(f"{(i * 7) % 11 / 3:.2f},{('a+b', 'a_b', 'c')[i % 3]}\n" for i in range(60)))
    params = write_params(tmp_path / "params.yaml", {"data": {"source": "csv", "path": str(csv), "target": "label"}})
    proc = _stage(["stages.prepare", "--params", str(params), "--out", str(tmp_path / "out")], tmp_path, stage_env)
    assert f"{csv}: column 'label': classes 'a+b' and 'a_b' would both be written 'a_b' in MLflow" in _one_line(proc)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"evaluate": {"select": {"metric": "macro_f2"}}}, "evaluate.select.metric names unknown metric 'macro_f2'"),
        ({"evaluate": {"select": {"constraints": ["recall/x >= 0.5"]}}}, "names class 'x' in 'recall/x'"),
        (
            {"evaluate": {"costs": {"missed": {"x": 3}}}},
            "evaluate.costs.missed names class 'x', not one of the classes",
        ),
        ({"evaluate": {"costs": {"default": -1}}}, "evaluate.costs.default must be finite and >= 0; got -1"),
        ({"evaluate": {"costs": {"matrix": [[0, 1], [1, 0]]}}}, "evaluate.costs.matrix"),
        ({"evaluate": {"decisions": {"rules": ["magic"]}}}, "evaluate.decisions.rules must be one of posthoc_adjust"),
        (
            {"evaluate": {"decisions": {"models": ["ce", "nope"]}}},
            "evaluate.decisions.models names unknown model 'nope'",
        ),
        ({"evaluate": {"select": {"metric": "expected_cost"}, "costs": None}}, "needs evaluate.costs"),
        ({"evaluate": {"deploy_prior": {"x": 1}}}, "evaluate.deploy_prior names class 'x'"),
    ],
)
def test_the_policy_is_checked_by_prepare_before_anything_trains(tmp_path, stage_env, override, message):
    params = write_params(tmp_path / "params.yaml", override)
    proc = _stage(["stages.prepare", "--params", str(params), "--out", str(tmp_path / "out")], tmp_path, stage_env)
    assert message in _one_line(proc)
    assert not (tmp_path / "out").exists()


def test_a_typo_in_a_top_level_key_names_the_nearest_one(tmp_path, stage_env):
    params = tmp_path / "params.yaml"
    write_params(params)
    params.write_text(params.read_text() + "trian:\n  lr: 0.1\n")
    proc = _stage(["stages.prepare", "--params", str(params), "--out", str(tmp_path / "out")], tmp_path, stage_env)
    assert _one_line(proc).endswith(
        "unknown key trian; allowed: data, weights, train, baselines, evaluate, report, mlflow (did you mean train?)"
    )


@pytest.mark.slow
def test_odd_class_names_go_through_the_whole_pipeline(tmp_path, monkeypatch):
    import mlflow

    csv = _odd_csv(tmp_path / "odd.csv")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    constraint = 'recall/"g & h %" >= 0.1'
    params = write_params(
        tmp_path / "params.yaml",
        {
            "data": {"source": "csv", "path": str(csv), "target": "class", "imbalance_ratio": 3},
            "train": {"losses": ["ce", "weighted_ce", "focal"]},
            "evaluate": {
                "select": {"constraints": [constraint]},
                "costs": {"missed": {"a<b": 4}, "matrix": {"n/a": {"007": 9}}},
            },
        },
    )
    run_pipeline(tmp_path, params)
    meta = json.loads((tmp_path / "data/prepared/meta.json").read_text())
    # not every name is a number, so the order is the file's order of first appearance
    assert meta["classes"] == list(dict.fromkeys(pd.read_csv(csv, dtype=str, keep_default_na=False)["class"]))
    assert sorted(meta["classes"]) == sorted(ODD)
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert {f"recall/{c}" for c in ODD} <= set(metrics["ce"])
    audit = json.loads((tmp_path / "reports/audit.json").read_text())
    assert audit["policy"]["constraints"] == [constraint] and audit["policy"]["pick"] is not None
    runs = json.loads((tmp_path / "reports/mlflow_runs.json").read_text())
    rarest = audit["rarest_class"]
    client = mlflow.MlflowClient(tracking_uri=runs["tracking_uri"])
    run = client.get_run(runs["models"]["ce"])
    assert run.data.tags["rarest_class"] == rarest  # as written; its recall under a key that says the split
    assert run.data.metrics["val_rarest_recall"] == pytest.approx(metrics["ce"]["val"][f"recall/{rarest}"])
    table = client.load_table(runs["experiment_id"], "metrics.json", run_ids=[run.info.run_id])
    for name in ("recall/g & h %", "recall/n/a"):  # every metric in the table, class names as written
        assert table.query("split == 'test' and metric == @name")["value"].item() == pytest.approx(metrics["ce"][name])
    model = client.get_logged_model(runs["logged_models"]["ce"])
    val = {m.key: m.value for m in model.metrics if m.dataset_name == "validation"}
    assert val["val_rarest_recall"] == pytest.approx(metrics["ce"]["val"][f"recall/{rarest}"])
    # the champion answers with the class names as written, one probability column each
    champion = mlflow.pyfunc.load_model("models:/tiny@champion")
    schema = champion.metadata.get_input_schema()  # read with the signature's types (docs/mlflow.md)
    rows = (
        pd.read_csv(csv, dtype=dict(zip(schema.input_names(), schema.pandas_types()))).drop(columns=["class"]).head(20)
    )
    answer = champion.predict(rows)
    assert set(answer["prediction"]) <= set(ODD) and [f"p_{c}" for c in meta["classes"]] == list(answer.columns[1:])
    page = (tmp_path / "reports/report.html").read_text()
    assert "g &amp; h %" in page and "e &#34;f&#34;" in page  # escaped as Jinja2 (markupsafe) writes it
    # costs by odd class name: the matrix the cost rule used, cell by cell
    cost = json.loads(next((tmp_path / "outputs/decisions").glob("*+cost.json")).read_text())["cost_matrix"]
    i = meta["classes"].index
    assert cost[i("a<b")][i("7")] == 4 and cost[i("n/a")][i("007")] == 9 and cost[i("7")][i("a<b")] == 1
    assert cost[i("a<b")][i("a<b")] == 0


_INTERRUPTED = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from pipeline.io import atomic_dirs
    import mlflow
    from pipeline.tracking.runs import closing_runs, experiment_id, tracking_uri
    from stages._cli import run

    out = Path(sys.argv[1])

    class Bomb:  # a parameter whose text sends the signal while the MLflow runs are open
        def __str__(self):
            os.kill(os.getpid(), getattr(signal, sys.argv[2]))
            time.sleep(5)
            return "never"

    def main():
        with atomic_dirs(out) as (tmp,):
            (tmp / "half.json").write_text("{")
            client = mlflow.MlflowClient(tracking_uri())
            exp = experiment_id(client, "interrupted", tracking_uri())
            with closing_runs(client) as open_runs:
                open_runs.append(client.create_run(exp, run_name="ce").info.run_id)
                client.log_param(open_runs[-1], "bomb", str(Bomb()))

    run(main)
""")


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_an_interrupted_stage_cleans_up_says_one_line_and_kills_its_runs(tmp_path, stage_env, sig, code):
    import mlflow

    script = tmp_path / "stage.py"
    script.write_text(_INTERRUPTED)
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.json").write_text("{}")
    env = {**stage_env, "DVC_STAGE": "evaluate"}
    proc = subprocess.run(
        [sys.executable, str(script), str(out), sig],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=default_sigint,
    )
    line = [x for x in proc.stderr.splitlines() if not x.startswith(("INFO", "WARNING", "20"))]
    assert proc.returncode == code, proc.stderr
    assert line == [
        f"interrupted: evaluate stopped by {sig}; its temporary files are removed and its outputs were not replaced"
    ]
    assert "Traceback" not in proc.stderr
    assert [p.name for p in out.iterdir()] == ["previous.json"]  # the previous output, untouched
    assert not list(tmp_path.rglob("*.tmp"))
    client = mlflow.MlflowClient(tracking_uri=stage_env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("interrupted").experiment_id])
    assert runs and {r.info.status for r in runs} == {"KILLED"}


_STOPPED_IN_A_LIBRARY = textwrap.dedent("""
    import atexit, os, signal, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    from stages._cli import run

    kept = []  # a library keeps its pool (MLflow's artifact repository holds its own in a reference cycle)

    def main():
        atexit.register(Path(sys.argv[2]).write_text, "ran")  # a library's clean-up at exit
        pool = ThreadPoolExecutor(1)
        kept.append(pool)
        start = threading.Thread.start

        def start_then_stop(self):  # the signal lands as the pool starts its worker (as in MLflow's downloads)
            start(self)
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
            time.sleep(5)

        threading.Thread.start = start_then_stop
        pool.submit(print, "never")

    run(main)
""")


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stage_stopped_inside_a_library_thread_pool_still_exits(tmp_path, stage_env, sig, code):
    """The pool's half-started worker waits for work for ever: the stage exits all the same,
    its atexit handlers run, and its exit status is the signal's."""
    script = tmp_path / "stage.py"
    script.write_text(_STOPPED_IN_A_LIBRARY)
    proc = subprocess.run(
        [sys.executable, str(script), sig, str(tmp_path / "atexit.txt")],
        cwd=tmp_path,
        env={**stage_env, "DVC_STAGE": "evaluate"},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=default_sigint,
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith(f"interrupted: evaluate stopped by {sig}") and "Traceback" not in proc.stderr
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_outputs_are_written_readable_by_others(tmp_path):
    from pipeline.io import atomic_dirs, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dirs(tmp_path / "d") as (tmp,):
            (tmp / "f.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


# --- three real tables, the shipped params.yaml with only data.source, data.path and data.target set


def _iris(path):  # text classes, four measurements
    from sklearn.datasets import load_iris

    d = load_iris(as_frame=True)
    d.frame.assign(species=d.target_names[d.target]).drop(columns=["target"]).to_csv(path, index=False)
    return "species"


def _wine(path):  # numeric class codes, 13 measurements, ';'-separated as many European exports are
    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True)
    d.frame.rename(columns={"target": "cultivar"}).to_csv(path, index=False, sep=";")
    return "cultivar"


def _stock_days(path):  # a date column: matplotlib's bundled Google daily prices, 2004-2008
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("goog.npz") as f:  # an NpzFile
        days = pd.DataFrame(f["price_data"])
    move = days["adj_close"].pct_change().shift(-1)  # the next day's move, a label the day cannot see
    days = days.assign(
        date=pd.to_datetime(days["date"]).dt.strftime("%Y-%m-%d"),
        next_day=pd.cut(move, [-1, -0.01, 0.01, 1], labels=["down", "flat", "up"]),
    )
    days.dropna(subset=["next_day"]).to_csv(path, index=False)
    return "next_day"


@pytest.mark.slow
@pytest.mark.parametrize("table", [_iris, _wine, _stock_days], ids=["iris", "wine", "stock_days"])
def test_a_real_table_runs_with_only_the_three_data_keys_set(table, tmp_path, monkeypatch):
    import yaml

    from tests.test_stages import run_pipeline

    csv = tmp_path / "table.csv"
    target = table(csv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="csv", path=str(csv), target=target)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    # the tables (codes, dates, a ';' separator) are what is tried here; logging models of such
    # columns to MLflow is test_serving's, so the runs wait in the outbox (13 s a table, not 45)
    monkeypatch.setenv("PIPELINE_OFFLINE", "1")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    run_pipeline(tmp_path, tmp_path / "params.yaml")
    assert not (tmp_path / "mlflow.db").exists() and any((tmp_path / "outbox").rglob("*.json"))
    audit = json.loads((tmp_path / "reports/audit.json").read_text())
    meta = json.loads((tmp_path / "data/prepared/meta.json").read_text())
    assert set(meta["classes"]) == set(pd.read_csv(csv, sep=None, engine="python", dtype=str)[target])
    assert audit["policy"]["pick"] in json.loads((tmp_path / "reports/metrics.json").read_text())
    assert (tmp_path / "reports/report.html").is_file()
