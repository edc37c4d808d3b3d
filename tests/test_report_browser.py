"""The report in a real headless browser: it loads cleanly and draws a non-blank page."""

import os
import shutil

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        yield b
        b.close()


def test_report_renders_without_errors(pipeline_run, browser, tmp_path):
    from PIL import Image

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((pipeline_run / "reports/report.html").as_uri(), wait_until="load")
    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests)  # self-contained
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) >= 6 and all(done and width > 0 for _, done, width in images), images
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert "Chosen model" in page.inner_text("body")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] > 3000  # the whole page, not one screen
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # drawn, not blank
    pdf = tmp_path / "report.pdf"
    page.pdf(path=str(pdf))  # printable
    assert pdf.stat().st_size > 10_000
