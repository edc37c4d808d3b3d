"""The rule table is the one place a decision rule is described: one entry (and its maths) is
enough to fit it on validation, cross-fit it, ship it and serve it."""

import dataclasses

import numpy as np
import pytest

from pipeline import PipelineError
from pipeline.artifacts import ModelRecord, Predictions
from pipeline.decision.candidates import decide_all
from pipeline.config import EvaluateConfig, parse_params
from pipeline.decision.rules import calibrate, logp_of, parameter_count, softmax
from pipeline.report.render import plain
from pipeline.rule_specs import RULE_SPECS, RuleSpec, rule_spec
from pipeline.tracking.serving import Candidate

CLASSES = ["a", "b", "c"]
TRAIN = [120, 60, 20]


def fit_flat_prior(proba, logp, y, context, *, key, keys, sample_weight) -> dict:
    """A toy rule for the test: remove the training prior, ``argmax(logp - log pi_train)``, with a
    per-class shift kept as its parameters (nothing searched)."""
    return {"shift": (-np.asarray(context.log_train_prior)).tolist()}


def apply_flat_prior(proba, logp, params, context):
    z = logp + np.asarray(params["shift"])
    return softmax(z), z.argmax(axis=1)


TOY = RuleSpec("flat_prior", f"{__name__}:fit_flat_prior", f"{__name__}:apply_flat_prior", "the training prior removed")


def _predictions(n, seed):
    """Probabilities that lean to class a, the most frequent, like a model trained on TRAIN."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y] + np.log(np.array(TRAIN) / sum(TRAIN))
    proba = softmax(z)
    return Predictions(y, proba.argmax(axis=1), proba)


def test_a_new_rule_is_one_entry_from_the_config_to_the_served_model(monkeypatch):
    with pytest.raises(PipelineError, match="evaluate.decisions.rules must be one of .*; got 'flat_prior'"):
        parse_params({"evaluate": {"decisions": {"rules": ["flat_prior"]}}})
    monkeypatch.setitem(RULE_SPECS, "flat_prior", TOY)
    cfg = parse_params({"evaluate": {"decisions": {"rules": ["flat_prior"], "models": "all"}}}).evaluate
    assert cfg.decisions.rules == ("flat_prior",)
    cfg = dataclasses.replace(cfg, costs=None)

    record = ModelRecord(
        "ce", "ce", None, 0, "mlp", "ce", {}, {}, "cpu", None, _predictions(300, 0), _predictions(300, 1)
    )
    meta = {
        "classes": CLASSES,
        "counts": {
            "train": dict(zip(CLASSES, TRAIN)),
            "val": dict.fromkeys(CLASSES, 100),
            "test": dict.fromkeys(CLASSES, 100),
        },
    }
    decisions, forest = decide_all([record], meta, cfg)
    assert forest is None and [d.name for d in decisions] == ["ce", "ce+flat_prior"]
    calibration, ruled = decisions
    shift = -np.log(np.array(TRAIN) / sum(TRAIN))
    assert ruled.fitted["rule"] == "flat_prior" and ruled.fitted["parameters"] == 3 == parameter_count(
        "flat_prior", ruled.fitted["params"]
    )
    np.testing.assert_allclose(ruled.fitted["params"]["shift"], shift)
    expected = (logp_of(record.test.proba) + shift).argmax(axis=1)
    assert ruled.frames["test"]["y_pred"].tolist() == [CLASSES[i] for i in expected]
    assert (expected == 2).sum() > (record.test.y_pred == 2).sum()  # the rare class is decided more often
    # no posterior of its own: it ships the model's calibrated probabilities
    shipped = calibrate(record.test.proba, calibration.fitted["calibration"])
    np.testing.assert_allclose(ruled.frames["test"][[f"p_{c}" for c in CLASSES]].to_numpy(), shipped)

    # the served model applies it from the rule's file
    served = Candidate(
        "ce+flat_prior",
        CLASSES,
        "mlp",
        None,
        ruled.fitted,
        lambda X: record.test.proba,
        calibration=calibration.fitted["calibration"],
    )
    proba, y_pred = served.decide(np.zeros((300, 1)))
    np.testing.assert_array_equal(y_pred, expected)
    np.testing.assert_allclose(proba, shipped)
    # and the report says it in its words
    assert (
        plain({"kind": "mlp", "base_model": "ce", "loss": "ce", "rule": "flat_prior"})
        == "the network trained with plain cross-entropy, with the training prior removed"
    )


def test_every_rule_names_importable_functions_and_what_it_needs():
    from pipeline import resolve
    from pipeline.rule_specs import ANOMALY_SCORES, COST

    for spec in RULE_SPECS.values():
        assert callable(resolve(spec.fit, "rule")) and callable(resolve(spec.apply, "rule")), spec.name
        assert spec.needs in (None, COST, ANOMALY_SCORES) and spec.words, spec.name
    with pytest.raises(PipelineError, match="rule must be one of posthoc_adjust, thresholds, cost, anomaly; got 'x'"):
        rule_spec("x")
    assert EvaluateConfig().decisions.rules == tuple(RULE_SPECS)
