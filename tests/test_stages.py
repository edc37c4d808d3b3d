"""Every stage end to end on tiny data in a temporary directory, on CPU."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn import metrics as skm

from pipeline.evaluation.evaluate import PLOT_FILES, PR_TOP
from pipeline.decision.metrics import bootstrap_indices, percentile_interval
from pipeline.training.model import MLP
from stages import baselines, decide, evaluate, plan, prepare, report, train, weights

TINY = {
    "data": {"source": "digits", "imbalance_ratio": 5, "seed": 1},
    "weights": {"scheme": "inverse"},
    "train": {
        "losses": ["ce", "weighted_ce", "focal"],
        "gammas": [0, 2],
        "alphas": [0.5, 1],
        "seeds": [0],
        "hidden": [16],
        "epochs": 3,
        "patience": 2,
        "batch_size": 128,
        "device": "cpu",
    },
    "baselines": {"xgb_n_estimators": 20},
    "evaluate": {"bootstrap": {"resamples": 200}, "costs": {"default": 1, "missed": {"9": 5}}},
    "mlflow": {"experiment": "tiny"},
}


def write_params(path, overrides=None):
    params = json.loads(json.dumps(TINY))
    for block, values in (overrides or {}).items():
        params.setdefault(block, {}).update(values)
    path.write_text(yaml.safe_dump(params))
    return path


def run_pipeline(d, params):
    prepare.main(["--params", str(params), "--out", str(d / "data/prepared")])
    weights.main(
        [
            "--params",
            str(params),
            "--meta",
            str(d / "data/prepared/meta.json"),
            "--out",
            str(d / "outputs/class_weights.json"),
        ]
    )
    plan.main(
        ["--params", str(params), "--weights", str(d / "outputs/class_weights.json"), "--out", str(d / "outputs/plans")]
    )
    from pipeline.config import load_params

    for loss in load_params(params).train.losses:
        train.main(
            [
                "--params",
                str(params),
                "--plan",
                str(d / f"outputs/plans/{loss}.json"),
                "--data",
                str(d / "data/prepared"),
                "--models",
                str(d / f"outputs/models/{loss}"),
                "--val-predictions",
                str(d / f"reports/predictions/val/{loss}"),
                "--test-predictions",
                str(d / f"reports/predictions/test/{loss}"),
                "--no-progress",
            ]
        )
    baselines.main(
        [
            "--params",
            str(params),
            "--data",
            str(d / "data/prepared"),
            "--weights",
            str(d / "outputs/class_weights.json"),
            "--models",
            str(d / "outputs/models/baselines"),
            "--val-predictions",
            str(d / "reports/predictions/val/baselines"),
            "--test-predictions",
            str(d / "reports/predictions/test/baselines"),
        ]
    )
    decide.main(decide_args(d, params))
    evaluate.main(evaluate_args(d, params))
    report.main(report_args(d, params, d / "reports/report.html"))


def decide_args(d, params):
    return [
        "--params",
        str(params),
        "--data",
        str(d / "data/prepared"),
        "--plans",
        str(d / "outputs/plans"),
        "--models",
        str(d / "outputs/models"),
        "--predictions",
        str(d / "reports/predictions"),
        "--baselines",
        "baselines",
        "--out-predictions",
        str(d / "reports/decisions"),
        "--out-params",
        str(d / "outputs/decisions"),
    ]


def report_args(d, params, out, *extra):
    return [
        "--params",
        str(params),
        "--meta",
        str(d / "data/prepared/meta.json"),
        "--weights",
        str(d / "outputs/class_weights.json"),
        "--metrics",
        str(d / "reports/metrics.json"),
        "--audit",
        str(d / "reports/audit.json"),
        "--runs",
        str(d / "reports/mlflow_runs.json"),
        "--figures",
        str(d / "reports/figures"),
        "--decisions",
        str(d / "reports/decisions"),
        "--lock",
        str(d / "dvc.lock"),
        "--out",
        str(out),
        *extra,
    ]


def evaluate_args(d, params):
    return [
        "--params",
        str(params),
        "--meta",
        str(d / "data/prepared/meta.json"),
        "--plans",
        str(d / "outputs/plans"),
        "--models",
        str(d / "outputs/models"),
        "--predictions",
        str(d / "reports/predictions"),
        "--baselines",
        "baselines",
        "--decision-predictions",
        str(d / "reports/decisions"),
        "--decision-params",
        str(d / "outputs/decisions"),
        "--metrics",
        str(d / "reports/metrics.json"),
        "--audit",
        str(d / "reports/audit.json"),
        "--summary",
        str(d / "reports/summary.json"),
        "--runs",
        str(d / "reports/mlflow_runs.json"),
        "--plots",
        str(d / "reports/plots"),
        "--figures",
        str(d / "reports/figures"),
        "--preprocessing",
        str(d / "data/prepared/preprocessing.json"),
    ]


MODELS = {
    "ce": "ce",
    "weighted_ce_a0.5": "weighted_ce",
    "weighted_ce_a1": "weighted_ce",
    "focal_g0": "focal",
    "focal_g2": "focal",
}
BASELINES = {"majority": "baselines", "logreg_balanced": "baselines", "xgboost": "baselines"}
ALL = {**MODELS, **BASELINES}


def _candidates(d):
    """candidate -> its group for every model and decision rule."""
    out = dict(ALL)
    for p in sorted((d / "outputs/decisions").glob("*.json")):
        out[p.stem] = json.loads(p.read_text())["group"]
    return out


def _predictions(d, name, split, where="decisions"):
    """A candidate's predictions as evaluated (the decide stage's: calibrated), or with
    ``where="predictions"`` a model's own, as trained."""
    return pd.read_parquet(d / f"reports/{where}/{split}/{_candidates(d)[name]}/{name}.parquet")


