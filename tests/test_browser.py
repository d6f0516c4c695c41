"""End to end: the real app in a real browser (`streamlit run` + headless Chromium through Playwright).

Each page must render without an error box; Predict classifies an uploaded image; Train starts a tiny run,
shows its curves and stops it; on Test set a click on a confusion-matrix cell shows that cell's images.
Screenshots (1400x2200; Streamlit scrolls inside an inner container, so a tall viewport rather than
full_page) go to $RESNET_DEMO_SCREENSHOTS_DIR (default test-artifacts/); docs/screenshots/ for the README, taken
with RESNET_DEMO_SCREENSHOT_WEIGHTS=weights and RESNET_DEMO_SCREENSHOT_DATA=<real CIFAR-10 dir>, so that they show
the shipped models on real photos rather than the tiny fixture on noise.

One server for every browser test. Starting `streamlit run` and its first render (which imports torch) cost
about a minute on a loaded 2-core machine, so the whole test session shares one server, whichever browser test
file needs it first; conftest.py has the fixtures, tests/browser_util.py the machinery and the page helpers.
A new browser test file (tests/test_browser_*.py) uses them like this:

    import pytest
    from browser_util import assert_no_error, open_page, screenshot

    pytestmark = [pytest.mark.browser, pytest.mark.slow]

    def test_my_page(browser_page, browser_app):
        open_page(browser_page, browser_app, "mypage")   # the page's url_path
        assert_no_error(browser_page, browser_app)

- `browser_app` (module scope): {"base": URL, "runs": the server's runs folder, "log": its log file,
  "browser": this module's Chromium}. The server sees the tiny shipped model (conftest's tiny_weights_dir) and the
  synthetic data set; it skips, saying why, without /usr/bin/chromium or Playwright.
- `browser_page`: a fresh tab (its own Streamlit session) with a long default timeout, closed afterwards.
- `browser_servers.get(NAME="value", ...)`: a server started with other environment settings (a teacher
  password, say), shared by the tests that ask for the same settings; `browser_servers.get()` is the shared one.
  Combine it with the `chromium` fixture: `{**browser_servers.get(...), "browser": chromium}`.

The server is shared, so a test leaves it as it found it: a training job it starts is stopped (at the latest
when its module ends), a run it adds to `runs` is removed, and a setting it changes is changed back.
"""
from __future__ import annotations

import io
import time
import urllib.request

import numpy as np
import pytest

from browser_util import LONG, assert_no_error, fill_number, open_page, screenshot, select, settle
from resnet_demo.nets.paper import CLASSES

pytestmark = [pytest.mark.browser, pytest.mark.slow]


# The tests below predate the shared fixtures and keep their short names for them.
@pytest.fixture
def app(browser_app):
    return browser_app


@pytest.fixture
def page(browser_page):
    return browser_page


@pytest.fixture
def data_dir(browser_data_dir):
    return browser_data_dir


# ------------------------------------------------------------------ pages


def test_predict_upload_shows_top5(page, app, data_dir, tmp_path):
    from PIL import Image

    with np.load(data_dir / "test.npz") as z:
        img = z["images"][0]
    photo = tmp_path / "my_photo.png"
    Image.fromarray(img).resize((96, 80), Image.NEAREST).save(photo)  # not square, not 32x32: a real upload
    open_page(page, app, "predict")
    assert_no_error(page, app)
    links = page.locator('[data-testid="stSidebarNav"] a')
    assert "Predict" in links.first.inner_text(), "Predict, the home page, comes first in the sidebar"
    page.locator('[data-testid="stMain"] label').filter(has_text="Upload").first.click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    page.get_by_text("What the network sees", exact=False).first.wait_for(timeout=LONG)
    charts = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]')
    charts.first.wait_for(timeout=LONG)
    settle(page)
    assert_no_error(page, app)
    bars = charts.first.inner_text()
    assert sum(c in bars for c in CLASSES) == 5, f"expected five classes in the top-5 chart, got: {bars!r}"
    screenshot(page, "predict")



MARKUP = ("<a ", "<strong", "<em", "<code", "<img", "<del", "<b>", "<script", 'role="img"', "katex", "color")


