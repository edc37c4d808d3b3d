from pathlib import Path

import pytest

from pipeline.config import ConfigError, Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_parse_to_typed_config():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.data.source == "digits"
    assert p.train.losses == ("ce", "weighted_ce", "focal", "weighted_focal", "cb_focal", "logit_adjusted",
                              "ldam_drw")
    assert p.train.gammas == (0.0, 0.5, 1.0, 2.0, 5.0)
    assert all(isinstance(g, float) for g in p.train.gammas)


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
        ({"weights": {"scheme": "sqrt"}},
         "weights.scheme must be one of none, inverse, inverse_sqrt, effective_number; got 'sqrt'"),
        ({"train": {"losses": ["ce", "hinge"]}},
         "train.losses must be one of ce, weighted_ce, focal, weighted_focal, cb_focal, logit_adjusted, "
         "ldam_drw; got 'hinge'"),
        ({"train": {"gammas": [1, -2]}}, "train.gammas must be >= 0; got -2.0"),
        ({"train": {"gammas": []}}, "train.gammas must list at least one value for focal"),
        ({"train": {"lr": "fast"}}, "train.lr must be float; got 'fast'"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be int; got 2.5"),
        ({"train": {"lrate": 0.1}}, "unknown key train.lrate; allowed: losses, gammas"),
        ({"train": {"device": "tpu"}}, "train.device must be one of auto, cpu, cuda"),
        ({"weights": {"beta": 1.0}}, r"weights.beta must be in \[0, 1\); got 1.0"),
        ({"weights": {"beta": -0.5}}, r"weights.beta must be in \[0, 1\); got -0.5"),
        ({"train": {"losses": ["ce", "cb_focal"], "gammas": []}},
         "train.gammas must list at least one value for cb_focal$"),
        ({"train": {"losses": ["weighted_focal"], "gammas": [0.5, -1]}}, "train.gammas must be >= 0; got -1.0"),
        ({"train": {"tau": -1}}, "train.tau must be >= 0; got -1.0"),
        ({"train": {"ldam_max_margin": -0.1}}, "train.ldam_max_margin must be >= 0; got -0.1"),
        ({"train": {"ldam_scale": 0}}, "train.ldam_scale must be > 0; got 0.0"),
        ({"train": {"drw_epoch": 0}}, r"train.drw_epoch must be in \[1, train.epochs\] \(100\) or null; got 0"),
        ({"train": {"epochs": 10, "drw_epoch": 11}},
         r"train.drw_epoch must be in \[1, train.epochs\] \(10\) or null; got 11"),
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