def test_every_stage_writes_its_outputs(pipeline_run):
    d = pipeline_run
    meta = json.loads((d / "data/prepared/meta.json").read_text())
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["train_imbalance_ratio"] == pytest.approx(5.0, rel=0.2)
    cw = json.loads((d / "outputs/class_weights.json").read_text())
    counts = np.array(cw["counts"])
    assert np.dot(cw["weights"], counts) == pytest.approx(counts.sum())
    assert sorted(p.name for p in (d / "outputs/plans").iterdir()) == ["ce.json", "focal.json", "weighted_ce.json"]
    for model, loss in ALL.items():
        suffix = ".json" if loss == "baselines" else ".pt"
        assert (d / f"outputs/models/{loss}/{model}{suffix}").is_file()
        for split in ("val", "test"):
            assert (d / f"reports/predictions/{split}/{loss}/{model}.parquet").is_file()
        assert (d / f"reports/figures/confusion_{model}.png").is_file()
    assert sorted(p.name for p in (d / "reports/plots").iterdir()) == sorted(PLOT_FILES.values())
    # default decisions: every rule on each loss's best model on validation (majority: none, it is constant)
    decided = {p.stem for p in (d / "outputs/decisions").glob("*.json")}
    rules = {c.split("+")[1] for c in decided}
    assert rules == {"posthoc_adjust", "thresholds", "cost"} | ({"anomaly"} & rules)
    calibrated = {p.stem for p in (d / "outputs/decisions/calibration").glob("*.json")}
    assert calibrated == set(ALL)  # every model, the majority baseline too
    assert {c.split("+")[0] for c in decided} >= {"ce", "logreg_balanced", "xgboost"}
    assert len({c.split("+")[0] for c in decided} & {"weighted_ce_a0.5", "weighted_ce_a1"}) == 1  # the family's best
    assert not any(c.startswith("majority+") for c in decided)
    for fig in (
        "leaderboard_ranks",
        "metric_agreement",
        "gamma_focal",
        "focal_loss_shape",
        "prior_shift",
        "loss_metric_agreement",
    ):
        assert (d / f"reports/figures/{fig}.png").is_file()
    assert not list(d.rglob("*.tmp"))  # no temp files or directories left behind


def _plot_rows(d):
    return {key: json.loads((d / "reports/plots" / name).read_text()) for key, name in PLOT_FILES.items()}


def test_plot_data_holds_what_each_panel_shows(pipeline_run):
    d = pipeline_run
    audit = json.loads((d / "reports/audit.json").read_text())
    metrics = json.loads((d / "reports/metrics.json").read_text())
    rows = _plot_rows(d)
    for key, data in rows.items():  # DVC reads a list of rows only when every row has the same keys
        assert data and all(set(r) == set(data[0]) for r in data), key
    pick, board = audit["policy"]["pick"], audit["leaderboard"]
    by_name = {}
    for r in rows["pr"]:
        by_name.setdefault(r["name"], []).append(r)
    top = [f"#{i + 1} {row['model']}" for i, row in enumerate(board[:PR_TOP])]
    assert [n.removesuffix(" (pick)").removesuffix(" (reference)") for n in by_name][: len(top)] == top
    assert list(by_name)[0] == f"#1 {pick} (pick)"
    assert sum(n.endswith(" ce (reference)") for n in by_name) == 1
    for curve in by_name.values():
        recall = [r["recall"] for r in curve]
        assert recall == sorted(recall) and recall[-1] == 1.0
        assert all(0 <= r["precision"] <= 1 for r in curve)
    gamma = rows["gamma"]
    assert [(r["name"], r["gamma"]) for r in gamma] == [("focal", 0.0), ("focal", 2.0)]
    assert [r["macro_f1"] for r in gamma] == [metrics["focal_g0"]["macro_f1"], metrics["focal_g2"]["macro_f1"]]
    assert gamma[0]["macro_f1_low"] <= gamma[0]["macro_f1"] <= gamma[0]["macro_f1_high"]
    # one curve per loss: its best model on validation, the monitored metric per epoch, the kept epoch marked
    ranks = {m: i for i, row in enumerate(board) for m in row["members"]}
    curves = {}
    for r in rows["training"]:
        curves.setdefault(r["name"], []).append(r)
    assert set(curves) == {
        "ce",
        min(("weighted_ce_a0.5", "weighted_ce_a1"), key=ranks.get),
        min(("focal_g0", "focal_g2"), key=ranks.get),
    }
    for name, curve in curves.items():
        run = json.loads((d / f"outputs/models/{MODELS[name]}/training.json").read_text())["runs"][name]
        monitor = run["monitor"]
        assert [(r["epoch"], r["stop_metric"], r["monitor"]) for r in curve] == [
            (h["epoch"], h[f"stop_{monitor}"], monitor) for h in run["history"]
        ]
        assert [r["epoch"] for r in curve if r["kept"]] == [run["best_epoch"]]
    ref = audit["reference"]["model"]
    confusion = pd.DataFrame(rows["confusion"])
    assert list(confusion["name"].unique()) == [f"pick: {pick}", f"reference: {ref}"]
    for role, name in (("pick", pick), ("reference", ref)):
        mine = confusion[confusion["name"] == f"{role}: {name}"]
        pred = _predictions(d, name, "test")
        assert list(mine["actual"]) == list(pred["y_true"].astype(str))
        assert list(mine["predicted"]) == list(pred["y_pred"].astype(str))


