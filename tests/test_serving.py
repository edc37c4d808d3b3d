"""Shipping the decision: every candidate an MLflow model that predicts on raw rows, the pick in
the registry with its decision record, and the same answer through every way of asking."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from pipeline import PipelineError
from pipeline.tracking.names import model_name
from pipeline.tracking.runs import decision_record
from pipeline.tracking.serving import Candidate
from stages import evaluate, predict
from tests.test_stages import evaluate_args


def _client(d):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}")


def _raw_test_rows(d) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw digits rows of the test split (as a user's CSV holds them: integers), in the
    prepared split's order, and the split itself."""
    test = pd.read_parquet(d / "data/prepared/test.parquet")
    digits = load_digits(as_frame=True)
    raw = digits.data.astype(np.int64).iloc[test["source_row"].to_numpy()].reset_index(drop=True)
    return raw, test


def _saved_test_predictions(d, name) -> pd.DataFrame:
    """The test predictions evaluate scored (the decide stage's: calibrated probabilities)."""
    return pd.read_parquet(next((d / "reports/decisions/test").glob(f"*/{name}.parquet")))


def _same_answer(got: pd.DataFrame, saved: pd.DataFrame, classes):
    assert list(got["prediction"].astype(str)) == list(saved["y_pred"].astype(str))
    cols = [f"p_{c}" for c in classes]
    np.testing.assert_allclose(got[cols].to_numpy(float), saved[cols].to_numpy(float), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def shipped(pipeline_run):
    """The tiny pipeline's run directory, its audit, and the champion's registry version."""
    d = pipeline_run
    audit = json.loads((d / "reports/audit.json").read_text())
    client = _client(d)
    version = client.get_model_version_by_alias("tiny", "champion")
    return d, audit, client, version


def test_every_candidate_is_a_logged_model_with_one_value_per_metric_and_dataset(shipped):
    d, audit, client, _ = shipped
    metrics = json.loads((d / "reports/metrics.json").read_text())
    exp = client.get_experiment_by_name("tiny")
    models = client.search_logged_models([exp.experiment_id], max_results=50)
    models = list(models) + (
        list(client.search_logged_models([exp.experiment_id], max_results=50, page_token=models.token))
        if models.token
        else []
    )
    by_name = {m.tags["candidate"]: m for m in models}
    assert set(by_name) == set(metrics)
    runs = set()
    for name, m in by_name.items():
        assert m.name == model_name(name) and m.tags["candidate"] == name
        keys = [(x.key, x.dataset_name) for x in m.metrics]
        assert len(keys) == len(set(keys)), f"{name} carries a metric twice"
        assert [x.dataset_name for x in m.metrics] == sorted(x.dataset_name for x in m.metrics)[
            ::-1
        ]  # validation first
        val = {x.key: x.value for x in m.metrics if x.dataset_name == "validation"}
        assert val["val_macro_f1"] == pytest.approx(metrics[name]["val"]["macro_f1"])
        assert {k for k, _ in keys} <= {
            f"{s}_{k}"
            for s in ("val", "test")
            for k in ("macro_f1", "balanced_accuracy", "rarest_recall", "rarest_precision")
        }
        runs.add(m.source_run_id)
        run = client.get_run(m.source_run_id)
        assert run.info.run_name == name and run.data.tags["role"] == "candidate"
    assert len(runs) == len(by_name)  # one run per logged model

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{d / 'mlflow.db'}")
    ranked = mlflow.search_logged_models(
        experiment_ids=[exp.experiment_id],
        output_format="list",
        max_results=5,
        order_by=[{"field_name": "metrics.val_macro_f1", "ascending": False, "dataset_name": "validation"}],
    )
    best = max(v["val"]["macro_f1"] for v in metrics.values())
    assert ranked[0].tags["candidate"] in {n for n, v in metrics.items() if v["val"]["macro_f1"] == best}


def test_the_champion_carries_the_decision_record_of_the_audit(shipped):
    d, audit, client, version = shipped
    pick = audit["policy"]["pick"]
    assert version.tags["pick"] == pick
    assert version.tags["policy"] == audit["policy"]["summary"]
    assert float(version.tags["p_best"]) == pytest.approx(audit["policy"]["p_best"], abs=5e-5)
    assert float(version.tags["test_estimate"]) == pytest.approx(audit["estimate"]["test"], abs=5e-5)
    assert float(version.tags["validation_score"]) == pytest.approx(audit["estimate"]["validation"], abs=5e-5)
    assert version.tags["data_digest"] == json.loads((d / "data/prepared/meta.json").read_text())["digest"]
    assert "git_commit" in version.tags
    tags, description = decision_record(
        audit,
        audit["estimate"]["validation"],
        pick,
        commit=version.tags["git_commit"],
        data_digest=version.tags["data_digest"],
        lock_hashes={},
    )
    assert {k: version.tags[k] for k in tags} == tags
    assert description == version.description
    cal = audit["calibration"]
    assert cal["candidate"] == pick and version.tags["calibration"].startswith(f"{cal['method']}; ECE validation")
    assert f"test {cal['test_ece']:.4f} [{cal['test_ece_low']:.4f}, {cal['test_ece_high']:.4f}]" in version.description
    assert version.source.startswith("models:/m-")  # the logged model, linked both ways
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.tags["candidate"] == pick
    assert {"name": "tiny", "version": version.version} in json.loads(logged.tags["mlflow.modelVersions"])


def test_the_champion_predicts_raw_rows_in_a_new_process_from_elsewhere(shipped, tmp_path):
    d, audit, _, _ = shipped
    raw, _ = _raw_test_rows(d)
    raw.to_csv(tmp_path / "raw.csv", index=False)
    code = (
        "import sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model('models:/tiny@champion'); "
        "s = m.metadata.get_input_schema(); types = dict(zip(s.input_names(), s.pandas_types())); "
        "m.predict(pd.read_csv(sys.argv[1], dtype=types)).to_parquet(sys.argv[2])"
    )  # docs/mlflow.md's recipe
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{d / 'mlflow.db'}"
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "raw.csv"), str(tmp_path / "p.parquet")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    classes = json.loads((d / "data/prepared/meta.json").read_text())["classes"]
    _same_answer(pd.read_parquet(tmp_path / "p.parquet"), _saved_test_predictions(d, audit["policy"]["pick"]), classes)


