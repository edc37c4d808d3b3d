"""`dvc repro` in a scratch git repository: the real graph, caching and selective re-runs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_stages import TINY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
COPY = ["pipeline", "stages", "data/raw", ".dvc/config", ".dvc/plots", ".dvcignore", ".gitignore", "dvc.yaml"]


def sh(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def sh_json(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def make_project(d: Path) -> None:
    """The project's pipeline files in ``d``, at tiny parameters (``TINY``)."""
    for item in COPY:
        src, dst = ROOT / item, d / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())  # dvc.yaml interpolates its keys
    for block, values in TINY.items():
        params[block].update(values)
    (d / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("repo")
    make_project(d)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    sh("git init -q && git add -A && git commit -qm init", d, env)
    first = sh("dvc repro", d, env)
    return d, env, first


def test_repro_runs_every_stage_and_logs_to_the_repo_store(repo):
    d, env, out = repo
    for stage in (
        "prepare",
        "weights",
        "plan",
        "train@ce",
        "train@weighted_ce",
        "train@focal",
        "baselines",
        "decide",
        "evaluate",
        "report",
    ):
        assert f"Running stage '{stage}'" in out
    assert (d / "reports/metrics.json").is_file() and (d / "mlflow.db").is_file()
    assert (d / "reports/report.html").is_file()
    metrics = sh_json("dvc metrics show --json", d, env)
    summary = metrics[""]["data"]["reports/summary.json"]["data"]
    assert summary["pick"] and summary["ref"] == "ce" and summary["policy_metric"] == "macro_f1"
    assert all(not isinstance(v, dict) for v in summary.values())  # flat: no key read as nesting
    assert {"pick_val", "pick_test", "pick_p_best", "ref_val", "ref_test"} <= set(summary)


def test_plots_show_five_panels_from_the_plot_data(repo):
    d, env, _ = repo
    plots = sh_json("dvc plots show --json", d, env)
    assert not plots.get("errors")
    assert sorted(plots["data"]) == ["alpha", "confusion", "gamma", "pr_curves", "training"]
    for plot_id, [entry] in plots["data"].items():
        spec = entry["content"]
        assert spec["data"]["values"], plot_id  # the file's rows, read through dvc.yaml's y
        assert spec["title"]["text"] and "<DVC_METRIC" not in json.dumps(spec), plot_id


def test_compare_reads_dvc_exp_show(repo):
    from stages.show import experiments

    d, env, _ = repo
    lines = experiments(sh_json("dvc exp show --json", d, env)).splitlines()
    assert len(lines) == 4 and lines[2].startswith("workspace")  # and the commit, from before the first repro
    summary = json.loads((d / "reports/summary.json").read_text())
    assert summary["pick"] in lines[2] and f"{summary['pick_test']:.4f}" in lines[2]
    assert max(map(len, lines)) <= 200


def test_second_repro_does_nothing(repo):
    d, env, _ = repo
    status = sh("dvc status", d, env)
    assert "up to date" in status
    again = sh("dvc repro", d, env)
    assert "Running stage" not in again


def test_forced_report_renders_are_byte_identical(repo):
    # the report leaves its own dvc.lock entry out of its provenance, so a re-render reproduces it
    d, env, _ = repo
    sh("dvc repro --force -s report", d, env)
    first = (d / "reports/report.html").read_bytes()
    sh("dvc repro --force -s report", d, env)
    assert (d / "reports/report.html").read_bytes() == first
    assert "Running stage" not in sh("dvc repro", d, env)


def test_a_typo_anywhere_in_params_stops_repro_at_prepare(repo):
    d, env, _ = repo
    original = (d / "params.yaml").read_text()
    (d / "params.yaml").write_text(original + "trian:\n  lr: 0.1\n")
    try:
        proc = subprocess.run("dvc repro", cwd=d, env=env, shell=True, capture_output=True, text=True)
    finally:
        (d / "params.yaml").write_text(original)
    assert proc.returncode != 0
    assert "unknown key trian" in proc.stderr and "(did you mean train?)" in proc.stderr
    assert "Running stage 'prepare'" in proc.stdout and "Running stage 'weights'" not in proc.stdout


def test_a_change_elsewhere_reruns_prepare_and_only_what_it_concerns(repo):
    d, env, _ = repo
    sh("dvc repro", d, env)  # back to where the typo left it
    prepared = {p.name: p.read_bytes() for p in (d / "data/prepared").iterdir()}
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["evaluate"]["ece_bins"] = 10
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    out = sh("dvc repro", d, env)
    assert "Running stage 'prepare'" in out and "Running stage 'evaluate'" in out
    for stage in ("weights", "plan", "train@ce", "train@focal", "baselines"):
        assert f"Running stage '{stage}'" not in out
    assert {p.name: p.read_bytes() for p in (d / "data/prepared").iterdir()} == prepared


def test_a_failed_evaluate_keeps_the_previous_reports(repo):
    d, env, _ = repo
    before = {name: (d / "reports" / name).read_bytes() for name in ("metrics.json", "summary.json", "audit.json")}
    pred = d / "reports/predictions/test/ce/ce.parquet"
    saved = pred.read_bytes()
    pred.write_bytes(b"not a parquet file")
    try:
        proc = subprocess.run(
            "dvc repro --force -s evaluate", cwd=d, env=env, shell=True, capture_output=True, text=True
        )
    finally:
        pred.write_bytes(saved)
    assert proc.returncode != 0
    assert "ce.parquet: test predictions of ce is not a readable Parquet file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {name: (d / "reports" / name).read_bytes() for name in before} == before


def test_new_gammas_retrain_only_focal(repo):
    d, env, _ = repo
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["train"]["gammas"] = [0, 1]
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    out = sh("dvc repro", d, env)
    assert "Running stage 'train@focal'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'report'" in out
    # prepare re-runs on any change of params.yaml (it checks all of it), its outputs unchanged
    for stage in ("weights", "train@ce", "train@weighted_ce", "baselines"):
        assert f"Running stage '{stage}'" not in out
    assert "focal_g1" in (d / "reports/metrics.json").read_text()
    assert "focal_g2" not in (d / "reports/metrics.json").read_text()


def test_bad_loss_stops_repro_with_one_clear_line(repo):
    d, env, _ = repo
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["train"]["losses"] = ["ce", "hinge"]
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run("dvc repro", cwd=d, env=env, shell=True, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "error: params.yaml: train.losses must be one of ce, weighted_ce, focal" in proc.stderr
    assert "got 'hinge'" in proc.stderr


def test_a_parallel_queue_from_a_fresh_clone_lands_in_one_store_and_moves_no_alias(repo, tmp_path):
    import time

    import mlflow

    d, env, _ = repo
    clone = tmp_path / "clone"
    sh(f"git clone -q {d} {clone}", tmp_path, env)
    assert not (clone / "mlflow.db").exists()  # two workers will open a new store at once
    for lr in ("0.002", "0.003"):
        sh(f"dvc exp run --queue -S train.lr={lr}", clone, env)
    try:
        sh("dvc queue start -j 2", clone, env)
        deadline = time.time() + 1200
        status = ""
        while time.time() < deadline:
            status = sh("dvc queue status", clone, env)
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(5)
    finally:
        subprocess.run("dvc queue stop", cwd=clone, env=env, shell=True, capture_output=True)
    assert status.count("Success") == 2, status + sh(
        "dvc queue logs $(dvc queue status | awk 'NR>1{print $1; exit}') 2>&1 || true", clone, env
    )
    names = set(sh("dvc exp ls --name-only", clone, env).split())
    assert len(names) == 2  # and `dvc exp show` lists them
    shown = json.dumps(sh_json("dvc exp show --json", clone, env))
    assert all(name in shown for name in names)
    base = sh("git rev-parse HEAD", clone, env).strip()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{clone / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert {r.data.tags.get("dvc_exp_name") for r in runs} == names  # every run in the one store, tagged
    assert all(r.data.tags["dvc_exp_base_commit"] == base and "git_dirty" not in r.data.tags for r in runs)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len([r for r in runs if r.data.tags.get("role") == "evaluation"]) == 2
    model = client.get_registered_model("tiny")
    assert not model.aliases  # no experiment moves champion
    versions = client.search_model_versions("name = 'tiny'")
    assert {v.tags.get("dvc_exp_name") for v in versions} <= names and versions
