"""One poller per server (issue 29, item 7): every tab that watches the job used to read the run files once a second
on its own, and build its own charts; now one reading and one set of figures per interval serve them all."""
from __future__ import annotations

import threading

import pytest

from apptest_util import assert_clean, open_page
from resnet_demo.app import live
from resnet_demo.app.charts import curves as charts
from resnet_demo.server import jobs
from resnet_demo.server.watch import Poller

pytestmark = pytest.mark.timeout(900)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_many_threads_asking_at_once_cost_one_read(running_job, monkeypatch):
    runs, run_id = running_job
    reads = []
    real = jobs.current
    monkeypatch.setattr(jobs, "current", lambda r=None: reads.append(1) or real(r))
    clock = Clock()
    poller = Poller(runs, interval=1.0, clock=clock)
    seen, barrier = [], threading.Barrier(30)

    def tab():
        barrier.wait()
        seen.append(poller.current())

    threads = [threading.Thread(target=tab) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reads) == 1 and poller.reads == 1
    assert all(s is seen[0] for s in seen) and seen[0].run_id == run_id and seen[0].active
    assert poller.status(run_id) is seen[0] and poller.active()["run_id"] == run_id  # the same reading

    clock.now = 0.9
    poller.current()
    assert len(reads) == 1  # within the interval: the same answer
    clock.now = 1.0
    poller.current()
    assert len(reads) == 2  # one new reading per interval
    poller.refresh()
    poller.current()
    assert len(reads) == 3  # after this server changed the job, at once


def test_answers_nobody_asks_for_are_forgotten(tmp_path):
    clock = Clock()
    poller = Poller(tmp_path / "runs", interval=1.0, clock=clock)
    poller.list_runs()
    for i in range(5):
        poller.status(f"run{i}")
    clock.now = 1000.0
    poller.current()
    assert list(poller._answers) == [("current",)]


def test_thirty_watching_tabs_read_the_job_once_and_draw_its_charts_once(running_job, monkeypatch):
    runs, run_id = running_job
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(runs))
    monkeypatch.setenv("RESNET_DEMO_DATA", str(runs.parent / "no-data"))
    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(runs.parent / "no-weights"))
    monkeypatch.setattr(live, "REFRESH_S", 3600.0)  # this server's poller: one reading for the whole test
    live._figures.clear()  # figures of an earlier test's stand-in job (same id, same records) would be reused
    reads, drawn = [], []
    real_current, real_loss = jobs.current, charts.loss_figure
    monkeypatch.setattr(jobs, "current", lambda r=None: reads.append(1) or real_current(r))
    monkeypatch.setattr(charts, "loss_figure", lambda events: drawn.append(1) or real_loss(events))
    tabs = [open_page("train") for _ in range(3)]  # three sessions, each rendering the page twice
    for at in tabs:
        at.run()
        assert_clean(at)
        assert any("ResNet-20" in s.value for s in at.subheader)
    assert len(reads) == 1, "every tab read the job's files on its own"
    assert len(drawn) == 1, "every tab built the charts on its own"
