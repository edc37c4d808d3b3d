"""The stakeholder report: one self-contained, deterministic HTML page per pipeline run.

:func:`render` turns plain data (this run's metrics, audit, data description, provenance) and
PNG images into HTML text. Nothing here reads files, the clock or the environment: the same
inputs give the same bytes. Images are embedded as data URIs; there are no scripts, fonts or
external resources, and the page prints.

The page reads top-down: the first screen holds the decision in a few sentences (what ships,
how good it is on unseen data, the rarest class in cases, how far its probabilities hold, what
it costs against plain cross-entropy and how sure the choice is) and any warning in words; the
main body follows (how the pick was made, its optimism, the top candidates, was the special loss
needed, where the errors go, the accuracy paradox, a glossary: about six screens at 1440×900);
the rest of the evidence (:mod:`pipeline.report_sections`) and the appendix (the full
leaderboard, the metrics' agreement, provenance) are folded, one click each, and print open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import report_sections as s
from pipeline.report_sections import Run, Section, between, ci, esc, figure, name, num, shown_metrics, table

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1100px;
margin:1.5rem auto;padding:0 1.2rem;color:#1d2430;line-height:1.5}
h1{font-size:1.6rem;margin:0 0 .1rem}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2rem;margin-top:2.2rem}
.sub{color:#5b6675;margin:0 0 .8rem}.lead{font-size:1.12rem}.lead p{margin:.45rem 0}
.pick{background:#e8f4ea}.note{background:#f4f6f9;border-left:4px solid #7a8ca5;padding:.6rem .9rem;margin:1rem 0}
.warn{background:#fff4e5;border-left:4px solid #c77700;padding:.5rem .9rem;margin:.8rem 0}
.warn.bad{background:#fdeceb;border-color:#a3362f}.warn ul{margin:.2rem 0;padding-left:1.2rem}
nav ol{columns:2;margin:.3rem 0 .4rem;padding-left:1.6rem}nav{font-size:.95rem}
.scroll{overflow-x:auto;max-width:100%;margin:.8rem 0}table{border-collapse:collapse;font-size:.85rem}
th,td{border:1px solid #d4dbe3;padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f0f3f7}
td.n{text-align:right;white-space:nowrap}td.text{min-width:9rem}td.label,.nw{white-space:nowrap}
img{max-width:100%;height:auto;display:block;margin:.6rem 0}
code{background:#f0f3f7;padding:0 .25rem}code.hash{font-size:.75rem}dt{font-weight:600}dd{margin:0 0 .5rem 1rem}
.small{font-size:.8rem}.appendix h2{border-bottom-style:dashed}
summary{cursor:pointer}.evidence summary h2,.appendix summary h2{display:inline-block;border:none;margin:1.2rem 0 .3rem;
font-size:1.25rem}summary::after{content:" (click to open)";color:#5b6675;font-size:.9rem}details[open]>summary::after{content:""}
@media print{body{max-width:none;margin:0}h2{break-after:avoid}img,tr{break-inside:avoid}
details::details-content{content-visibility:visible;display:block}summary::after{content:""}
.scroll{overflow:visible}table{font-size:.7rem}nav{display:none}}
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
    evidence: dict[str, str] = field(default_factory=dict)  # "<split>/<candidate>" -> sha256 of its predictions


# --- the first screen -------------------------------------------------------------------------------

def _what_ships(r: Run) -> str:
    e = r.board[r.pick]
    total = sum(len(x["members"]) for x in r.audit["leaderboard"])
    what = (f"{esc(s.BASELINE_WORDS.get(e['base_model'], e['base_model']))} (a baseline)" if e["kind"] == "baseline"
            else f"the network trained with {esc(s.loss_words(e['loss']))}")
    if e["rule"]:
        what += f" with {esc(s.RULE_WORDS.get(e['rule'], e['rule']))} fitted on the validation split"
    p, boot = r.policy["p_best"], r.policy["bootstrap"]
    tied = r.policy.get("tied") or []
    sure = (f"but {len(tied)} other candidate{'s' if len(tied) > 1 else ''} score{'' if len(tied) > 1 else 's'} the "
            "same there, so that share belongs to the tied group and the tie-break chose among them" if tied else
            "a stable choice" if p >= 0.8 else "a fairly stable choice" if p >= 0.5 else "an uncertain choice")
    cons = f" among those meeting {esc(', '.join(r.policy['constraints']))}" if r.policy["constraints"] else ""
    return (f"Ship <b>{name(r.pick)}</b>, {what}: it has the best {esc(r.primary_words)} on the validation split "
            f"among {total} candidates ({len(r.board)} distinct){cons}, and it is the pick in "
            f"<b>{p:.0%}</b> of {boot['resamples']} bootstrap resamples of that split (P(best) = {num(p, 2)}): "
            f"{sure}.")


def _how_good(r: Run) -> str:
    est = r.audit["estimate"]
    interval = (f" ({r.level} interval {num(est['low'])} to {num(est['high'])})"
                if est["low"] is not None else " (no interval: the metric has no bootstrap)")
    return (f"On the test split, which played no part in the choice, its {esc(r.primary_words)} is "
            f"<b>{num(est['test'])}</b>{interval}." + _in_cases(r))


def _in_cases(r: Run) -> str:
    """The rarest class on test in cases: how many the pick finds, how many of its alarms are wrong."""
    rare, m = r.audit["rarest_class"], r.metrics.get(r.pick, {})
    support, recall, precision = (m.get(f"{k}/{rare}") for k in ("support", "recall", "precision"))
    if not support or recall is None:
        return ""
    found = round(recall * support)
    said = f" Of the {support:g} test cases of the rarest class, <b>{esc(rare)}</b>, it finds {found}"
    if found and precision:
        alarms = round(found / precision)
        wrong = alarms - found
        one_in = alarms / wrong if wrong else 0.0
        said += (f"; of its {alarms} answers {esc(rare)}, " +
                 ("none is wrong" if not wrong else
                  f"{wrong} {'is' if wrong == 1 else 'are'} wrong (1 in {num(one_in, 0 if one_in >= 2 else 1)})"))
    return said + "."


def _probabilities(r: Run) -> str:
    c = r.audit.get("calibration")
    if not c:
        return ""
    how = "as its decision rule computes them" if c["method"].startswith("the cost rule") else (
        "recalibrated on the validation split (vector scaling); its decisions are made before and do not change"
        if c["method"] != "none" else "as the model gives them")
    return (f"The probability it returns for each class is {how}: on the test split they are off by "
            f"<b>{num(c['test_ece'], 3)}</b> on average ({r.level} interval {num(c['test_ece_low'], 3)} to "
            f"{num(c['test_ece_high'], 3)}; expected calibration error, 0 is perfect).")


def _cost(r: Run) -> str:
    ref, vs = r.reference, r.audit["vs_reference"]
    if ref is None:
        return "Plain cross-entropy was not trained in this run, so there is no comparison against it."
    if vs is None:
        return (f"The pick is the reference itself ({name(ref)}, {esc(r.audit['reference']['why'])}): no other "
                "loss or decision rule did better on validation.")
    out = (f"Against {esc(r.audit['reference']['why'])} ({name(ref)}), on the same test cases, its "
           f"{esc(r.primary_words)} differs by <b>{between(vs)}</b>: {esc(vs['words'])}")
    trade = (r.audit.get("tail_trade") or {}).get("models", {}).get(r.pick)
    if trade and r.audit["tail_trade"]["reference"] == ref:
        head = trade.get("head_recall_change")
        out += "; on the cost side, " + (f"head-class recall changes by {between(head)} and " if head else "")
        out += f"accuracy by {between(trade['accuracy_change'])}"
    return out + "."


def _no_pick(r: Run) -> list[str]:
    closest = r.audit["leaderboard"][0] if r.audit["leaderboard"] else None
    out = [f"<b>Nothing ships</b>: no candidate meets the policy's constraints "
           f"(<code>{esc(', '.join(r.policy['constraints']))}</code>) on the validation split."]
    if closest:
        estimate = ci(closest["test"], closest["test_low"], closest["test_high"])
        out.append(f"The closest, {name(closest['model'])}, fails {esc('; '.join(closest['violations']))}; on the "
                   f"test split its {esc(r.primary_words)} is {estimate}.")
    out.append("The constraints or the candidates need revisiting before anything ships.")
    return out


def _warnings(r: Run) -> str:
    said = list(r.audit.get("warnings") or [])
    if r.pick is None and not any("constraint" in w for w in said):
        said.insert(0, "no candidate meets the policy's constraints on validation: nothing is recommended")
    if not said:
        return ""
    def sentence(w: str) -> str:  # capitalised, unless it starts with a name as written (ce+thresholds)
        first = w.split(" ", 1)[0]
        return (w[:1].upper() + w[1:] if first.isalpha() else w) + ("" if w.endswith(".") else ".")

    items = "".join(f"<li>{esc(sentence(w))}</li>" for w in said)
    bad = " bad" if r.pick is None else ""
    return f'<aside class="warn{bad}"><b>Read this before acting on the decision:</b><ul>{items}</ul></aside>'


def _decision(r: Run, body: list[Section], appendix: list[Section]) -> list[str]:
    sentences = [_what_ships(r), _how_good(r), _probabilities(r), _cost(r)] if r.pick else _no_pick(r)
    toc = "".join(f'<li><a href="#{x.id}">{esc(x.title)}</a></li>' for x in body)
    more = " · ".join(f'<a href="#{x.id}">{esc(x.title)}</a>' for x in appendix)
    return ['<section id="decision">', "<h2>The decision</h2>",
            '<div class="lead">' + "".join(f"<p>{x}</p>" for x in sentences if x) + "</div>",
            _warnings(r), f"<nav><b>The evidence</b><ol>{toc}</ol>{more}</nav>", "</section>"]


# --- the background: the data, the losses, the errors, how to read -------------------------------

def _data_line(meta: dict) -> str:
    """The header's data: the file and its label column (or the bundled source), rows, classes."""
    data = meta.get("params") or {}
    if meta["source"] == "csv":
        what = f"Data <b>{esc(Path(str(data.get('path', ''))).name)}</b>, target <b>{esc(str(data.get('target')))}</b>"
    else:
        what = f"Data <b>{esc(meta['source'])}</b>"
    rows = sum(meta["sizes"].values())
    return f"{what} · {rows:,} rows · {len(meta['classes'])} classes"


