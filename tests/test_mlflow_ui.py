"""The MLflow UI as a user reads it, in a real headless browser on a real `mlflow ui` over the tiny
run's store: the address `make ui` prints lists every candidate by its own name beside its
validation score within two clicks, and the champion is found by its name in the Models tab and on
the registered model's page. The screenshots go to docs/mlflow.md (`SHOTS=docs/images pytest ...`)."""

import json
import os
import sys
from pathlib import Path

import pytest

from tests.services import base_env, free_port, http_ok, start

pytestmark = pytest.mark.slow
SCREEN = {"width": 1440, "height": 1000}


@pytest.fixture(scope="module")
def ui(pipeline_run, tmp_path_factory):
    """`mlflow ui` on the tiny run's store, and the address `make ui` prints for it."""
    from stages.show import runs_table

    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    service = start(
        "mlflow ui",
        [
            mlflow,
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{pipeline_run / 'mlflow.db'}",
        ],
        tmp_path_factory.mktemp("ui") / "ui.log",
        base_env(),
        pipeline_run,
    )
    try:
        service.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"))
        printed = runs_table(f"http://127.0.0.1:{port}", runs=str(pipeline_run / "reports/mlflow_runs.json"))
        yield f"http://127.0.0.1:{port}", printed.split("open ", 1)[1].split()[0]
    finally:
        service.stop()


@pytest.fixture(scope="module")
def page(browser):
    return browser.new_page(viewport=SCREEN)


def _shot(page, name: str) -> None:
    if os.environ.get("SHOTS"):
        Path(os.environ["SHOTS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(os.environ["SHOTS"]) / name))


# Each row's cells by column (MLflow's grid renders a row in parts, the pinned name apart), and
# whether the first row's name and validation score are on the screen, side by side.
ROWS = """(sortKey) => {
  const rows = {};
  document.querySelectorAll('[role=row][row-index] [col-id]').forEach(c => {
    const i = c.closest('[role=row]').getAttribute('row-index');
    (rows[i] = rows[i] || {})[c.getAttribute('col-id')] = c.innerText.trim();
  });
  const box = sel => { const e = document.querySelector(`[role=row][row-index='0'] [col-id='${sel}']`);
                       const r = e && e.getBoundingClientRect(); return r && [r.left, r.right, r.top]; };
  return {rows: Object.keys(rows).sort((a, b) => a - b).map(i => rows[i]),
          name: box('attributes.`Run Name`'), score: box(sortKey), width: window.innerWidth};
}"""


def test_the_printed_address_lists_every_candidate_beside_its_validation_score(pipeline_run, ui, page):
    _, address = ui
    metrics = json.loads((pipeline_run / "reports/metrics.json").read_text())
    page.goto(address, wait_until="load")
    page.get_by_text(f"{len(metrics)} matching runs").wait_for(timeout=60_000)  # the candidates, flat
    page.get_by_role("button", name="Columns", exact=True).click()  # click 1
    page.get_by_text("Metrics (8)", exact=True).click()  # click 2: the eight headline metrics
    page.keyboard.press("Escape")
    key = "metrics.`val_macro_f1`"
    page.wait_for_function(
        """(key) => {  // scrolled to the metrics (no click): the names stay, pinned
      document.querySelectorAll('.ag-body-horizontal-scroll-viewport').forEach(e => e.scrollLeft = e.scrollWidth);
      return document.querySelector(`[col-id='${key}']`) !== null; }""",
        arg=key,
    )
    page.wait_for_timeout(500)
    seen = page.evaluate(ROWS, key)
    rows = [(r["attributes.`Run Name`"].splitlines()[-1], float(r[key])) for r in seen["rows"]]
    assert sorted(name for name, _ in rows) == sorted(metrics)  # every candidate, by its own name, once
    assert dict(rows) == pytest.approx({n: m["val"]["macro_f1"] for n, m in metrics.items()}, abs=1e-9)
    assert [score for _, score in rows] == sorted(dict(rows).values(), reverse=True)  # best first
    (name_left, name_right, top), (left, right, score_top) = seen["name"], seen["score"]
    assert name_right <= left and right <= seen["width"] and top == score_top  # side by side, on screen
    if os.environ.get("SHOTS") and page.get_by_text("MLflow Assistant").count():  # room for the picture
        page.get_by_role("button", name="Close").last.click()
    _shot(page, "mlflow_runs.png")


def test_the_champion_is_found_by_its_name_in_the_models_tab_and_the_registry(pipeline_run, ui, page):
    from pipeline.tracking.names import model_name

    url, _ = ui
    runs = json.loads((pipeline_run / "reports/mlflow_runs.json").read_text())
    pick = runs["registered"]["candidate"]
    page.goto(f"{url}/#/experiments/{runs['experiment_id']}/models?workflowType=machine_learning", wait_until="load")
    page.get_by_text(model_name(pick), exact=True).first.wait_for(timeout=60_000)
    _shot(page, "mlflow_models.png")
    page.goto(f"{url}/#/models/{runs['registered']['name']}?workflowType=machine_learning", wait_until="load")
    page.get_by_text("Version 1", exact=True).wait_for(timeout=60_000)
    text = page.inner_text("body")
    assert pick in text.split("pick", 1)[1][:40] and "champion" in text  # the version's decision record
    _shot(page, "mlflow_registered_model.png")
    page.goto(
        f"{url}/#/models/{runs['registered']['name']}/versions/1?workflowType=machine_learning", wait_until="load"
    )
    page.get_by_text(model_name(pick), exact=True).first.wait_for(timeout=60_000)  # its source model
