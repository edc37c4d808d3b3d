"""The stakeholder report: one self-contained, deterministic HTML page per pipeline run.

:func:`render` turns plain data (this run's metrics, audit, data description, provenance) and
PNG images into HTML text. Nothing here reads files, the clock or the environment: the same
inputs give the same bytes. Images are embedded as data URIs; there are no scripts, fonts or
external resources, and the page prints.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2rem auto;padding:0 1.2rem;color:#1d2430;line-height:1.5}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2rem;margin-top:2.2rem}
.sub{color:#5b6675}.pick{background:#e8f4ea}.bad{color:#a3362f}.note{background:#f4f6f9;border-left:4px solid #7a8ca5;
padding:.6rem .9rem;margin:1rem 0}table{border-collapse:collapse;margin:.8rem 0;font-size:.88rem}
th,td{border:1px solid #d4dbe3;padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f0f3f7}
table.num td:not(:first-child),table.num th:not(:first-child){text-align:right;white-space:nowrap}img{max-width:100%;height:auto;display:block;margin:.6rem 0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}code{background:#f0f3f7;padding:0 .25rem}
td{overflow-wrap:anywhere}table{max-width:100%}dt{font-weight:600}dd{margin:0 0 .5rem 1rem}.small{font-size:.8rem}
@media print{body{max-width:none;margin:0}h2{break-after:avoid}img,table{break-inside:avoid}.pair{display:block}}
"""


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
    evidence: dict[str, str] = field(default_factory=dict)  # model -> sha256 of its predictions file


def _e(x: Any) -> str:
    return html.escape(str(x))


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else _e(x)


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None,
           numeric: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    kind = ' class="num"' if numeric else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _ci(metrics: dict, name: str) -> str:
    ci = metrics.get("ci", {}).get(name)
    return f"{_f(metrics[name])} [{_f(ci['low'])}, {_f(ci['high'])}]" if ci else _f(metrics[name])


def _signed(change: dict) -> str:
    """``+0.011 [-0.017, +0.037]``; adding 0.0 turns a rounded -0.000 into +0.000."""
    v = [round(change[k], 3) + 0.0 for k in ("value", "low", "high")]
    return f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"


def _run_link(run_id: str, exp_id: str, base: str | None) -> str:
    if not base:
        return f"<code>{_e(run_id)}</code>"
    url = f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
    return f'<a href="{_e(url)}"><code>{_e(run_id)}</code></a>'


@dataclass(frozen=True)
class _Run:
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
    def view(self) -> dict:
        return self.audit["views"]["reweighted"]

    @property
    def vkey(self) -> str:
        return self.view["key"]

    @property
    def pick(self) -> str | None:
        return self.audit["policy"]["pick"]

    @property
    def train(self) -> dict[str, int]:
        return self.meta["counts"]["train"]

    @property
    def order(self) -> list[str]:
        """Classes from the most to the least frequent in training."""
        return sorted(self.classes, key=lambda c: (-self.train[c], self.classes.index(c)))


def _question(r: _Run) -> list[str]:
    sizes, train = r.meta["sizes"], r.train
    return [
        "<h2>1. The question and the data</h2>",
        "<p>When one class is common and another rare, a model can look accurate while missing the rare "
        "class almost entirely. This page compares models trained with different losses under many "
        "metrics, and records which model the team's declared policy picks, and why.</p>",
        f"<p>{len(r.classes)} classes. Training split: {sizes['train']} rows, {_imbalance(r.meta)} — the most "
        f"frequent class has {max(train.values())} samples, the rarest (<b>{_e(r.audit['rarest_class'])}</b>) "
        f"{min(train.values())}, a ratio ρ = n<sub>max</sub>/n<sub>min</sub> of "
        f"{_f(r.meta['train_imbalance_ratio'], 1)}. Validation: "
        f"{sizes['val']} rows; test: {sizes['test']} rows, kept at the source's class balance. "
        f"Class weights: <code>{_e(r.weights['scheme'])}</code>.</p>",
        _img(r.images["distribution"], "class distribution per split"),
        *_columns(r.meta),
    ]