def test_upload_names_are_shown_as_typed(page, app, tmp_path):
    """Issue 29: a file named [x](http://e.vil).png became a link in its card title (and **b** bold, :red[c]
    red). Card titles and error messages now show every name as typed."""
    from PIL import Image

    names = ["[x](http://e.vil).png", "**b**.png", ":red[c].png", "<script>alert(1)</script>.png",
             ":material/home: www.e.vil.png"]
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), (200, 120, 30)).save(buf, "PNG")
    files = [{"name": n, "mimeType": "image/png", "buffer": buf.getvalue()} for n in names]
    files.append({"name": "_bad_ me@e.vil.png", "mimeType": "image/png", "buffer": b"not an image"})
    open_page(page, app, "predict")
    page.locator('[data-testid="stMain"] label').filter(has_text="Upload").first.click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(files)
    titles = page.locator('[data-testid="stMain"] h5 [data-heading-text]')
    titles.nth(len(names) - 1).wait_for(timeout=LONG)
    settle(page)
    shown = [titles.nth(i) for i in range(titles.count())]
    assert [t.inner_text().replace("\u200b", "") for t in shown] == names
    errors = page.locator('[data-testid="stAlertContentError"] [data-testid="stMarkdownContainer"]')
    assert errors.count() == 1
    error = errors.first
    assert error.inner_text().replace("\u200b", "").startswith("_bad_ me@e.vil.png: not an image")
    for element in [*shown, error]:
        html = element.inner_html()
        assert not [m for m in MARKUP if m in html], html



def _upload_store_bytes(app) -> int:
    """Bytes Streamlit's upload store holds for all sessions (from its /_stcore/metrics, which caches the figure
    for 5 s: the wait makes each reading fresh)."""
    import re

    time.sleep(5.5)
    with urllib.request.urlopen(f"{app['base']}/_stcore/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(int(float(m)) for m in re.findall(r'cache_type="UploadedFileManager"[^}]*}\s+(\S+)', text))


def test_an_upload_leaves_the_server_when_no_widget_shows_it(page, app):
    """Issue 29: uploads stayed in the server's memory until the tab closed, even after the student had moved
    on; the browser never deletes a file whose widget left the page. The next run releases it."""
    from PIL import Image

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(buf, "PNG")  # ~360 KB
    size = len(buf.getvalue())
    open_page(page, app, "predict")
    before = _upload_store_bytes(app)
    page.locator('[data-testid="stMain"] label').filter(has_text="Upload").first.click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        {"name": "noise.png", "mimeType": "image/png", "buffer": buf.getvalue()})
    page.get_by_text("What the network sees", exact=False).first.wait_for(timeout=LONG)  # not the gallery's
    settle(page)
    held = _upload_store_bytes(app)
    assert held >= before + size
    page.locator('[data-testid="stMain"] label').filter(has_text="Test set").first.click()
    settle(page)
    assert _upload_store_bytes(app) <= held - size
    assert_no_error(page, app)


def test_compare_view_keeps_class_names_whole(page, app, tiny_run):
    """Issue 28: "automobile" was clipped at the left of the narrow top-5 charts of the compare view. Every class
    name must lie inside its chart, for a test image of an automobile compared across models."""
    import shutil

    second = shutil.copytree(tiny_run, app["runs"] / "compare-me")  # a finished run: a second model
    try:
        open_page(page, app, "predict")
        select(page, "Class", "automobile")
        box = page.locator('[data-testid="stMultiSelect"]').filter(has=page.get_by_text("Compare with", exact=True))
        box.first.click()
        page.get_by_role("option").first.click()
        page.keyboard.press("Escape")
        charts = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]')
        charts.nth(1).locator(".ytick text").first.wait_for(timeout=LONG)
        settle(page)
        assert_no_error(page, app)
        names = []
        for i in range(charts.count()):
            chart = charts.nth(i).bounding_box()
            ticks = charts.nth(i).locator(".ytick text")
            for j in range(ticks.count()):
                tick, name = ticks.nth(j).bounding_box(), ticks.nth(j).text_content().strip()
                names.append(name)
                assert chart["x"] <= tick["x"] and tick["x"] + tick["width"] <= chart["x"] + chart["width"], name
        assert len(names) >= 10 and len(names) % 5 == 0 and "automobile" in names, names  # a top five a chart
    finally:
        shutil.rmtree(second)


