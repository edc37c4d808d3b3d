"""The report's evidence for the decision, one function per section, and the HTML helpers the
whole page shares.

Each section function takes the run (:class:`Run`) and returns a :class:`Section`: how the pick
was made, selection optimism, the top candidates, what other metrics would pick, whether the
special loss was needed, the tail/head trade, the prior shift, the loss–metric agreement.
Nothing here reads files, the clock or the environment. :mod:`pipeline.report` holds the first
screen, the background sections and the appendix, and assembles the page.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any

from pipeline.metrics import lower_is_better

# How a decision rule reads in a sentence (pipeline.decision.RULES).
RULE_WORDS = {
    "posthoc_adjust": "post-hoc logit adjustment",
    "thresholds": "per-class thresholds",
    "cost": "cost-based decisions",
    "anomaly": "an anomaly detector for the rarest class",
}
# The baselines as a stakeholder reads them (pipeline.config.BASELINES).
BASELINE_WORDS = {"majority": "always the most frequent training class",
                  "logreg_balanced": "a class-balanced logistic regression",
                  "xgboost": "gradient-boosted trees (XGBoost)"}


def loss_words(loss: str) -> str:
    """A loss as a stakeholder reads it (:mod:`pipeline.loss_specs`' words), its name beside it."""
    from pipeline.loss_specs import LOSS_SPECS

    spec = LOSS_SPECS.get(loss)
    return f"{spec.words} ({loss})" if spec and spec.words else f"the {loss} loss"


METRIC_WORDS = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
    "micro_f1": "micro-F1", "weighted_f1": "weighted F1", "mcc": "MCC", "cohen_kappa": "Cohen's κ",
    "geometric_mean": "geometric-mean recall", "roc_auc_ovr": "ROC AUC (one vs rest)", "pr_auc": "PR AUC",
    "log_loss": "log-loss", "ece": "ECE", "expected_cost": "expected cost",
}
TOP = 5  # candidates the body's table shows by the policy's order (plus the other metrics' picks)


# --- HTML helpers ---------------------------------------------------------------------------------

def esc(x: Any) -> str:
    return html.escape(str(x))


def num(x: Any, digits: int = 3) -> str:
    """``0.917``; None (an undefined value) is said as ``undefined``."""
    if x is None:
        return "undefined"
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else esc(x)


def ci(value: float | None, low: float | None, high: float | None, sep: str = " ") -> str:
    """``0.917 [0.886, 0.942]``, or the value alone when it has no interval; with ``sep="<br>"``
    the interval goes on a second, smaller line (for wide tables)."""
    if low is None or high is None:
        return num(value)
    interval = f"[{num(low)}, {num(high)}]"
    return num(value) + (f"<br><span class='small'>{interval}</span>" if sep == "<br>" else f"{sep}{interval}")


def signed(change: dict, sep: str = " ") -> str:
    """``+0.070 [+0.041, +0.103]``; a None value (a class never predicted) is ``undefined``;
    adding 0.0 turns a rounded -0.000 into +0.000."""
    if change["value"] is None:
        return "undefined"
    v = [None if change[k] is None else round(change[k], 3) + 0.0 for k in ("value", "low", "high")]
    return f"{v[0]:+.3f}" + (f"{sep}[{v[1]:+.3f}, {v[2]:+.3f}]" if v[1] is not None and v[2] is not None else "")


def stacked(change: dict) -> str:
    """:func:`signed` with the interval on a second, smaller line (for wide tables)."""
    return signed(change, "<br><span class='small'>").replace("]", "]</span>") if change["low"] is not None \
        else signed(change)


def between(change: dict) -> str:
    """``+0.070 (95% interval +0.041 to +0.103)`` for sentences."""
    if change["value"] is None:
        return "undefined"
    v = [None if change[k] is None else round(change[k], 3) + 0.0 for k in ("value", "low", "high")]
    return f"{v[0]:+.3f}" + (f" ({v[1]:+.3f} to {v[2]:+.3f})" if v[1] is not None and v[2] is not None else "")


