"""The report says what this run did, and names the software that did it."""

import json

from pipeline.artifacts import read_figures
from pipeline.provenance import package_versions
from pipeline.report import Provenance, render


def _page(d, **meta_changes):
    meta = json.loads((d / "data/prepared/meta.json").read_text())
    meta["params"] = {**meta["params"], **meta_changes}
    return render(title="t", meta=meta, weights=json.loads((d / "outputs/class_weights.json").read_text()),
                  metrics=json.loads((d / "reports/metrics.json").read_text()),
                  audit=json.loads((d / "reports/audit.json").read_text()), runs=None, mlflow_url=None,
                  provenance=Provenance("abc", "false", "today", {}, {}, {}, "make repro"),
                  images=read_figures(d / "reports/figures"))


def test_the_data_section_says_what_was_done_to_the_balance(pipeline_run):
    kept = _page(pipeline_run, imbalance_ratio=1)
    assert "kept at the data's own class balance" in kept and "made long-tailed" not in kept
    imposed = _page(pipeline_run, imbalance_ratio=5)
    assert "made long-tailed (ρ = 5.0 imposed" in imposed


def test_package_versions_are_found_by_import_name():
    versions = package_versions()
    assert versions["xgboost"] != "not installed"  # installed as the xgboost-cpu distribution
    assert versions["xgboost"].endswith("(xgboost-cpu)") and versions["sklearn"].endswith("(scikit-learn)")
    assert versions["torch"].startswith("2.13.0")
    assert package_versions(("no_such_module_here",)) == {"no_such_module_here": "not installed"}
