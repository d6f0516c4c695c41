"""The Explain page under AppTest: reached from Predict like a student would (its "Explain this prediction"
button), every method draws a map, the method lives in the URL, and it renders without models too."""
from __future__ import annotations

import io

import pytest
from PIL import Image

import resnet_demo  # noqa: F401  (importable after the chdir below)
from resnet_demo.interpret.explain import METHODS

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_util import APP, TIMEOUT  # noqa: E402

PAGE = "from resnet_demo.app.pages import explain_page\nexplain_page.render()\n"
CHEAP = {"ig_steps": 4, "sg_samples": 4}  # slider keys -> values that keep the test quick


@pytest.fixture
def env(app_env):
    return app_env


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def captions(at: AppTest) -> list[str]:
    return [c for el in at.get("image") for c in el.captions]


def cheap(at: AppTest) -> AppTest:
    for key, value in CHEAP.items():
        if any(s.key == key for s in at.slider):
            at.slider(key=key).set_value(value)
    return at.run()


@pytest.fixture
def explain_page(env, tiny_weights_dir) -> AppTest:
    """The real app: open Predict (the default page), then follow its Explain button."""
    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    ok(at)
    (button,) = [b for b in at.button if b.key and b.key.startswith("explain_")]
    button.click().run()
    ok(at)
    assert at.title[0].value == "Explain"
    return at


def test_renders_without_models(env):
    at = AppTest.from_string(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("No trained model" in w.value for w in at.warning)


def test_every_method_draws_a_map(explain_page):
    at = explain_page
    assert at.radio(key="explain_source").value == "Current image"
    assert at.query_params.get("method") == "gradcam"
    for method in METHODS:
        at.selectbox(key="method").set_value(method).run()
        cheap(at)
        ok(at)
        assert at.query_params.get("method") == method
        label = METHODS[method].label
        assert any(c.startswith(f"{label} for “") for c in captions(at)), captions(at)
        assert any("Computed in" in c.value for c in at.caption)


def test_all_methods_side_by_side_and_targets(explain_page):
    at = explain_page
    at.selectbox(key="method").set_value("all").run()
    cheap(at)
    ok(at)
    shown = [c.split(" · ")[0] for c in captions(at) if " · " in c]
    assert sorted(shown) == sorted(m.label for m in METHODS.values())  # a 3-column grid, read column by column
    target = at.selectbox(key="explain_target")
    assert target.options[:2] == [target.format_func("predicted"), target.format_func("true")]
    target.set_value("truck").run()
    ok(at)
    assert "“truck”" in " ".join(c.value for c in at.caption)
    at.slider(key="explain_opacity").set_value(1.0).run()
    ok(at)


def test_method_from_the_url_and_an_uploaded_photo(env, tiny_weights_dir):
    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    at = AppTest.from_string(PAGE, default_timeout=TIMEOUT)
    at.query_params["method"] = "occlusion"
    at.run()
    ok(at)
    assert at.selectbox(key="method").value == "occlusion"
    at.radio(key="explain_source").set_value("Upload").run()
    assert not at.get("image") or not any("Occlusion for" in c for c in captions(at))
    at.file_uploader(key="explain_upload").set_value(("empty.jpg", b"", "image/jpeg")).run()
    assert not at.exception and any("empty" in e.value for e in at.error)
    buf = io.BytesIO()
    Image.new("RGB", (120, 80), (90, 90, 200)).save(buf, "WEBP")
    at.file_uploader(key="explain_upload").set_value(("blue.webp", buf.getvalue(), "image/webp")).run()
    ok(at)
    assert any(c.startswith("Occlusion for “") for c in captions(at))
    # a bad ?method= falls back to the default instead of failing
    at2 = AppTest.from_string(PAGE, default_timeout=TIMEOUT)
    at2.query_params["method"] = "no-such-method"
    at2.run()
    ok(at2)
    assert at2.selectbox(key="method").value == "gradcam"


HOSTILE_TEST_VALUES = ["²", "9" * 5000, "-1", " 5", "5 ", "", "1e3", "0x10", "٣", "99999999", "5\n"]


@pytest.mark.parametrize("page", ["predict", "explain"])
def test_odd_test_query_values_fall_back_cleanly(env, tiny_weights_dir, page):
    """Issue 29: ?test=² and a 5,000-digit value broke Predict and Explain (str.isdigit accepts what int refuses),
    and a reload kept them broken. Any value that is not a shown test image's index is ignored."""
    from apptest_util import assert_clean

    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    script = APP if page == "predict" else PAGE
    for value in HOSTILE_TEST_VALUES:
        at = AppTest.from_file(script, default_timeout=TIMEOUT) if page == "predict" else AppTest.from_string(
            script, default_timeout=TIMEOUT)
        at.query_params["test"] = value
        at.run()
        assert_clean(at)
        assert not at.error, (value[:20], [e.value for e in at.error])
        index = at.selectbox(key=f"{page}_index").value
        assert at.query_params.get("test") == str(index), value[:20]  # the URL now names the image shown
