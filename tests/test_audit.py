import pytest

from pipeline import PipelineError
from pipeline.evaluation.audit import winners
from pipeline.evaluation.audit import rank_agreement, ranks
from pipeline.decision.selection import check_policy, check_policy_metrics, select
from pipeline.config import Constraint, SelectConfig

VALUES = {
    "a": {"accuracy": 0.95, "macro_f1": 0.60, "log_loss": 0.2, "recall/rare": 0.10},
    "b": {"accuracy": 0.90, "macro_f1": 0.75, "log_loss": 0.3, "recall/rare": 0.55},
    "c": {"accuracy": 0.85, "macro_f1": 0.70, "log_loss": 0.4, "recall/rare": 0.80},
}
NAMES = ["accuracy", "macro_f1", "log_loss", "recall/rare"]


def test_ranks_respect_direction_and_share_ties():
    r = ranks(VALUES, NAMES)
    assert [r[m]["accuracy"] for m in "abc"] == [1, 2, 3]
    assert [r[m]["log_loss"] for m in "abc"] == [1, 2, 3]  # lower is better
    tied = {"x": {"m": 0.5}, "y": {"m": 0.5}, "z": {"m": 0.1}}
    assert ranks(tied, ["m"]) == {"x": {"m": 1}, "y": {"m": 1}, "z": {"m": 3}}


def test_winners_prefer_the_pick_on_ties():
    tied = {"x": {"m": 0.5}, "y": {"m": 0.5}}
    assert winners(tied, ["m"], None) == {"m": "x"}
    assert winners(tied, ["m"], "y") == {"m": "y"}


def test_rank_agreement():
    tau = rank_agreement(VALUES, NAMES)
    assert tau["accuracy"]["accuracy"] == pytest.approx(1.0)
    assert tau["accuracy"]["log_loss"] == pytest.approx(1.0)  # same order once loss is negated
    assert tau["accuracy"]["recall/rare"] == pytest.approx(-1.0)
    assert tau["macro_f1"]["accuracy"] == pytest.approx(-1 / 3)


SIZES = {"a": 10, "b": 10, "c": 10}


def test_policy_picks_by_primary_metric():
    out = select(VALUES, "macro_f1", [], SIZES)
    assert out.pick == "b" and out.order == ["b", "c", "a"]


def test_constraints_exclude_models():
    out = select(VALUES, "accuracy", [Constraint("recall/rare", ">=", 0.5)], SIZES)
    assert out.pick == "b" and out.eligible == ["b", "c"]
    assert out.violations == {"a": ["recall/rare >= 0.5 (has 0.1000)"]}
    assert out.order == ["b", "c", "a"]  # the violators last


def test_constraints_no_model_meets_are_an_outcome_not_an_error():
    out = select(VALUES, "macro_f1", [Constraint("recall/rare", ">=", 0.9)], SIZES)
    assert out.pick is None and out.eligible == []
    assert set(out.violations) == {"a", "b", "c"}


def test_ties_go_to_fewer_fitted_parameters_then_to_the_name():
    tied = {"ce+thresholds": {"m": 0.8}, "ce": {"m": 0.8}, "b": {"m": 0.8}, "z": {"m": 0.1}}
    sizes = {"ce+thresholds": 110, "ce": 100, "b": 100, "z": 1}
    assert select(tied, "m", [], sizes).order == ["b", "ce", "ce+thresholds", "z"]
    assert select(tied, "m", [], {**sizes, "ce": 99}).pick == "ce"


def test_expected_cost_needs_costs():
    with pytest.raises(PipelineError, match="names expected_cost, which needs evaluate.costs"):
        check_policy_metrics(SelectConfig(metric="expected_cost"))
    check_policy_metrics(SelectConfig(metric="expected_cost"), costs=True)
    check_policy_metrics(SelectConfig(constraints=("expected_cost <= 0.3",)), costs=True)


def test_policy_names_are_checked():
    known = {"accuracy", "macro_f1", "recall/0", "recall/1"}
    with pytest.raises(
        PipelineError, match="evaluate.select.metric names unknown metric 'f2'; use one of accuracy, macro_f1"
    ):
        check_policy(SelectConfig(metric="f2"), known, ["0", "1"])
    with pytest.raises(PipelineError, match="names class '7' in 'recall/7'; classes are: 0, 1"):
        check_policy(SelectConfig(constraints=("recall/7 >= 0.5",)), known, ["0", "1"])
    assert check_policy(SelectConfig(constraints=("recall/1 >= 0.5",)), known, ["0", "1"]) == [
        Constraint("recall/1", ">=", 0.5)
    ]


def _entry(recalls, support=10):
    out = {f"recall/{c}": r for c, r in zip("abc", recalls)}
    out.update({f"support/{c}": support for c in "abc"})
    return out


