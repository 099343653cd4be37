"""The study report in a real browser (Debian's headless Chromium driven by Playwright): every
image decodes, no console error, and the page is usable at 1280 px and 800 px widths (nothing
wider than the window, every section reachable from the contents)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_pipeline_study import STUDY, _write_study, cohort  # noqa: F401 - fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.mark.parametrize("width", [1280, 800])
def test_the_report_renders_and_is_usable(browser, cohort: Path, width: int) -> None:  # noqa: F811
    from medimg.pipeline.runner import run_study
    from medimg.pipeline.study import load_study

    (cohort / "img3.nii.gz").write_bytes(b"broken")  # a failure section too
    study, base = load_study(_write_study(cohort, STUDY))
    result = run_study(study, cohort / "out", base=base, scheduler="serial")
    report = Path(result.report)
    html = report.read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: no external URL
    for heading in ("Cohort", "Steps", "Image quality", "Segmentation", "Features", "Failures", "Provenance"):
        assert f">{heading}</h2>" in html
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.resolve().as_uri(), wait_until="load")
    images = page.eval_on_selector_all("img", "els => els.map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(images) >= 5 and all(w > 0 and h > 0 for w, h in images)
    assert errors == []
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the window"
    widest = page.evaluate("Math.max(...[...document.querySelectorAll('img, .table-wrap')]"
                           ".map(e => e.getBoundingClientRect().right))")
    assert widest <= width
    links = page.eval_on_selector_all("nav a", "els => els.map(a => a.getAttribute('href'))")
    assert len(links) >= 7
    for href in links:
        assert page.query_selector(href) is not None
    page.click(f"nav a[href='{links[-1]}']")
    assert page.evaluate(f"document.querySelector('{links[-1]}').getBoundingClientRect().top") < 900
    page.close()
