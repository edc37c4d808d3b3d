"""pipeline.decision.rules: calibration, Bayes decisions, fitted decision rules and cross-fitting."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline import PipelineError
from pipeline.config import Constraint
from pipeline.decision.rules import (
    RuleContext,
    anomaly_scores,
    apply_rule,
    bayes_decision,
    calibrate,
    calibration_method,
    crossfit,
    crossfit_calibration,
    crossfit_folds,
    fit_bias_corrected_temperature,
    fit_calibration,
    fit_isolation_forest,
    fit_rule,
    fit_temperature,
    logp_of,
    parameter_count,
    softmax,
)
from pipeline.decision.metrics import classification_metrics, confusion_matrix, count_metrics
from pipeline.rule_specs import RULES


def policy_objective(classes, primary, constraints=()):
    """(total shortfall of the constraints, ``primary``) from count metrics, like the policy's."""

    def value(counts, name):
        base, _, cls = name.partition("/")
        return float(counts[base][classes.index(cls)] if cls else counts[base])

    def objective(y_true, y_pred, proba, sample_weight):
        counts = count_metrics(confusion_matrix(y_true, y_pred, len(classes), sample_weight))
        misses = [
            c.bound - value(counts, c.metric) if c.op == ">=" else value(counts, c.metric) - c.bound
            for c in constraints
        ]
        return sum(max(0.0, m) for m in misses), value(counts, primary)

    return objective


def _sample_labels(rng, proba):
    """One label per row drawn from its probabilities."""
    return (rng.random(len(proba))[:, None] > proba.cumsum(axis=1)).sum(axis=1).clip(0, proba.shape[1] - 1)


def _nll(proba, y):
    return -np.log(proba[np.arange(len(y)), y]).mean()


def _context(c, *, prior=None, cost=None, prior_ratio=None, scores=None, rarest=None):
    prior = np.full(c, 1 / c) if prior is None else np.asarray(prior)
    return RuleContext(
        classes=[f"c{i}" for i in range(c)],
        log_train_prior=np.log(prior),
        cost=cost,
        prior_ratio=prior_ratio,
        rarest=int(np.argmin(prior)) if rarest is None else rarest,
        anomaly_scores=scores,
    )


def _imbalanced(n, prior, signal, seed):
    """Labels drawn from ``prior`` and weakly informative probabilities calibrated to it."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(prior), size=n, p=prior)
    z = rng.normal(size=(n, len(prior)))
    z[np.arange(n), y] += signal
    return softmax(z + np.log(prior)), y


def test_temperature_recovers_the_scale_of_overconfident_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=1.5, size=(5000, 5))
    y = _sample_labels(rng, softmax(z))
    proba = softmax(3 * z)  # three times too confident
    t = fit_temperature(logp_of(proba), y)
    assert t == pytest.approx(3.0, rel=0.05)
    q = softmax(logp_of(proba) / t)
    assert (q.argmax(axis=1) == proba.argmax(axis=1)).all()
    assert _nll(q, y) < _nll(proba, y)


def test_calibration_recovers_the_per_class_scales_and_biases_labels_were_drawn_with():
    """Labels drawn from ``softmax(a * log p + b)``: vector scaling of the log-probabilities finds
    that a and b again (b up to its constant), and its NLL beats temperature scaling's."""
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.full(4, 0.7), size=20000)
    a, b = np.array([2.0, 1.0, 0.6, 1.5]), np.array([0.5, -0.3, 0.2, -0.4])
    y = _sample_labels(rng, softmax(np.log(proba) * a + b))
    fitted = fit_calibration(logp_of(proba), y)
    assert fitted["method"] == "vector_scaling" and json.loads(json.dumps(fitted)) == fitted
    np.testing.assert_allclose(fitted["scale"], a, rtol=0.06)
    np.testing.assert_allclose(fitted["bias"], b - b.mean(), atol=0.06)
    q = calibrate(proba, fitted)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)
    t = fit_temperature(logp_of(proba), y)
    assert _nll(q, y) < _nll(softmax(logp_of(proba) / t), y) < _nll(proba, y)


