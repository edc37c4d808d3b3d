"""Experiments shared across machines, for real on 127.0.0.1: a DVC remote in S3 (moto's server)
for the data and every cached output, a bare git repository as the git remote, and the test's own
MLflow store standing in for the team's tracking server.

Clone A, its commit pushed to the git remote, runs an experiment and pushes it (``dvc exp push
origin <name>``: the experiment's git ref to the git remote, its cached outputs to S3). Clone B, a
fresh ``git clone`` of the git remote, pulls the experiment, applies it, and has nothing to
reproduce: the experiment's outputs, byte for byte, without training anything.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.services import BUCKET, bucket_keys
from tests.test_dvc import make_project, sh, sh_json
from tests.test_stages import TINY

pytestmark = pytest.mark.slow

EXP = "lr-0003"
PREFIX = "dvc"  # the DVC remote's folder in the bucket


def _cached_outputs(d: Path) -> dict[str, str]:
    """Every output in ``dvc.lock`` that DVC caches (``cache: false`` in dvc.yaml left out): path -> md5."""
    stages = yaml.safe_load((d / "dvc.yaml").read_text())["stages"]
    uncached = {
        path
        for stage in stages.values()
        for kind in ("outs", "metrics", "plots")
        for entry in stage.get("do", stage).get(kind, [])
        if isinstance(entry, dict)
        for path, options in entry.items()
        if options and options.get("cache") is False
    }
    lock = yaml.safe_load((d / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] not in uncached
    }


def _remote_key(md5: str) -> str:
    return f"{PREFIX}/files/md5/{md5[:2]}/{md5[2:]}"


def test_an_experiment_pushed_from_one_clone_is_pulled_into_another_with_nothing_to_reproduce(s3, tmp_path):
    import mlflow

    # this test's MLflow store (MLFLOW_TRACKING_URI) stands in for the team's server; DVC's S3 remote
    # reads the S3 server's credentials from the environment, like any AWS client
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "AWS_"))}
    env.update(s3.env)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    origin, a, b = tmp_path / "origin.git", tmp_path / "a", tmp_path / "b"
    sh(f"git init -q --bare -b main {origin}", tmp_path, env)

    # machine A: the project with both remotes, pushed; an experiment run and pushed, its git ref
    # to the git remote and its cached outputs to S3
    a.mkdir()
    make_project(a)
    sh(f"git init -q -b main && git remote add origin {origin}", a, env)
    sh(f"dvc remote add -d storage s3://{BUCKET}/{PREFIX} && dvc remote modify storage endpointurl {s3.url}", a, env)
    sh("git add -A && git commit -qm init && git push -q -u origin main", a, env)
    out = sh(f"dvc exp run -n {EXP} -S train.lr=0.003", a, env)
    assert "Running stage 'train@ce'" in out
    summary = (a / "reports/summary.json").read_bytes()
    cached = _cached_outputs(a)
    assert "outputs/models/ce" in cached and "reports/report.html" in cached
    assert not bucket_keys(s3, f"{PREFIX}/")
    sh(f"dvc exp push origin {EXP}", a, env)
    assert EXP in sh("git ls-remote origin 'refs/exps/*'", a, env)
    keys = set(bucket_keys(s3, f"{PREFIX}/"))
    missing = {path for path, md5 in cached.items() if _remote_key(md5) not in keys}
    assert not missing, f"outputs not in the S3 remote after dvc exp push: {sorted(missing)}"
    assert "in sync" in sh("dvc status --cloud", a, env)  # every file of every output directory too

    # machine B: a fresh clone (the remote's settings come with it) pulls the experiment, applies
    # it (its outputs checked out from what the pull fetched) and has nothing to reproduce
    sh(f"git clone -q {origin} {b}", tmp_path, env)
    assert not (b / ".dvc/cache").exists() and not (b / "dvc.lock").exists()
    sh(f"dvc exp pull origin {EXP}", b, env)
    assert EXP in sh("dvc exp ls --name-only", b, env).split()
    sh(f"dvc exp apply {EXP}", b, env)
    assert "Everything is up to date" in sh("dvc pull", b, env)  # the experiment's pull fetched it all
    assert yaml.safe_load((b / "params.yaml").read_text())["train"]["lr"] == 0.003
    status = sh("dvc status", b, env)
    assert "Data and pipelines are up to date" in status, status
    again = sh("dvc repro", b, env)
    assert "Running stage" not in again and "Data and pipelines are up to date" in again, again
    assert (b / "reports/summary.json").read_bytes() == summary
    assert _cached_outputs(b) == cached
    for path in ("outputs/models/ce/training.json", "reports/plots/pr.json", "reports/report.html"):
        assert (b / path).read_bytes() == (a / path).read_bytes(), path
    assert EXP in json.dumps(sh_json("dvc exp show --json", b, env))

    # the runs went to the tracking store (the team's server), the experiment's tagged with its name
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])  # not a URI an earlier test set
    runs = client.search_runs([client.get_experiment_by_name(TINY["mlflow"]["experiment"]).experiment_id])
    assert EXP in {r.data.tags.get("dvc_exp_name") for r in runs}
