"""The documentation: a short README that links into a site that builds strictly and offline."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_the_site_loads_nothing_from_the_network(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 14
    for page in pages:
        external = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text())
        assert not external, (page, external)


def _leaves(block: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in block.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return out


def test_the_parameter_reference_is_params_yaml_itself(site):
    page = (site / "parameters" / "index.html").read_text()
    for key in _leaves(yaml.safe_load((ROOT / "params.yaml").read_text())):
        assert re.search(rf"\b{re.escape(key.split('.')[-1])}\b", page), key


def test_the_readme_is_short_and_every_link_lands(site):
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", readme)
    assert len(links) >= 12
    for path, anchor in links:
        assert (ROOT / path).is_file(), path
        if anchor:
            built = site / Path(path).relative_to("docs").with_suffix("") / "index.html"
            assert f'id="{anchor}"' in built.read_text(), (path, anchor)


@pytest.mark.parametrize(
    "page, answer",
    [
        ("own-data.md", "source: csv"),  # how do I run it on my table?
        ("choosing-the-metric.md", "evaluate.select.metric"),  # which metric?
        ("mlflow.md", "make ui"),  # where is the UI?
    ],
)
def test_a_newcomers_question_is_answered_on_the_first_screen_of_its_page(page, answer):
    first_screen = "\n".join((ROOT / "docs" / page).read_text().splitlines()[:40])
    assert answer in first_screen