def _audit_for_warnings(**changes) -> dict:
    """A clean audit of pick ``m`` (against ``ce`` and the ``xgboost`` baseline): no warning."""
    clear = {"low": 0.005, "high": 0.05, "value": 0.03, "metric": "macro_f1"}
    audit = {
        "policy": {
            "pick": "m",
            "metric": "macro_f1",
            "p_best": 0.8,
            "tied": [],
            "tie_break": "fewer fitted parameters, then name",
        },
        "reference": {"model": "ce"},
        "vs_simpler": [
            {**clear, "model": "ce", "words": "better than ce beyond noise"},
            {**clear, "model": "xgboost", "words": "better than xgboost beyond noise"},
        ],
        "estimate": {"metric": "macro_f1", "validation": 0.86, "test": 0.85, "low": 0.82, "high": 0.88, "chance": 0.1},
        "calibration": {"validation_ece": 0.03, "max_ece": 0.05},
        "tail_trade": {
            "reference": "ce",
            "models": {"m": {"head_recall_change": {"value": -0.04}, "accuracy_change": {"value": -0.01}}},
        },
    }
    for key, value in changes.items():
        audit[key] = {**audit[key], **value} if isinstance(value, dict) else value
    return audit


HEALTHY = {
    "m": {**_entry([1.0, 0.8, 0.7]), "macro_f1": 0.85, "val": _entry([1.0, 0.9, 0.5])},
    "n": {**_entry([1.0, 0.8, 0.7]), "macro_f1": 0.80, "val": _entry([1.0, 0.9, 0.5])},
}


def _said(audit=None, metrics=HEALTHY, **kw) -> list[str]:
    from pipeline.evaluation.evidence import pick_warnings

    return pick_warnings(audit or _audit_for_warnings(), metrics, list("abc"), min_recall=0.1, **kw)


def test_clean_data_raises_no_warning():
    assert _said(stopped=[], epochs=100) == []


def test_models_that_ran_every_epoch_are_named_with_the_remedy():
    said = _said(stopped=["ce", "focal_g2"], epochs=5)
    assert said == [
        "2 model(s) ran all 5 epochs without early stopping (ce, focal_g2): they may be undertrained; "
        "raise train.epochs"
    ]


def test_a_class_found_rarely_is_named_with_its_count_not_only_at_zero():
    metrics = {"m": {**_entry([1.0, 0.8, 0.0]), "val": _entry([1.0, 0.9, 0.5])}}
    assert _said(metrics=metrics) == [
        "m never recalls class c (0.000, 0 of 10) on the test split (recall below evaluate.min_recall 0.1)"
    ]
    metrics = {"m": {**_entry([1.0, 0.8, 0.7]), "val": {**_entry([1.0, 0.9, 1 / 30], support=30)}}}
    assert _said(metrics=metrics) == [
        "m rarely finds class c (0.033, 1 of 30) on the validation split (recall below evaluate.min_recall 0.1)"
    ]


def test_a_pick_no_better_than_plain_cross_entropy_or_a_baseline_says_the_simpler_model_would_do():
    noisy = {"low": -0.02, "high": 0.04, "value": 0.01, "metric": "macro_f1"}
    said = _said(
        _audit_for_warnings(
            vs_simpler=[
                {**noisy, "model": "ce", "words": "not distinguishable from ce"},
                {**noisy, "model": "xgboost", "words": "not distinguishable from x"},
            ]
        )
    )
    assert said == [
        "m is not better than plain cross-entropy (ce) beyond noise on validation (macro_f1 +0.0100 [-0.0200, "
        "+0.0400]): the simpler model would do as well; against it on test, the pick changes head-class recall by "
        "-0.040 and accuracy by -0.010",
        "m is not better than the xgboost baseline beyond noise on validation (macro_f1 +0.0100 [-0.0200, +0.0400]): "
        "the simpler model would do as well",
    ]


def test_a_tie_says_p_best_is_the_groups_and_an_uncertain_choice_says_how_often():
    said = _said(_audit_for_warnings(policy={"tied": ["n"], "p_best": 1.0}))
    assert said == [
        "2 candidates tie at the pick's validation score: P(best) belongs to the tied group, and m was "
        "taken by the tie-break (fewer fitted parameters, then name); on test they score 0.8000 to 0.8500"
    ]
    assert _said(_audit_for_warnings(policy={"p_best": 0.3})) == [
        "the choice is uncertain: m is the pick in only 30% of validation resamples"
    ]


def test_a_test_estimate_far_below_validation_or_near_chance_is_said():
    shifted = _said(
        _audit_for_warnings(estimate={"validation": 0.35, "test": 0.095, "low": 0.06, "high": 0.13, "chance": 0.14})
    )
    assert shifted[0].startswith(
        "the test estimate (0.0950 [0.0600, 0.1300]) is below the validation score (0.3500) "
        "beyond the noise of both splits"
    )
    assert shifted[1] == (
        "on test the pick is near chance: macro_f1 0.0950 [0.0600, 0.1300] against 0.1400 for its "
        "own decisions shuffled over the rows"
    )
    # the winner's curse within noise says nothing
    assert _said(_audit_for_warnings(estimate={"validation": 0.87, "test": 0.85})) == []


def test_probabilities_calibrated_worse_than_max_ece_on_validation_are_called_scores():
    said = _said(_audit_for_warnings(calibration={"validation_ece": 0.12}))
    assert said == [
        "m's probabilities (p_<class>) are poorly calibrated: ECE 0.120 on validation, above "
        "evaluate.max_ece 0.05; read them as scores, not as chances"
    ]


def test_no_pick_says_nothing_is_recommended():
    said = _said(_audit_for_warnings(policy={"pick": None}))
    assert said == ["no candidate meets the policy's constraints on validation: nothing is recommended"]