def _imbalance(meta: dict) -> str:
    """What was done to the training split's class balance, in words."""
    rho = meta["params"].get("imbalance_ratio", 1)
    if rho == 1:
        return "kept at the data's own class balance (its natural imbalance is measured below)"
    return f"made long-tailed (ρ = {num(rho, 1)} imposed with an exponential profile)"


def _data(r: Run) -> Section:
    sizes, train = r.meta["sizes"], r.train
    counts = r.meta["counts"]
    rows = [[esc(split), *(str(counts[split][c]) for c in r.classes)] for split in ("train", "val", "test")]
    body = [
        "<p>When one class is common and another rare, a model can look accurate while missing the rare class "
        "almost entirely. This run trains models with different losses, adds decision rules on top, and chooses "
        "among them by a declared metric.</p>",
        f"<p>{len(r.classes)} classes. Training split: {sizes['train']} rows, {_imbalance(r.meta)} — the most "
        f"frequent class has {max(train.values())} samples, the rarest (<b>{esc(r.audit['rarest_class'])}</b>) "
        f"{min(train.values())}, a ratio ρ = n<sub>max</sub>/n<sub>min</sub> of "
        f"{num(r.meta['train_imbalance_ratio'], 1)}. Validation: {sizes['val']} rows; test: {sizes['test']} rows, "
        f"kept at the source's class balance. Class weights: <code>{esc(r.weights['scheme'])}</code>.</p>",
        figure(r.images, "distribution", "class distribution per split"),
        table(["split", *[f"class {c}" for c in r.classes]], rows, numeric=True),
        *_columns(r.meta),
    ]
    return Section("data", "The data", body)


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
        rows = [[f"<code>{esc(c['name'])}</code>", esc(c["kind"]), esc(c["detail"])] for c in others]
        parts.append(table(["column", "became", "why"], rows))
    return parts


