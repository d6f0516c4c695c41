"""End to end, in Chromium: the Teach page teaches three classes from files (coloured shapes, distinguishable
after a few steps), then the taught model predicts an upload on Predict and explains it on Explain.

The server is tests/test_browser.py's (a live `streamlit run` on the tiny shipped model, or on the real shipped
models with RESNET_DEMO_SCREENSHOT_WEIGHTS=weights); its screenshot goes where that file's go (docs/screenshots/
for the README with RESNET_DEMO_SCREENSHOTS_DIR=docs/screenshots).
"""
from __future__ import annotations

import pytest
from teach_images import photo
from test_browser import LONG, app, assert_no_error, data_dir, open_page, page, screenshot, settle  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KINDS = ("red square", "green disc", "blue bar")
PER_CLASS = 6
TEACH_MS = 600_000  # the shortest teach takes seconds on a quiet machine, minutes on a loaded one


def _files(kind: str, first_seed: int, n: int) -> list[dict]:
    return [{"name": f"{kind.replace(' ', '-')}-{s}.png", "mimeType": "image/png", "buffer": photo(kind, s)}
            for s in range(first_seed, first_seed + n)]


def _name_the_classes(pg) -> None:
    pg.get_by_role("button", name="Add a class").click()
    settle(pg)
    for i, kind in enumerate(KINDS, start=1):
        field = pg.get_by_label(f"Class {i}", exact=True)
        field.fill(kind)
        field.press("Enter")
        settle(pg)


def _add_images(pg) -> None:
    for i, kind in enumerate(KINDS):
        uploader = pg.locator('[data-testid="stFileUploader"]').filter(has_text="Add images").nth(i)
        uploader.locator('input[type="file"]').set_input_files(_files(kind, 0, PER_CLASS))
        pg.get_by_text(f"{PER_CLASS} images", exact=False).nth(i).wait_for(timeout=LONG)
        settle(pg)
    assert pg.locator('[data-testid="stMain"] [data-testid="stImage"]').count() >= len(KINDS) * PER_CLASS


def _shortest_teach(pg) -> None:
    slider = pg.locator('[data-testid="stSlider"]').filter(has_text="Training steps").get_by_role("slider")
    slider.focus()
    slider.press("Home")  # the shortest teach the page offers
    settle(pg)


def test_teach_three_classes_then_predict_and_explain(page, app):  # noqa: F811
    open_page(page, app, "teach")
    assert_no_error(page, app)
    _name_the_classes(page)
    _add_images(page)
    _shortest_teach(page)
    page.get_by_role("button", name="Train", exact=True).click()
    main = page.locator('[data-testid="stMain"]')
    try:
        page.get_by_text("Held-out accuracy", exact=True).wait_for(timeout=TEACH_MS)
    except Exception:  # noqa: BLE001 - say what the page showed instead
        screenshot(page, "teach-timeout")
        raise AssertionError(f"no held-out score; the page shows: {main.inner_text()[-800:]}\nserver log:\n"
                             f"{app['log'].read_text()[-2000:]}") from None
    settle(page)
    assert_no_error(page, app)
    assert "Confusion matrix" in main.inner_text()
    page.get_by_text("2. Teach", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")  # the score
    page.wait_for_timeout(500)
    screenshot(page, "teach")

    page.get_by_role("button", name="Predict with it").click()
    page.locator('[data-testid="stMain"] h1').filter(has_text="Predict").wait_for(timeout=LONG)
    page.get_by_text("knows the 3 classes it was taught", exact=False).wait_for(timeout=LONG)
    assert "model=taught-" in page.url
    main.locator("label").filter(has_text="Upload").first.click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(_files("green disc", 500, 1))
    charts = main.locator('[data-testid="stPlotlyChart"]')
    charts.first.wait_for(timeout=LONG)
    settle(page)
    assert_no_error(page, app)
    bars = charts.first.inner_text()
    assert all(kind in bars for kind in KINDS), bars  # its own three classes, not CIFAR-10's
    assert "automobile" not in bars
    assert "green disc ·" in main.inner_text()  # its answer for a green disc it never saw

    page.get_by_role("button", name="Explain this prediction").first.click()
    page.get_by_text("Grad-CAM for", exact=False).first.wait_for(timeout=LONG)
    assert "/explain?model=taught-" in page.url
    settle(page, timeout_s=120)
    assert_no_error(page, app)
    caption = page.get_by_text("Grad-CAM for", exact=False).first.inner_text()
    assert any(f"“{kind}”" in caption for kind in KINDS), caption
