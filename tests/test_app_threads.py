"""The app server's CPU threads per torch call: one unless the person running it says otherwise."""
from __future__ import annotations

import pytest
import torch

from resnet_demo.app import threads


@pytest.mark.parametrize("value, wanted", [
    (None, 1), ("", 1), (" 2 ", 2), ("16", 16), ("256", 256),
    ("0", 1), ("-1", 1), ("257", 1), ("two", 1), ("²", 1), ("1" * 5000, 1), ("1.5", 1),
])
def test_threads_wanted(value, wanted, caplog, monkeypatch):
    if value is None:
        monkeypatch.delenv(threads.ENV, raising=False)
    else:
        monkeypatch.setenv(threads.ENV, value)
    assert threads.threads_wanted() == wanted
    if value is not None and value.strip() and str(wanted) != value.strip():
        assert threads.ENV in caplog.text  # a bad setting is said in the server's log, not ignored silently


def test_configure_once_sets_torch_and_then_leaves_it(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_done", False)
    monkeypatch.setenv(threads.ENV, "1")
    try:
        threads.configure_once()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv(threads.ENV, "2")
        threads.configure_once()  # a later rerun changes nothing
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