def _gamma(r: Run) -> Section:
    body = []
    if "focal_shape" in r.images:
        body.append("<p>Focal loss multiplies cross-entropy by (1 − p)<sup>γ</sup>, p the probability of the true "
                    "class: larger γ stops easy, confident samples from dominating training.</p>")
        body.append(figure(r.images, "focal_shape", "focal loss against p for each gamma"))
    keys = sorted(k for k in r.images if k.startswith("gamma_"))
    body += [figure(r.images, k, f"test metrics against gamma ({k[6:]})") for k in keys]
    if not keys:
        body.append("<p>No loss was trained over a γ sweep in this run.</p>")
    return Section("gamma", "The focal-loss γ sweep", body)


def _confusion(r: Run) -> Section:
    ref = r.reference or "ce"
    return Section("errors", "Where the errors go", [
        f"<p>The pick beside {name(ref)} on the test split. Rows are the true class, columns the predicted one; "
        "each cell is the share of the true class, so the diagonal is each class's recall and the off-diagonal "
        "cells show which classes get confused.</p>",
        figure(r.images, "pick_vs_ce_confusion", "confusion matrices of the pick and of the reference"),
        *(["<p>How far the pick's probabilities can be read as chances: in each bin of cases it gave about the "
           "same top probability, the share it got right. On the diagonal, a probability of 0.9 is right 9 times "
           "in 10.</p>", figure(r.images, "reliability", "reliability diagram of the pick on the test split")]
          if "reliability" in r.images else [])])


