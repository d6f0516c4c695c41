"""Page config and navigation. Each page's render() runs inside guarded(), so no traceback reaches a user."""
from __future__ import annotations

from types import ModuleType

import streamlit as st

from . import teacher, threads, uploads
from .pages import explain_page, fool_page, inside_page, paper_page, predict_page, teach_page, testset_page, train_page
from .state import guarded

PAGES = (
    # (module, title, icon, url_path); the first is the home page, served at "/"
    (predict_page, "Predict", ":material/image_search:", "predict"),
    (explain_page, "Explain", ":material/visibility:", "explain"),
    (fool_page, "Fool it", ":material/blur_on:", "fool"),
    (inside_page, "Inside", ":material/layers:", "inside"),
    (train_page, "Train", ":material/model_training:", "train"),
    (teach_page, "Teach", ":material/school:", "teach"),
    (testset_page, "Test set", ":material/grid_on:", "testset"),
    (paper_page, "Paper", ":material/menu_book:", "paper"),
)


def _page(module: ModuleType, title: str, icon: str, url_path: str, default: bool) -> st.Page:
    def render() -> None:
        guarded(module.render)

    render.__name__ = f"render_{url_path}"  # Streamlit keys a callable page by its function's name
    return st.Page(render, title=title, icon=icon, url_path=url_path, default=default)


def run() -> None:
    st.set_page_config(page_title="ResNet on CIFAR-10", page_icon=":material/hub:", layout="wide")
    threads.configure_once()  # one CPU thread per torch call: many tabs share the cores without waiting on each other
    uploads.trim_memory(at_most_every_s=10)  # garbage of past runs and ended sessions, without a cost per rerun
    pages = [_page(*p, default=(i == 0)) for i, p in enumerate(PAGES)]
    nav = st.navigation(pages)
    with st.sidebar:
        st.caption("He et al. 2015, *Deep Residual Learning for Image Recognition*, on CIFAR-10.")
        guarded(teacher.sidebar)
    nav.run()
