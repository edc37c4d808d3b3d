"""Names from users become names every tool accepts, and come back unchanged."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import ConfigError, parse_constraint
from pipeline.names import original_name, safe_name

MLFLOW_METRIC_KEY = re.compile(r"^[\w\-. :/]+$")  # what MLflow 3 accepts in a metric key
LOGGED_MODEL_REFUSED = set("/:.%\"'")  # what MLflow 3 refuses in a logged model's name


@given(st.text(min_size=1))
def test_safe_names_are_reversible_and_use_the_safe_set_only(name):
    safe = safe_name(name)
    assert original_name(safe) == name
    assert set(safe) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_ -")
    assert MLFLOW_METRIC_KEY.match(f"recall/{safe}") and not set(safe) & LOGGED_MODEL_REFUSED


@given(st.text(min_size=1), st.text(min_size=1))
def test_distinct_names_stay_distinct(a, b):
    assert (safe_name(a) == safe_name(b)) == (a == b)


@pytest.mark.parametrize(("name", "safe"), [
    ("7", "7"), ("007", "007"), ("n/a", "n-2Fa"), ("a<b", "a-3Cb"), ("c,d", "c-2Cd"), ('e "f"', "e -22f-22"),
    ("g & h %", "g -26 h -25"), ("focal_g0.5", "focal_g0-2E5"), ("high-risk", "high-2Drisk"), ("é", "-C3-A9"),
])
def test_the_documented_examples(name, safe):
    assert safe_name(name) == safe and original_name(safe) == name


def test_a_name_safe_name_never_writes_is_refused():
    for bad in ("a-b", "a-2", "x/y", "a-zz"):
        with pytest.raises(ValueError, match="not a name written by safe_name"):
            original_name(bad)


@pytest.mark.parametrize(("text", "metric", "op", "bound"), [
    ("recall/8 >= 0.6", "recall/8", ">=", 0.6),
    ("macro_f1>=0.9", "macro_f1", ">=", 0.9),
    ('recall/"high risk" >= 0.5', "recall/high risk", ">=", 0.5),
    ("precision/'e \"f\"' <= 1e-1", 'precision/e "f"', "<=", 0.1),
    ('fpr/"a<=b" <= 0.05', "fpr/a<=b", "<=", 0.05),
    ("recall/n/a >= 0.5", "recall/n/a", ">=", 0.5),
    ("recall/a<b >= 0.5", "recall/a<b", ">=", 0.5),
    ("recall/c,d >= 0.5", "recall/c,d", ">=", 0.5),
    (r'recall/"back\\slash \"q\"" >= 0.5', 'recall/back\\slash "q"', ">=", 0.5),
])
def test_constraints_name_any_class_quoted_or_not(text, metric, op, bound):
    c = parse_constraint(text)
    assert (c.metric, c.op, c.bound) == (metric, op, bound)
    assert parse_constraint(str(c)) == c  # what the audit prints reads back


def test_a_malformed_constraint_says_how_to_quote():
    with pytest.raises(ConfigError, match="quote a class name with spaces"):
        parse_constraint("recall/high risk >= 0.5")
