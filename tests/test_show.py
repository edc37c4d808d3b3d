"""`make compare`: experiments side by side from `dvc exp show --json`, within 200 characters."""

import json

from stages.show import experiment_rows, experiments, main

PARAMS = {
    "data": {"source": "digits", "imbalance_ratio": 10},
    "train": {"losses": ["ce", "weighted_ce", "focal"], "gammas": [0, 2]},
    "evaluate": {"select": {"metric": "macro_f1", "view": "held_out"}},
}
SUMMARY = {
    "policy_metric": "macro_f1",
    "pick": "cb_focal_g0.5+thresholds",
    "pick_val": 0.9072,
    "pick_test": 0.9033,
    "pick_test_low": 0.8708,
    "pick_test_high": 0.93,
    "pick_p_best": 0.358,
    "ref": "ce",
    "ref_val": 0.8505,
    "ref_test": 0.8712,
}


def _rev(rev, name, params, summary, error=None):
    data = (
        None
        if error
        else {
            "rev": rev,
            "timestamp": None,
            "params": {"params.yaml": {"data": params}},
            "metrics": {"reports/summary.json": {"data": summary}},
            "deps": {},
            "outs": {},
        }
    )
    return {"rev": rev, "name": name, "data": data, "error": error, "experiments": None}


def _with(**changes):
    params = json.loads(json.dumps(PARAMS))
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = params
        for p in parents:
            node = node[p]
        node[last] = value
    return params


def _exp_show():
    """The shape of `dvc exp show --json` (DVC 3): the workspace, the baseline commit and its experiments."""
    long_losses = ["ce", "weighted_ce", "focal", "weighted_focal", "cb_focal", "logit_adjusted", "ldam_drw"]
    exps = [
        (
            "a" * 40,
            "kaput-dohs",
            _with(evaluate__select__metric="balanced_accuracy"),
            {**SUMMARY, "policy_metric": "balanced_accuracy", "pick": "logreg_balanced+thresholds"},
            None,
        ),
        (
            "b" * 40,
            "wide-one",
            _with(train__losses=long_losses, train__gammas=[0, 0.5, 1, 2, 5], data__imbalance_ratio=100),
            SUMMARY,
            None,
        ),
        ("c" * 40, "broken", PARAMS, None, "failed"),
    ]
    baseline = _rev("d" * 40, "views", PARAMS, SUMMARY)
    baseline["experiments"] = [{"revs": [_rev(*e)], "executor": None, "name": e[1]} for e in exps]
    return [
        _rev("workspace", None, _with(evaluate__select__view="reweighted"), {**SUMMARY, "pick": "ldam_drw"}),
        baseline,
    ]


def test_rows_say_what_each_experiment_changed_against_its_baseline():
    rows = experiment_rows(_exp_show())
    assert [r["experiment"] for r in rows] == ["workspace", "views", "  kaput-dohs", "  wide-one", "  broken"]
    assert rows[0]["params"] == ["evaluate.select.view=reweighted"]
    assert rows[1]["params"] == [] and rows[1]["summary"] == SUMMARY
    assert rows[2]["params"] == ["evaluate.select.metric=balanced_accuracy"]
    assert rows[3]["params"][0] == "data.imbalance_ratio=100"
    assert "train.gammas=[0, 0.5, 1, 2, 5]" in rows[3]["params"]
    assert rows[4]["failed"] and rows[4]["summary"] == {} and rows[4]["params"] == []


def test_the_table_fits_in_200_characters(capsys, tmp_path):
    text = experiments(_exp_show())
    lines = text.splitlines()
    assert max(map(len, lines)) <= 200
    assert lines[0].split() == [
        "experiment",
        "changed",
        "params",
        "metric",
        "pick",
        "val",
        "test",
        "test",
        "interval",
        "P(best)",
        "reference",
        "ref",
        "val",
        "ref",
        "test",
    ]
    kaput = next(line for line in lines if line.startswith("  kaput-dohs"))
    assert kaput.split() == [
        "kaput-dohs",
        "evaluate.select.metric=balanced_accuracy",
        "balanced_accuracy",
        "logreg_balanced+thresholds",
        "0.9072",
        "0.9033",
        "[0.8708,",
        "0.9300]",
        "0.36",
        "ce",
        "0.8505",
        "0.8712",
    ]
    assert "(failed)" in next(line for line in lines if line.startswith("  broken"))
    # the long parameter list wraps onto lines of its own under its experiment
    wide = lines.index(next(line for line in lines if line.startswith("  wide-one")))
    assert lines[wide + 1].startswith(" " * len("experiment"))
    start, end = lines[0].index("changed params"), lines[0].index("metric")
    column = " ".join(line[start:end].strip() for line in lines[wide : wide + 4])
    assert column == (
        "data.imbalance_ratio=100, train.gammas=[0, 0.5, 1, 2, 5], "
        "train.losses=[ce, weighted_ce, focal, weighted_focal, cb_focal, logit_adjusted, ldam_drw]"
    )
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(_exp_show()))
    main(["--experiments", str(path)])
    assert capsys.readouterr().out == text + "\n"


def test_the_decision_lines_name_each_alpha_familys_peak_and_flat_top():
    from stages.show import decision

    curve = {
        "metric": "macro_f1",
        "peak": {"alpha": 2.0, "validation": 0.88512, "at_edge": False},
        "flat_top": {"alphas": [0.75, 1.0, 2.0, 3.0], "low": 0.75, "high": 3.0},
    }
    audit = {"policy": {"summary": "best macro_f1 on validation: x"}, "weight_strength": {"weighted_ce": curve}}
    assert decision(audit).splitlines()[-1] == (
        "weight strength (weighted_ce): macro_f1 on validation peaks at "
        "alpha = 2 (0.8851); within noise of it: alpha 0.75 to 3"
    )
    sharp = {
        **curve,
        "peak": {**curve["peak"], "alpha": 1.0, "at_edge": True},
        "flat_top": {"alphas": [1.0], "low": 1.0, "high": 1.0},
    }
    assert (
        decision({**audit, "weight_strength": {"weighted_ce": sharp}})
        .splitlines()[-1]
        .endswith("alpha = 1 (0.8851), the largest tried; no other alpha within noise of it")
    )
