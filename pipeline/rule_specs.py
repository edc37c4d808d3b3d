"""The one table of decision rules: what each is, where it comes from, what it needs. No numpy here.

Config validation (:mod:`pipeline.config`), the decide stage (:mod:`pipeline.decision.candidates`), the
served model (:mod:`pipeline.tracking.serving`) and the report all read :data:`RULE_SPECS`, so adding a
rule is one entry here and its two functions (in :mod:`pipeline.decision.rules` or any importable
module)::

    fit(proba, logp, y, context, *, key, keys, sample_weight) -> params (a JSON-able dict)
    apply(proba, logp, params, context) -> (probabilities (N, C), decisions (N,))

``proba`` (N, C) are the model's probabilities, ``logp`` their logs (clipped: never -inf), ``y``
the validation labels, ``context`` a :class:`pipeline.decision.rules.RuleContext`. A rule that searches
maximises ``key(decisions, probabilities)``, the policy's objective as ``(-violation, score)``:
meet the constraints first, then score best; ``keys`` (decisions (K, N) -> K keys) scores many
candidate decisions at once when the objective reads decisions only (None otherwise). Its fitted
parameters count as the scalars in ``params`` (a list counts its length).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import PipelineError

# What a rule needs beyond the model's probabilities (RuleSpec.needs).
COST = "cost"  # the cost matrix of evaluate.costs; without it the rule is skipped
ANOMALY_SCORES = "anomaly_scores"  # each row's outlier score from an isolation forest on the training rows


@dataclass(frozen=True)
class RuleSpec:
    """One value of ``evaluate.decisions.rules``."""

    name: str  # the evaluate.decisions.rules value and the candidate's suffix: <model>+<name>
    fit: str  # "<module>:<function>"
    apply: str  # "<module>:<function>"
    words: str  # what a stakeholder reads ("ldam_drw+posthoc_adjust" is "..., with a prior correction")
    paper: str = ""  # where it comes from
    needs: str | None = None  # None | COST | ANOMALY_SCORES
    # its decisions come from probabilities of its own, which the candidate ships instead of the
    # model's calibrated ones; what they are, in words ("" : the model's, calibrated)
    posterior: str = ""


RULE_SPECS: dict[str, RuleSpec] = {
    spec.name: spec
    for spec in (
        RuleSpec(
            "posthoc_adjust",
            "pipeline.decision.rules:fit_posthoc_adjust",
            "pipeline.decision.rules:apply_posthoc_adjust",
            "a prior correction",
            "Menon et al., ICLR 2021",
        ),
        RuleSpec(
            "thresholds",
            "pipeline.decision.rules:fit_thresholds",
            "pipeline.decision.rules:apply_thresholds",
            "per-class thresholds",
        ),
        RuleSpec(
            "cost",
            "pipeline.decision.rules:fit_cost",
            "pipeline.decision.rules:apply_cost",
            "cost-based decisions",
            "Alexandari et al., ICML 2020; Elkan, IJCAI 2001",
            needs=COST,
            posterior="bias-corrected temperature scaling",
        ),
        RuleSpec(
            "anomaly",
            "pipeline.decision.rules:fit_anomaly",
            "pipeline.decision.rules:apply_anomaly",
            "an anomaly detector for the rarest class",
            "Liu et al., ICDM 2008",
            needs=ANOMALY_SCORES,
        ),
    )
}

RULES = tuple(RULE_SPECS)  # the default table's names (read the table itself to see additions)


def rule_spec(name: str) -> RuleSpec:
    """The spec of ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return RULE_SPECS[name]
    except KeyError:
        raise PipelineError(f"rule must be one of {', '.join(RULE_SPECS)}; got {name!r}") from None