def name(x: str) -> str:
    """A candidate's name in a cell or a sentence: never broken across lines."""
    return f'<span class="nw">{esc(x)}</span>'


def names(xs: list[str]) -> str:
    return ", ".join(name(x) for x in xs)


def table(headers: list[str], rows: list[list[str]], *, marks: list[str] | None = None, numeric: bool = False,
          labels: int = 1, text: tuple[int, ...] = ()) -> str:
    """A table in its own horizontal scroll box; cells are HTML already, headers are text. The
    first ``labels`` columns hold names and never wrap; ``text`` columns hold sentences (they
    wrap); with ``numeric`` the other columns are numbers (right-aligned, never wrapped)."""
    def kind(j: int) -> str:
        return "label" if j < labels else "text" if j in text else "n" if numeric else ""

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{marks[i]}"' if marks and marks[i] else ""
        cells = "".join(f'<td class="{kind(j)}">{c}</td>' if kind(j) else f"<td>{c}</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure(images: dict[str, bytes], key: str, alt: str) -> str:
    """The PNG ``key`` as a data URI; empty when this run did not draw it."""
    if key not in images:
        return ""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(images[key]).decode()}">'


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


@dataclass(frozen=True)
class Section:
    id: str  # the anchor the first screen links to
    title: str
    body: list[str]


@dataclass(frozen=True)
class Run:
    """What every section reads."""

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
    def reference(self) -> str | None:
        return self.audit["reference"]["model"]

    def rep(self, model: str) -> str:
        """The representative of ``model``'s group of identical candidates (itself if none)."""
        return next((r for r, members in self.audit["groups"].items() if model in members), model)

    def duplicates(self, models: list[str]) -> dict[str, str]:
        """``model -> representative`` for the models that only repeat another one in ``models``."""
        return {m: self.rep(m) for m in models if self.rep(m) != m and self.rep(m) in models}


# --- sections -------------------------------------------------------------------------------------

def how_picked(r: Run) -> Section:
    p, boot = r.policy, r.policy["bootstrap"]
    cons = ", ".join(p["constraints"])
    total = sum(len(e["members"]) for e in r.audit["leaderboard"])
    rules = sorted({m.partition("+")[2] for m in r.metrics if "+" in m},
                   key=lambda k: (list(RULE_WORDS).index(k) if k in RULE_WORDS else len(RULE_WORDS), k))
    fitted = (f", and decision rules fitted on validation on top of a model's probabilities "
              f"({esc(', '.join(RULE_WORDS.get(k, k) for k in rules))})" if rules else "")
    body = [
        f"<p>The declared policy: the best <b>{esc(r.primary_words)}</b> on the validation split"
        + (f", among the candidates that meet <code>{esc(cons)}</code>" if cons else ", with no constraints")
        + f". {len(p['eligible'])} of {len(r.audit['leaderboard'])} distinct candidates were eligible. "
          f"Outcome: {esc(p['summary'])}.</p>",
        "<ul>"
        "<li><b>Selection reads no test data.</b> The choice among candidates, and the fitting of every decision "
        "rule, read the validation split only; early stopping reads a slice carved from the training split, so "
        "validation scores do not flatter the networks that stopped on them. The test split is read once per "
        "candidate, for its estimate.</li>"
        f"<li><b>Candidates</b>: each trained model as it is (argmax){fitted}: {total} candidates. "
        f"Candidates whose decisions are identical on validation form one group, represented by one of them: "
        f"{len(r.audit['leaderboard'])} distinct.</li>"
        "<li><b>Cross-fitting.</b> A rule scored on the rows it was fitted on looks better than it is. A rule's "
        "validation score is therefore out-of-fold: validation is split into folds, and each fold is decided by "
        "the rule fitted on the others. The test split is decided by the rule fitted on all of validation.</li>"
        f"<li><b>Ties</b> are broken by {esc(p['tie_break'])}.</li>"
        f"<li><b>P(best)</b> is the probability this candidate is the policy's pick over {boot['resamples']} "
        f"bootstrap resamples of the validation split (seed {boot['seed']}): how often the choice would come out "
        "the same on a validation split drawn again.</li></ul>",
    ]
    if p["violations"]:
        rows = [[name(m), esc("; ".join(v))] for m, v in p["violations"].items()]
        body += ["<p>Candidates that fail the constraints on validation:</p>", table(["candidate", "fails"], rows)]
    return Section("how", "How the pick was made", body)


