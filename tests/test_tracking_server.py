"""The whole pipeline against a real shared MLflow tracking server: PostgreSQL (or SQLite) behind it,
artifacts in S3 (moto's server), everything on 127.0.0.1 on free ports, started once per session.

Clients upload and download artifacts through the server (``--serve-artifacts``, the default), so
what the stages logged is read back the way a colleague on another machine would read it, and
then looked for where it really lives: the rows in the database, the objects in the bucket.

PostgreSQL comes from Debian's ``postgresql`` package; without its binaries the PostgreSQL case
is skipped, except under ``CI`` (``.ci/run`` installs the package), where it fails.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.services import BUCKET, base_env, bucket_keys, free_port, http_ok, required_script, start, tail, unavailable
from tests.test_stages import ALL, MODELS, TINY, run_pipeline, write_params

pytestmark = pytest.mark.slow

PREFIX = "mlartifacts"


# --- PostgreSQL ----------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    """The directory of Debian's PostgreSQL binaries (the newest), else wherever initdb is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: _version(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _version(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster on 127.0.0.1 with an empty database; yields its URI.

    initdb refuses root: as root the cluster belongs to the ``postgres`` user and its binaries run
    through ``runuser``, in a directory of its own outside pytest's root-only temporary ones."""
    bindir = _postgres_bin()
    ci_hint = ".ci/run installs Debian's postgresql"
    if bindir is None or not (bindir / "pg_ctl").exists():
        unavailable("PostgreSQL is not installed (apt-get install -y postgresql)", ci_hint)
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            unavailable("running as root without runuser or a postgres user, initdb cannot run", ci_hint)
        as_user = [runuser, "-u", "postgres", "--"]
    # as root: under /tmp, which the postgres user can reach (pytest's own temporary tree it cannot)
    top = Path(tempfile.mkdtemp(prefix="pipeline-postgres-", dir="/tmp" if as_user else None))
    if as_user:
        os.chown(top, owner.pw_uid, owner.pw_gid)
    data, log, port = top / "data", top / "postgres.log", free_port()

    def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*as_user, *args],
            cwd=top,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**base_env(), "LC_ALL": "C"},
            timeout=120,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{tail(log)}")
        return proc

    started = False
    try:
        pg(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        # fsync off: a test cluster that dies with the session needs no durability
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {shlex.quote(str(top))} -c fsync=off -c synchronous_commit=off"
        )
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3: name the driver that is pinned
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if started:
            stopped = pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
            if stopped.returncode != 0 and (data / "postmaster.pid").exists():
                try:
                    os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)
                except (ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(top, ignore_errors=True)


def _query(backend_uri: str, sql: str) -> list[tuple]:
    """Rows straight from the tracking server's backend store, bypassing MLflow."""
    if backend_uri.startswith("sqlite:///"):
        with sqlite3.connect(backend_uri[len("sqlite:///") :]) as conn:
            return conn.execute(sql).fetchall()
    import psycopg2

    conn = psycopg2.connect(backend_uri.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


# --- the tracking server ---------------------------------------------------------------------------


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
def tracking_server(request, s3, tmp_path_factory):
    """``mlflow server`` on the backend named by the parameter, artifacts in the S3 bucket, served
    through the server itself; ``env``: what a client needs beside ``MLFLOW_TRACKING_URI``.

    One worker, and no job runner (MLflow's background jobs serve GenAI features this pipeline
    does not use; on two cores its consumers would double the server's start-up time)."""
    d = tmp_path_factory.mktemp(f"mlflow-server-{request.param}")
    backend = request.getfixturevalue("postgres") if request.param == "postgresql" else f"sqlite:///{d / 'mlflow.db'}"
    port = free_port()
    cmd = [
        required_script("mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        f"s3://{BUCKET}/{PREFIX}",
    ]
    env = {**base_env(), **s3.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    service = start(f"mlflow server ({request.param})", cmd, d / "mlflow-server.log", env, d)
    try:
        service.url = f"http://127.0.0.1:{port}"
        service.wait_until(lambda: http_ok(f"{service.url}/health"))
        service.env = dict(s3.env)
        service.backend = backend
        yield service
    finally:
        service.stop()


def test_the_pipeline_logs_to_a_shared_tracking_server_and_reads_back(tracking_server, s3, tmp_path, monkeypatch):
    import mlflow

    from pipeline.tracking.names import model_name

    server = tracking_server
    kind = "sqlite" if server.backend.startswith("sqlite") else "postgresql"
    experiment = f"tiny-server-{kind}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    d = tmp_path / "run"
    d.mkdir()
    # two decision rules of four: every kind of run and model still goes through the server (the
    # anomaly rule's bundles hold its forest file), in about half the calls
    rules = ["posthoc_adjust", "anomaly"]
    overrides = {"mlflow": {"experiment": experiment}, "evaluate": {"decisions": {"rules": rules}}}
    run_pipeline(d, write_params(d / "params.yaml", overrides))
    assert not list((tmp_path / "outbox").glob("*.json")), "runs left waiting in the outbox: the server was not reached"

    client = mlflow.MlflowClient(tracking_uri=server.url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_role: dict[str, list] = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("role"), []).append(r)
    audit = json.loads((d / "reports/audit.json").read_text())
    metrics = json.loads((d / "reports/metrics.json").read_text())
    assert set(by_role) == {"stage", "training", "candidate", "evaluation"}
    assert {r.info.run_name for r in by_role["stage"]} == {f"train@{loss}" for loss in TINY["train"]["losses"]} | {
        "baselines"
    }
    assert {r.info.run_name for r in by_role["training"]} == set(ALL)
    assert sorted(r.info.run_name for r in by_role["candidate"]) == sorted(metrics)
    assert all(r.info.status == "FINISHED" for r in runs)
    (evaluation,) = by_role["evaluation"]

    # a trained model: its metrics, its per-epoch history as trained, its confusion matrix
    name = "focal_g2"
    run = next(r for r in by_role["candidate"] if r.info.run_name == name)
    assert run.data.metrics["val_macro_f1"] == pytest.approx(metrics[name]["val"]["macro_f1"])
    trained = json.loads((d / f"outputs/models/{MODELS[name]}/training.json").read_text())["runs"][name]["history"]
    history = client.get_metric_history(run.data.tags["training_run"], "stop_balanced_log_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (h["epoch"], pytest.approx(h["stop_balanced_log_loss"])) for h in trained
    ]
    figure = f"confusion_{name}.png"
    downloaded = Path(client.download_artifacts(run.info.run_id, figure, str(tmp_path / "download")))
    assert downloaded.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert downloaded.read_bytes() == (d / f"reports/figures/{figure}").read_bytes()

    # the evaluation run's audit is the one written locally
    got = Path(client.download_artifacts(evaluation.info.run_id, "audit.json", str(tmp_path / "download")))
    assert got.read_bytes() == (d / "reports/audit.json").read_bytes()

    # every candidate a logged model, each in its run
    logged, token = [], None
    while True:
        page = client.search_logged_models([exp.experiment_id], max_results=50, page_token=token)
        logged += list(page)
        if not (token := page.token):
            break
    by_candidate = {m.tags["candidate"]: m for m in logged}
    assert len(logged) == len(by_candidate) and set(by_candidate) == set(metrics)
    assert all(m.name == model_name(c) for c, m in by_candidate.items())
    assert by_candidate[name].source_run_id == run.info.run_id

    # the pick registered, the champion alias on it, its decision record in the version's tags
    pick = audit["policy"]["pick"]
    assert pick and evaluation.data.tags["policy_pick"] == pick
    champion = client.get_model_version_by_alias(experiment, "champion")
    assert champion.tags["pick"] == pick and champion.tags["policy"] == audit["policy"]["summary"]
    assert evaluation.data.tags["registered_version"] == f"{experiment}/{champion.version}"
    assert champion.source == f"models:/{by_candidate[pick].model_id}"  # the pick's logged model

    # where it all lives: the objects in the bucket, the rows in the backend's database
    keys = bucket_keys(s3, f"{PREFIX}/{exp.experiment_id}/")
    assert f"{PREFIX}/{exp.experiment_id}/{run.info.run_id}/artifacts/{figure}" in keys
    assert f"{PREFIX}/{exp.experiment_id}/{evaluation.info.run_id}/artifacts/audit.json" in keys
    assert any(k.startswith(f"{PREFIX}/{exp.experiment_id}/models/{by_candidate[pick].model_id}/") for k in keys)
    rows = _query(server.backend, f"SELECT experiment_id FROM experiments WHERE name = '{experiment}'")
    assert [str(r[0]) for r in rows] == [exp.experiment_id]


def test_the_preflight_check_knows_a_postgresql_server_from_a_closed_port(postgres):
    from pipeline import PipelineError
    from pipeline.tracking.runs import check_store

    check_store(postgres)  # answers PostgreSQL's SSL request
    closed = postgres.rsplit(":", 1)[0] + f":{free_port()}/mlflow"
    with pytest.raises(PipelineError, match="is not reachable \\(Connection refused\\)"):
        check_store(closed)