def _imbalance(meta: dict) -> str:
    """What was done to the training split's class balance, in words."""
    rho = meta["params"].get("imbalance_ratio", 1)
    if rho == 1:
        return "kept at the data's own class balance (its natural imbalance is measured below)"
    return f"made long-tailed (ρ = {_f(rho, 1)} imposed with an exponential profile)"


def _columns(meta: dict) -> list[str]:
    """What each raw column became (prepare's decisions), plain numeric columns counted once."""
    columns = meta.get("columns", [])
    plain = [c for c in columns if c["kind"] == "numeric" and c["detail"] == "numeric"]
    others = [c for c in columns if c not in plain]
    parts = [f"<p>Features: {meta['n_features']} after preprocessing, from {len(columns)} raw columns"
             + (f"; {len(plain)} numeric columns used as they are" if plain else "") + "."
             + (f" {meta['rows_without_label']} rows without a label were dropped." if meta.get("rows_without_label") else "")
             + "</p>"]
    if others:
        rows = [[f"<code>{_e(c['name'])}</code>", _e(c["kind"]), _e(c["detail"])] for c in others]
        parts.append(_table(["column", "became", "why"], rows))
    return parts


def _decision(r: _Run) -> list[str]:
    policy, pick, rarest, vkey = r.audit["policy"], r.pick, r.audit["rarest_class"], r.vkey
    cons = ", ".join(policy["constraints"]) or "none"
    parts = ["<h2>2. The decision</h2>",
             f"<p>Declared policy: pick the model with the best <b>{_e(policy['metric'])}</b> on the "
             f"<b>{_e(policy['view'].replace('_', ' '))}</b> view; constraints: {_e(cons)}.</p>"]
    if pick:
        m = r.metrics[pick]
        parts.append(
            f'<div class="note">Chosen model: <b>{_e(pick)}</b>. Macro-F1 {_ci(m, "macro_f1")}, '
            f'balanced accuracy {_ci(m, "balanced_accuracy")}, accuracy {_ci(m, "accuracy")}; '
            f"recall of the rarest class {_ci(m, f'recall/{rarest}')} "
            f"(95% bootstrap intervals in brackets). Under the {_e(vkey.replace('_', ' '))} view: "
            f"accuracy {_f(m[vkey]['accuracy'])}, macro-F1 {_f(m[vkey]['macro_f1'])}.</div>")
    else:
        parts.append(f'<div class="note bad">No model meets the policy: {_e(policy["summary"])}. '
                     "The constraints or the candidates need revisiting before anything ships.</div>")
    if r.audit["disagreements"]:
        rows = [[_e(d["metric"]), _e(d["winner"]), _e(d["reason"])] for d in r.audit["disagreements"]]
        parts.append("<p>Other metrics would have picked other models:</p>")
        parts.append(_table(["metric", "would pick", "why the policy's pick differs"], rows))
    return parts


def _leaderboard(r: _Run) -> list[str]:
    names, vkey, rarest = r.audit["metrics"], r.vkey, r.audit["rarest_class"]
    parts = ["<h2>3. Leaderboard</h2>",
             f"<p>Every model under every metric on the test split (rank in brackets, 1 = best; lower is better "
             f"for log_loss and ece). Columns prefixed <code>{_e(vkey)}/</code> reweight the test split: "
             f"{_e(r.view['description'])}.</p>"]
    half = (len(names) + 1) // 2
    for chunk in (names[:half], names[half:]):
        rows, marks = [], []
        for entry in r.audit["leaderboard"]:
            model = entry["model"]
            cells = [f"<b>{_e(model)}</b>" if model == r.pick else _e(model)]
            cells += [f"{_f(entry['values'][n])}&nbsp;<span class='small'>({entry['ranks'][n]})</span>" for n in chunk]
            rows.append(cells)
            marks.append("pick" if model == r.pick else "")
        parts.append(_table(["model", *chunk], rows, marks, numeric=True))
    parts.append(_img(r.images["ranks"], "rank of each model under each metric"))
    tau = r.audit["kendall_tau"]
    pairs = [("accuracy", f"{vkey}/accuracy"), ("macro_f1", f"{vkey}/accuracy"), ("accuracy", "macro_f1"),
             ("macro_f1", f"recall/{rarest}"), ("macro_f1", "log_loss")]
    tau_rows = [[_e(a), _e(b), _f(tau[a][b], 2) if tau[a][b] is not None else "–"] for a, b in pairs
                if a in tau and b in tau]
    parts.append("<p>Where metrics disagree: Kendall's τ between the model rankings (1 = same order, 0 = unrelated).</p>")
    parts.append(_table(["metric", "metric", "τ"], tau_rows))
    return parts