def test_dvc_yaml_plots_read_the_plot_data(pipeline_run, root):
    """Every panel of `dvc plots show`: a title, both axis labels, a template that exists, and
    fields that the file evaluate writes holds; fewer than 15 panels."""
    from dvc_render.vega_templates import TEMPLATES

    rows = _plot_rows(pipeline_run)
    files = {f"reports/plots/{name}": key for key, name in PLOT_FILES.items()}
    plots = yaml.safe_load((root / "dvc.yaml").read_text())["plots"]
    assert 0 < len(plots) < 15
    builtin = {t.DEFAULT_NAME for t in TEMPLATES}
    for entry in plots:
        ((plot_id, props),) = entry.items()
        assert {"title", "x_label", "y_label", "template"} <= set(props), plot_id
        assert props["template"] in builtin or (root / ".dvc/plots" / f"{props['template']}.json").is_file()
        for path, field in props["y"].items():
            data = rows[files[path]]
            assert field in data[0] and props["x"] in data[0], plot_id
    assert {path for entry in plots for props in entry.values() for path in props["y"]} == set(files)


def test_the_weight_strength_curve_starts_at_ce_and_is_in_the_audit(pipeline_run):
    d = pipeline_run
    audit = json.loads((d / "reports/audit.json").read_text())
    metrics = json.loads((d / "reports/metrics.json").read_text())
    curve = audit["weight_strength"]["weighted_ce"]
    assert curve["alphas"] == [0.0, 0.5, 1.0]
    assert [row["models"] for row in curve["rows"]] == [["ce"], ["weighted_ce_a0.5"], ["weighted_ce_a1"]]
    for row in curve["rows"]:  # the same numbers as metrics.json, validation for choosing, test for the estimate
        name = row["models"][0]
        assert row["val"]["macro_f1"]["value"] == pytest.approx(metrics[name]["val"]["macro_f1"])
        assert row["test"]["macro_f1"]["value"] == pytest.approx(metrics[name]["macro_f1"])
    best = max(curve["rows"], key=lambda row: (row["val"]["macro_f1"]["value"], -row["alpha"]))
    assert curve["peak"]["alpha"] == best["alpha"] and best["alpha"] in curve["flat_top"]["alphas"]
    assert curve["summary"].startswith(f"weighted_ce: macro_f1 on validation peaks at α = {best['alpha']:g}")
    plot = json.loads((d / "reports/plots/alpha.json").read_text())
    assert {r["name"] for r in plot} == {"weighted_ce (validation)", "weighted_ce (test)"}
    assert (d / "reports/figures/alpha_weighted_ce.png").is_file()
    # weighted_ce keeps no model under weights.scheme, and ce is trained once
    assert "weighted_ce" not in metrics and sorted(m for m in metrics if m.startswith("ce") and "+" not in m) == ["ce"]


def test_plans_isolate_what_each_loss_reads(pipeline_run):
    plans = {p.stem: json.loads(p.read_text()) for p in (pipeline_run / "outputs/plans").iterdir()}
    assert [r["model"] for r in plans["focal"]["runs"]] == ["focal_g0", "focal_g2"]
    assert plans["ce"]["class_weights"] is None
    assert [r["model"] for r in plans["weighted_ce"]["runs"]] == ["weighted_ce_a0.5", "weighted_ce_a1"]
    assert plans["weighted_ce"]["class_weights"]["scheme"] == "power"  # train.alphas, not weights.scheme
    assert "gammas" not in plans["ce"]["train"]  # a new gamma sweep must not re-train ce


@pytest.mark.parametrize("split", ["val", "test"])
def test_predictions_follow_the_contract(pipeline_run, split):
    d = pipeline_run
    classes = [str(i) for i in range(10)]
    prepared = pd.read_parquet(d / f"data/prepared/{split}.parquet")
    probability = [f"p_{c}" for c in classes]
    for name in _candidates(d):
        frame = _predictions(d, name, split)
        assert list(frame.columns) == ["y_true", "y_pred"] + probability, name
        np.testing.assert_allclose(frame[probability].to_numpy().sum(axis=1), 1.0, atol=1e-9)
        assert (frame["y_true"] == prepared["y"]).all(), name
        if "+" not in name:  # a model's own candidate: its decisions as trained, its probabilities calibrated
            trained = _predictions(d, name, split, where="predictions")
            assert (trained["y_pred"] == np.array(classes)[trained[probability].to_numpy().argmax(1)]).all(), name
            assert (frame["y_pred"] == trained["y_pred"]).all(), name
        elif "+cost" not in name:  # a rule ships its model's calibrated probabilities (cost: its own)
            model = name.split("+")[0]
            np.testing.assert_array_equal(
                frame[probability].to_numpy(), _predictions(d, model, split)[probability].to_numpy()
            )


