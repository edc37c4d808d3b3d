"""The report in a real headless browser at laptop width: it loads cleanly, the first screen holds
the decision, and no table pushes the page sideways (a wide one scrolls inside its own box)."""

import numpy as np
import pytest

from pipeline.report.render import render
from tests.test_report import render_inputs

LAPTOP = {"width": 1366, "height": 900}


def _wide_page(path):
    """The synthetic run with a long candidate name and a leaderboard too wide for the page."""
    inputs = render_inputs()
    audit = inputs["audit"]
    extra = [f"recall/class_with_a_long_name_{i}" for i in range(14)]
    audit["metrics"] = [*audit["metrics"], *extra]
    for i, row in enumerate(audit["leaderboard"]):
        for n in extra:
            row["values"][n] = row["val_values"][n] = 0.5
            row["ranks"][n] = i + 1
    long = "weighted_focal_g0.5_with_a_rather_long_name+posthoc_adjust"
    audit["leaderboard"][1]["model"] = long
    audit["disagreements"].append({"metric": "macro_f1", "winner": long, "reason": "a long name, for layout"})
    path.write_text(render(**inputs))
    return path


@pytest.fixture(params=["synthetic", "pipeline_run"])
def report_page(request, tmp_path):
    if request.param == "synthetic":
        return _wide_page(tmp_path / "report.html")
    return request.getfixturevalue("pipeline_run") / "reports/report.html"


# Measured in the page (no script in the page itself: playwright evaluates these from outside).
LAYOUT = """() => {
  const body = document.body.getBoundingClientRect();
  const right = body.right - parseFloat(getComputedStyle(document.body).paddingRight) + 1;
  const tables = Array.from(document.querySelectorAll('table')).map(t => {
    const box = t.parentElement;
    return {section: t.closest('section') ? t.closest('section').id : null,
            boxed: box.classList.contains('scroll') && getComputedStyle(box).overflowX === 'auto',
            boxRight: box.getBoundingClientRect().right, right, scrolls: t.scrollWidth > box.clientWidth + 1};
  });
  const lines = el => {
    const r = document.createRange(); r.selectNodeContents(el);
    return r.getBoundingClientRect().height / parseFloat(getComputedStyle(el).fontSize);
  };
  const wrapped = Array.from(document.querySelectorAll('td.label, .nw'))
    .filter(el => lines(el) > 2.2).map(el => el.textContent);
  const bottom = sel => { const el = document.querySelector(sel); return el ? el.getBoundingClientRect().bottom : null; };
  return {page: [document.documentElement.scrollWidth, document.documentElement.clientWidth], tables, wrapped,
          lead: bottom('#decision .lead'), warn: bottom('#decision .warn')};
}"""


def test_report_renders_without_errors_at_laptop_width(report_page, browser, tmp_path):
    from PIL import Image

    page = browser.new_page(viewport=LAPTOP)
    problems = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report_page.as_uri(), wait_until="load")
    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests)  # self-contained
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) >= 6 and all(done and width > 0 for _, done, width in images), images

    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")  # every section opened
    layout = page.evaluate(LAYOUT)
    width, viewport = layout["page"]
    assert width <= viewport, f"the page scrolls sideways: {width} > {viewport}"
    assert all(t["boxed"] and t["boxRight"] <= t["right"] for t in layout["tables"]), layout["tables"]
    if report_page.parent == tmp_path:  # the synthetic page is built to need a scroll box
        assert any(t["scrolls"] and t["section"] == "leaderboard" for t in layout["tables"])
    assert layout["wrapped"] == []  # names stay on one line
    assert layout["lead"] is not None and layout["lead"] <= LAPTOP["height"]  # the decision: first screen
    if layout["warn"] is not None:
        assert layout["warn"] <= LAPTOP["height"]
    assert page.inner_text("#decision .lead").startswith("Ship ")

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] > 3000  # the whole page, not one screen
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # drawn, not blank
    pdf = tmp_path / "report.pdf"
    page.pdf(path=str(pdf))  # printable
    assert pdf.stat().st_size > 10_000


def test_the_main_body_is_six_screens_and_the_rest_opens_and_prints(pipeline_run, browser):
    """At 1440x900 the decision and the main body end within six screens; the other evidence and
    the appendix are folded under their titles, open on a click, and print open."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto((pipeline_run / "reports/report.html").as_uri(), wait_until="load")
    folded = page.locator("details")
    assert folded.count() == 10 and page.locator("details[open]").count() == 0
    body_end = page.evaluate("document.querySelector('.evidence').getBoundingClientRect().top + window.scrollY")
    assert body_end <= 6 * 900, body_end
    first = page.evaluate("document.querySelector('#decision .lead').innerText")
    assert first.startswith("Ship ") and "On the test split, which played no part in the choice" in first
    assert "Of the " in first and "test cases of the rarest class" in first
    trade = page.locator("#trade table").first
    assert not trade.is_visible()
    page.locator("#trade summary").click()
    assert trade.is_visible()
    page.locator("#trade summary").click()
    page.emulate_media(media="print")
    assert page.evaluate("document.querySelector('#provenance table').getBoundingClientRect().height") > 0
    assert page.locator("#provenance table").first.is_visible()