def _paradox(r: _Run) -> list[str]:
    parts, vkey = ["<h2>4. Why accuracy is not enough</h2>"], r.vkey
    paradox = r.audit.get("accuracy_paradox")
    if paradox:
        parts.append(
            f"<p>A model that always answers the most frequent training class learns nothing, yet scores "
            f"accuracy <b>{_f(paradox[f'accuracy_{vkey}'])}</b> on the {_e(vkey.replace('_', ' '))} view "
            f"(<b>{_f(paradox['accuracy_held_out'])}</b> on the test split as held out) while its macro-F1 is "
            f"<b>{_f(paradox[f'macro_f1_{vkey}'])}</b> ({_f(paradox['macro_f1_held_out'])}). Macro-F1 weighs "
            "every class equally, so missing the rare classes shows.</p>")
    else:
        parts.append("<p>The majority baseline was not trained in this run (<code>baselines.models</code>).</p>")
    return parts


def _trade(r: _Run) -> list[str]:
    parts = ["<h2>5. What weighting and focal loss buy</h2>"]
    trade = r.audit.get("tail_trade")
    if trade:
        parts.append(
            f"<p>Against plain cross-entropy (<code>ce</code>), the change in mean recall and precision over the "
            f"tail classes ({_e(', '.join(trade['tail_classes']))}: training count below the median), with "
            "paired 95% bootstrap intervals. A change counts only when its interval excludes zero.</p>")
        rows = [[_e(model), _signed(t["tail_recall_change"]), _signed(t["tail_precision_change"]), _e(t["verdict"])]
                for model, t in trade["models"].items()]
        parts.append(_table(["model", "tail recall change", "tail precision change", "verdict"], rows))
    if "per_class" in r.images:
        parts.append(_img(r.images["per_class"], "recall and precision per class"))
        shown = list(dict.fromkeys(m for m in ("ce", "weighted_ce", r.pick) if m in r.metrics))
        rows = [[_e(c), str(r.train[c])] + [f"{_f(r.metrics[m][f'recall/{c}'])} / {_f(r.metrics[m][f'precision/{c}'])}"
                                            for m in shown] for c in r.order]
        parts.append(_table(["class", "training samples", *[f"{m}: recall / precision" for m in shown]], rows))
    return parts


def _confusion(r: _Run) -> list[str]:
    parts = ["<h2>6. Where the errors go</h2>",
             "<p>The chosen model beside plain cross-entropy (<code>ce</code>). Rows are the true class, columns "
             "the predicted one; each cell is the share of the true class, so the diagonal is each class's "
             "recall and the off-diagonal cells show which classes get confused.</p>"]
    if "pick_vs_ce_confusion" in r.images:
        parts.append(_img(r.images["pick_vs_ce_confusion"], "confusion matrices of the chosen model and of ce"))
    return parts


def _gamma(r: _Run) -> list[str]:
    parts = ["<h2>7. The focal-loss γ sweep</h2>"]
    if "focal_shape" in r.images:
        parts.append("<p>Focal loss multiplies cross-entropy by (1 − p)<sup>γ</sup>, p the probability of the true "
                     "class: larger γ stops easy, confident samples from dominating training.</p>")
        parts.append(_img(r.images["focal_shape"], "focal loss against p for each gamma"))
    gamma_imgs = sorted(k for k in r.images if k.startswith("gamma_"))
    parts += [_img(r.images[key], f"test metrics against gamma ({key[6:]})") for key in gamma_imgs]
    if not gamma_imgs:
        parts.append("<p>No loss was trained over a γ sweep in this run.</p>")
    return parts