def test_explain_renders(page, app):
    open_page(page, app, "explain")
    page.wait_for_timeout(1000)
    settle(page, timeout_s=120)  # an attribution on first load
    assert_no_error(page, app)
    screenshot(page, "explain")


def test_testset_cell_click_shows_images(page, app):
    open_page(page, app, "testset")
    page.get_by_text("Confusion matrix", exact=True).wait_for()
    assert_no_error(page, app)
    shown = page.get_by_text("test images of a", exact=False).first.inner_text()  # "N test images of a bird..."
    t = next(i for i, c in enumerate(CLASSES) if f" of a {c} " not in shown)  # a row other than the one shown
    chart = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').nth(1)  # after per-class bars
    area = chart.locator(".nsewdrag").first.bounding_box()  # the plot area: exactly the 10x10 cells
    x, y = area["x"] + (t + 0.5) * area["width"] / 10, area["y"] + (t + 0.5) * area["height"] / 10
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    page.get_by_text(f"test images of a {CLASSES[t]} were classified correctly").wait_for(timeout=60_000)
    settle(page)
    assert_no_error(page, app)
    assert page.locator('[data-testid="stImage"]').count() > 0
    screenshot(page, "testset")


def test_paper_renders(page, app):
    open_page(page, app, "paper")
    assert_no_error(page, app)
    screenshot(page, "paper")


def test_train_tiny_run_then_stop(page, app):
    open_page(page, app, "train")
    assert_no_error(page, app)
    select(page, "Depth", "other (6n+2)")
    fill_number(page, "Depth (6n+2)", 8)
    fill_number(page, "Epochs", 300)  # long enough to be stopped while running
    fill_number(page, "Training images", 320)
    page.get_by_role("button", name="Start training").click()
    main = page.locator('[data-testid="stMain"]')
    page.get_by_role("button", name="Stop", exact=True).wait_for(timeout=LONG)
    # the loss curve appears once the first steps are logged, and keeps growing (found by its key: the page
    # also draws the Compare-runs chart of the shipped histories, which must not be mistaken for it)
    main.locator(f"{LOSS_CHART} .js-plotly-plot").wait_for(timeout=LONG)
    first_points = _curve_points(page)
    deadline = time.time() + 120
    while _curve_points(page) <= first_points and time.time() < deadline:
        page.wait_for_timeout(1000)
    assert _curve_points(page) > first_points, "the training chart did not update"
    assert_no_error(page, app)
    screenshot(page, "train")
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("Stopped at", exact=False).first.wait_for(timeout=LONG)
    assert_no_error(page, app)


LOSS_CHART = ".st-key-train_chart_loss"  # Streamlit's class for the element with key="train_chart_loss"


def _curve_points(page) -> int:
    """How many points the live loss chart draws (its traces' x values), read from Plotly itself."""
    return page.evaluate("""(sel) => {
        const g = document.querySelector(`[data-testid="stMain"] ${sel} .js-plotly-plot`);
        return g && g.data ? g.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0) : 0; }""", LOSS_CHART)


@pytest.mark.parametrize("view,expect", [("maps", "Stage 3: 64 channels of 8×8"), ("blocks", "F(x) + x · RMS"),
                                         ("knockout", "Predictions changed")])
def test_inside_views(page, app, view, expect):
    """Each view of the Inside page from a shared link (?view=...): the page reads the view from the URL."""
    page.goto(f"{app['base']}/inside?view={view}")
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=LONG)
    page.get_by_text(expect, exact=False).first.wait_for(timeout=LONG)
    settle(page)
    assert_no_error(page, app)
    screenshot(page, f"inside-{view}")


def test_predict_downloads_the_model_as_onnx(page, app, tmp_path):
    """The download is made when it is clicked; the file runs in onnxruntime and says what it needs."""
    ort = pytest.importorskip("onnxruntime")
    import json

    open_page(page, app, "predict")
    page.get_by_text("Download this model", exact=False).first.click()
    button = page.get_by_role("button", name="onnx", exact=False).first
    with page.expect_download(timeout=LONG) as info:
        button.click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.suffix == ".onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"image": np.zeros((3, 3, 32, 32), np.float32)})[0]
    assert logits.shape == (3, len(CLASSES))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == list(CLASSES) and "mean" in json.loads(meta["normalization"])
    assert_no_error(page, app)