def optimism(r: Run) -> Section:
    est, ts = r.audit["estimate"], r.audit["test_selection"]
    body = ["<p>Choosing the best of many candidates on one split flatters the winner's score there: part of its "
            "lead is luck of that sample (the winner's curse). The validation score is the one the choice used; "
            "the test score is an unbiased estimate because the test split played no part.</p>"]
    if est:
        flattered = -est["optimism"] if lower_is_better(r.policy["metric"]) else est["optimism"]
        said = (f"its validation score flattered it by {num(flattered)}" if flattered > 0 else
                f"its validation score was {num(-flattered)} less favourable than the test estimate")
        body.append(f"<p>The pick, {name(r.pick)}, scored {num(est['validation'])} on validation and "
                    f"{num(est['test'])} on test: {said} (validation − test = "
                    f"{signed({'value': est['optimism'], 'low': None, 'high': None})}).</p>")
    if ts["pick"]:
        same = " — the same candidate" if ts["pick"] == r.pick else ""
        body.append(f'<div class="note">Warning example, never used: ranking by the test split would have '
                    f"picked {name(ts['pick'])}{same} (test {num(ts['its_test'])}, validation "
                    f"{num(ts['its_validation'])}). A test score used to choose is no longer an estimate: it "
                    "would be biased upward for the same reason, which is why the test split never chooses.</div>")
    return Section("optimism", "Selection optimism", body)


def _shown(r: Run) -> dict[str, list[str]]:
    """The body's candidates (representatives) with why each is shown, in the policy's order."""
    why: dict[str, list[str]] = {}
    for e in r.audit["leaderboard"][:TOP]:
        why.setdefault(e["model"], []).append(f"top {TOP} by the policy")
    for d in r.audit["disagreements"]:
        if d["metric"] in shown_metrics(r.audit["metrics"], r.vkey):
            why.setdefault(d["winner"], []).append(f"best on {d['metric']}")
    if r.reference:
        why.setdefault(r.rep(r.reference), []).append("the reference (" + r.audit["reference"]["why"] + ")")
    return {m: why[m] for m in r.board if m in why}


def top_candidates(r: Run) -> Section:
    order = {m: i + 1 for i, m in enumerate(r.board)}
    rows, marks = [], []
    constrained = bool(r.policy["constraints"])
    for m, why in _shown(r).items():
        e = r.board[m]
        others = [x for x in e["members"] if x != m]
        row = [str(order[m]), f"<b>{name(m)}</b>" if m == r.pick else name(m), esc("; ".join(why)),
               num(e["validation"]), ci(e["test"], e["test_low"], e["test_high"], "<br>"), num(e["gap"]),
               num(e["p_best"]), str(e["parameters"]), f"<span class='small'>{names(others)}</span>" if others else "–"]
        if constrained:
            row.append(esc("; ".join(e["violations"])) or "meets them")
        rows.append(row)
        marks.append("pick" if m == r.pick else "")
    headers = ["#", "candidate", "shown because", f"validation {r.primary}", f"test {r.primary} [{r.level}]",
               "gap", "P(best)", "fitted parameters", "identical candidates"]
    body = [f"<p>The first {TOP} candidates in the policy's order, the ones other metrics would pick, and the "
            f"reference. # is the place in the policy's order (the full list is in appendix A); the test estimate "
            f"has its {r.level} bootstrap interval; gap = validation − test; P(best) is defined above; identical "
            "candidates make the same decisions on validation and stand behind the one shown.</p>",
            table(headers + (["constraints"] if constrained else []), rows, marks=marks, numeric=True, labels=2,
                  text=(2, 8, 9))]
    return Section("top", "The top candidates", body)