def _glossary(r: _Run) -> list[str]:
    parts = ["<h2>8. How to read this</h2><dl>"]
    for term, text in (
        ("Recall of a class", "Of the cases truly in the class, the share the model finds."),
        ("Precision of a class", "Of the cases the model puts in the class, the share that belong there."),
        ("Accuracy", "Share of all cases classified correctly; dominated by the common classes."),
        ("Micro-F1", "With one label per case, equal to accuracy; also dominated by common classes."),
        ("Macro-F1", "The average of the per-class F1 scores (a balance of precision and recall): every class "
                     "counts the same, however rare."),
        ("Balanced accuracy", "The average recall over classes."),
        ("Interval [a, b]", "95% bootstrap interval: resampling the test cases, the score fell in this range "
                            "95% of the time. Overlapping intervals mean the difference may be chance."),
        (f"{r.vkey.replace('_', ' ')} view", r.view["description"] + "."),
        ("Class weights, focal loss", "Training remedies that make mistakes on rare classes cost more; they "
                                      "usually raise rare-class recall and lower precision."),
    ):
        parts.append(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>")
    parts.append("</dl>")
    return parts


def _provenance(r: _Run, provenance: Provenance, runs: dict | None, mlflow_url: str | None) -> list[str]:
    parts = ["<h2>9. Provenance</h2>", _table(["item", "value"], [
        ["git commit", f"<code>{_e(provenance.commit)}</code>"],
        ["uncommitted changes (code or params)", _e(provenance.dirty)],
        ["commit date", _e(provenance.date)],
        ["data digest (sha256 of the prepared splits)", f"<code>{_e(r.meta['digest'])}</code>"],
        ["reproduce", f"<code>{_e(provenance.command)}</code>"],
    ])]
    if runs:
        rows = [["evaluation run", _run_link(runs["evaluation_run"], runs["experiment_id"], mlflow_url)]]
        rows += [[_e(m), _run_link(i, runs["experiment_id"], mlflow_url)] for m, i in runs["models"].items()]
        parts.append(f"<p>MLflow runs (experiment <code>{_e(runs['experiment'])}</code>, store "
                     f"<code>{_e(runs['tracking_uri'])}</code>):</p>")
        parts.append(_table(["model", "run id"], rows))
    if provenance.evidence:
        parts.append("<p>The test predictions every number on this page comes from (sha256 of each model's "
                     "predictions file under <code>reports/predictions/</code>):</p>")
        parts.append(_table(["model", "sha256"], [[_e(m), f"<code>{_e(h)}</code>"] for m, h in provenance.evidence.items()]))
    stage_rows = [[_e(stage), "<br>".join(f"<code>{_e(p)}</code> {_e(h[:12])}" for p, h in outs.items())]
                  for stage, outs in provenance.stages.items()]
    parts.append("<p>Outputs of every stage before this report, as recorded in <code>dvc.lock</code> (md5, "
                 "first 12 digits):</p>")
    parts.append(_table(["stage", "outputs"], stage_rows))
    parts.append("<p>Parameters as the stages used them:</p>")
    parts.append(_table(["parameter", "value"], [[_e(k), f"<code>{_e(v)}</code>"] for k, v in provenance.params.items()]))
    parts.append(_table(["package", "version"], [[_e(k), _e(v)] for k, v in provenance.packages.items()]))
    return parts


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
    keys and ``gamma_<loss>``) to PNG bytes."""
    r = _Run(meta, weights, metrics, audit, images)
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">Data <b>{_e(meta["source"])}</b> · commit <code>{_e(provenance.commit[:12])}</code>'
        f"{' (with uncommitted changes)' if provenance.dirty == 'true' else ''} · {_e(provenance.date)}</p>",
        *_question(r), *_decision(r), *_leaderboard(r), *_paradox(r), *_trade(r), *_confusion(r), *_gamma(r),
        *_glossary(r), *_provenance(r, provenance, runs, mlflow_url),
    ]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
