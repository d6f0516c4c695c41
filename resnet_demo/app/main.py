"""Page config and navigation. Each page's render() runs inside guarded(), so no traceback reaches a user."""
from __future__ import annotations

import streamlit as st

from . import teacher
from .state import guarded

PAGES = (
    # (module, title, icon, url_path)
    ("train", "Train", ":material/model_training:", "train"),
    ("predict", "Predict", ":material/image_search:", "predict"),
    ("explain", "Explain", ":material/visibility:", "explain"),
    ("testset", "Test set", ":material/grid_on:", "testset"),
    ("paper", "Paper", ":material/menu_book:", "paper"),
)


def _page(module: str, title: str, icon: str, url_path: str, default: bool) -> st.Page:
    def render() -> None:
        import importlib

        guarded(lambda: importlib.import_module(f"resnet_demo.app.pages.{module}").render())

    render.__name__ = f"render_{module}"
    return st.Page(render, title=title, icon=icon, url_path=url_path, default=default)


def run() -> None:
    st.set_page_config(page_title="ResNet on CIFAR-10", page_icon=":material/hub:", layout="wide")
    pages = [_page(*p, default=(i == 1)) for i, p in enumerate(PAGES)]
    nav = st.navigation(pages)
    with st.sidebar:
        st.caption("He et al. 2015, *Deep Residual Learning for Image Recognition*, on CIFAR-10.")
        guarded(teacher.sidebar)
    nav.run()
