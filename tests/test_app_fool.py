"""The Fool-it page under AppTest: an attack on a test image shows the original, the amplified change and the
attacked image with both top fives; PGD, a target and every view below work; the URL keeps attack, ε and view;
anything a URL or a stale form could carry is checked again on the server; the depth table is drawn when shipped."""
from __future__ import annotations

import json
import shutil

import pytest

import resnet_demo  # noqa: F401  (importable after the chdir below)
from resnet_demo.interpret import robustness
from resnet_demo.interpret.attacks import Settings

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_util import TIMEOUT, assert_clean, open_page  # noqa: E402

PAGE = "from resnet_demo.app.pages import fool_page\nfool_page.render()\n"


def ok(at: AppTest) -> None:
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]


def captions(at: AppTest) -> list[str]:
    return [c for el in at.get("image") for c in el.captions]


def markdown(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


@pytest.fixture
def weights(app_env, tiny_weights_dir, tmp_path):
    """A copy of the tiny shipped model's folder (a test may add a table to it), pointed at by the app."""
    directory = shutil.copytree(tiny_weights_dir, tmp_path / "weights")
    app_env.setenv("RESNET_DEMO_WEIGHTS", str(directory))
    return directory


def fool_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_string(PAGE, default_timeout=TIMEOUT)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def test_renders_without_models(app_env):
    at = fool_page()
    assert_clean(at)
    assert any("No trained model" in w.value for w in at.warning)


def test_the_page_is_in_the_app_after_explain(weights):
    at = open_page("fool")
    ok(at)
    assert at.title[0].value == "Fool it"
    from resnet_demo.app.main import PAGES

    assert [p[3] for p in PAGES].index("fool") == [p[3] for p in PAGES].index("explain") + 1


def test_an_fgsm_attack_on_a_test_image(weights):
    at = fool_page()
    ok(at)
    shown = captions(at)
    assert shown[0].startswith("Original") and shown[1].startswith("The change, ×32") and "±4/255" in shown[1]
    assert shown[2] == "Attacked, at true scale (FGSM, ε = 4/255)"
    assert "Fooled." in markdown(at) or "Not fooled" in markdown(at)
    assert at.query_params["attack"] == "fgsm" and at.query_params["eps"] == "4"
    assert at.query_params["view"] == "smallest"
    assert charts(at) == 3  # two top fives and the smallest-eps bars (computed at once for FGSM)
    at.slider(key="fool_eps").set_value(0).run()
    ok(at)
    assert "No change at ε = 0" in captions(at) and "Not fooled" in markdown(at)


def test_pgd_with_a_target_and_its_settings(weights):
    at = fool_page({"attack": "pgd", "eps": "8"})
    ok(at)
    assert at.selectbox(key="fool_attack").value == "pgd" and at.slider(key="fool_eps").value == 8
    at.slider(key="fool_steps").set_value(3).run()
    at.selectbox(key="fool_goal").set_value("cat").run()
    ok(at)
    assert "PGD, 3 steps of ε/4, ε = 8/255, towards “cat”" in " ".join(captions(at))
    text = markdown(at)
    assert "as asked" in text or "“cat” went from" in text
    assert charts(at) == 2  # PGD's search waits for its button
    (button,) = [b for b in at.button if b.key == "fool_search"]
    button.click().run()
    ok(at)
    assert charts(at) == 3


@pytest.mark.parametrize("view,expect", [("explain", "Attacked: why “"), ("lands", "Each dot is a test image")])
def test_the_views_below(weights, view, expect):
    at = fool_page({"view": view})
    ok(at)
    assert at.segmented_control(key="fool_view").value == view
    assert any(expect in c for c in captions(at) + [c.value for c in at.caption]), (captions(at), at.caption)
    if view == "explain":
        at.selectbox(key="fool_method").set_value("saliency").run()
        ok(at)
        assert "Saliency" in markdown(at)
    else:
        assert charts(at) == 3


def test_the_depth_table_is_drawn_when_shipped(weights):
    at = fool_page({"view": "depth"})
    ok(at)
    assert any("No table of accuracy under attack" in i.value for i in at.info)
    for name, label, plain, drop in (("resnet8", "ResNet-8", False, 0.0), ("plain8", "Plain-8", True, 0.1)):
        info = {"label": label, "sha256": name * 8, "depth": 8, "plain": plain}
        for attack, eps, acc in (("fgsm", 0.0, 0.9), ("fgsm", 2.0, 0.5), ("pgd", 2.0, 0.2), ("pgd", 0.0, 0.9)):
            row = robustness.row_for(name, Settings(attack, eps), 100)
            acc = acc - drop if eps else acc
            robustness.save_row(robustness.table_path(weights), {**row, "correct": round(100 * acc), "accuracy": acc},
                                info, {"sha256": "cd" * 32, "data": "full"},
                                f"python -m resnet_demo robustness --model all --attack {attack}")
    at = fool_page({"view": "depth"})
    ok(at)
    assert charts(at) == 3
    assert "Under PGD at ε = 2/255, ResNet-8 keeps 20.0% of its answers right and Plain-8 10.0%." in markdown(at)
    assert any("gradient masking" in c.value for c in at.caption)
    (weights / robustness.FILENAME).write_text(json.dumps({"no": "results"}))
    at = fool_page({"view": "depth"})
    assert_clean(at)
    assert any("could not be read" in e.value for e in at.error)


@pytest.mark.parametrize("query", [{"eps": "99"}, {"eps": "-1"}, {"eps": "4.5"}, {"attack": "cw"},
                                   {"view": "nope"}, {"eps": "9" * 500}])
def test_odd_url_values_fall_back_to_the_defaults(weights, query):
    at = fool_page(query)
    ok(at)
    assert at.slider(key="fool_eps").value == 4 and at.selectbox(key="fool_attack").value == "fgsm"


def test_settings_are_checked_again_on_the_server(weights):
    script = ("from resnet_demo.app.pages import fool_page\nfrom resnet_demo.interpret.attacks import Settings\n"
              "for s in (Settings('pgd', 4.0, steps=50), Settings('fgsm', 40.0), Settings('fgsm', 2.0, target=12)):\n"
              "    assert fool_page._checked(s) is None\n"
              "assert fool_page._checked(Settings('pgd', 4.0, steps=20)) is not None\n")
    at = AppTest.from_string(script, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    messages = [e.value for e in at.error]
    assert len(messages) == 3 and all(m.startswith("These settings cannot be used") for m in messages)
    assert "1 to 20 steps" in messages[0] and "from 0 to 16" in messages[1] and "target class" in messages[2]


def test_the_search_takes_at_most_three_other_models(weights, app_env, tiny_run, tmp_path):
    import os

    runs = tmp_path / "runs"
    for i in range(5):  # five finished runs besides the shipped model: more than the search takes
        shutil.copytree(tiny_run, runs / f"copy{i}")
    assert os.environ["RESNET_DEMO_RUNS"] == str(runs)
    at = fool_page()
    ok(at)
    names = at.multiselect(key="fool_compare").options
    assert len(names) == 5
    at.session_state["fool_compare"] = [f"run:copy{i}" for i in range(5)]  # as a tampered form could send it
    at.run()
    ok(at)
    assert "Search 3 models" in [b.label for b in at.button]


def test_an_uploaded_photo_is_attacked_away_from_the_networks_own_answer(weights):
    import io

    from PIL import Image

    at = fool_page()
    at.radio(key="fool_source").set_value("Upload").run()
    buf = io.BytesIO()
    Image.new("RGB", (90, 60), (200, 80, 40)).save(buf, "PNG")
    at.file_uploader(key="fool_upload").set_value(("my photo.png", buf.getvalue(), "image/png")).run()
    ok(at)
    assert any(c.startswith("Attacked, at true scale") for c in captions(at))
    assert any("An upload has no true class" in c.value for c in at.caption)
    at.file_uploader(key="fool_upload").set_value(("broken.png", b"not an image", "image/png")).run()
    assert_clean(at)
    assert any("not an image" in e.value for e in at.error)