def _paradox(r: Run) -> Section:
    p, vkey = r.audit.get("accuracy_paradox"), r.vkey
    if not p:
        return Section("paradox", "Why accuracy is not enough",
                       ["<p>The majority baseline was not trained in this run (<code>baselines.models</code>).</p>"])
    return Section("paradox", "Why accuracy is not enough", [
        f"<p>A model that always answers the most frequent training class learns nothing, yet scores accuracy "
        f"<b>{num(p[f'accuracy_{vkey}'])}</b> on the test split {esc(r.view['description'])} "
        f"(<b>{num(p['accuracy_held_out'])}</b> as held out) while its macro-F1 is "
        f"<b>{num(p[f'macro_f1_{vkey}'])}</b> ({num(p['macro_f1_held_out'])}). Macro-F1 weighs every class "
        "equally, so missing the rare classes shows.</p>"])


def _glossary(r: Run) -> Section:
    body = ["<dl>"]
    for term, text in (
        ("Validation and test splits", "Validation chooses (the model, the rule, the pick); test only measures "
                                       "the candidates, once each, so its numbers are unbiased estimates."),
        ("Recall of a class", "Of the cases truly in the class, the share the model finds."),
        ("Precision of a class", "Of the cases the model puts in the class, the share that belong there. A model "
                                 "that never predicts the class has no precision there: undefined, not 0."),
        ("Accuracy", "Share of all cases classified correctly; dominated by the common classes. Micro-F1 equals "
                     "it when each case has one label, so it is shown once."),
        ("Macro-F1", "The average of the per-class F1 scores (a balance of precision and recall): every class "
                     "counts the same, however rare."),
        ("Balanced accuracy", "The average recall over classes — the same number as accuracy under a uniform "
                              "class prior, so the two are shown once."),
        ("Interval [a, b]", f"{r.level} bootstrap interval: resampling the test cases, the score fell in this "
                            f"range {r.level} of the time. Overlapping intervals mean the difference may be chance."),
        (f"{r.vkey.replace('_', ' ')} view", r.view["description"] + "."),
        ("Class weights, focal loss", "Training remedies that make mistakes on rare classes cost more; they "
                                      "usually raise rare-class recall and lower precision."),
    ):
        body.append(f"<dt>{esc(term)}</dt><dd>{esc(text)}</dd>")
    body.append("</dl>")
    return Section("glossary", "How to read this", body)


