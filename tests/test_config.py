from pathlib import Path

import pytest

from pipeline.config import ConfigError, Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_parse_to_typed_config():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.data.source == "digits"
    assert p.train.losses == ("ce", "weighted_ce", "focal")
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
        ({"weights": {"scheme": "sqrt"}}, "weights.scheme must be one of none, inverse; got 'sqrt'"),
        ({"train": {"losses": ["ce", "hinge"]}}, "train.losses must be one of ce, weighted_ce, focal; got 'hinge'"),
        ({"train": {"gammas": [1, -2]}}, "train.gammas must be >= 0; got -2.0"),
        ({"train": {"gammas": []}}, "train.gammas must list at least one value for focal"),
        ({"train": {"lr": "fast"}}, "train.lr must be float; got 'fast'"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be int; got 2.5"),
        ({"train": {"lrate": 0.1}}, "unknown key train.lrate; allowed: losses, gammas"),
        ({"train": {"device": "tpu"}}, "train.device must be one of auto, cpu, cuda"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_params(raw)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("params.yaml: ")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_params(bad)