def other_metrics(r: Run) -> Section:
    shown = shown_metrics(r.audit["metrics"], r.vkey)
    rows = [[esc(d["metric"]), name(d["winner"]), esc(d["reason"])]
            for d in r.audit["disagreements"] if d["metric"] in shown]
    body = ["<p>Each metric below, used as the policy instead, would pick another candidate on validation. "
            "The policy decides; these show what the choice of metric changes.</p>"]
    body.append(table(["metric", "would pick", "why the policy's pick differs"], rows, labels=2) if rows
                else "<p>Every decision metric picks the same candidate on validation.</p>")
    beside = r.audit.get("beside") or {}
    if beside:
        items = "".join(f"<li>{esc(metric_words(m))}: the pick {num(b['pick'])}, the best {num(b['best'])} "
                        f"({name(b['best_model'])})</li>" for m, b in beside.items())
        body.append("<p>Shown beside, not as rival picks: these judge the probabilities, not the decisions "
                    f"(lower is better), on validation:</p><ul>{items}</ul>")
    return Section("metrics", "What other metrics would pick", body)


def special_loss(r: Run) -> Section:
    s = r.audit.get("special_loss")
    if not s:
        return Section("special", "Was the special loss needed?", [
            "<p>Not asked in this run: it needs a special training loss and a decision rule on the reference "
            "model among the candidates.</p>"])
    rows = [[name(s["remedy"]), "best special training loss (argmax)", num(s["remedy_validation"]),
             num(s["remedy_test"])],
            [name(s["posthoc"]), f"best post-hoc rule on {esc(r.audit['reference']['loss'])}",
             num(s["posthoc_validation"]), num(s["posthoc_test"])]]
    return Section("special", "Was the special loss needed?", [
        "<p>A special loss changes training; the cheaper alternative keeps plain cross-entropy and fits a decision "
        "rule on validation. Each side's best is chosen on validation and the two are compared on the same test "
        f"cases with paired {r.level} intervals.</p>",
        f'<div class="note">{esc(s["answer"][:1].upper() + s["answer"][1:])}.</div>',
        table(["candidate", "role", f"validation {s['metric']}", f"test {s['metric']}"], rows, numeric=True, labels=2),
        f"<p>Special loss minus post-hoc rule on test: {esc(s['metric'])} {signed(s['difference'])}, mean tail "
        f"recall {signed(s['tail_recall_change'])}, mean tail precision {signed(s['tail_precision_change'])}.</p>",
    ])


def _never_predicted(r: Run, model: str) -> list[str]:
    """Classes ``model`` never predicts on test (no true and no false positives): no precision."""
    m = r.metrics[model]
    return [c for c in r.classes if m[f"recall/{c}"] == 0 and m[f"fpr/{c}"] == 0 and m[f"support/{c}"] > 0]


def _undefined_words(model: str, classes: list[str]) -> str:
    many = len(classes) > 1
    return (f"{name(model)} never predicts class{'es' if many else ''} {esc(', '.join(classes))} on test: "
            f"its precision there is undefined, not 0.")