# --- the appendix ---------------------------------------------------------------------------------

def _leaderboard(r: Run) -> Section:
    cols = shown_metrics(r.audit["metrics"], r.vkey)
    rows_val, rows_test, marks = [], [], []
    for e in r.audit["leaderboard"]:
        label = f"<b>{name(e['model'])}</b>" if e["model"] == r.pick else name(e["model"])
        rows_val.append([label, str(len(e["members"])), num(e["p_best"])]
                        + [f"{num(e['val_values'][n])}&nbsp;<span class='small'>({e['ranks'][n]})</span>"
                           for n in cols])
        rows_test.append([label, ci(e["test"], e["test_low"], e["test_high"])]
                         + [num(e["values"][n]) for n in cols if n != r.primary])
        marks.append("pick" if e["model"] == r.pick else "")
    return Section("leaderboard", "Appendix A. The full leaderboard", [
        f"<p>Every distinct candidate in the policy's order (identical candidates are counted under their "
        f"representative). Columns prefixed <code>{esc(r.vkey)}/</code> reweight the split: "
        f"{esc(r.view['description'])}. Lower is better for log_loss, ece and expected_cost.</p>",
        "<p><b>On validation</b>, what the choice read (rank in brackets, 1 = best):</p>",
        table(["candidate", "members", "P(best)", *cols], rows_val, marks=marks, numeric=True),
        f"<p><b>On test</b>, the estimates ({r.primary} with its {r.level} interval):</p>",
        table(["candidate", f"{r.primary} [{r.level}]", *(n for n in cols if n != r.primary)], rows_test, marks=marks,
              numeric=True),
    ])


def _agreement(r: Run) -> Section:
    tau, vkey, rarest = r.audit["kendall_tau"], r.vkey, r.audit["rarest_class"]
    pairs = [("accuracy", f"{vkey}/accuracy"), ("macro_f1", f"{vkey}/accuracy"), ("accuracy", "macro_f1"),
             ("macro_f1", f"recall/{rarest}"), ("macro_f1", "log_loss")]
    rows = [[esc(a), esc(b), num(tau[a][b], 2)] for a, b in pairs if a in tau and b in tau]
    return Section("tau", "Appendix B. Where metrics disagree", [
        "<p>Kendall's τ between the candidates' rankings on validation under each pair of metrics (1 = the same "
        "order, 0 = unrelated, negative = reversed), and each candidate's rank under each metric.</p>",
        figure(r.images, "agreement", "Kendall tau between metric rankings"),
        table(["metric", "metric", "τ"], rows, numeric=True, labels=2),
        figure(r.images, "ranks", "rank of each candidate under each metric"),
    ])


def _run_link(run_id: str, exp_id: str, base: str | None) -> str:
    if not base:
        return f"<code>{esc(run_id)}</code>"
    url = f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
    return f'<a href="{esc(url)}"><code>{esc(run_id)}</code></a>'


