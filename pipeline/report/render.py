"""The stakeholder report: one self-contained, deterministic HTML page per pipeline run.

The page is Jinja2 templates under ``pipeline/report/templates/``: ``page.html`` lays it out and
lists the sections in their order; each section is ``sections/<id>.html``, its words and its
tables; ``report.css`` is its style. This module gives the templates what they read: the run
(:class:`Run`, over this run's metrics, audit, data description and figures), the number and name
formats (:data:`HELPERS`), and the plain words for the candidates' names (:func:`plain`).

Nothing here reads the clock or the environment: the same inputs give the same bytes. Images are
embedded as data URIs; there are no scripts, fonts or external resources, and the page prints.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from pipeline.loss_specs import LOSS_SPECS
from pipeline.rule_specs import RULE_SPECS
from pipeline.decision.metrics import lower_is_better

TEMPLATES = Path(__file__).with_name("templates")
TOP = 5  # candidates the body's table shows by the policy's order (plus the other metrics' picks)

# The glossary of plain names: a candidate is its model (a loss's words in pipeline.loss_specs, or a
# baseline's here) and, after "+", a decision rule fitted on validation (its words in pipeline.rule_specs).
BASELINE_WORDS = {
    "majority": "a baseline that always answers the most frequent training class",
    "logreg_balanced": "a class-balanced logistic regression",
    "xgboost": "gradient-boosted trees (XGBoost)",
}
METRIC_WORDS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "micro_f1": "micro-F1",
    "weighted_f1": "weighted F1",
    "mcc": "MCC",
    "cohen_kappa": "Cohen's κ",
    "geometric_mean": "geometric-mean recall",
    "roc_auc_ovr": "ROC AUC (one vs rest)",
    "pr_auc": "PR AUC",
    "log_loss": "log-loss",
    "ece": "ECE",
    "expected_cost": "expected cost",
}


def loss_words(loss: str) -> str:
    """A loss as a stakeholder reads it (:mod:`pipeline.loss_specs`' words), or its name."""
    spec = LOSS_SPECS.get(loss)
    return spec.words if spec and spec.words else f"the {loss} loss"


def plain(entry: dict) -> str:
    """A candidate (a leaderboard entry) in plain words: ``ldam_drw+posthoc_adjust`` → "the network
    trained with LDAM loss with deferred re-weighting, with a prior correction". The technical name goes beside it, never instead."""
    what = (
        BASELINE_WORDS.get(entry["base_model"], entry["base_model"])
        if entry["kind"] == "baseline"
        else f"the network trained with {loss_words(entry['loss'])}"
    )
    return what + (f", with {rule_words(entry['rule'])}" if entry["rule"] else "")


# --- formats: each returns HTML (Markup), its text escaped --------------------------------------------


def num(x: Any, digits: int = 3) -> Markup:
    """``0.917``; None (an undefined value) is said as ``undefined``."""
    if x is None:
        return Markup("undefined")
    return Markup(f"{x:.{digits}f}") if isinstance(x, (int, float)) and not isinstance(x, bool) else escape(x)


def ci(value: float | None, low: float | None, high: float | None, stack: bool = False) -> Markup:
    """``0.917 [0.886, 0.942]``, or the value alone when it has no interval; ``stack``: the
    interval on a second, smaller line (for wide tables)."""
    if low is None or high is None:
        return num(value)
    interval = f"[{num(low)}, {num(high)}]"
    return num(value) + Markup(f"<br><span class='small'>{interval}</span>" if stack else f" {interval}")


def _rounded(change: dict) -> list[float | None]:
    """Adding 0.0 turns a rounded -0.000 into +0.000."""
    return [None if change[k] is None else round(change[k], 3) + 0.0 for k in ("value", "low", "high")]


def signed(change: dict, stack: bool = False) -> Markup:
    """``+0.070 [+0.041, +0.103]``; a None value (a class never predicted) is ``undefined``."""
    if change["value"] is None:
        return Markup("undefined")
    v = _rounded(change)
    if v[1] is None or v[2] is None:
        return Markup(f"{v[0]:+.3f}")
    interval = f"[{v[1]:+.3f}, {v[2]:+.3f}]"
    return Markup(f"{v[0]:+.3f}" + (f"<br><span class='small'>{interval}</span>" if stack else f" {interval}"))


def between(change: dict) -> Markup:
    """``+0.070 (+0.041 to +0.103)`` for sentences."""
    if change["value"] is None:
        return Markup("undefined")
    v = _rounded(change)
    return Markup(f"{v[0]:+.3f}" + (f" ({v[1]:+.3f} to {v[2]:+.3f})" if v[1] is not None and v[2] is not None else ""))


def gain(change: dict) -> Markup:
    """A difference called by its sign: ``a gain of +0.070 (+0.041 to +0.103)``, ``a loss of
    -0.020 (...)``, ``no change, +0.000 (...)``."""
    if change["value"] is None:
        return Markup("an undefined change")
    value = _rounded(change)[0]
    said = "a gain of" if value > 0 else "a loss of" if value < 0 else "no change,"
    return Markup(f"{said} ") + between(change)


def name(x: str) -> Markup:
    """A candidate's name in a cell or a sentence, as written: never broken across lines."""
    return Markup('<span class="nw">{}</span>').format(x)


def names(xs: list[str]) -> Markup:
    return Markup(", ").join(name(x) for x in xs)


def sentence(text: str) -> str:
    """A warning as a sentence: capitalised, unless it starts with a name as written (ce+thresholds)."""
    first = text.split(" ", 1)[0]
    return (text[:1].upper() + text[1:] if first.isalpha() else text) + ("" if text.endswith(".") else ".")


def metric_words(metric: str, view_key: str | None = None) -> str:
    """``macro-F1``; ``macro-F1 (train prior)`` for the reweighted view's ``train_prior/macro_f1``."""
    scope, _, base = metric.rpartition("/")
    if scope and scope == view_key:
        return f"{metric_words(base)} ({scope.replace('_', ' ')})"
    if scope:  # per class: recall/8
        return f"{scope} of class {base}"
    return METRIC_WORDS.get(metric, metric.replace("_", " "))


def shown_metrics(metric_names: list[str], view_key: str) -> list[str]:
    """The audit's columns without the ones that repeat another: micro-F1 equals accuracy (one
    label per case), and under a uniform prior the reweighted accuracy equals balanced accuracy."""
    same = {"micro_f1": "accuracy", f"{view_key}/micro_f1": f"{view_key}/accuracy"}
    if view_key == "uniform_prior":
        same[f"{view_key}/accuracy"] = "balanced_accuracy"
    return [m for m in metric_names if not (m in same and same[m] in metric_names)]


def rule_words(rule: str) -> str:
    spec = RULE_SPECS.get(rule)
    return spec.words if spec else rule


HELPERS = {
    f.__name__: f for f in (num, ci, signed, between, gain, name, names, sentence, metric_words, plain, rule_words)
}


@dataclass(frozen=True)
class Provenance:
    """Where the numbers come from."""

    commit: str
    dirty: str  # "true", "false" or "unknown"
    date: str  # the commit's date (never the clock)
    stages: dict[str, dict[str, str]]  # stage -> output path -> md5, from dvc.lock
    params: dict[str, Any]  # params as the stages used them, from dvc.lock
    packages: dict[str, str]  # package -> version
    command: str  # how to reproduce the page
    evidence: dict[str, str] = field(default_factory=dict)  # "<split>/<candidate>" -> sha256 of its predictions


@dataclass(frozen=True)
class Run:
    """What the templates read: this run's outputs, and what is derived from them."""

    meta: dict
    weights: dict
    metrics: dict[str, dict]
    audit: dict
    images: dict[str, bytes]

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def train(self) -> dict[str, int]:
        return self.meta["counts"]["train"]

    @property
    def policy(self) -> dict:
        return self.audit["policy"]

    @property
    def pick(self) -> str | None:
        return self.policy["pick"]

    @property
    def view(self) -> dict:
        return self.audit["views"]["reweighted"]

    @property
    def vkey(self) -> str:
        return self.view["key"]

    @property
    def primary(self) -> str:
        """The policy's metric as the audit names it (scoped to the view it is read under)."""
        m = self.policy["metric"]
        return m if self.policy["view"] == "held_out" else f"{self.vkey}/{m}"

    @property
    def primary_words(self) -> str:
        return metric_words(self.primary, self.vkey)

    @property
    def level(self) -> str:
        return f"{self.policy['bootstrap']['level']:.0%}"

    @property
    def board(self) -> dict[str, dict]:
        """Leaderboard entries by representative, in the policy's order."""
        return {e["model"]: e for e in self.audit["leaderboard"]}

    @property
    def total(self) -> int:
        """Every candidate, identical ones included."""
        return sum(len(e["members"]) for e in self.audit["leaderboard"])

    @property
    def reference(self) -> str | None:
        return self.audit["reference"]["model"]

    @property
    def columns(self) -> list[str]:
        return shown_metrics(self.audit["metrics"], self.vkey)

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.policy["metric"])

    @property
    def rules(self) -> list[str]:
        """The decision rules among the candidates, in the rule table's order."""
        found = {m.partition("+")[2] for m in self.metrics if "+" in m}
        order = list(RULE_SPECS)
        return sorted(found, key=lambda k: (order.index(k) if k in order else len(order), k))

    @property
    def warnings(self) -> list[str]:
        """The audit's warnings; without a pick, that nothing is recommended comes first."""
        said = list(self.audit.get("warnings") or [])
        if self.pick is None and not any("constraint" in w for w in said):
            said.insert(0, "no candidate meets the policy's constraints on validation: nothing is recommended")
        return said

    def figure(self, key: str, alt: str) -> Markup:
        """The PNG ``key`` as a data URI; empty when this run did not draw it."""
        if key not in self.images:
            return Markup("")
        data = base64.b64encode(self.images[key]).decode()
        return Markup('<img alt="{}" src="data:image/png;base64,{}">').format(alt, data)

    def has(self, prefix: str) -> list[str]:
        """The figures whose names start with ``prefix`` (``gamma_``: one per swept loss), sorted."""
        return sorted(k for k in self.images if k.startswith(prefix))

    def rep(self, model: str) -> str:
        """The representative of ``model``'s group of identical candidates (itself if none)."""
        return next((r for r, members in self.audit["groups"].items() if model in members), model)

    def duplicates(self, models: list[str]) -> dict[str, str]:
        """``model -> representative`` for the models that only repeat another one in ``models``."""
        return {m: self.rep(m) for m in models if self.rep(m) != m and self.rep(m) in models}

    def shown(self) -> dict[str, list[str]]:
        """The body's candidates (representatives) with why each is shown, in the policy's order."""
        why: dict[str, list[str]] = {}
        for e in self.audit["leaderboard"][:TOP]:
            why.setdefault(e["model"], []).append(f"top {TOP} by the policy")
        for d in self.audit["disagreements"]:
            if d["metric"] in self.columns:
                why.setdefault(d["winner"], []).append(f"best on {d['metric']}")
        if self.reference:
            why.setdefault(self.rep(self.reference), []).append(
                "the reference (" + self.audit["reference"]["why"] + ")"
            )
        return {m: why[m] for m in self.board if m in why}

    def never_predicted(self, model: str) -> list[str]:
        """Classes ``model`` never predicts on test (no true and no false positives): no precision."""
        m = self.metrics[model]
        return [c for c in self.classes if m[f"recall/{c}"] == 0 and m[f"fpr/{c}"] == 0 and m[f"support/{c}"] > 0]

    def never_predicted_by(self, models: list[str]) -> dict[str, list[str]]:
        return {m: self.never_predicted(m) for m in models}

    def trade_undefined(self, models: list[str]) -> list[tuple[str, list[str]]]:
        """(model, classes) of the tail/head trade's reference and ``models`` that never predict a class."""
        t = self.audit["tail_trade"]
        found = [(t["reference"], t["reference_undefined_precision"])]
        found += [(m, t["models"][m]["undefined_precision"]) for m in models]
        return [(m, cs) for m, cs in found if cs]

    def in_cases(self) -> dict[str, Any] | None:
        """The pick on the rarest class's test cases: how many there are, how many it finds, how many
        times it answers that class, how many of those answers are wrong, and 1 in how many."""
        rare, m = self.audit["rarest_class"], self.metrics.get(self.pick, {})
        support, recall, precision = (m.get(f"{k}/{rare}") for k in ("support", "recall", "precision"))
        if not support or recall is None:
            return None
        found = round(recall * support)
        alarms = round(found / precision) if found and precision else None
        wrong = alarms - found if alarms is not None else None
        one_in = alarms / wrong if wrong else None
        return {
            "cls": rare,
            "support": support,
            "found": found,
            "alarms": alarms,
            "wrong": wrong,
            "one_in": None if one_in is None else num(one_in, 0 if one_in >= 2 else 1),
        }

    def evidence(self, provenance: Provenance) -> list[tuple[str, str, str]]:
        """(candidate, split, sha256) of every prediction file, by candidate."""
        by: dict[str, dict[str, str]] = {}
        for key, digest in provenance.evidence.items():
            split, _, cand = key.partition("/")
            by.setdefault(cand, {})[split] = digest
        return [(c, split, digest) for c, d in by.items() for split, digest in d.items()]

    def tau_pairs(self) -> list[tuple[str, str, float]]:
        """The metric pairs Appendix B tabulates, with Kendall's τ between their rankings."""
        tau, vkey = self.audit["kendall_tau"], self.vkey
        pairs = [
            ("accuracy", f"{vkey}/accuracy"),
            ("macro_f1", f"{vkey}/accuracy"),
            ("accuracy", "macro_f1"),
            ("macro_f1", f"recall/{self.audit['rarest_class']}"),
            ("macro_f1", "log_loss"),
        ]
        return [(a, b, tau[a][b]) for a, b in pairs if a in tau and b in tau]


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.globals.update(HELPERS, TOP=TOP, Path=Path)


def render(
    *,
    title: str,
    meta: dict,
    weights: dict,
    metrics: dict[str, dict],
    audit: dict,
    runs: dict | None,
    mlflow_url: str | None,
    provenance: Provenance,
    images: dict[str, bytes],
) -> str:
    """The report's HTML text. ``images`` maps the figures' names (:data:`pipeline.artifacts.FIGURES`'
    keys, ``gamma_<loss>`` and ``alpha_<family>``) to PNG bytes; a missing one is left out."""
    r = Run(meta, weights, metrics, audit, images)
    return _ENV.get_template("page.html").render(
        title=title, r=r, runs=runs, mlflow_url=mlflow_url, provenance=provenance
    )