def test_saved_weights_load_safely_and_reproduce_predictions(pipeline_run):
    d = pipeline_run
    ckpt = torch.load(d / "outputs/models/ce/ce.pt", weights_only=True)
    model = MLP(ckpt["in_features"], tuple(ckpt["hidden"]), len(ckpt["classes"]), ckpt["dropout"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    for split in ("val", "test"):
        X = pd.read_parquet(d / f"data/prepared/{split}.parquet").drop(columns=["y", "source_row"]).to_numpy(np.float32)
        with torch.no_grad():
            proba = torch.softmax(model(torch.tensor(X)).double(), 1).numpy()
        saved = pd.read_parquet(d / f"reports/predictions/{split}/ce/ce.parquet")
        np.testing.assert_allclose(proba, saved[[f"p_{c}" for c in ckpt["classes"]]].to_numpy(), atol=1e-6)


def _sklearn_metrics(pred, classes, w=None, cost=None):
    """Every summary and per-class metric of metrics.json, recomputed with scikit-learn."""
    y, p = pred.y_true.astype(str), pred.y_pred.astype(str)
    proba = pred[[f"p_{c}" for c in classes]].to_numpy()
    kw = dict(labels=classes, zero_division=0, sample_weight=w)
    codes = pd.Categorical(y, categories=classes).codes
    out = {
        "accuracy": skm.accuracy_score(y, p, sample_weight=w),
        "balanced_accuracy": skm.balanced_accuracy_score(y, p, sample_weight=w),
        "mcc": skm.matthews_corrcoef(y, p, sample_weight=w),
        "cohen_kappa": skm.cohen_kappa_score(y, p, labels=classes, sample_weight=w),
        "roc_auc_ovr": skm.roc_auc_score(codes, proba, multi_class="ovr", sample_weight=w),
        "log_loss": skm.log_loss(codes, proba, labels=range(len(classes)), sample_weight=w),
    }
    for avg in ("macro", "micro", "weighted"):
        out[f"{avg}_f1"] = skm.f1_score(y, p, average=avg, **kw)
        out[f"{avg}_precision"] = skm.precision_score(y, p, average=avg, **kw)
        out[f"{avg}_recall"] = skm.recall_score(y, p, average=avg, **kw)
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        out.update({f"{name}/{c}": v for c, v in zip(classes, fn(y, p, average=None, **kw))})
    mcm = skm.multilabel_confusion_matrix(y, p, labels=classes, sample_weight=w)
    out.update({f"fpr/{c}": m[0, 1] / m[0].sum() for c, m in zip(classes, mcm)})
    if cost is not None:  # mean cost per decision, brute force
        each = cost[codes, pd.Categorical(p, categories=classes).codes]
        out["expected_cost"] = np.average(each, weights=w)
    return out


def _tiny_cost(classes):
    cost = 1.0 - np.eye(len(classes))
    cost[classes.index("9"), :] = 5.0
    cost[classes.index("9"), classes.index("9")] = 0.0
    return cost


def test_metrics_recompute_from_predictions_and_decisions_with_sklearn(pipeline_run):
    """Every point metric of every candidate, on validation and test, held out and reweighted."""
    d = pipeline_run
    metrics = json.loads((d / "reports/metrics.json").read_text())
    meta = json.loads((d / "data/prepared/meta.json").read_text())
    classes = meta["classes"]
    candidates = _candidates(d)
    assert set(metrics) == set(candidates) and any("+" in c for c in metrics)
    train = np.array([meta["counts"]["train"][c] for c in classes], dtype=float)
    cost = _tiny_cost(classes)
    for name in candidates:
        for split in ("val", "test"):
            pred = _predictions(d, name, split)
            entry = metrics[name] if split == "test" else metrics[name]["val"]
            for key, expected in _sklearn_metrics(pred, classes, cost=cost).items():
                assert entry[key] == pytest.approx(expected, abs=1e-9), (name, split, key)
            # validation and test are balanced, so the second view reweights to the training prior
            counts = pred.y_true.value_counts()
            w = np.array([train[classes.index(c)] / train.sum() / (counts[c] / len(pred)) for c in pred.y_true])
            for key, expected in _sklearn_metrics(pred, classes, w, cost=cost).items():
                assert entry["train_prior"][key] == pytest.approx(expected, abs=1e-9), (name, split, key)


def test_intervals_regenerate_from_the_saved_seed(pipeline_run):
    """Every test interval of two candidates, held out and reweighted, recomputed resample by
    resample with scikit-learn and imbalanced-learn from the seed in the audit."""
    from imblearn.metrics import geometric_mean_score

    d = pipeline_run
    metrics = json.loads((d / "reports/metrics.json").read_text())
    audit = json.loads((d / "reports/audit.json").read_text())
    meta = json.loads((d / "data/prepared/meta.json").read_text())
    classes, boot = meta["classes"], audit["policy"]["bootstrap"]
    train = np.array([meta["counts"]["train"][c] for c in classes], dtype=float)
    cost = _tiny_cost(classes)
    rarest = audit["rarest_class"]
    scores = {
        "accuracy": lambda y, p, w: skm.accuracy_score(y, p, sample_weight=w),
        "balanced_accuracy": lambda y, p, w: skm.balanced_accuracy_score(y, p, sample_weight=w),
        "macro_f1": lambda y, p, w: skm.f1_score(
            y, p, average="macro", labels=classes, zero_division=0, sample_weight=w
        ),
        "weighted_f1": lambda y, p, w: skm.f1_score(
            y, p, average="weighted", labels=classes, zero_division=0, sample_weight=w
        ),
        "mcc": lambda y, p, w: skm.matthews_corrcoef(y, p, sample_weight=w),
        "cohen_kappa": lambda y, p, w: skm.cohen_kappa_score(y, p, labels=classes, sample_weight=w),
        "geometric_mean": lambda y, p, w: geometric_mean_score(
            y, p, labels=sorted(set(y), key=classes.index), sample_weight=w
        ),
        "expected_cost": lambda y, p, w: np.average(
            cost[pd.Categorical(y, categories=classes).codes, pd.Categorical(p, categories=classes).codes], weights=w
        ),
        f"recall/{rarest}": lambda y, p, w: skm.recall_score(
            y, p, labels=[rarest], average="macro", zero_division=0, sample_weight=w
        ),
    }
    for name in ("ce", audit["policy"]["pick"]):
        pred = _predictions(d, name, "test")
        y, p = pred.y_true.to_numpy(), pred.y_pred.to_numpy()
        counts = pred.y_true.value_counts()
        w_view = np.array([train[classes.index(c)] / train.sum() / (counts[c] / len(pred)) for c in y])
        idx = bootstrap_indices(len(pred), boot["resamples"], boot["seed"])
        for entry, w in ((metrics[name], None), (metrics[name]["train_prior"], w_view)):
            for key, score in scores.items():
                dist = np.array([score(y[i], p[i], None if w is None else w[i]) for i in idx])
                low, high = percentile_interval(dist, boot["level"])
                assert entry["ci"][key] == {
                    "low": pytest.approx(low, abs=1e-9),
                    "high": pytest.approx(high, abs=1e-9),
                }, (name, key, w is None)


def test_audit_picks_on_validation_and_estimates_on_test(pipeline_run):
    d = pipeline_run
    audit = json.loads((d / "reports/audit.json").read_text())
    metrics = json.loads((d / "reports/metrics.json").read_text())
    pick = audit["policy"]["pick"]
    board = audit["leaderboard"]
    assert board[0]["model"] == pick and audit["policy"]["split"] == "val"
    best_val = max(metrics[r["model"]]["val"]["macro_f1"] for r in board)
    assert metrics[pick]["val"]["macro_f1"] == best_val
    assert [r["validation"] for r in board] == sorted((r["validation"] for r in board), reverse=True)
    assert audit["estimate"]["test"] == metrics[pick]["macro_f1"]
    assert audit["estimate"]["optimism"] == pytest.approx(metrics[pick]["val"]["macro_f1"] - metrics[pick]["macro_f1"])
    assert sum(r["p_best"] for r in board) + audit["policy"].get("none", 0) == pytest.approx(1.0, abs=1e-9)
    assert audit["policy"]["p_best"] == board[0]["p_best"]
    # ce and focal_g0 (focal loss at gamma 0 is cross-entropy) make the same decisions: one group
    assert "focal_g0" in audit["groups"]["ce"]
    # what the pick's probabilities are worth: its ECE on both splits, rebuilt from the test bins
    cal = audit["calibration"]
    assert cal["candidate"] == pick and cal["test_ece"] == metrics[pick]["ece"]
    assert cal["validation_ece"] == metrics[pick]["val"]["ece"] and cal["test_ece_low"] <= cal["test_ece_high"]
    bins, n = cal["reliability"], len(pd.read_parquet(d / "data/prepared/test.parquet"))
    assert sum(b["rows"] for b in bins) == n
    assert sum(b["rows"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins) == pytest.approx(cal["test_ece"])
    assert (d / "reports/figures/reliability.png").is_file()
    assert audit["reference"]["model"] == "ce"
    summary = json.loads((d / "reports/summary.json").read_text())
    assert summary["pick"] == pick and summary["pick_test"] == round(metrics[pick]["macro_f1"], 4)
    assert summary["pick_val"] == round(metrics[pick]["val"]["macro_f1"], 4)
    assert summary["pick_p_best"] == round(audit["policy"]["p_best"], 4)
    assert summary["ref"] == "ce" and summary["ref_test"] == round(metrics["ce"]["macro_f1"], 4)
    maj = audit["accuracy_paradox"]
    assert maj["accuracy_train_prior"] > maj["macro_f1_train_prior"]
    assert {"weighted_ce_a0.5", "weighted_ce_a1", "focal_g0", "focal_g2"} <= set(audit["tail_trade"]["models"])
    assert set(audit["loss_metric_agreement"]["models"]) == set(MODELS)
    assert audit["prior_shift"]["points"][0]["label"] == "validation"
    # calibration and log loss are shown beside the pick, never as rival picks; a baseline that
    # predicts one class is nobody's pick
    assert not {"log_loss", "ece"} & {d["metric"] for d in audit["disagreements"]}
    assert set(audit["beside"]) == {"log_loss", "ece"}
    assert "majority" not in audit["winners"].values()


def test_the_pick_never_reads_test_labels(pipeline_run, tmp_path, monkeypatch):
    """Permute the test labels wherever they are stored: the same pick, the same validation
    scores and fitted rules; different test metrics (so the test is read, for the estimate)."""
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(pipeline_run, d)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    params = d / "params.yaml"
    before = {f: json.loads((d / f"reports/{f}.json").read_text()) for f in ("audit", "metrics")}
    fitted = {p.name: p.read_bytes() for p in (d / "outputs/decisions").rglob("*") if p.is_file()}
    perm = np.random.default_rng(7).permutation(len(pd.read_parquet(d / "data/prepared/test.parquet")))
    files = [
        d / "data/prepared/test.parquet",
        *(d / "reports/predictions/test").rglob("*.parquet"),
        *(d / "reports/decisions/test").rglob("*.parquet"),
    ]
    for f in files:
        frame = pd.read_parquet(f)
        column = "y" if f.name == "test.parquet" else "y_true"
        frame[column] = frame[column].to_numpy()[perm]
        frame.to_parquet(f, index=False)
    decide.main(decide_args(d, params))
    evaluate.main(evaluate_args(d, params))
    after = {f: json.loads((d / f"reports/{f}.json").read_text()) for f in ("audit", "metrics")}
    assert {p.name: p.read_bytes() for p in (d / "outputs/decisions").rglob("*") if p.is_file()} == fitted
    assert after["audit"]["policy"] == before["audit"]["policy"]
    assert [(r["model"], r["validation"], r["p_best"]) for r in after["audit"]["leaderboard"]] == [
        (r["model"], r["validation"], r["p_best"]) for r in before["audit"]["leaderboard"]
    ]
    assert all(after["metrics"][m]["val"] == before["metrics"][m]["val"] for m in before["metrics"])
    assert after["metrics"]["ce"]["macro_f1"] != before["metrics"]["ce"]["macro_f1"]
    assert after["audit"]["estimate"]["test"] != before["audit"]["estimate"]["test"]


def test_policy_errors_and_unmeetable_constraints(pipeline_run, tmp_path, monkeypatch):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(pipeline_run, d)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    before = (d / "reports/metrics.json").read_bytes()
    bad = write_params(d / "bad.yaml", {"evaluate": {"select": {"metric": "macro_f2"}}})
    with pytest.raises(Exception, match="evaluate.select.metric names unknown metric 'macro_f2'"):
        evaluate.main(evaluate_args(d, bad))
    bad = write_params(d / "bad.yaml", {"evaluate": {"select": {"constraints": ["recall/x >= 0.5"]}}})
    with pytest.raises(Exception, match="names class 'x' in 'recall/x'; classes are: 0, 1, 2"):
        evaluate.main(evaluate_args(d, bad))
    assert (d / "reports/metrics.json").read_bytes() == before  # nothing rewritten
    strict = write_params(
        d / "strict.yaml",
        {"evaluate": {"bootstrap": {"resamples": 50}, "select": {"constraints": ["recall/9 >= 1.01"]}}},
    )
    decide.main(decide_args(d, strict))  # no rule can meet it: fitted anyway, reported, no crash
    evaluate.main(evaluate_args(d, strict))
    audit = json.loads((d / "reports/audit.json").read_text())
    assert audit["policy"]["pick"] is None and audit["policy"]["eligible"] == []
    assert "no candidate meets the constraints" in audit["policy"]["summary"]
    assert audit["warnings"] and "nothing is recommended" in audit["warnings"][0]


def test_mlflow_runs_tell_when_each_model_trained_and_what_each_candidate_scored(pipeline_run):
    import hashlib

    import mlflow

    from pipeline.evaluation.audit import rarest_class

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{pipeline_run / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    by_id = {r.info.run_id: r for r in runs}
    role = {
        k: [r for r in runs if r.data.tags.get("role") == k] for k in ("evaluation", "stage", "training", "candidate")
    }
    evaluation, stages, trained, candidates = role["evaluation"], role["stage"], role["training"], role["candidate"]
    assert sum(map(len, role.values())) == len(runs)
    metrics = json.loads((pipeline_run / "reports/metrics.json").read_text())
    audit = json.loads((pipeline_run / "reports/audit.json").read_text())
    meta = json.loads((pipeline_run / "data/prepared/meta.json").read_text())
    digest = meta["digest"]
    assert len(evaluation) == 1 and len(trained) == len(ALL)  # one per trained model
    assert {r.info.run_name for r in trained} == set(ALL)
    assert {r.info.run_name for r in stages} == {f"train@{loss}" for loss in TINY["train"]["losses"]} | {"baselines"}
    # one run per candidate, named as written, directly under the execution's run
    assert sorted(r.info.run_name for r in candidates) == sorted(metrics)
    parent_artifacts = {a.path for a in client.list_artifacts(evaluation[0].info.run_id)}
    assert {
        "metrics.json",
        "audit.json",
        "leaderboard_ranks.png",
        "gamma_focal.png",
        "leaderboard.json",
        "candidates.json",
    } <= parent_artifacts
    pick = evaluation[0].data.tags["policy_pick"]
    assert pick == audit["policy"]["pick"]
    assert evaluation[0].data.metrics["val_macro_f1"] == pytest.approx(metrics[pick]["val"]["macro_f1"])
    assert evaluation[0].data.metrics["test_macro_f1"] == pytest.approx(metrics[pick]["macro_f1"])
    assert {r.info.status for r in stages} == {"FINISHED"}  # system metrics: tests/test_tracking.py
    inputs = {d.dataset.name: d.dataset.digest for d in evaluation[0].inputs.dataset_inputs}
    assert set(inputs) == {"validation", "test"}  # the splits the metrics were computed on
    assert {d.dataset.name for r in stages for d in r.inputs.dataset_inputs} == {"train"}
    rarest = rarest_class(list(meta["counts"]["train"].values()), meta["classes"])
    assert {r.data.tags["rarest_class"] for r in candidates} == {rarest}
    for r in candidates:
        name, m = r.info.run_name, metrics[r.info.run_name]
        assert r.info.status == "FINISHED" and r.data.tags["candidate"] == name
        assert r.data.tags["mlflow.parentRunId"] == r.data.tags["execution"] == evaluation[0].info.run_id
        assert r.data.tags["data_digest"] == digest and "git_commit" in r.data.tags
        assert r.data.tags["mlflow.source.git.commit"] == r.data.tags["git_commit"]
        assert r.data.metrics == pytest.approx(
            {  # the headline: a handful of keys that say their split
                "val_macro_f1": m["val"]["macro_f1"],
                "test_macro_f1": m["macro_f1"],
                "val_balanced_accuracy": m["val"]["balanced_accuracy"],
                "test_balanced_accuracy": m["balanced_accuracy"],
                "val_rarest_recall": m["val"][f"recall/{rarest}"],
                "test_rarest_recall": m[f"recall/{rarest}"],
                "val_rarest_precision": m["val"][f"precision/{rarest}"],
                "test_rarest_precision": m[f"precision/{rarest}"],
            }
        )
        model = client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{r.info.run_id}'")[0]
        assert model.tags["candidate"] == name
        assert [x.dataset_name for x in model.metrics][:4] == ["validation"] * 4  # validation first
        assert {x.dataset_digest for x in model.metrics if x.dataset_name == "validation"} == {inputs["validation"]}
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert "metrics.json" in artifacts
        assert (f"confusion_{name}.png" in artifacts) == (
            pipeline_run / f"reports/figures/confusion_{name}.png"
        ).is_file()
        table = client.load_table(exp.experiment_id, "metrics.json", run_ids=[r.info.run_id])
        assert table.query("split == 'test' and metric == 'mcc'")["value"].item() == pytest.approx(m["mcc"])
        if "+" in name:
            assert r.data.tags["rule"] == name.split("+")[1] and r.data.tags["model"] == name.split("+")[0]
            continue
        training = by_id[r.data.tags["training_run"]]  # the run that trained it, which lists it as its output
        assert training.info.run_name == name
        assert [o.model_id for o in training.outputs.model_outputs] == [model.model_id]
    for r in trained:  # made by the train stage while it trained, children of the stage's run
        stage = by_id[r.data.tags["mlflow.parentRunId"]]
        group = ALL[r.info.run_name]
        assert stage.info.run_name == ("baselines" if group == "baselines" else f"train@{group}")
        path = pipeline_run / "outputs/models" / group / f"{r.info.run_name}.{'json' if group == 'baselines' else 'pt'}"
        assert r.data.tags["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert "restored" not in r.data.tags and r.info.status == "FINISHED"
        if r.info.run_name not in MODELS:
            continue
        assert r.data.tags["dvc_stage"] == f"train@{MODELS[r.info.run_name]}"
        assert r.data.params["loss"] == MODELS[r.info.run_name]
        curve = client.get_metric_history(r.info.run_id, "stop_balanced_log_loss")
        assert [m.step for m in curve] == list(range(1, len(curve) + 1))
        times = [m.timestamp for m in curve]  # logged as the epochs ran, within the run's own times
        assert times == sorted(times) and r.info.start_time <= times[0] and times[-1] <= r.info.end_time
    focal = next(r for r in trained if r.info.run_name == "focal_g2")
    assert focal.data.params["gamma"] == "2"  # as in its name
    strength = next(r for r in trained if r.info.run_name == "weighted_ce_a0.5")
    assert (strength.data.params["alpha"], strength.data.params["weights.scheme"]) == ("0.5", "power")
    # the weight-strength and gamma curves on the evaluation run: figures, and tables with alpha or
    # gamma as a column (0 is ce); no metric stands for them with a step that is an index
    evaluation_id = evaluation[0].info.run_id
    curve = json.loads((pipeline_run / "reports/audit.json").read_text())["weight_strength"]["weighted_ce"]
    alpha = client.load_table(exp.experiment_id, "alpha_curves.json", run_ids=[evaluation_id])
    for split, label in (("val", "validation"), ("test", "test")):
        rows = alpha[alpha["split"] == label].sort_values("alpha")
        assert list(rows["alpha"]) == [0.0, 0.5, 1.0] and list(rows["family"].unique()) == ["weighted_ce"]
        assert list(rows["macro_f1"]) == [pytest.approx(row[split]["macro_f1"]["value"]) for row in curve["rows"]]
        assert (rows["macro_f1_low"] <= rows["macro_f1"]).all() and (rows["macro_f1"] <= rows["macro_f1_high"]).all()
    assert "alpha_weighted_ce.png" in parent_artifacts and "gamma_focal.png" in parent_artifacts
    gamma = client.load_table(exp.experiment_id, "gamma_curves.json", run_ids=[evaluation_id])
    focal = gamma[gamma["loss"] == "focal"].sort_values("gamma")
    assert list(focal["gamma"]) == [0.0, 2.0]
    assert list(focal["macro_f1"]) == [
        pytest.approx(metrics["focal_g0"]["macro_f1"]),
        pytest.approx(metrics["focal_g2"]["macro_f1"]),
    ]
    assert not [k for k in evaluation[0].data.metrics if k.startswith(("gamma/", "alpha/"))]


def _stage(args, cwd, env):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"data": {"source": "mnist"}}, "data.source must be one of digits, synthetic, csv; got 'mnist'"),
        ({"data": {"imbalance_ratio": 0.5}}, "data.imbalance_ratio must be >= 1"),
        ({"weights": {"scheme": "sqrt"}}, "weights.scheme must be one of none, inverse"),
        ({"train": {"losses": ["ce", "hinge"]}}, "train.losses must be one of ce, weighted_ce, focal"),
        ({"train": {"losses": ["ce", "hinge"]}}, "got 'hinge'"),
    ],
)
def test_bad_params_exit_nonzero_with_one_line_and_no_output(tmp_path, stage_env, override, message):
    params = write_params(tmp_path / "params.yaml", override)
    out = tmp_path / "data/prepared"
    proc = _stage(["stages.prepare", "--params", str(params), "--out", str(out)], tmp_path, stage_env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {params}: ") and message in lines[0]
    assert not out.exists()
    assert not any(tmp_path.rglob("*.tmp"))


def test_csv_without_target_column_exits_with_one_line(tmp_path, stage_env):
    csv = tmp_path / "t.csv"
    pd.DataFrame({"a": range(30), "b": [0, 1, 2] * 10}).to_csv(csv, index=False)
    params = write_params(tmp_path / "params.yaml", {"data": {"source": "csv", "path": str(csv), "target": "label"}})
    out = tmp_path / "data/prepared"
    proc = _stage(["stages.prepare", "--params", str(params), "--out", str(out)], tmp_path, stage_env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: data.target: column 'label' not in {csv}; columns: a, b"
    assert not out.exists()


def test_failed_stage_keeps_previous_outputs(tmp_path, stage_env):
    out = tmp_path / "data/prepared"
    good = write_params(tmp_path / "params.yaml")
    assert _stage(["stages.prepare", "--params", str(good), "--out", str(out)], tmp_path, stage_env).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    csv = tmp_path / "t.csv"
    pd.DataFrame({"a": range(30), "b": ["x"] * 28 + ["y"] * 2}).to_csv(csv, index=False)
    bad = write_params(tmp_path / "bad.yaml", {"data": {"source": "csv", "path": str(csv), "target": "b"}})
    proc = _stage(["stages.prepare", "--params", str(bad), "--out", str(out)], tmp_path, stage_env)
    assert proc.returncode == 2, proc.stderr
    assert "class 'y' (2 rows): each class needs at least 3 rows" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_is_self_contained_and_holds_this_runs_numbers(pipeline_run):
    import re

    page = (pipeline_run / "reports/report.html").read_text()
    audit = json.loads((pipeline_run / "reports/audit.json").read_text())
    metrics = json.loads((pipeline_run / "reports/metrics.json").read_text())
    runs = json.loads((pipeline_run / "reports/mlflow_runs.json").read_text())
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from elsewhere
    assert page.count("data:image/png;base64,") >= 6
    pick = audit["policy"]["pick"]
    assert re.search(
        rf'Ship <b>[^<]+</b>(, fitted on the validation split)? \(<span class="nw">{re.escape(pick)}</span>\)', page
    )
    assert f"{metrics[pick]['macro_f1']:.3f}" in page
    assert runs["evaluation_run"] in page and all(r in page for r in runs["models"].values())
    for section in (
        "The decision",
        "How the pick was made",
        "The top candidates",
        "Why accuracy is not enough",
        "What the tail gains and the head pays",
        "Where the errors go",
        "focal-loss",
        "How strong the class weights should be",
        "How to read this",
        "Appendix A. The full leaderboard",
        "Appendix C. Provenance",
    ):
        assert section in page
    assert "git checkout" in page and "make repro" in page


def test_report_is_byte_identical_for_the_same_inputs(pipeline_run, tmp_path):
    params = pipeline_run / "params.yaml"
    report.main(report_args(pipeline_run, params, tmp_path / "a.html", "--no-mlflow"))
    report.main(report_args(pipeline_run, params, tmp_path / "b.html", "--no-mlflow"))
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert (tmp_path / "a.html").read_bytes() == (pipeline_run / "reports/report.html").read_bytes()


def test_report_is_logged_to_the_evaluation_run(pipeline_run):
    import mlflow

    runs = json.loads((pipeline_run / "reports/mlflow_runs.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=runs["tracking_uri"])
    assert "report.html" in {a.path for a in client.list_artifacts(runs["evaluation_run"])}


def test_predictions_whose_labels_no_longer_match_their_split_are_refused(pipeline_run, tmp_path, stage_env):
    """prepare ran again (new labels) but the models did not: evaluate refuses in one line, no score."""
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(pipeline_run, d)
    test = pd.read_parquet(d / "data/prepared/test.parquet")
    test["y"] = test["y"].to_numpy()[np.random.default_rng(3).permutation(len(test))]
    test.to_parquet(d / "data/prepared/test.parquet", index=False)
    before = (d / "reports/metrics.json").read_bytes()
    proc = _stage(["stages.evaluate", *evaluate_args(d, d / "params.yaml")], d, stage_env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "test predictions of " in lines[0] and "y_true no longer matches" in lines[0], lines
    assert "re-run the pipeline (dvc repro)" in lines[0]
    assert (d / "reports/metrics.json").read_bytes() == before


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (
            "reports/metrics.json",
            "reports/metrics.json: evaluation metrics not found (run the stage that writes it first)",
        ),
        ("reports/decisions/test/focal/focal_g2.parquet", "focal_g2.parquet: predictions of focal_g2 not found"),
    ],
)
def test_report_names_what_is_missing(pipeline_run, tmp_path, stage_env, missing, message):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(pipeline_run, d)
    (d / missing).unlink()
    out = d / "reports/new.html"
    proc = _stage(["stages.report", *report_args(d, d / "params.yaml", out, "--no-mlflow")], d, stage_env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert not out.exists()


def test_the_audit_names_the_models_that_ran_every_epoch(pipeline_run):
    d = pipeline_run
    audit = json.loads((d / "reports/audit.json").read_text())
    cap = TINY["train"]["epochs"]
    stopped = [
        m
        for loss in TINY["train"]["losses"]
        for m, run in json.loads((d / f"outputs/models/{loss}/training.json").read_text())["runs"].items()
        if run["epochs_run"] >= cap
    ]
    said = [w for w in audit["warnings"] if "without early stopping" in w]
    assert len(said) == bool(stopped)
    if stopped:
        assert said[0].startswith(f"{len(stopped)} model(s) ran all {cap} epochs") and all(
            m in said[0] for m in stopped
        )


def test_dvc_plots_show_renders_every_panel_offline(pipeline_run, root, tmp_path, browser):
    """`dvc plots show` with the repository's page template (Vega inlined): every panel of
    dvc.yaml draws with the network cut off, and nothing is fetched from anywhere."""
    import shutil

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copytree(root / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    shutil.copy(root / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(root / "params.yaml", repo / "params.yaml")  # dvc.yaml interpolates its keys
    shutil.copytree(pipeline_run / "reports/plots", repo / "reports/plots")
    dvc = str(Path(sys.executable).with_name("dvc"))
    proc = subprocess.run(
        [dvc, "plots", "show", "-o", str(tmp_path / "out")], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "failed" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr[-2000:]
    panels = len(yaml.safe_load((root / "dvc.yaml").read_text())["plots"])
    context = browser.new_context(offline=True)
    page = context.new_page()
    fetched, errors = [], []
    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith("file:") else (fetched.append(r.request.url), r.abort()),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((tmp_path / "out" / "index.html").as_uri())
    page.wait_for_function(f"document.querySelectorAll('svg.marks, canvas.marks').length >= {panels}", timeout=30_000)
    assert page.locator("svg.marks, canvas.marks").count() == panels == 5
    assert fetched == [] and errors == []
    context.close()