def test_every_candidate_bundle_reproduces_its_saved_test_predictions(shipped, tmp_path):
    d, _, client, _ = shipped
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{d / 'mlflow.db'}")
    raw, _ = _raw_test_rows(d)
    classes = json.loads((d / "data/prepared/meta.json").read_text())["classes"]
    exp = client.get_experiment_by_name("tiny")
    for m in client.search_logged_models([exp.experiment_id], max_results=50):
        local = mlflow.artifacts.download_artifacts(f"models:/{m.model_id}", dst_path=str(tmp_path / m.model_id))
        got = Candidate.load(Path(local) / "artifacts" / "bundle").predict(raw)
        _same_answer(got, _saved_test_predictions(d, m.tags["candidate"]), classes)


def test_predict_stage_and_mlflow_cli_and_server_give_the_same_answer(shipped, tmp_path, monkeypatch):
    d, audit, _, _ = shipped
    raw, _ = _raw_test_rows(d)
    raw = raw.iloc[:40].copy()
    raw.iloc[0, 5] = None  # a missing cell: imputed, the same on every path
    raw.insert(0, "note", "extra column")  # ignored with a warning
    csv = tmp_path / "raw.csv"
    raw.to_csv(csv, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    predict.main(["--params", str(d / "params.yaml"), "--input", str(csv), "--output", str(tmp_path / "stage.csv")])
    stage = pd.read_csv(tmp_path / "stage.csv", dtype={"prediction": str})
    assert list(stage["row"]) == list(range(len(raw)))

    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",  # serve runs uvicorn from PATH
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    cli = _cli_predict(mlflow_bin, "models:/tiny@champion", env, tmp_path, raw)
    assert cli.returncode == 0, cli.stderr[-2000:]
    got = pd.DataFrame(json.loads((tmp_path / "cli.json").read_text())["predictions"])
    assert list(got["prediction"].astype(str)) == list(stage["prediction"].astype(str))
    np.testing.assert_allclose(
        got.filter(like="p_").to_numpy(float), stage.filter(like="p_").to_numpy(float), atol=1e-9
    )

    served = _served(mlflow_bin, "models:/tiny@champion", env, tmp_path, raw)
    assert list(served["prediction"].astype(str)) == list(stage["prediction"].astype(str))
    np.testing.assert_allclose(
        served.filter(like="p_").to_numpy(float), stage.filter(like="p_").to_numpy(float), atol=1e-9
    )


def _json_input(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


def _cli_predict(mlflow_bin, model_uri, env, cwd, frame) -> subprocess.CompletedProcess:
    """``mlflow models predict`` on ``frame`` sent as JSON (MLflow reads a CSV without the
    signature's types: integers there are refused for a double column); its answer in cli.json."""
    (Path(cwd) / "rows.json").write_bytes(_json_input(frame))
    return subprocess.run(
        [
            mlflow_bin,
            "models",
            "predict",
            "-m",
            model_uri,
            "-i",
            str(Path(cwd) / "rows.json"),
            "-t",
            "json",
            "-o",
            str(Path(cwd) / "cli.json"),
            "--env-manager",
            "local",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@contextmanager
def _model_server(mlflow_bin, model_uri, env, cwd):
    """``mlflow models serve`` on a free port of 127.0.0.1; yields ``post(frame) -> (status, body)``
    (JSON in, the parsed JSON answer out), stopped by its process id at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            mlflow_bin,
            "models",
            "serve",
            "-m",
            model_uri,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--env-manager",
            "local",
            "--workers",
            "1",
        ],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def post(frame: pd.DataFrame) -> tuple[int, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=_json_input(frame),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the model server did not answer: {server.stderr.read().decode()[-2000:]}")
                time.sleep(1)
        yield post
    finally:
        server.terminate()
        server.wait(timeout=30)


def _served(mlflow_bin, model_uri, env, cwd, frame) -> pd.DataFrame:
    """``frame``'s predictions from ``mlflow models serve`` (JSON)."""
    with _model_server(mlflow_bin, model_uri, env, cwd) as post:
        status, answer = post(frame)
    assert status == 200, answer
    return pd.DataFrame(answer["predictions"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["pixel_3_3"]), "'pixel_3_3'"),
        (lambda f: f.assign(pixel_3_3=["dark"] + [str(v) for v in f["pixel_3_3"].iloc[1:]]), "'pixel_3_3'"),
    ],
)
def test_predict_stage_refuses_bad_rows_in_one_line(shipped, tmp_path, monkeypatch, change, message):
    d, _, _, _ = shipped
    raw, _ = _raw_test_rows(d)
    change(raw.iloc[:5]).to_csv(tmp_path / "bad.csv", index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    with pytest.raises(Exception) as err:
        predict.main(
            [
                "--params",
                str(d / "params.yaml"),
                "--input",
                str(tmp_path / "bad.csv"),
                "--output",
                str(tmp_path / "out.csv"),
            ]
        )
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out.csv").exists()


@pytest.fixture(scope="module")
def copied(pipeline_run, tmp_path_factory):
    """The tiny run's outputs with a fresh MLflow store of its own: evaluate may run again here."""
    d = tmp_path_factory.mktemp("again")
    for sub in ("data", "outputs", "reports"):
        shutil.copytree(pipeline_run / sub, d / sub)
    shutil.copy(pipeline_run / "params.yaml", d / "params.yaml")
    return d


def _evaluate(d, monkeypatch, exp_name=None):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    if exp_name:
        monkeypatch.setenv("DVC_EXP_NAME", exp_name)
    else:
        monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    evaluate.main(evaluate_args(d, d / "params.yaml"))


def test_evaluate_again_registers_nothing_new_and_an_experiment_moves_no_alias(copied, monkeypatch):
    d = copied
    _evaluate(d, monkeypatch)
    client = _client(d)
    exp = client.get_experiment_by_name("tiny")
    versions = client.search_model_versions("name = 'tiny'")
    models = client.search_logged_models([exp.experiment_id], max_results=50)
    champion = client.get_model_version_by_alias("tiny", "champion")
    assert len(versions) == 1

    _evaluate(d, monkeypatch)  # nothing changed
    assert len(client.search_model_versions("name = 'tiny'")) == 1
    assert len(client.search_logged_models([exp.experiment_id], max_results=50)) == len(models)
    runs = client.search_runs([exp.experiment_id])
    assert len([r for r in runs if r.data.tags.get("role") == "candidate"]) == len(models)  # no new candidate run
    assert len([r for r in runs if r.data.tags.get("role") == "evaluation"]) == 2  # a new execution, linking them

    _evaluate(d, monkeypatch, exp_name="exp-x")
    after = client.get_model_version_by_alias("tiny", "champion")
    assert after.version == champion.version
    assert client.get_model_version("tiny", champion.version).tags["dvc_exp_name"] == "exp-x"
    runs = json.loads((d / "reports/mlflow_runs.json").read_text())
    assert runs["registered"]["alias"] is None


def test_no_candidate_meeting_the_constraints_makes_a_challenger(copied, monkeypatch):
    d = copied
    params = json.loads(json.dumps(__import__("yaml").safe_load((d / "params.yaml").read_text())))
    params["evaluate"]["select"] = {"metric": "macro_f1", "constraints": ["recall/9 >= 1.01"]}
    params["mlflow"]["registered_model"] = "tiny_constrained"
    (d / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    _evaluate(d, monkeypatch)
    client = _client(d)
    audit = json.loads((d / "reports/audit.json").read_text())
    assert audit["policy"]["pick"] is None and audit["policy"]["closest"]
    version = client.get_model_version_by_alias("tiny_constrained", "challenger")
    assert version.tags["pick"] == audit["policy"]["closest"]
    assert "Not promoted" in version.description
    with pytest.raises(Exception):
        client.get_model_version_by_alias("tiny_constrained", "champion")


# --- a user's table: codes such as 007, integers, a date, a missing cell --------------------------


def _user_table(path, n=240, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.choice(["ok", "late", "n/a"], size=n, p=[0.6, 0.3, 0.1])
    code = np.where(label == "n/a", "007", np.where(label == "late", "5", "012"))
    frame = pd.DataFrame(
        {
            "claim_id": [f"c{i:05d}" for i in range(n)],  # an identifier: dropped
            "amount": np.round(rng.normal(100, 20, n) + (label == "late") * 40, 2),
            "visits": rng.integers(0, 9, n) + (label == "n/a") * 5,  # integers
            "opened": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
            "code": code,  # a code: 007 is not 7
            "status": label,
        }
    )
    frame["opened"] = frame["opened"].dt.strftime("%Y-%m-%d")
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A logistic regression on a user's table, logged the way evaluate logs every candidate."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from pipeline.config import DataConfig
    from pipeline.data.prepare import prepare
    from pipeline.data.preprocessing import save_preprocessing
    from pipeline.tracking.serving import write_bundle
    from pipeline.tracking.runs import Candidate as Logged
    from pipeline.tracking.runs import experiment_id, log_candidates

    d = tmp_path_factory.mktemp("user")
    raw = _user_table(d / "claims.csv")
    prepared = prepare(DataConfig(source="csv", path=str(d / "claims.csv"), target="status", imbalance_ratio=1))
    X, y = prepared.arrays("train")
    fit = LogisticRegression(max_iter=2000).fit(X, y)
    (d / "model.json").write_text(
        json.dumps({"kind": "logreg_balanced", "coef": fit.coef_.tolist(), "intercept": fit.intercept_.tolist()})
    )
    save_preprocessing(d / "preprocessing.json", prepared.preprocessing)
    digest = write_bundle(
        d / "bundle",
        name="logreg_balanced",
        model="logreg_balanced",
        kind="logreg_balanced",
        classes=prepared.classes,
        model_file=d / "model.json",
        preprocessing_file=d / "preprocessing.json",
    )
    uri = f"sqlite:///{d / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    exp = experiment_id(client, "user", uri)
    execution = client.create_run(exp).info.run_id
    logged = log_candidates(
        client,
        exp,
        [
            Logged(
                "logreg_balanced",
                d / "bundle",
                digest,
                {"validation": {"val_macro_f1": 0.5}},
                pd.DataFrame({"metric": ["macro_f1"], "value": [0.5]}),
                {},
                {},
            )
        ],
        execution=execution,
        run_tags={"data_digest": "x"},
        datasets={"validation": "v"},
        input_example=prepared.preprocessing.example(),
        input_types=prepared.preprocessing.input_types(),
        outputs=["prediction", *(f"p_{c}" for c in prepared.classes)],
        open_runs=[],
        box=d / "outbox",
    )
    expected = Candidate.load(d / "bundle").predict(raw.drop(columns=["status"]), strict=True)
    return d, raw, uri, f"models:/{logged['logreg_balanced'].model_id}", expected


def test_codes_integers_dates_and_a_missing_cell_give_one_answer_on_every_path(user_model, tmp_path, monkeypatch):
    d, raw, uri, model_uri, expected = user_model
    rows = raw.drop(columns=["status"]).iloc[:30].copy()
    rows.loc[rows.index[0], "amount"] = None  # a missing cell
    rows.to_csv(tmp_path / "rows.csv", index=False)  # 007 stays 007 in the file
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    predict.main(["--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "stage.csv"), "--model", model_uri])
    stage = pd.read_csv(tmp_path / "stage.csv", dtype={"prediction": str}, keep_default_na=False)
    assert list(stage["prediction"][1:]) == list(expected["prediction"][1:30])

    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    cli = _cli_predict(mlflow_bin, model_uri, env, tmp_path, pd.read_csv(tmp_path / "rows.csv", dtype={"code": str}))
    assert cli.returncode == 0, cli.stderr[-2000:]
    got = pd.DataFrame(json.loads((tmp_path / "cli.json").read_text())["predictions"])
    assert list(got["prediction"]) == list(stage["prediction"])
    np.testing.assert_allclose(
        got.filter(like="p_").to_numpy(float), stage.filter(like="p_").to_numpy(float), atol=1e-9
    )

    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)  # docs/mlflow.md's recipe: read with the signature's types
    schema = model.metadata.get_input_schema()
    in_process = model.predict(
        pd.read_csv(tmp_path / "rows.csv", dtype=dict(zip(schema.input_names(), schema.pandas_types())))
    )
    assert list(in_process["prediction"]) == list(stage["prediction"])
    served = _served(mlflow_bin, model_uri, env, tmp_path, pd.read_csv(tmp_path / "rows.csv", dtype={"code": str}))
    assert list(served["prediction"]) == list(stage["prediction"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.assign(code="999"), "column 'code'"),  # a level never seen in training
        (lambda f: f.drop(columns=["visits"]), "'visits'"),
        (lambda f: f.assign(opened="next tuesday"), "column 'opened'"),
    ],
)
def test_predict_names_the_column_of_a_bad_user_row(user_model, tmp_path, monkeypatch, change, message):
    d, raw, uri, model_uri, _ = user_model
    change(raw.drop(columns=["status"]).iloc[:5]).to_csv(tmp_path / "bad.csv", index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(Exception) as err:
        predict.main(
            ["--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "out.csv"), "--model", model_uri]
        )
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out.csv").exists()


# Each bad input, through the three routes: make predict (one line, nothing written), the served
# model (HTTP 400) and `mlflow models predict` (an error). MLflow checks the typed signature first
# with its own words (a missing column, text in a numeric column); the model's own checks (an
# unseen level, an empty row, a date that does not read) give every route the same line.
BAD_INPUTS = {
    "missing column": (lambda f: f.drop(columns=["visits"]), ["'visits'"], ["visits"]),
    "text in a numeric column": (
        lambda f: f.assign(amount=["abc"] + list(f["amount"].iloc[1:])),
        ["column 'amount': 'abc' in row 0 is not a number"],
        ["amount", "abc"],
    ),
    "unseen level": (
        lambda f: f.assign(code="999"),
        ["column 'code': '999' in row 0 is a level never seen in training"],
        None,
    ),
    "empty row": (
        lambda f: pd.concat([f.iloc[:1].map(lambda _: None), f.iloc[1:]]),
        ["row 0 is empty: none of the 4 columns the model reads has a value"],
        None,
    ),
    "wrong date": (
        lambda f: f.assign(opened="2024-13-45"),
        ["column 'opened': '2024-13-45' in row 0 is not an ISO date (YYYY-MM-DD)"],
        None,
    ),
}


@pytest.fixture(scope="module")
def user_server(user_model, tmp_path_factory):
    d, raw, uri, model_uri, _ = user_model
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    cwd = tmp_path_factory.mktemp("served")
    with _model_server(str(Path(sys.executable).with_name("mlflow")), model_uri, env, cwd) as post:
        yield post, env


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_refused_naming_its_column_on_every_route(user_model, user_server, tmp_path, monkeypatch, case):
    d, raw, uri, model_uri, _ = user_model
    post, env = user_server
    change, ours, mlflows = BAD_INPUTS[case]
    rows = change(raw.drop(columns=["status"]).iloc[:5].astype(object))
    expected = ours if mlflows is None else mlflows  # what the routes MLflow answers first must say

    rows.to_csv(tmp_path / "bad.csv", index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(PipelineError) as err:
        predict.main(
            ["--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "out.csv"), "--model", model_uri]
        )
    assert all(m in str(err.value) for m in ours) and "\n" not in str(err.value), str(err.value)
    assert not (tmp_path / "out.csv").exists()

    status, answer = post(rows)
    assert status == 400 and all(m in answer["message"] for m in expected), answer

    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    cli = _cli_predict(mlflow_bin, model_uri, env, tmp_path, rows)
    assert cli.returncode != 0 and all(m in cli.stderr for m in expected), cli.stderr[-2000:]
