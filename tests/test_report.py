"""The report tells this run's decision first, in words, then the evidence; it names the software
that did it. Inputs are small synthetic dicts shaped like evaluate's outputs."""

import copy
import html
import io
import json
import re

import pytest
from PIL import Image

from pipeline.tracking.provenance import package_versions
from pipeline.report.render import Provenance, render
from pipeline.report.render import TOP

CLASSES = ["zeta", "alpha", "mid"]  # meta order: neither alphabetical nor by training count
TRAIN = {"zeta": 5, "alpha": 50, "mid": 20}
PICK = "focal_g2+thresholds"
# In the policy's order; more than TOP, so the last ones appear only in the appendix.
BOARD = [PICK, "focal_g2", "ce+thresholds", "weighted_ce", "xgboost", "ldam_drw", "ce", "majority"]
NAMES = [
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "micro_f1",
    "log_loss",
    "recall/zeta",
    "precision/zeta",
    "train_prior/accuracy",
    "train_prior/micro_f1",
    "train_prior/macro_f1",
]


def png(width=40, height=20, shade=90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _change(value, low, high):
    return {"value": value, "low": low, "high": high}


def _metrics(score: float, never: tuple[str, ...] = ()) -> dict:
    """A metrics.json entry; classes in ``never`` are never predicted (recall 0, no false positive)."""
    flat = {
        "accuracy": score,
        "balanced_accuracy": score - 0.01,
        "macro_f1": score - 0.02,
        "micro_f1": score,
        "log_loss": 1 - score,
        "ece": 0.05,
        "roc_auc_ovr": score,
    }
    for c in CLASSES:
        flat.update(
            {
                f"recall/{c}": 0.0 if c in never else score,
                f"precision/{c}": 0.0 if c in never else score,
                f"fpr/{c}": 0.0 if c in never else 0.1,
                f"support/{c}": 10,
            }
        )
    return {
        **flat,
        "ci": {"macro_f1": {"low": score - 0.1, "high": score + 0.1}},
        "train_prior": {**flat, "ci": {}},
        "val": dict(flat),
    }


def _row(name: str, i: int) -> dict:
    base, _, rule = name.partition("+")
    values = {n: 0.8 - 0.05 * i for n in NAMES}
    kind = "baseline" if base in ("xgboost", "majority") else "mlp"
    return {
        "model": name,
        "base_model": base,
        "rule": rule or None,
        "kind": kind,
        "loss": base.split("_g")[0],
        "members": [name, "focal_g0"] if name == "ce" else [name],
        "parameters": 100 + i,
        "p_best": round(0.62 / (i + 1), 3) if i < 3 else 0.0,
        "validation": 0.8 - 0.05 * i,
        "test": 0.812 - 0.05 * i,
        "test_low": 0.7 - 0.05 * i,
        "test_high": 0.9 - 0.05 * i,
        "gap": -0.012,
        "violations": [],
        "values": values,
        "val_values": dict(values),
        "ranks": {n: i + 1 for n in NAMES},
    }


def render_inputs(**audit_changes) -> dict:
    """Keyword arguments of :func:`render` for a small run; ``audit_changes`` replace audit keys."""
    meta = {
        "source": "synthetic",
        "classes": CLASSES,
        "n_features": 4,
        "sizes": {"train": 75, "val": 30, "test": 30},
        "counts": {"train": TRAIN, "val": {c: 10 for c in CLASSES}, "test": {c: 10 for c in CLASSES}},
        "train_imbalance_ratio": 10.0,
        "digest": "d" * 64,
        "rows_without_label": 0,
        "params": {"imbalance_ratio": 1, "seed": 0},
        "columns": [{"name": f"x{i}", "kind": "numeric", "detail": "numeric"} for i in range(3)]
        + [{"name": "when", "kind": "date", "detail": "parsed as a date: year, month, day of week"}],
    }
    metrics = {m: _metrics(0.8 - 0.05 * i, never=("zeta",) if m == "ce" else ()) for i, m in enumerate(BOARD)}
    metrics["focal_g0"] = metrics["ce"]
    audit = {
        "views": {
            "held_out": "as held out",
            "reweighted": {
                "key": "train_prior",
                "description": "reweighted to the training split's class prior",
                "prior": {c: n / 75 for c, n in TRAIN.items()},
            },
        },
        "rarest_class": "zeta",
        "metrics": NAMES,
        "reference": {"loss": "ce", "model": "ce", "why": "plain cross-entropy"},
        "policy": {
            "metric": "macro_f1",
            "view": "held_out",
            "split": "val",
            "constraints": [],
            "pick": PICK,
            "eligible": BOARD,
            "violations": {},
            "summary": f"best macro_f1 on validation: {PICK}",
            "p_best": 0.62,
            "tie_break": "fewer fitted parameters, then name",
            "bootstrap": {"resamples": 1000, "seed": 7, "level": 0.95},
        },
        "estimate": {
            "metric": "macro_f1",
            "test": 0.812,
            "low": 0.7,
            "high": 0.9,
            "validation": 0.8,
            "optimism": -0.012,
        },
        "vs_reference": {
            "value": 0.05,
            "low": 0.01,
            "high": 0.09,
            "metric": "macro_f1",
            "words": "better than plain cross-entropy beyond noise",
        },
        "test_selection": {"pick": "focal_g2", "note": "never used", "its_test": 0.83, "its_validation": 0.75},
        "leaderboard": [_row(m, i) for i, m in enumerate(BOARD)],
        "groups": {"ce": ["ce", "focal_g0"]},
        "winners": {"macro_f1": PICK, "log_loss": "xgboost", "recall/zeta": "weighted_ce"},
        "disagreements": [
            {"metric": "recall/zeta", "winner": "weighted_ce", "reason": "weighted_ce finds more zeta"},
            {"metric": "micro_f1", "winner": "xgboost", "reason": "repeats accuracy"},
        ],
        "beside": {"log_loss": {"pick": 0.4, "best": 0.3, "best_model": "xgboost"}},
        "kendall_tau": {a: {b: 0.5 for b in NAMES} for a in NAMES},
        "prior_shift": {
            "assumption": "label shift: p(x | class) stays the same",
            "metric": "macro_f1",
            "top": [PICK, "ce"],
            "changes_at": {"label": "training", "t": 1.0, "pick": "focal_g2"},
            "points": [
                {
                    "label": "validation",
                    "t": 0.0,
                    "prior": [1 / 3] * 3,
                    "pick": PICK,
                    "val_ess": 30.0,
                    "test_ess": 30.0,
                    "test": {PICK: 0.81, "ce": 0.7},
                },
                {
                    "label": "training",
                    "t": 1.0,
                    "prior": [0.07, 0.67, 0.26],
                    "pick": "focal_g2",
                    "val_ess": 14.2,
                    "test_ess": 14.9,
                    "test": {PICK: 0.77, "ce": 0.72},
                },
            ],
        },
        "special_loss": {
            "remedy": "focal_g2",
            "posthoc": "ce+thresholds",
            "metric": "macro_f1",
            "remedy_validation": 0.75,
            "posthoc_validation": 0.7,
            "remedy_test": 0.76,
            "posthoc_test": 0.71,
            "difference": _change(0.05, -0.02, 0.12),
            "tail_recall_change": _change(0.1, 0.0, 0.2),
            "tail_precision_change": _change(None, None, None),
            "answer": "the best special loss (focal_g2) is not distinguishable from ce+thresholds",
        },
        "loss_metric_agreement": {
            "metric": "macro_f1",
            "requested": "macro_f1",
            "models": {
                m: {
                    "loss": m.split("_g")[0],
                    "spearman": 0.5,
                    "epoch_by_loss": 4,
                    "epoch_by_metric": 6,
                    "epoch_chosen": 5,
                    "epochs": 9,
                }
                for m in ("ce", "focal_g0", "focal_g2", "weighted_ce")
            },
        },
        "tail_trade": {
            "reference": "ce",
            "tail_classes": ["zeta"],
            "head_classes": ["alpha", "mid"],
            "level": 0.95,
            "reference_undefined_precision": ["zeta"],
            "models": {
                m: {
                    "tail_recall_change": _change(0.2, 0.1, 0.3),
                    "tail_precision_change": _change(None, None, None),
                    "head_recall_change": _change(-0.04, -0.08, -0.01),
                    "head_precision_change": _change(0.01, -0.02, 0.03),
                    "accuracy_change": _change(0.03, -0.01, 0.06),
                    "undefined_precision": [],
                    "verdict": "gains tail recall, tail precision undefined (a class is never predicted)",
                }
                for m in ("focal_g0", "focal_g2", PICK)
            },
        },
        "accuracy_paradox": {
            "model": "majority",
            "accuracy_held_out": 0.33,
            "accuracy_train_prior": 0.67,
            "macro_f1_held_out": 0.17,
            "macro_f1_train_prior": 0.27,
        },
        "across_seeds": {},
        "warnings": [f"the choice is uncertain: {PICK} is the pick in only 62% of validation resamples"],
    }
    audit.update(audit_changes)
    images = {
        k: png(shade=20 * i)
        for i, k in enumerate(
            (
                "distribution",
                "per_class",
                "pick_vs_ce_confusion",
                "prior_shift",
                "agreement_curves",
                "agreement",
                "ranks",
                "focal_shape",
                "gamma_focal",
            )
        )
    }
    return dict(
        title="A report",
        meta=meta,
        weights={"scheme": "inverse"},
        metrics=metrics,
        audit=audit,
        runs=None,
        mlflow_url=None,
        images=images,
        provenance=Provenance(
            "abc", "false", "today", {}, {}, {}, "make repro", {"val/ce": "1" * 64, "test/ce": "2" * 64}
        ),
    )


def _text(fragment: str) -> str:
    """What a reader sees: tags dropped, entities decoded, spaces collapsed."""
    spaced = re.sub(r"</t[dh]>|<br>|</p>|</li>", " ", fragment)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", spaced)))


def _first_screen(page: str) -> str:
    return page[page.index("<h1>") : page.index('<section id="how">')]


def _section(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}">')
    return page[start : page.index("</section>", start)]


def test_the_first_screen_says_the_decision_in_three_sentences():
    page = render(**render_inputs())
    first = _first_screen(page)
    lead = first[first.index('<div class="lead">') : first.index("</div>", first.index('<div class="lead">'))]
    assert lead.count("<p>") == 3
    said = _text(lead).strip()
    # in plain words from the glossary, the name as written beside them
    assert said.startswith(
        "Ship the network trained with focal loss, with per-class thresholds, fitted on the "
        f"validation split ({PICK}). Of 9 candidates (8 distinct), it has the best macro-F1"
    )
    assert "its macro-F1 is 0.812 (95% interval 0.700 to 0.900)" in said  # the test estimate
    # the rarest class in cases, from metrics.json's support, recall and precision
    assert (
        "Of the 10 test cases of the rarest class, zeta, it finds 8; 2 of its 10 alarms for zeta are wrong (1 in 5)."
        in said
    )
    assert (
        "If those validation cases were drawn again, it would come out on top 62% of the time: a fairly stable" in said
    )
    assert "bootstrap" not in said and "P(best)" not in said  # words a stakeholder does not read
    assert (
        "Against plain cross-entropy (ce), on the same test cases, its macro-F1 shows a gain of +0.050 "
        "(+0.010 to +0.090)"
    ) in said  # a difference is called by its sign
    assert "head-class recall shows a loss of -0.040 (-0.080 to -0.010) and accuracy a gain of +0.030" in said


def test_the_first_screen_says_how_far_the_probabilities_can_be_read_as_chances():
    calibration = {
        "candidate": PICK,
        "method": "vector scaling on validation",
        "bins": 15,
        "max_ece": 0.05,
        "validation_ece": 0.039,
        "test_ece": 0.04,
        "test_ece_low": 0.034,
        "test_ece_high": 0.074,
        "validation_log_loss": 0.5,
        "test_log_loss": 0.4,
        "reliability": [],
    }
    first = _first_screen(render(**render_inputs(calibration=calibration)))
    said = _text(first[first.index('<div class="lead">') : first.index("</div>", first.index('<div class="lead">'))])
    assert (
        "The probability it returns for each class is recalibrated on the validation split (vector scaling); "
        "its decisions are made before and do not change: on the test split they are off by 0.040 on average "
        "(95% interval 0.034 to 0.074; expected calibration error, 0 is perfect)."
    ) in said


def test_a_warning_that_starts_with_a_candidates_name_keeps_it_as_written():
    said = _text(
        _first_screen(
            render(**render_inputs(warnings=["ce+thresholds rarely finds class zeta", "the choice is uncertain"]))
        )
    )
    assert "ce+thresholds rarely finds class zeta." in said and "The choice is uncertain." in said


def test_the_header_names_the_file_the_target_the_rows_and_the_classes():
    inputs = render_inputs()
    inputs["meta"] = {
        **inputs["meta"],
        "source": "csv",
        "params": {**inputs["meta"]["params"], "path": "data/raw/claims.csv", "target": "status"},
    }
    header = _text(render(**inputs).split('<p class="sub">', 1)[1].split("</p>", 1)[0])
    assert header.startswith("Data claims.csv, target status · 135 rows · 3 classes · commit ")


def test_a_tie_is_not_called_a_stable_choice():
    inputs = render_inputs()
    inputs["audit"]["policy"] = {**inputs["audit"]["policy"], "p_best": 1.0, "tied": ["ce", "xgboost"]}
    said = _text(_first_screen(render(**inputs)))
    assert "stable choice" not in said
    assert "but 2 other candidates score the same there, so that share belongs to the tied group" in said


def test_p_best_is_defined_with_its_resamples_and_seed():
    said = _text(render(**render_inputs()))
    assert (
        "P(best) is the probability this candidate is the policy's pick over 1000 bootstrap resamples of "
        "the validation split (seed 7)"
    ) in said


def test_the_warning_box_appears_when_there_are_warnings_and_only_then():
    warned = _first_screen(render(**render_inputs()))
    assert '<aside class="warn">' in warned
    assert f"The choice is uncertain: {PICK} is the pick in only 62% of validation resamples." in _text(warned)
    calm = render(**render_inputs(warnings=[]))
    assert '<aside class="warn' not in calm


def test_no_pick_says_nothing_ships_with_a_warning_even_without_warnings():
    inputs = render_inputs(warnings=[], estimate=None, vs_reference=None)
    audit = inputs["audit"]
    audit["policy"].update(pick=None, p_best=None, constraints=["recall/zeta >= 0.99"], eligible=[])
    audit["leaderboard"][0]["violations"] = ["recall/zeta = 0.80 < 0.99"]
    first = _first_screen(render(**inputs))
    assert '<aside class="warn bad">' in first
    said = _text(first)
    assert "Nothing ships: no candidate meets the policy's constraints (recall/zeta >= 0.99)" in said
    assert f"The closest, {PICK}, fails recall/zeta = 0.80 < 0.99" in said
    assert "No candidate meets the policy's constraints on validation: nothing is recommended." in said


def test_undefined_precision_is_said_as_undefined_never_as_zero():
    page = render(**render_inputs())
    trade = _section(page, "trade")
    said = _text(trade)
    assert "ce never predicts class zeta on test: its precision there is undefined, not 0." in said
    rows = re.findall(r"<tr><td class=\"label\">(.*?)</tr>", trade)
    focal = next(r for r in rows if r.startswith('<span class="nw">focal_g2</span>'))
    assert "undefined" in focal  # the change in tail precision
    per_class = next(r for r in rows if r.startswith("zeta</td>"))
    assert "0.000 / undefined" in per_class and "0.000 / 0.000" not in per_class  # ce's recall / precision


def test_the_body_shows_the_top_candidates_and_the_appendix_the_full_leaderboard():
    page = render(**render_inputs())
    top, board = _text(_section(page, "top")), _text(_section(page, "leaderboard"))
    assert all(m in top for m in BOARD[:TOP])
    assert "weighted_ce" in top and "best on recall/zeta" in top  # another metric's pick
    assert "the reference (plain cross-entropy)" in top
    assert "majority" not in top and "majority" in board  # last in the policy's order
    assert page.index('<section id="leaderboard">') > page.index('<section id="glossary">')
    assert page.index('<section id="provenance">') > page.index('<section id="leaderboard">')
    assert "Appendix A. The full leaderboard" in board


def test_columns_that_repeat_another_are_shown_once():
    page = render(**render_inputs())
    board = _section(page, "leaderboard")
    for head in re.findall(r"<thead>(.*?)</thead>", board):
        cols = re.findall(r"<th>(.*?)</th>", head)
        assert len(cols) == len(set(cols)), cols
        assert "micro_f1" not in cols and "train_prior/micro_f1" not in cols  # equal to accuracy
        assert "accuracy" in cols
    assert "xgboost" not in _text(_section(page, "metrics")).split("Shown beside")[0]  # micro_f1's winner is accuracy's
    assert _text(page).count("the same number as accuracy under a uniform class prior") == 1
    uniform = render_inputs(metrics=[*NAMES[:-3], "uniform_prior/accuracy", "uniform_prior/macro_f1"])
    uniform["audit"]["views"]["reweighted"]["key"] = "uniform_prior"
    uniform["audit"]["accuracy_paradox"].update(accuracy_uniform_prior=0.33, macro_f1_uniform_prior=0.17)
    for row in uniform["audit"]["leaderboard"]:
        row["values"]["uniform_prior/accuracy"] = row["val_values"]["uniform_prior/accuracy"] = 0.5
        row["values"]["uniform_prior/macro_f1"] = row["val_values"]["uniform_prior/macro_f1"] = 0.5
        row["ranks"].update({"uniform_prior/accuracy": 1, "uniform_prior/macro_f1": 1})
    uniform["metrics"] = {m: {**e, "uniform_prior": e["train_prior"]} for m, e in uniform["metrics"].items()}
    heads = re.findall(r"<th>(.*?)</th>", _section(render(**uniform), "leaderboard"))
    assert "uniform_prior/accuracy" not in heads and "balanced_accuracy" in heads and "uniform_prior/macro_f1" in heads


def test_classes_are_listed_in_the_meta_order():
    trade = _section(render(**render_inputs()), "trade")
    firsts = re.findall(r'<tr><td class="label">([a-z]+)</td><td class="n">\d+</td>', trade)
    assert firsts == CLASSES


def test_every_table_scrolls_in_its_own_box_and_names_do_not_wrap():
    page = render(**render_inputs())
    assert page.count("<table") == page.count('<div class="scroll"><table')
    assert ".scroll{overflow-x:auto" in page and "td.label,.nw{white-space:nowrap}" in page
    assert "overflow-wrap:anywhere" not in page and "word-break" not in page


def test_the_training_balance_is_worded_as_the_run_did_it():
    kept = render_inputs()
    kept["meta"]["params"]["imbalance_ratio"] = 1
    said = _text(_section(render(**kept), "data"))
    assert "kept at the data's own class balance" in said and "made long-tailed" not in said
    assert "a ratio ρ = nmax/nmin of 10.0" in said  # measured on the training split
    imposed = render_inputs()
    imposed["meta"]["params"]["imbalance_ratio"] = 5
    said = _text(_section(render(**imposed), "data"))
    assert "made long-tailed (ρ = 5.0 imposed" in said and "kept at the data's own class balance" not in said


def test_prior_shift_states_the_assumption_and_where_the_pick_changes():
    said = _text(_section(render(**render_inputs()), "shift"))
    assert "The assumption: label shift: p(x | class) stays the same." in said
    assert f"The pick changes: from {PICK} to focal_g2 at the prior training." in said


def test_selection_optimism_and_the_test_selection_warning_example():
    said = _text(_section(render(**render_inputs()), "optimism"))
    assert f"The pick, {PICK}, scored 0.800 on validation and 0.812 on test" in said
    assert "ranking by the test split would have picked focal_g2 (test 0.830, validation 0.750)" in said


def test_render_is_deterministic():
    a = render(**render_inputs())
    b = render(**copy.deepcopy(render_inputs()))
    assert a == b
    assert "<script" not in a and "http" not in a.replace("http-equiv", "")


def test_the_stage_lists_the_digest_of_every_candidates_predictions(tmp_path):
    from pipeline.tracking.provenance import file_digest
    from stages import report

    inputs = render_inputs()
    files = {}
    for name, value in (
        ("meta", inputs["meta"]),
        ("weights", inputs["weights"]),
        ("audit", inputs["audit"]),
        ("metrics", {m: inputs["metrics"][m] for m in ("ce", "ce+thresholds")}),
        (
            "runs",
            {
                "tracking_uri": "sqlite:///x.db",
                "experiment": "e",
                "experiment_id": "1",
                "evaluation_run": "r0",
                "models": {"ce": "r1"},
            },
        ),
    ):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(value))
    (tmp_path / "figures").mkdir()
    preds = {}
    for split in ("val", "test"):
        for group, cand in (("ce", "ce"), ("ce", "ce+thresholds")):
            path = tmp_path / "decisions" / split / group / f"{cand}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{split} {cand}".encode())
            preds[f"{split}/{cand}"] = file_digest(path)
    (tmp_path / "params.yaml").write_text("{}\n")
    out = tmp_path / "report.html"
    report.main(
        [
            "--params",
            str(tmp_path / "params.yaml"),
            *(a for k, p in files.items() for a in (f"--{k}", str(p))),
            "--figures",
            str(tmp_path / "figures"),
            "--decisions",
            str(tmp_path / "decisions"),
            "--lock",
            str(tmp_path / "dvc.lock"),
            "--out",
            str(out),
            "--no-mlflow",
        ]
    )
    said = _text(_section(out.read_text(), "provenance"))
    for key, digest in preds.items():
        split, cand = key.split("/")
        assert f"{cand} {split} {digest}" in said, key


def test_package_versions_are_found_by_import_name():
    versions = package_versions()
    assert versions["xgboost"] != "not installed"  # installed as the xgboost-cpu distribution
    assert versions["xgboost"].endswith("(xgboost-cpu)") and versions["sklearn"].endswith("(scikit-learn)")
    assert versions["torch"].startswith("2.13.0")
    assert package_versions(("no_such_module_here",)) == {"no_such_module_here": "not installed"}


@pytest.mark.parametrize(
    "missing", ["prior_shift", "special_loss", "loss_metric_agreement", "tail_trade", "accuracy_paradox"]
)
def test_a_section_without_its_audit_part_says_so(missing):
    page = render(**render_inputs(**{missing: None}))
    assert "<h2>" in page and "Traceback" not in page
