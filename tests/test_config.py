from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import (
    STOPPING_METRICS,
    ConfigError,
    CostsConfig,
    Params,
    cost_matrix,
    deploy_prior_vector,
    load_params,
    parse_params,
    to_dict,
)
from pipeline.decision.metrics import COST_METRIC
from pipeline.rule_specs import RULES

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_parse_to_typed_config():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.data.source == "digits"
    assert p.train.losses == ("ce", "weighted_ce", "focal", "weighted_focal", "cb_focal", "logit_adjusted", "ldam_drw")
    assert p.train.gammas == (0.0, 0.5, 1.0, 2.0, 5.0)
    assert all(isinstance(g, float) for g in p.train.gammas)
    assert (p.train.early_stopping_fraction, p.train.early_stopping_metric) == (0.1, "balanced_log_loss")
    # no class of the bundled data is named, so any table runs as it is: the costs name a role
    assert p.evaluate.costs == CostsConfig(default=1.0, missed={"rarest": 20.0})
    assert p.data.encoding == "utf-8"
    assert p.evaluate.decisions.rules == RULES and p.evaluate.crossfit_folds == 5


def test_defaults_fill_missing_keys():
    p = parse_params({"train": {"lr": "1e-3"}})  # PyYAML reads 1e-3 as text
    assert p.train.lr == pytest.approx(1e-3)
    assert p.data == Params().data


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": {"source": "mnist"}}, "data.source must be one of digits, synthetic, csv; got 'mnist'"),
        ({"data": {"imbalance_ratio": 0.5}}, r"data.imbalance_ratio must be >= 1 \(1 keeps the split as is\); got 0.5"),
        ({"data": {"source": "csv", "target": None}}, "data.target must name the label column"),
        (
            {"weights": {"scheme": "sqrt"}},
            "weights.scheme must be one of none, inverse, inverse_sqrt, effective_number; got 'sqrt'",
        ),
        (
            {"train": {"losses": ["ce", "hinge"]}},
            "train.losses must be one of ce, weighted_ce, focal, weighted_focal, cb_focal, logit_adjusted, "
            "ldam_drw; got 'hinge'",
        ),
        ({"train": {"gammas": [1, -2]}}, "train.gammas must be >= 0; got -2.0"),
        ({"train": {"gammas": []}}, "train.gammas must list at least one value for focal"),
        ({"train": {"lr": "fast"}}, "train.lr must be float; got 'fast'"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be int; got 2.5"),
        ({"train": {"lrate": 0.1}}, "unknown key train.lrate; allowed: losses, gammas"),
        ({"train": {"device": "tpu"}}, "train.device must be one of auto, cpu, cuda"),
        ({"weights": {"beta": 1.0}}, r"weights.beta must be in \[0, 1\); got 1.0"),
        ({"weights": {"beta": -0.5}}, r"weights.beta must be in \[0, 1\); got -0.5"),
        (
            {"train": {"losses": ["ce", "cb_focal"], "gammas": []}},
            "train.gammas must list at least one value for cb_focal$",
        ),
        ({"train": {"losses": ["weighted_focal"], "gammas": [0.5, -1]}}, "train.gammas must be >= 0; got -1.0"),
        ({"train": {"tau": -1}}, "train.tau must be >= 0; got -1.0"),
        ({"train": {"batch_size": "large"}}, "train.batch_size must be auto or a number >= 1; got 'large'"),
        ({"train": {"batch_size": 0}}, "train.batch_size must be auto or a number >= 1; got 0"),
        ({"train": {"warmup_steps": -1}}, "train.warmup_steps must be auto or a number >= 0; got -1"),
        ({"train": {"ldam_max_margin": -0.1}}, "train.ldam_max_margin must be >= 0; got -0.1"),
        ({"train": {"ldam_scale": 0}}, "train.ldam_scale must be > 0; got 0.0"),
        ({"train": {"drw_epoch": 0}}, r"train.drw_epoch must be in \[1, train.epochs\] \(100\) or null; got 0"),
        (
            {"train": {"epochs": 10, "drw_epoch": 11}},
            r"train.drw_epoch must be in \[1, train.epochs\] \(10\) or null; got 11",
        ),
        ({"train": {"early_stopping_fraction": 0}}, r"train.early_stopping_fraction must be in \(0, 0.5\]; got 0.0"),
        ({"train": {"early_stopping_fraction": 0.6}}, r"train.early_stopping_fraction must be in \(0, 0.5\]; got 0.6"),
        ({"train": {"early_stopping_fraction": "a tenth"}}, "train.early_stopping_fraction must be float"),
        (
            {"train": {"early_stopping_metric": "accuracy"}},
            "train.early_stopping_metric must be one of macro_f1, log_loss, balanced_log_loss; got 'accuracy'",
        ),
        (
            {"evaluate": {"decisions": {"rules": ["posthoc_adjust", "platt"]}}},
            "evaluate.decisions.rules must be one of posthoc_adjust, thresholds, cost, anomaly; got 'platt'",
        ),
        (
            {"evaluate": {"decisions": {"rules": ["temperature"]}}},
            "evaluate.decisions.rules: temperature is no longer a rule",
        ),
        ({"evaluate": {"max_ece": 0}}, r"evaluate.max_ece must be in \(0, 1\); got 0"),
        ({"evaluate": {"decisions": {"rules": ["cost", "cost"]}}}, "evaluate.decisions.rules lists a rule twice"),
        (
            {"evaluate": {"decisions": {"rule": ["cost"]}}},
            r"unknown key evaluate.decisions.rule; allowed: rules, models \(did you mean evaluate.decisions.rules\?\)",
        ),
        (
            {"evaluate": {"decisions": {"models": "every"}}},
            "evaluate.decisions.models must be best, all or a list of model names; got 'every'",
        ),
        (
            {"evaluate": {"decisions": {"models": []}}},
            r"evaluate.decisions.models must be best, all or a list .*got \[\]",
        ),
        ({"evaluate": {"decisions": {"models": ["ce", " "]}}}, "evaluate.decisions.models names an empty model"),
        ({"evaluate": {"decisions": {"models": ["ce", 3]}}}, r"evaluate.decisions.models\[1\] must be str; got 3"),
        ({"evaluate": {"crossfit_folds": 1}}, "evaluate.crossfit_folds must be >= 2; got 1"),
        ({"evaluate": {"costs": 5}}, "evaluate.costs must be a mapping"),
        (
            {"evaluate": {"costs": {"defualt": 2}}},
            r"unknown key evaluate.costs.defualt; .*\(did you mean evaluate.costs.default\?\)",
        ),
        ({"evaluate": {"costs": {"default": -1}}}, "evaluate.costs.default must be finite and >= 0; got -1.0"),
        ({"evaluate": {"costs": {"missed": {8: -2}}}}, "evaluate.costs.missed.8 must be finite and >= 0; got -2.0"),
        (
            {"evaluate": {"costs": {"false_alarm": {"3": float("inf")}}}},
            "evaluate.costs.false_alarm.3 must be finite and >= 0; got inf",
        ),
        (
            {"evaluate": {"costs": {"matrix": {"1": {"2": float("nan")}}}}},
            "evaluate.costs.matrix.1.2 must be finite and >= 0; got nan",
        ),
        ({"evaluate": {"costs": {"missed": [20]}}}, r"evaluate.costs.missed must be a mapping; got \[20\]"),
        ({"evaluate": {"costs": {"missed": {8: "high"}}}}, "evaluate.costs.missed.8 must be float; got 'high'"),
        ({"evaluate": {"costs": {"missed": {8: 1, "8": 2}}}}, "evaluate.costs.missed names '8' twice"),
        (
            {"evaluate": {"costs": {"matrix": {"1": {"1": 0.5}}}}},
            r"evaluate.costs.matrix.1.1 is a correct decision and must cost 0; got 0.5 "
            r"\(set evaluate.costs.allow_diagonal: true",
        ),
        ({"evaluate": {"costs": {"allow_diagonal": "yes"}}}, "evaluate.costs.allow_diagonal must be bool; got 'yes'"),
        ({"evaluate": {"costs": {"default": 0}}}, "evaluate.costs must give some decision a cost > 0; all are 0"),
        (
            {"evaluate": {"costs": {"default": 0, "missed": {"8": 0}, "matrix": {"1": {"2": 0}}}}},
            "evaluate.costs must give some decision a cost > 0",
        ),
        (
            {"evaluate": {"select": {"metric": "expected_cost"}}},
            "evaluate.select.metric expected_cost needs evaluate.costs; it is null",
        ),
        (
            {"evaluate": {"select": {"constraints": ["expected_cost <= 0.5"]}}},
            "evaluate.select.constraints entry 'expected_cost <= 0.5' needs evaluate.costs",
        ),
        (
            {"evaluate": {"deploy_prior": {"0": 0.5, "8": -0.1}}},
            "evaluate.deploy_prior.8 must be finite and >= 0; got -0.1",
        ),
        (
            {"evaluate": {"deploy_prior": {"0": float("inf")}}},
            "evaluate.deploy_prior.0 must be finite and >= 0; got inf",
        ),
        (
            {"evaluate": {"deploy_prior": {"0": 0, "1": 0}}},
            "evaluate.deploy_prior must give some class a share > 0; all are 0",
        ),
        ({"evaluate": {"deploy_prior": {}}}, "evaluate.deploy_prior must give some class a share > 0"),
        ({"evaluate": {"deploy_prior": [0.5, 0.5]}}, "evaluate.deploy_prior must be a mapping"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_params(raw)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("params.yaml: ")


def test_loss_zoo_params_have_defaults_and_accept_null_drw_epoch():
    t = parse_params({"train": {"losses": ["ldam_drw", "logit_adjusted"], "gammas": [], "drw_epoch": None}}).train
    assert (t.tau, t.ldam_max_margin, t.ldam_scale, t.drw_epoch) == (1.0, 0.5, 30.0, None)
    assert parse_params({"train": {"drw_epoch": 40}}).train.drw_epoch == 40
    for scheme in ("none", "inverse", "inverse_sqrt", "effective_number"):
        assert parse_params({"weights": {"scheme": scheme, "beta": 0}}).weights.scheme == scheme


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_params(bad)


def test_new_keys_have_their_defaults():
    p = parse_params({})
    assert (p.train.early_stopping_fraction, p.train.early_stopping_metric) == (0.1, "balanced_log_loss")
    assert STOPPING_METRICS == ("macro_f1", "log_loss", "balanced_log_loss")
    e = p.evaluate
    assert RULES == ("posthoc_adjust", "thresholds", "cost", "anomaly")
    assert e.max_ece == 0.05
    assert e.decisions.rules == RULES and e.decisions.models == "best"
    assert e.crossfit_folds == 5 and e.costs is None and e.deploy_prior is None
    assert CostsConfig() == CostsConfig(default=1.0, missed={}, false_alarm={}, matrix={}, allow_diagonal=False)


def test_new_keys_accept_their_allowed_values():
    for metric in STOPPING_METRICS:
        t = parse_params({"train": {"early_stopping_metric": metric, "early_stopping_fraction": 0.5}}).train
        assert t.early_stopping_metric == metric and t.early_stopping_fraction == 0.5
    d = parse_params({"evaluate": {"decisions": {"rules": [], "models": "all"}}}).evaluate.decisions
    assert d.rules == () and d.models == "all"
    raw = {"evaluate": {"decisions": {"rules": ["thresholds"], "models": ["ce", "focal_g2"]}}}
    d = parse_params(raw).evaluate.decisions
    assert d.rules == ("thresholds",) and d.models == ("ce", "focal_g2")
    assert parse_params({"evaluate": {"crossfit_folds": 2}}).evaluate.crossfit_folds == 2
    e = parse_params(
        {
            "evaluate": {
                "costs": {"matrix": {"1": {"1": 0.5}}, "allow_diagonal": True},
                "select": {"metric": "expected_cost", "constraints": ["expected_cost <= 2"]},
                "deploy_prior": {"0": 1, "1": 0},
            }
        }
    ).evaluate
    assert e.costs.matrix == {"1": {"1": 0.5}} and e.costs.allow_diagonal is True
    assert e.select.metric == COST_METRIC
    assert e.deploy_prior == {"0": 1.0, "1": 0.0}
    # a correct decision may cost 0 explicitly without allow_diagonal, and costs: {} is the defaults
    assert parse_params({"evaluate": {"costs": {"matrix": {"1": {"1": 0}}}}}).evaluate.costs.matrix == {"1": {"1": 0.0}}
    assert parse_params({"evaluate": {"costs": {}}}).evaluate.costs == CostsConfig()
    # all-zero default is fine when an override costs something
    assert parse_params({"evaluate": {"costs": {"default": 0, "false_alarm": {"2": 1}}}}).evaluate.costs.default == 0


def test_a_single_model_name_is_not_one_of_the_two_words():
    message = "evaluate.decisions.models must be best, all or a list of model names; got 'ce'"
    with pytest.raises(ConfigError, match=message):
        parse_params({"evaluate": {"decisions": {"models": "ce"}}})
    assert parse_params({"evaluate": {"decisions": {"models": ["ce"]}}}).evaluate.decisions.models == ("ce",)


def test_integer_yaml_keys_become_class_names():
    raw = yaml.safe_load("""
evaluate:
  costs:
    default: 1
    missed:
      8: 20
    false_alarm: {0: 3}
    matrix: {2: {8: 7}}
  deploy_prior: {8: 1, 0: 3}
""")
    assert list(raw["evaluate"]["costs"]["missed"]) == [8]  # YAML reads `8:` as an int
    e = parse_params(raw).evaluate
    assert e.costs.missed == {"8": 20.0} and e.costs.false_alarm == {"0": 3.0}
    assert e.costs.matrix == {"2": {"8": 7.0}}
    assert e.deploy_prior == {"8": 1.0, "0": 3.0}
    assert all(isinstance(v, float) for v in e.costs.missed.values())
    classes = [str(i) for i in range(10)]
    c = cost_matrix(e.costs, classes)
    assert c[8, 3] == 20 and c[8, 8] == 0 and c[5, 0] == 3 and c[2, 8] == 7 and c[2, 3] == 1
    np.testing.assert_allclose(deploy_prior_vector(e.deploy_prior, classes), [0.75] + [0] * 7 + [0.25, 0])
    # the plain-dict form of the config (MLflow, JSON) keeps the class names as text
    assert to_dict(e)["costs"]["missed"] == {"8": 20.0}


def test_cost_matrix_precedence_default_false_alarm_missed_matrix():
    costs = CostsConfig(
        default=1, false_alarm={"b": 4}, missed={"c": 10}, matrix={"c": {"b": 2}, "a": {"a": 0.5}}, allow_diagonal=True
    )
    expected = np.array(
        [
            # decided: a   b    c         true:
            [0.5, 4.0, 1.0],  # a: default; false alarm b; matrix diagonal
            [1.0, 0.0, 1.0],  # b: default; the false alarm of b is not a false alarm when b is true
            [10.0, 2.0, 0.0],  # c: missed beats default; matrix beats missed and false alarm
        ]
    )
    c = cost_matrix(costs, ["a", "b", "c"])
    assert c.dtype == np.float64 and c.shape == (3, 3)
    np.testing.assert_array_equal(c, expected)
    np.testing.assert_array_equal(cost_matrix(CostsConfig(), ["a", "b", "c"]), 1 - np.eye(3))


def test_rarest_in_the_costs_is_the_class_with_the_fewest_training_rows_unless_a_class_has_that_name():
    costs = CostsConfig(default=1, missed={"rarest": 20})
    np.testing.assert_array_equal(cost_matrix(costs, ["a", "b", "c"], [50, 5, 5])[1], [20, 0, 20])  # first on ties
    np.testing.assert_array_equal(cost_matrix(costs, ["a", "rarest"], [5, 50])[1], [20, 0])  # a class of that name
    with pytest.raises(ConfigError, match=r"names class 'rarest', not one of the classes: a, b$"):
        cost_matrix(costs, ["a", "b"])  # no counts: no role


def test_cost_matrix_of_parsed_params_with_missed_above_false_alarm():
    raw = {"evaluate": {"costs": {"default": 2, "missed": {1: 9}, "false_alarm": {0: 5}}}}
    costs = parse_params(raw).evaluate.costs
    np.testing.assert_array_equal(cost_matrix(costs, ["0", "1", "2"]), [[0, 2, 2], [9, 0, 9], [5, 2, 0]])


@pytest.mark.parametrize(
    ("costs", "message"),
    [
        (CostsConfig(missed={"9": 20}), "evaluate.costs.missed names class '9', not one of the classes: 0, 1, 2$"),
        (CostsConfig(false_alarm={"x": 2}), "evaluate.costs.false_alarm names class 'x', not one of the classes"),
        (CostsConfig(matrix={"7": {"1": 2}}), "evaluate.costs.matrix names class '7', not one of the classes: 0, 1, 2"),
        (CostsConfig(matrix={"1": {"7": 2}}), "evaluate.costs.matrix.1 names class '7', not one of the classes"),
    ],
)
def test_cost_matrix_refuses_unknown_classes(costs, message):
    with pytest.raises(ConfigError, match=message) as info:
        cost_matrix(costs, ["0", "1", "2"], source="my.yaml")
    assert str(info.value).startswith("my.yaml: ") and "\n" not in str(info.value)


def test_deploy_prior_vector():
    assert deploy_prior_vector(None, ["a", "b"]) is None
    v = deploy_prior_vector({"b": 3, "c": 1}, ["a", "b", "c"])
    np.testing.assert_allclose(v, [0, 0.75, 0.25])
    assert v.sum() == pytest.approx(1.0)
    message = "^params.yaml: evaluate.deploy_prior names class 'z', not one of the classes: a, b$"
    with pytest.raises(ConfigError, match=message):
        deploy_prior_vector({"a": 1, "z": 1}, ["a", "b"])