def tail_trade(r: Run) -> Section:
    t = r.audit.get("tail_trade")
    body = []
    if t:
        ref = t["reference"]
        models = [m for m in t["models"] if m != ref]
        dup = r.duplicates([ref, *models])
        body.append(f"<p>Against {name(ref)}: tail classes (training count below the median) "
                    f"{esc(', '.join(t['tail_classes']))}; head classes {esc(', '.join(t['head_classes']))}. Each "
                    f"cell is the change in the mean over the group, with its paired {t['level']:.0%} bootstrap "
                    "interval; a change counts only when its interval excludes zero. What a remedy gains on the tail "
                    "it usually pays for on the head: the head and accuracy columns are that price.</p>")
        undefined = [(ref, t["reference_undefined_precision"])] + [(m, t["models"][m]["undefined_precision"])
                                                                   for m in models if m not in dup]
        said = [_undefined_words(m, cs) for m, cs in undefined if cs]
        if said:
            body.append(f'<p class="note">{" ".join(said)}</p>')
        cols = ["tail_recall_change", "tail_precision_change", "head_recall_change", "head_precision_change",
                "accuracy_change"]
        rows = [[f"<b>{name(m)}</b>" if m == r.pick else name(m),
                 *(stacked(t["models"][m][k]) if k in t["models"][m] else "–" for k in cols),
                 esc(t["models"][m]["verdict"])] for m in models if m not in dup]
        body.append(table(["model", "tail recall", "tail precision", "head recall", "head precision", "accuracy",
                           "verdict"], rows, numeric=True, text=(6,)))
        if dup:
            body.append(f"<p class='small'>Left out as identical to the one shown: "
                        f"{', '.join(f'{name(m)} (= {name(d)})' for m, d in dup.items())}.</p>")
    body.append(figure(r.images, "per_class", "recall and precision per class"))
    shown = list(dict.fromkeys(m for m in (r.reference, r.pick) if m in r.metrics))
    if shown:
        never = {m: _never_predicted(r, m) for m in shown}
        rows = [[esc(c), str(r.train[c])] + [
            f"{num(r.metrics[m][f'recall/{c}'])} / "
            + ("undefined" if c in never[m] else num(r.metrics[m][f'precision/{c}'])) for m in shown]
            for c in r.classes]
        body.append(table(["class", "training samples", *[f"{m}: recall / precision" for m in shown]], rows,
                          numeric=True))
        said = [_undefined_words(m, never[m]) for m in shown if never[m]]
        if said:
            body.append(f"<p>{' '.join(said)}</p>")
    return Section("trade", "What the tail gains and the head pays", body)


def prior_shift(r: Run) -> Section:
    s = r.audit.get("prior_shift")
    if not s:
        return Section("shift", "If the class balance shifts", ["<p>Not computed in this run.</p>"])
    assumption = s["assumption"]
    body = [f"<p>The policy re-run on validation under other class priors, from the validation split's own to "
            f"the training split's. The assumption: {esc(assumption)}. If deployment data differ in more than "
            "their class balance, these numbers do not hold.</p>",
            figure(r.images, "prior_shift", "the pick and the top candidates' test scores as the class prior shifts")]
    first = s["points"][0]["pick"] if s["points"] else None
    if s["changes_at"]:
        c = s["changes_at"]
        body.append(f'<div class="note">The pick changes: from {name(r.pick or "none")} to '
                    f"{name(c['pick'] or 'none')} at the prior {esc(c['label'])}.</div>")
    else:
        body.append(f'<div class="note">The pick stays {name(first or "none")} at every prior tried.</div>')
    rows = [[esc(p["label"]), name(p["pick"] or "none"), f"{p['val_ess']:.0f} / {p['test_ess']:.0f}",
             num(p["test"].get(r.pick)) if r.pick in p["test"] else "–"] for p in s["points"]]
    body.append(table(["class prior", "pick on validation", "effective rows (validation / test)",
                       f"test {s['metric']} of {r.pick}"], rows, numeric=True, labels=2))
    body.append("<p class='small'>Effective rows: Kish's effective sample size of the reweighted split; the fewer, "
                "the noisier the number.</p>")
    return Section("shift", "If the class balance shifts", body)