def test_calibration_with_too_few_rows_per_class_is_temperature_scaling():
    """Vector scaling's 2C parameters need rows: below 10 validation rows per parameter one
    temperature is fitted, the same for every class, with no bias; the default data (about 360
    validation rows, 10 classes) keeps vector scaling."""
    assert calibration_method(360, 10) == "vector_scaling"
    assert calibration_method(600, 300) == calibration_method(199, 10) == "temperature_scaling"
    rng = np.random.default_rng(5)
    z = rng.normal(size=(600, 300))
    y = _sample_labels(rng, softmax(z))
    proba = softmax(3 * z)
    fitted = fit_calibration(logp_of(proba), y, calibration_method(600, 300))
    t = fit_temperature(logp_of(proba), y)
    assert fitted == {"method": "temperature_scaling", "scale": [1 / t] * 300, "bias": [0.0] * 300}
    np.testing.assert_allclose(calibrate(proba, fitted), softmax(logp_of(proba) / t), rtol=1e-9)
    assert t == pytest.approx(3.0, rel=0.1)


def test_crossfit_calibration_decides_each_fold_by_the_others():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(300, 3))
    y = _sample_labels(rng, softmax(z))
    proba = softmax(2 * z)
    folds = crossfit_folds(y, 3, seed=0)
    out = crossfit_calibration(proba, y, folds)
    for f in range(3):
        rows = folds == f
        expected = calibrate(proba[rows], fit_calibration(logp_of(proba[~rows]), y[~rows]))
        np.testing.assert_allclose(out[rows], expected, rtol=1e-12)


def test_temperature_is_weighted_and_deterministic():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 3))
    y = _sample_labels(rng, softmax(z))
    logp = logp_of(softmax(2 * z))
    w = rng.uniform(0.5, 2, size=400)
    assert fit_temperature(logp, y, sample_weight=w) == fit_temperature(logp, y, sample_weight=w)
    # integer weights are repeated rows
    reps = rng.integers(1, 4, size=400)
    assert fit_temperature(logp, y, sample_weight=reps) == pytest.approx(
        fit_temperature(np.repeat(logp, reps, axis=0), np.repeat(y, reps)), rel=1e-4
    )


def test_bcts_recovers_temperature_and_bias():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=1.5, size=(20000, 4))
    y = _sample_labels(rng, softmax(z))
    t_true, b_true = 2.0, np.array([1.0, -0.5, 0.0, -0.5])  # sum 0: the gauge of the fit
    proba = softmax(t_true * (z - b_true))  # softmax(logp / T + b) == softmax(z)
    t, b = fit_bias_corrected_temperature(logp_of(proba), y)
    assert t == pytest.approx(t_true, rel=0.1)
    assert b == pytest.approx(b_true, abs=0.15)
    assert b.sum() == pytest.approx(0.0, abs=1e-9)
    assert _nll(softmax(logp_of(proba) / t + b), y) < _nll(proba, y) - 0.05


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.data())
def test_bayes_decision_matches_brute_force(n, c, data):
    raw = data.draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0.0, 1.0)))
    proba = (raw + 1e-3) / (raw + 1e-3).sum(axis=1, keepdims=True)
    cost = data.draw(hnp.arrays(np.float64, (c, c), elements=st.floats(0.0, 10.0)))
    got = bayes_decision(proba, cost)
    for row in range(n):
        risk = [sum(cost[i, j] * proba[row, i] for i in range(c)) for j in range(c)]
        least = [j for j in range(c) if risk[j] <= min(risk) + 1e-9]  # up to rounding in the sums
        assert got[row] in least
        if len(least) == 1:
            assert got[row] == least[0]


def test_bayes_decision_breaks_exact_ties_by_lowest_index():
    proba = np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(bayes_decision(proba, 1 - np.eye(3)), [0, 2, 0])
    np.testing.assert_array_equal(bayes_decision(proba, np.zeros((3, 3))), [0, 0, 0])
    np.testing.assert_array_equal(bayes_decision(proba, [[3, 1, 1], [3, 1, 1], [0, 0, 0]]), [1, 1, 1])


def test_bayes_decision_with_zero_one_cost_is_argmax():
    proba = np.random.default_rng(3).dirichlet(np.ones(6), size=2000)
    assert (bayes_decision(proba, 1 - np.eye(6)) == proba.argmax(axis=1)).all()
    with pytest.raises(PipelineError, match="cost must be a"):
        bayes_decision(proba, np.ones((5, 5)))


