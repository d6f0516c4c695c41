"""The pages with a model taught classes of its own (three, one of them a CIFAR-10 name): Predict draws its names
and judges a test image only where the model knows its class, Explain offers its classes, Inside's knockout says
why it is not for this model, and the Test-set page leaves it out."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import resnet_demo  # noqa: F401  (importable after the chdir below)

pytest.importorskip("streamlit")
from apptest_util import APP, TIMEOUT, assert_clean  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

pytestmark = pytest.mark.timeout(900)
TAUGHT = ("teapot", "cat", "bike")  # "cat" is also a CIFAR-10 class: a cat test image can be judged


@pytest.fixture(scope="module")
def taught_run(tmp_path_factory) -> Path:
    from resnet_demo.data.cifar import Split, select_classes, synthetic_cifar10
    from resnet_demo.training.teach import SCRATCH, TeachConfig, save_result, teach

    picked = select_classes(synthetic_cifar10(60, 10).train, ("dog", "cat", "truck"))
    result = teach(Split(picked.images, picked.labels, TAUGHT), TeachConfig(start=SCRATCH, depth=8, steps=3,
                                                                             batch_size=8))
    runs = tmp_path_factory.mktemp("runs")
    save_result(result, runs / "kitchen")
    return runs


@pytest.fixture
def env(app_env, tiny_weights_dir, taught_run):
    app_env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    app_env.setenv("RESNET_DEMO_RUNS", str(taught_run))
    return app_env


def page(name: str, **query) -> AppTest:
    at = AppTest.from_string(f"from resnet_demo.app.pages import {name}_page\n{name}_page.render()\n",
                             default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def test_predict_draws_the_taught_names_and_judges_only_what_it_knows(env, tiny_weights_dir):
    from resnet_demo.data.testimages import read_test_images

    images = read_test_images(tiny_weights_dir)
    cat = next(i for i, (_, label) in sorted(images.items()) if label == 3)
    ship = next(i for i, (_, label) in sorted(images.items()) if label == 8)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["model"], at.query_params["test"] = "run:kitchen", str(ship)
    at.run()
    assert_clean(at)
    assert at.selectbox(key="model").value == "run:kitchen"
    assert any("the 3 classes it was taught (teapot, cat, bike)" in c.value for c in at.caption)
    (chart,) = at.get("plotly_chart")
    bars = json.loads(chart.proto.spec)["data"][0]
    assert sorted(bars["y"]) == sorted(TAUGHT)
    from resnet_demo.app.charts.style import BLUE, GREEN, RED

    assert bars["marker"]["color"][-1] == BLUE  # a ship: the model has no such class, so nothing is judged
    at.selectbox(key="predict_index").set_value(cat).run()
    assert_clean(at)
    colors = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["marker"]["color"]
    assert colors[-1] in (GREEN, RED) and GREEN in colors  # a cat: judged against the model's own "cat"


def test_explain_offers_the_taught_classes(env):
    at = page("explain", model="run:kitchen")
    assert_clean(at)
    options = at.selectbox(key="explain_target").options  # as shown: "teapot (41.2%)"
    assert options[0].startswith("Predicted")
    assert [o.split(" (")[0] for o in options if not o.startswith(("Predicted", "True"))] == list(TAUGHT)
    assert any("Grad-CAM for “" in c for el in at.get("image") for c in el.captions)


def test_inside_maps_work_and_its_knockout_says_why_not(env):
    at = page("inside", model="run:kitchen")
    assert_clean(at)
    assert any(m.value.startswith("ResNet-8 · teapot, cat, bike") and any(n in m.value for n in TAUGHT)
               for m in at.markdown)
    at.session_state["inside_view"] = "knockout"
    at.run()
    assert_clean(at)
    assert any("was taught other classes" in i.value for i in at.info)


def test_the_testset_page_leaves_a_taught_model_out(env):
    at = page("testset", model="run:kitchen")
    assert_clean(at)
    assert "run:kitchen" not in at.selectbox(key="model").options
    assert at.selectbox(key="model").value == "resnet8"