def loss_metric(r: Run) -> Section:
    a = r.audit.get("loss_metric_agreement")
    if not a or not a["models"]:
        return Section("agreement", "Does lowering the loss raise the metric?",
                       ["<p>No network recorded a per-epoch history in this run.</p>"])
    body = [f"<p>Per trained network: Spearman's ρ between each epoch's fall in validation loss and its rise in "
            f"{esc(metric_words(a['metric']))} (1: they move together; near 0 or below: lowering the loss does not "
            "raise the metric), and the epoch each would stop at, against the epoch early stopping chose on its "
            "slice of the training split.</p>"]
    if a["requested"] != a["metric"]:
        body.append(f"<p>The policy's {esc(a['requested'])} reads probabilities, which the per-epoch records do "
                    f"not keep: {esc(a['metric'])} stands in.</p>")
    body.append(figure(r.images, "agreement_curves", "validation loss and metric per epoch"))
    body.append("<p class='small'>In the figure: validation loss in red, the metric in blue; vertical lines at the "
                "epoch chosen (solid), the lowest loss (dashed) and the best metric (dotted).</p>")
    dup = r.duplicates(list(a["models"]))
    rows = [[name(m), esc(v["loss"]), num(v["spearman"], 2), str(v["epoch_by_loss"]), str(v["epoch_by_metric"]),
             str(v["epoch_chosen"]), str(v["epochs"])] for m, v in a["models"].items() if m not in dup]
    body.append(table(["model", "loss", "Spearman ρ", "epoch: lowest loss", f"epoch: best {a['metric']}",
                       "epoch chosen", "epochs run"], rows, numeric=True, labels=2))
    return Section("agreement", "Does lowering the loss raise the metric?", body)


def weight_strength(r: Run) -> Section:
    """The class-weight strength curve (:mod:`pipeline.strength`): per family, what the audit says,
    the table of alphas and the figure."""
    curves = r.audit.get("weight_strength") or {}
    body = ["<p>How strong should the class weights be? Each weighted model here trains with "
            "w<sub>c</sub> ∝ n<sub>c</sub><sup>−α</sup> (n<sub>c</sub> the training count of class c), "
            "normalised so that the weighted count equals the row count: α = 0 is no weighting (the plain loss), "
            "α = 0.5 the inverse square root, α = 1 scikit-learn's <code>balanced</code> weights. Every α is a "
            "candidate like any other. The peak and the range within noise of it read the validation split; "
            "the test column is each point's estimate.</p>"]
    if not curves:
        body.append("<p>No loss was trained over <code>train.alphas</code> in this run: the weighted losses used "
                    "<code>weights.scheme</code>.</p>")
    for family, c in curves.items():
        metric = c["metric"]
        body.append(f"<p>{esc(c['summary'])}</p>")
        flat = set(c["flat_top"]["alphas"])
        rows = []
        for row in c["rows"]:
            val, test = row["val"], row["test"]
            mark = "peak" if row["alpha"] == c["peak"]["alpha"] else ("within noise" if row["alpha"] in flat else "")
            rows.append([f"{row['alpha']:g}", names(row["models"]),
                         ci(val[metric]["value"], val[metric]["low"], val[metric]["high"], "<br>"),
                         ci(test[metric]["value"], test[metric]["low"], test[metric]["high"], "<br>"),
                         *(ci(test[k]["value"], test[k]["low"], test[k]["high"], "<br>")
                           for k in ("macro_f1", "tail_recall", "tail_precision") if k != metric),
                         mark])
        extra = [k.replace("_", " ") + " (test)" for k in ("macro_f1", "tail_recall", "tail_precision") if k != metric]
        words = metric_words(metric, r.vkey)
        body.append(table(["α", "model", f"{words} (validation)", f"{words} (test)", *extra, ""], rows,
                          numeric=True, labels=2, text=(len(extra) + 4,)))
        body.append(f"<p class='small'>Tail classes (training count below the median): "
                    f"{esc(', '.join(c['tail_classes']))}.</p>")
        body.append(figure(r.images, f"alpha_{family}", f"metrics against the weight strength alpha ({family})"))
    return Section("alpha", "How strong the class weights should be: the α curve", body)
