"""Names as people wrote them in MLflow, only what MLflow refuses replaced; constraints name any class."""

import posixpath
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import PipelineError
from pipeline.config import ConfigError, parse_constraint
from pipeline.tracking.names import check_distinct, key_part, model_name

MLFLOW_METRIC_KEY = re.compile(r"^[\w\-. :/]+$")  # what MLflow 3 accepts in a metric key
LOGGED_MODEL_REFUSED = set("/:.%\"'")  # what MLflow 3 refuses in a logged model's name


@given(st.text(min_size=1))
def test_every_name_becomes_one_mlflow_accepts(name):
    key = f"recall/{key_part(name)}"
    assert MLFLOW_METRIC_KEY.match(key) and posixpath.normpath(key) == key
    assert not set(model_name(name)) & LOGGED_MODEL_REFUSED


@given(st.text(alphabet=st.characters(categories=["L", "N"], include_characters="_- "), min_size=1))
def test_names_mlflow_takes_stay_as_written(name):
    assert key_part(name) == name
    assert model_name(name) == name


def test_mlflow_accepts_them_as_it_validates():
    from mlflow.utils.validation import _validate_logged_model_name, _validate_metric_name

    for name in ("weighted_ce_a0.75", "ldam_drw+posthoc_adjust", "a/b:c%d\"e'f", "..", "x/", "/x", "a//b", "é.b"):
        _validate_metric_name(f"recall/{key_part(name)}")
        _validate_logged_model_name(model_name(name))


@pytest.mark.parametrize(
    ("name", "model", "key"),
    [
        ("weighted_ce_a0.75", "weighted_ce_a0_75", "weighted_ce_a0.75"),
        ("ldam_drw+posthoc_adjust", "ldam_drw+posthoc_adjust", "ldam_drw_posthoc_adjust"),
        ("focal_g0.5+cost", "focal_g0_5+cost", "focal_g0.5_cost"),
        ("high risk", "high risk", "high risk"),
        ("n/a", "n_a", "n/a"),
        ("007", "007", "007"),
        ("a<b", "a<b", "a_b"),
        ('e "f"', "e _f_", "e _f_"),
        ("x/", "x_", "x_"),
        ("..", "__", "__"),
        ("é", "é", "é"),
    ],
)
def test_the_documented_examples(name, model, key):
    assert (model_name(name), key_part(name)) == (model, key)


def test_names_that_would_become_one_are_refused_in_one_line():
    check_distinct(["a+b", "a-b", "a b"], key_part, "classes")
    with pytest.raises(PipelineError, match=r"^classes 'a\+b' and 'a_b' would both be written 'a_b' in MLflow"):
        check_distinct(["a+b", "c", "a_b"], key_part, "classes")
    with pytest.raises(PipelineError, match="candidates 'focal_g0.5' and 'focal_g0_5'"):
        check_distinct(["focal_g0.5", "focal_g0_5"], model_name, "candidates")


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [
        ("recall/8 >= 0.6", "recall/8", ">=", 0.6),
        ("macro_f1>=0.9", "macro_f1", ">=", 0.9),
        ('recall/"high risk" >= 0.5', "recall/high risk", ">=", 0.5),
        ("precision/'e \"f\"' <= 1e-1", 'precision/e "f"', "<=", 0.1),
        ('fpr/"a<=b" <= 0.05', "fpr/a<=b", "<=", 0.05),
        ("recall/n/a >= 0.5", "recall/n/a", ">=", 0.5),
        ("recall/a<b >= 0.5", "recall/a<b", ">=", 0.5),
        ("recall/c,d >= 0.5", "recall/c,d", ">=", 0.5),
        (r'recall/"back\\slash \"q\"" >= 0.5', 'recall/back\\slash "q"', ">=", 0.5),
    ],
)
def test_constraints_name_any_class_quoted_or_not(text, metric, op, bound):
    c = parse_constraint(text)
    assert (c.metric, c.op, c.bound) == (metric, op, bound)
    assert parse_constraint(str(c)) == c  # what the audit prints reads back


def test_a_malformed_constraint_says_how_to_quote():
    with pytest.raises(ConfigError, match="quote a class name with spaces"):
        parse_constraint("recall/high risk >= 0.5")


def test_headline_keys_say_the_split_and_keep_class_names_readable():
    from mlflow.utils.validation import _validate_metric_name

    from pipeline.tracking.runs import metric_key

    keys = {
        metric_key("val", "macro_f1"): "val_macro_f1",
        metric_key("test", "recall/g & h %"): "test_recall/g _ h _",
        metric_key("val", "recall/n/a"): "val_recall/n/a",
        metric_key("val", "macro_f1", "uniform_prior"): "val_uniform_prior_macro_f1",
    }
    assert list(keys) == list(keys.values())
    for key in keys:
        _validate_metric_name(key)
