"""Helpers shared by the AppTest modules (the fixtures that go with them are in conftest.py)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
TIMEOUT = 120  # importing torch under AppTest takes a while on a loaded 2-core machine (60 s is the floor)


def open_page(url_path: str, at: AppTest | None = None) -> AppTest:
    """Run the app and switch to a page registered by st.navigation with a callable (AppTest.switch_page
    only knows page files, so the page is picked by its url_path in the navigation registry)."""
    at = at if at is not None else AppTest.from_file(APP, default_timeout=TIMEOUT)  # an AppTest not yet run is falsy
    at.run()
    at._page_hash = next(h for h, info in at._registered_pages.items() if info.get("url_pathname") == url_path)
    return at.run()


def assert_clean(at: AppTest) -> None:
    """No exception element and no 'Something went wrong' box (guarded() turns crashes into that)."""
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Something went wrong" in e.value]


def unmark(markdown: str) -> str:
    """What resnet_demo.app.plain's escaping shows on the page: the text without its backslashes and zero-width
    spaces."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown.replace("\u200b", ""))
