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
    page.get_by_text("Held-out accuracy", exact=True).wait_for(timeout=LONG)
    settle(page)
    assert_no_error(page, app)
    main = page.locator('[data-testid="stMain"]')
    assert "Confusion matrix" in main.inner_text()
    screenshot(page, "teach")

    page.get_by_role("button", name="Predict with it").click()
    page.wait_for_url("**/predict?model=taught-*", timeout=LONG)
    page.get_by_text("Taught: red square / green disc / blue bar", exact=False).first.wait_for(timeout=LONG)
    main.locator("label").filter(has_text="Upload").first.click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(_files("green disc", 500, 1))
    charts = main.locator('[data-testid="stPlotlyChart"]')
    charts.first.wait_for(timeout=LONG)
    settle(page)
    assert_no_error(page, app)
    bars = charts.first.inner_text()
    assert all(kind in bars for kind in KINDS), bars  # its own three classes, not CIFAR-10's
    assert "automobile" not in bars

    page.get_by_role("button", name="Explain this prediction").first.click()
    page.wait_for_url("**/explain?model=taught-*", timeout=LONG)
    page.get_by_text("Grad-CAM for", exact=False).first.wait_for(timeout=LONG)
    settle(page, timeout_s=120)
    assert_no_error(page, app)
    caption = page.get_by_text("Grad-CAM for", exact=False).first.inner_text()
    assert any(f"“{kind}”" in caption for kind in KINDS), caption
