"""report.html in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): every image
loads, every audio player has a playable source, the page logs no error and fetches nothing from outside."""
import shutil
from pathlib import Path

import pytest

from test_evaluate import build_run

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium_path() -> str:
    """Return Debian's Chromium executable, failing (not skipping) with what to run when it is missing."""
    path = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed: run `make browser` (apt-get install chromium) and test again")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from classify.evaluate import EvalSettings, evaluate_run
    run = build_run(tmp_path_factory.mktemp("browser"))
    return Path(evaluate_run(run, EvalSettings(top_k=3, explain_examples=1), log=lambda *a: None)["report"])


def test_report_loads_cleanly_in_chromium(report):
    from playwright.sync_api import sync_playwright
    errors, outside = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]}"))
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("data:", "file:")) else None)
            page.goto(report.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
            page.wait_for_function("[...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)",
                                   timeout=15000)
            audio = page.eval_on_selector_all(
                "audio", "els => els.map(a => [a.canPlayType('audio/wav'), a.readyState, a.error && a.error.code,"
                         " a.duration])")
        finally:
            browser.close()
    assert len(images) >= 3 + 8                                    # top-loss spectrograms + the plots
    heat_maps = [i for i in images if i[0].startswith("attribution heat map of")]
    assert len(heat_maps) == 3 + 2 and any(i[0] == "attribution per frequency band" for i in images)
    assert [i for i in images if not (i[1] and i[2] > 0)] == [], "images that did not load"
    assert len(audio) == 3 + 2                                     # top losses + one confident clip per class
    for can_play, ready, error, duration in audio:
        assert can_play in ("maybe", "probably") and error is None and ready >= 1 and duration > 0.3
    assert errors == []
    assert outside == []