def _provenance(r: Run, provenance: Provenance, runs: dict | None, mlflow_url: str | None) -> Section:
    body = [table(["item", "value"], [
        ["git commit", f"<code>{esc(provenance.commit)}</code>"],
        ["uncommitted changes (code or params)", esc(provenance.dirty)],
        ["commit date", esc(provenance.date)],
        ["data digest (sha256 of the prepared splits)", f"<code class='hash'>{esc(r.meta['digest'])}</code>"],
        ["reproduce", f"<code>{esc(provenance.command)}</code>"],
    ])]
    if runs:
        rows = [["evaluation run", _run_link(runs["evaluation_run"], runs["experiment_id"], mlflow_url)]]
        rows += [[name(m), _run_link(i, runs["experiment_id"], mlflow_url)] for m, i in runs["models"].items()]
        body.append(f"<p>MLflow runs (experiment <code>{esc(runs['experiment'])}</code>, store "
                    f"<code>{esc(runs['tracking_uri'])}</code>):</p>")
        body.append(table(["model", "run id"], rows))
    if provenance.evidence:
        by: dict[str, dict[str, str]] = {}
        for key, digest in provenance.evidence.items():
            split, _, cand = key.partition("/")
            by.setdefault(cand, {})[split] = digest
        rows = [[name(c), esc(split), f"<code class='hash'>{esc(digest)}</code>"]
                for c, d in by.items() for split, digest in d.items()]
        body.append("<p>The predictions every number on this page comes from: sha256 of each candidate's "
                    "prediction files (<code>reports/predictions/</code> for trained models, "
                    "<code>reports/decisions/</code> for decision rules):</p>")
        body.append(table(["candidate", "split", "sha256"], rows, labels=2))
    stage_rows = [[esc(stage), "<br>".join(f"<code>{esc(p)}</code> {esc(h[:12])}" for p, h in outs.items())]
                  for stage, outs in provenance.stages.items()]
    body.append("<p>Outputs of every stage before this report, as recorded in <code>dvc.lock</code> (md5, "
                "first 12 digits):</p>")
    body.append(table(["stage", "outputs"], stage_rows))
    body.append("<p>Parameters as the stages used them:</p>")
    params = [[esc(k), f"<code>{esc(v)}</code>"] for k, v in provenance.params.items()]
    body.append(table(["parameter", "value"], params))
    body.append(table(["package", "version"], [[esc(k), esc(v)] for k, v in provenance.packages.items()]))
    return Section("provenance", "Appendix C. Provenance", body)


def _html(x: Section, number: int | None, folded: bool = False) -> str:
    """A section; ``folded``: closed under its title (one click opens it; printing shows it)."""
    title = f"<h2>{esc(f'{number}. {x.title}' if number else x.title)}</h2>"
    if folded:
        return "\n".join([f'<section id="{x.id}"><details><summary>{title}</summary>', *(b for b in x.body if b),
                          "</details></section>"])
    return "\n".join([f'<section id="{x.id}">', title, *(b for b in x.body if b), "</section>"])


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
    # the main body a stakeholder reads; the evidence and the appendix folded, one click each
    body = [s.how_picked(r), s.optimism(r), s.top_candidates(r), s.special_loss(r), _confusion(r), _paradox(r),
            _glossary(r)]
    evidence = [s.other_metrics(r), s.tail_trade(r), s.prior_shift(r), s.loss_metric(r), _data(r), _gamma(r),
                s.weight_strength(r)]
    appendix = [_leaderboard(r), _agreement(r), _provenance(r, provenance, runs, mlflow_url)]
    parts = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">{_data_line(meta)} · commit <code>{esc(provenance.commit[:12])}</code>'
        f"{' (with uncommitted changes)' if provenance.dirty == 'true' else ''} · {esc(provenance.date)}</p>",
        *_decision(r, body + evidence, appendix),
        *(_html(x, i + 1) for i, x in enumerate(body)),
        '<div class="evidence">', *(_html(x, len(body) + i + 1, folded=True) for i, x in enumerate(evidence)), "</div>",
        '<div class="appendix">', *(_html(x, None, folded=True) for x in appendix), "</div>",
    ]
    page = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n{page}\n</body>\n</html>\n")
