"""Where runs and their artifacts go."""

import os
from pathlib import Path

from pipeline.tracking import _experiment_id, artifact_root, log_artifacts_to_run, tracking_uri

ROOT = Path(__file__).resolve().parents[1]


def test_a_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    import mlflow

    store = tmp_path / "elsewhere"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.chdir(ROOT)  # where a user runs the stages from; nothing may land here
    before = set((ROOT / "mlartifacts").rglob("*"))
    figure = tmp_path / "confusion_ce.png"
    figure.write_bytes(b"png")
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = _experiment_id(client, "isolation", uri)
    log_artifacts_to_run(client.create_run(exp).info.run_id, [figure], environ={"MLFLOW_TRACKING_URI": uri})
    location = client.get_experiment(exp).artifact_location
    assert location == (store / "mlartifacts").as_uri()
    assert (store / "mlartifacts").is_dir() and list((store / "mlartifacts").rglob("confusion_ce.png"))
    assert set((ROOT / "mlartifacts").rglob("*")) == before  # nothing landed in the repository's store


def test_artifact_root_follows_the_sqlite_file_and_leaves_servers_alone(tmp_path):
    assert artifact_root(f"sqlite:///{tmp_path}/a/mlflow.db") == (tmp_path / "a" / "mlartifacts").as_uri()
    assert artifact_root("http://127.0.0.1:5000") is None
    assert artifact_root("postgresql://u@127.0.0.1/db") is None


def test_the_default_store_is_the_repository_root(tmp_path):
    assert tracking_uri({"DVC_ROOT": str(tmp_path)}) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking_uri({"MLFLOW_TRACKING_URI": "http://x"}) == "http://x"


def test_every_test_gets_a_store_of_its_own(mlflow_store, tmp_path):
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_store == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking_uri() != f"sqlite:///{ROOT / 'mlflow.db'}"