def test_thresholds_meet_a_feasible_recall_constraint():
    prior = np.array([0.6, 0.3, 0.1])
    proba, y = _imbalanced(600, prior, 1.5, seed=4)
    ctx = _context(3, prior=prior)
    objective = policy_objective(ctx.classes, "macro_f1", [Constraint("recall/c2", ">=", 0.9)])
    before = classification_metrics(y, proba.argmax(axis=1), ctx.classes)
    assert before["recall/c2"] < 0.6
    params = fit_rule("thresholds", proba, y, objective, ctx)
    q, y_pred = apply_rule("thresholds", params, proba, ctx)
    after = classification_metrics(y, y_pred, ctx.classes)
    assert after["recall/c2"] >= 0.9
    assert after["macro_f1"] > 0.4  # predicting c2 everywhere meets the constraint too, at 0.08
    assert objective(y, y_pred, q, None)[0] == 0.0
    # without the constraint the same search trades recall for macro-F1 and scores higher
    unconstrained = fit_rule("thresholds", proba, y, policy_objective(ctx.classes, "macro_f1"), ctx)
    free = classification_metrics(y, apply_rule("thresholds", unconstrained, proba, ctx)[1], ctx.classes)
    assert free["macro_f1"] >= after["macro_f1"]
    assert free["macro_f1"] > before["macro_f1"]


def test_searches_keep_no_change_among_ties():
    # every rule is already perfect: nothing improves, so nothing moves
    y = np.repeat(np.arange(3), 20)
    proba = np.full((60, 3), 0.1)
    proba[np.arange(60), y] = 0.8
    ctx = _context(3, prior=[0.5, 0.3, 0.2], scores=np.random.default_rng(5).random(60))
    objective = policy_objective(ctx.classes, "macro_f1")
    assert fit_rule("posthoc_adjust", proba, y, objective, ctx) == {"tau": 0.0}
    assert fit_rule("thresholds", proba, y, objective, ctx) == {"bias": [0.0, 0.0, 0.0]}
    assert fit_rule("anomaly", proba, y, objective, ctx) == {"threshold": None}


