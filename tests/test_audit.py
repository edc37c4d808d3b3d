import pytest

from pipeline import PipelineError
from pipeline.audit import winners
from pipeline.audit import check_policy, check_policy_metrics, rank_agreement, ranks
from pipeline.selection import select
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
    with pytest.raises(PipelineError, match="evaluate.select.metric names unknown metric 'f2'; use one of accuracy, macro_f1"):
        check_policy(SelectConfig(metric="f2"), known, ["0", "1"])
    with pytest.raises(PipelineError, match="names class '7' in 'recall/7'; classes are: 0, 1"):
        check_policy(SelectConfig(constraints=("recall/7 >= 0.5",)), known, ["0", "1"])
    assert check_policy(SelectConfig(constraints=("recall/1 >= 0.5",)), known, ["0", "1"]) == [
        Constraint("recall/1", ">=", 0.5)]


def _entry(recalls, support=10):
    out = {f"recall/{c}": r for c, r in zip("abc", recalls)}
    out.update({f"support/{c}": support for c in "abc"})
    return out


def test_the_first_screen_warns_in_words():
    from pipeline.evidence import pick_warnings

    metrics = {"m": {**_entry([1.0, 0.8, 0.0]), "val": _entry([1.0, 0.9, 0.5])}}
    noisy = {"value": 0.01, "low": -0.02, "high": 0.04, "words": "not distinguishable from plain cross-entropy"}
    said = pick_warnings("m", metrics, list("abc"), noisy, 0.3)
    assert said[0] == "m never recalls class c on the test split (recall 0)"
    assert "lead over the reference is within noise" in said[1] and "+0.0100 [-0.0200, +0.0400]" in said[1]
    assert "only 30% of validation resamples" in said[2]
    clear = {**noisy, "low": 0.005, "words": "better than plain cross-entropy beyond noise"}
    healthy = {"m": {**_entry([1.0, 0.8, 0.7]), "val": _entry([1.0, 0.9, 0.5])}}
    assert pick_warnings("m", healthy, list("abc"), clear, 0.8) == []
    assert "nothing is recommended" in pick_warnings(None, {}, list("abc"), None, None)[0]


def test_probabilities_calibrated_worse_than_max_ece_on_validation_are_called_scores():
    from pipeline.evidence import pick_warnings

    healthy = {"m": {**_entry([1.0, 0.8, 0.7]), "val": _entry([1.0, 0.9, 0.5])}}
    clear = {"value": 0.05, "low": 0.01, "high": 0.09, "words": "better than plain cross-entropy beyond noise"}
    calibration = {"validation_ece": 0.12, "max_ece": 0.05}
    said = pick_warnings("m", healthy, list("abc"), clear, 0.8, calibration)
    assert said == ["m's probabilities (p_<class>) are poorly calibrated: ECE 0.120 on validation, above "
                    "evaluate.max_ece 0.05; read them as scores, not as chances"]
    assert pick_warnings("m", healthy, list("abc"), clear, 0.8, {**calibration, "validation_ece": 0.04}) == []
