"""The Fool-it page in a real browser (`streamlit run` + headless Chromium), one server for the whole file: an FGSM
attack on a test image draws the original, the change and the attacked image with both top fives; PGD shows its
steps and searches on a click; the views below open. Screenshots as in test_browser.py: docs/screenshots/fool.png
(the depth view) is taken with RESNET_DEMO_SCREENSHOT_WEIGHTS=weights and RESNET_DEMO_SCREENSHOT_DATA=<real
CIFAR-10 dir>."""
from __future__ import annotations

import pytest

# The server and browser fixtures, and the helpers that drive a page, are test_browser.py's own.
from test_browser import (  # noqa: F401
    LONG,
    app,
    assert_no_error,
    data_dir,
    open_page,
    page,
    screenshot,
    select,
    settle,
)

from resnet_demo.nets.paper import CLASSES

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGE = '[data-testid="stMain"] [data-testid="stImage"]'
CHART = '[data-testid="stMain"] [data-testid="stPlotlyChart"]'


def _wait_for_attack(page, caption: str) -> None:  # noqa: F811
    page.get_by_text(caption, exact=False).first.wait_for(timeout=LONG)
    settle(page)


def test_fool_page_attacks_a_test_image(page, app):  # noqa: F811
    page.goto(f"{app['base']}/fool?view=smallest")
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=LONG)
    _wait_for_attack(page, "Attacked, at true scale (FGSM, ε = 4/255)")
    assert_no_error(page, app)
    main = page.locator('[data-testid="stMain"]')
    assert page.locator(IMAGE).count() >= 3
    text = main.inner_text()
    assert "The change, ×32" in text and ("Fooled." in text or "Not fooled" in text)
    page.locator(CHART).nth(2).wait_for(timeout=LONG)  # before, after, and the smallest-eps bars
    for i in range(2):
        bars = page.locator(CHART).nth(i).inner_text()
        assert sum(c in bars for c in CLASSES) == 5, bars
    assert "smallest ε that fools it" in page.locator(CHART).nth(2).inner_text()
    screenshot(page, "fool-fgsm")


def test_pgd_and_the_views(page, app):  # noqa: F811
    open_page(page, app, "fool")
    select(page, "Attack", "PGD: several small steps")
    _wait_for_attack(page, "PGD, 10 steps of ε/4, ε = 4/255")
    assert "attack=pgd" in page.url and "eps=4" in page.url
    assert_no_error(page, app)
    assert page.locator(CHART).count() == 2  # PGD's search over eps waits for its button
    page.get_by_role("button", name="Search 1 model").click()
    page.locator(CHART).nth(2).wait_for(timeout=LONG)
    settle(page)
    assert "smallest ε that fools it" in page.locator(CHART).nth(2).inner_text()
    for view, expect, name in (("What it looks at", "Attacked: why", "explain"),
                               ("Where it lands", "Each dot is a test image", "lands"),
                               ("Does depth help?", "Accuracy under attack, model by model", "depth")):
        page.locator('[data-testid="stMain"] [data-testid="stButtonGroup"] button').filter(has_text=view).click()
        page.get_by_text(expect, exact=False).first.wait_for(timeout=LONG)
        settle(page)
        assert_no_error(page, app)
        assert f"view={name}" in page.url
        screenshot(page, "fool" if name == "depth" else f"fool-{name}")  # fool.png: the README's