def test_posthoc_adjust_with_tau_one_subtracts_the_log_prior():
    prior = np.array([0.7, 0.2, 0.1])
    proba, _ = _imbalanced(300, prior, 1.0, seed=6)
    q, y_pred = apply_rule("posthoc_adjust", {"tau": 1.0}, proba, _context(3, prior=prior))
    expected = proba / prior
    np.testing.assert_allclose(q, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    assert (y_pred == expected.argmax(axis=1)).all()
    assert (y_pred != proba.argmax(axis=1)).any()  # the adjustment changes decisions here


def test_posthoc_adjust_improves_balanced_accuracy_on_a_prior_shifted_model():
    prior = np.array([0.7, 0.2, 0.1])
    proba, y = _imbalanced(2000, np.full(3, 1 / 3), 1.5, seed=7)
    proba = softmax(logp_of(proba) + np.log(prior))  # a model that learned the training prior
    ctx = _context(3, prior=prior)
    tau = fit_rule("posthoc_adjust", proba, y, policy_objective(ctx.classes, "balanced_accuracy"), ctx)["tau"]
    assert tau == pytest.approx(1.0, abs=0.3)


def test_crossfit_folds_are_stratified_and_deterministic():
    y = np.repeat(np.arange(3), [50, 23, 2])  # class 2 has fewer rows than folds
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's "least populated class" warning included
        folds = crossfit_folds(y, 5, seed=0)
    assert (folds == crossfit_folds(y, 5, seed=0)).all()
    assert (folds != crossfit_folds(y, 5, seed=1)).any()
    assert set(folds) == set(range(5))
    for c in (0, 1):
        per_fold = np.bincount(folds[y == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    assert len(set(folds[y == 2])) == 2  # the two rows are in different folds
    assert set(crossfit_folds(np.array([0, 1, 1]), 5, seed=0)) == {0, 1, 2}  # k reduced to N
    assert set(crossfit_folds(np.arange(7), 5, seed=0)) == set(range(5))  # only singleton classes
    with pytest.raises(PipelineError, match="k >= 2"):
        crossfit_folds(y, 1, seed=0)


def test_crossfit_decides_each_fold_with_the_rule_fitted_on_the_others():
    prior = np.array([0.6, 0.3, 0.1])
    proba, y = _imbalanced(300, prior, 1.0, seed=8)
    rng = np.random.default_rng(8)
    scores, w = rng.random(300), rng.uniform(0.5, 2, 300)
    ctx = _context(3, prior=prior, scores=scores)
    objective = policy_objective(ctx.classes, "macro_f1")
    folds = crossfit_folds(y, 3, seed=0)
    for rule in ("thresholds", "anomaly"):
        q, y_pred = crossfit(rule, proba, y, folds, objective, ctx, sample_weight=w)
        for f in range(3):
            train, test = folds != f, folds == f
            fit_ctx = _context(3, prior=prior, scores=scores[train])
            params = fit_rule(rule, proba[train], y[train], objective, fit_ctx, sample_weight=w[train])
            q_f, y_f = apply_rule(rule, params, proba[test], _context(3, prior=prior, scores=scores[test]))
            np.testing.assert_array_equal(y_pred[test], y_f)
            np.testing.assert_allclose(q[test], q_f)


def _null_gaps(rule, *, in_sample=False, n=480, c=4, seeds=range(5)):
    """Per seed, cross-fitted (or in-sample) macro-F1 minus the argmax's, on probabilities unrelated to y."""
    gaps = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        y = np.repeat(np.arange(c), n // c)  # balanced: no uninformative rule beats a symmetric argmax
        proba = rng.dirichlet(np.ones(c), size=n)
        ctx = _context(c, prior=[0.4, 0.3, 0.2, 0.1], cost=1 - np.eye(c), scores=rng.random(n))
        objective = policy_objective(ctx.classes, "macro_f1")
        if in_sample:
            q, y_pred = apply_rule(rule, fit_rule(rule, proba, y, objective, ctx), proba, ctx)
        else:
            q, y_pred = crossfit(rule, proba, y, crossfit_folds(y, 5, seed), objective, ctx)
        gaps.append(objective(y, y_pred, q, None)[1] - objective(y, proba.argmax(axis=1), proba, None)[1])
    return np.array(gaps)


def _excess(gaps):
    """Mean gap in standard errors: a one-sided t statistic with len(gaps) - 1 degrees of freedom."""
    return gaps.mean() / max(gaps.std(ddof=1) / np.sqrt(len(gaps)), 1e-12)


def test_crossfitted_rules_gain_nothing_from_uninformative_probabilities():
    # Noise: the gap of each seed is a paired difference on the same rows, so its spread over the
    # seeds is the noise it is measured against: a mean gain above 3 standard errors (p ~ 0.02 for
    # t with 4 degrees of freedom) is a rule that learned from labels it should not have seen. Each
    # gap must also stay under 2 sd of the argmax's own macro-F1 over unrelated labelings (~0.02).
    rng = np.random.default_rng(0)
    proba, y = rng.dirichlet(np.ones(4), size=480), np.repeat(np.arange(4), 120)
    objective = policy_objective(["a", "b", "c", "d"], "macro_f1")
    sd = np.std([objective(rng.permutation(y), proba.argmax(axis=1), proba, None)[1] for _ in range(300)])
    for rule in ("posthoc_adjust", "thresholds", "anomaly", "cost"):
        gaps = _null_gaps(rule)
        assert _excess(gaps) <= 3 and gaps.max() <= 2 * sd, (rule, gaps.round(4).tolist(), sd)
    # the check has power: the search scored on the rows it was fitted on fails it
    assert _excess(_null_gaps("thresholds", in_sample=True)) > 3


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_gives_probabilities_and_json_parameters(rule):
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    proba, y = _imbalanced(400, prior, 1.0, seed=9)
    proba[:3] = np.eye(4)[:3]  # exact zeros and ones: logp is clipped, never -inf
    cost = np.array([[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [20, 10, 5, 0]], dtype=float)
    ctx = _context(
        4, prior=prior, cost=cost, prior_ratio=np.full(4, 0.25) / prior, scores=np.random.default_rng(9).random(400)
    )
    objective = policy_objective(ctx.classes, "macro_f1", [Constraint("recall/c3", ">=", 0.5)])
    params = fit_rule(rule, proba, y, objective, ctx)
    assert json.loads(json.dumps(params, allow_nan=False)) == params
    assert parameter_count(rule, params) == {"posthoc_adjust": 1, "thresholds": 4, "cost": 5, "anomaly": 1}[rule]
    q, y_pred = apply_rule(rule, params, proba, ctx)
    assert q.shape == proba.shape and np.isfinite(q).all() and (q >= 0).all()
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)
    assert y_pred.shape == (400,) and set(y_pred) <= set(range(4))


def test_cost_rule_follows_the_cost_matrix_and_the_prior_shift():
    prior = np.array([0.6, 0.3, 0.1])
    proba, y = _imbalanced(1000, prior, 1.5, seed=10)
    zero_one = _context(3, prior=prior, cost=1 - np.eye(3))
    params = fit_rule("cost", proba, y, policy_objective(zero_one.classes, "macro_f1"), zero_one)
    q, y_pred = apply_rule("cost", params, proba, zero_one)
    assert (y_pred == q.argmax(axis=1)).all()
    costly = _context(3, prior=prior, cost=np.array([[0, 1, 1], [1, 0, 1], [10, 10, 0]], dtype=float))
    assert (apply_rule("cost", params, proba, costly)[1] == 2).sum() > (y_pred == 2).sum()
    uniform = _context(3, prior=prior, cost=1 - np.eye(3), prior_ratio=(1 / 3) / prior)
    q_u, y_u = apply_rule("cost", params, proba, uniform)
    assert (y_u == 2).sum() > (y_pred == 2).sum()
    np.testing.assert_allclose(q_u, q / prior / (q / prior).sum(axis=1, keepdims=True))


def test_anomaly_rule_sends_outliers_to_the_rarest_class():
    rng = np.random.default_rng(11)
    x_train = rng.normal(size=(500, 2))
    x_val = np.vstack([rng.normal(size=(270, 2)), rng.normal(loc=6.0, size=(30, 2))])
    y = np.repeat([0, 1], [270, 30])  # class 1, the rarest, lies far from class 0's training rows
    forest = fit_isolation_forest(x_train, seed=0)
    scores = anomaly_scores(forest, x_val)
    assert scores[y == 1].mean() > scores[y == 0].max() - 0.05
    proba = np.tile([0.8, 0.2], (300, 1))  # the model never predicts the rare class
    ctx = _context(2, prior=[0.9, 0.1], scores=scores)
    params = fit_rule("anomaly", proba, y, policy_objective(ctx.classes, "macro_f1"), ctx)
    q, y_pred = apply_rule("anomaly", params, proba, ctx)
    assert classification_metrics(y, y_pred, ctx.classes)["recall/c1"] >= 0.9
    np.testing.assert_array_equal(q[y_pred == 1], np.tile([0.0, 1.0], ((y_pred == 1).sum(), 1)))
    with pytest.raises(PipelineError, match="anomaly_scores"):
        apply_rule("anomaly", params, proba, _context(2, prior=[0.9, 0.1]))


def test_bad_rules_and_missing_inputs_are_pipeline_errors():
    proba, y = _imbalanced(50, np.array([0.5, 0.5]), 1.0, seed=12)
    ctx = _context(2)
    objective = policy_objective(ctx.classes, "macro_f1")
    allowed = "rule must be one of posthoc_adjust, thresholds, cost, anomaly; got 'platt'"
    with pytest.raises(PipelineError, match=allowed):
        fit_rule("platt", proba, y, objective, ctx)
    with pytest.raises(PipelineError, match="rule must be one of"):
        apply_rule("platt", {}, proba, ctx)
    with pytest.raises(PipelineError, match="cost matrix"):
        fit_rule("cost", proba, y, objective, ctx)
    with pytest.raises(PipelineError, match="cost matrix"):
        apply_rule("cost", {"temperature": 1.0, "bias": [0.0, 0.0]}, proba, ctx)
    with pytest.raises(PipelineError, match="y must be"):
        fit_rule("thresholds", proba, y + 1, objective, ctx)


def test_thresholds_search_the_same_with_the_batched_objective():
    """The pipeline's objective scores a step's candidate biases at once; the search must end
    where the row-by-row search ends."""
    from pipeline.config import SelectConfig
    from pipeline.decision.selection import policy_objective as pipeline_objective

    prior = np.array([0.6, 0.3, 0.1])
    proba, y = _imbalanced(600, prior, 1.5, seed=4)
    ctx = _context(3, prior=prior)
    batched = pipeline_objective(SelectConfig(metric="macro_f1", constraints=("recall/c2 >= 0.9",)), ctx.classes)
    assert hasattr(batched, "batch")

    def row_by_row(*args):
        return batched(*args)

    fast = fit_rule("thresholds", proba, y, batched, ctx)
    slow = fit_rule("thresholds", proba, y, row_by_row, ctx)
    decide = [apply_rule("thresholds", p, proba, ctx) for p in (fast, slow)]
    assert batched(y, decide[0][1], decide[0][0], None) == pytest.approx(
        batched(y, decide[1][1], decide[1][0], None), abs=1e-12
    )
    np.testing.assert_allclose(fast["bias"], slow["bias"], atol=1e-9)
