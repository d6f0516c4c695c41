"""The server's fine-tune queue (server/teach_queue.py): a few at a time, the rest waiting in order with their
place known, and nothing of a tab kept once the tab is gone."""
from __future__ import annotations

import gc
import time

import numpy as np
import pytest

from resnet_demo.data.cifar import Split
from resnet_demo.nets.model import Arch, CifarResNet
from resnet_demo.server import teach_queue
from resnet_demo.server.teach_queue import DONE, GONE, RUNNING, STOPPED, WAITING, QueueFull, TeachQueue
from resnet_demo.training.teach import SCRATCH, TeachConfig, TeachError

QUICK = TeachConfig(start=SCRATCH, depth=8, steps=3, batch_size=8, eval_every=0)
LONG = TeachConfig(start=SCRATCH, depth=8, steps=5000, batch_size=8, eval_every=0)  # runs until stopped


class Owner:
    """Stands for a tab's state: the queue may hold it only weakly."""


def images(classes=("red", "blue"), per_class=4) -> Split:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(classes)), per_class)
    return Split(rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8), labels, classes)


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_one_at_a_time_the_second_waits_its_turn_and_both_finish():
    queue, owner = TeachQueue(workers=1), Owner()
    first = queue.submit(images(), LONG, owner)
    second = queue.submit(images(), QUICK, owner)
    wait_for(lambda: first.state == RUNNING)
    assert second.state == WAITING and queue.position(second) == 1 and queue.position(first) == 0
    assert queue.counts() == (1, 1)
    queue.cancel(first)
    wait_for(lambda: second.done)
    assert first.state == STOPPED and first.results["taught"].status == "stopped"
    assert second.state == DONE and set(second.results) == {"taught"}
    kinds = [e["type"] for e in second.events]
    assert kinds[0] == "start" and kinds.count("step") == 3 and kinds[-1] == "end"
    assert {e["run"] for e in second.events} == {"taught"}
    assert second.data is None and second.base is None  # the images went with the work
    assert queue.counts() == (0, 0)


def test_a_comparison_reports_both_runs():
    queue, owner = TeachQueue(), Owner()
    cfg = TeachConfig(start="base", depth=8, steps=2, batch_size=8, eval_every=0)
    base = CifarResNet(Arch(8))  # any trained-looking network: the queue only passes it on
    ticket = queue.submit(images(), cfg, owner, compare=True, base=base)
    wait_for(lambda: ticket.done)
    assert ticket.state == DONE, ticket.error
    assert set(ticket.results) == {"trained", "scratch"}
    assert {e["run"] for e in ticket.events} == {"trained", "scratch"}


def test_a_tab_that_goes_leaves_the_queue_and_stops_its_fine_tune():
    queue = TeachQueue(workers=1)
    runner, waiter = Owner(), Owner()
    running = queue.submit(images(), LONG, runner)
    waiting = queue.submit(images(), QUICK, waiter)
    wait_for(lambda: running.state == RUNNING and len(running.events) > 1)
    del waiter
    gc.collect()
    assert queue.counts() == (1, 0)  # the waiting ticket went with its tab
    assert waiting.state == GONE
    del runner
    gc.collect()
    wait_for(lambda: running.done)  # stopped at its next step
    assert running.state == GONE and running.results == {}
    assert queue.counts() == (0, 0)


def test_a_closed_connection_stops_a_fine_tune_and_skips_a_waiting_one():
    queue, owner = TeachQueue(workers=1), Owner()
    connected = {"yes": True}
    running = queue.submit(images(), LONG, owner, alive=lambda: connected["yes"])
    waiting = queue.submit(images(), QUICK, owner, alive=lambda: connected["yes"])
    wait_for(lambda: running.state == RUNNING)
    connected["yes"] = False
    wait_for(lambda: running.done and waiting.done)
    assert running.state == STOPPED and waiting.state == GONE and not waiting.results


def test_cancel_takes_a_waiting_ticket_out():
    queue, owner = TeachQueue(workers=1), Owner()
    running = queue.submit(images(), LONG, owner)
    waiting = queue.submit(images(), QUICK, owner)
    queue.cancel(waiting)
    assert waiting.state == STOPPED and queue.counts() == (1, 0)
    queue.cancel(running)
    wait_for(lambda: running.done)


def test_the_limit_lowers_how_many_run_at_once():
    busy = {"training job": True}
    queue, owner = TeachQueue(workers=2, limit=lambda: 1 if busy["training job"] else 2), Owner()
    a = queue.submit(images(), LONG, owner)
    b = queue.submit(images(), LONG, owner)
    wait_for(lambda: a.state == RUNNING)
    assert b.state == WAITING and queue.position(b) == 1
    busy["training job"] = False
    assert queue.position(b) == 0 and b.state == RUNNING  # asking again finds the slot that opened
    for t in (a, b):
        queue.cancel(t)
    wait_for(lambda: a.done and b.done)


def test_images_that_cannot_be_taught_are_refused_at_once():
    queue = TeachQueue()
    one_image = Split(images().images[:5], np.array([0, 0, 0, 0, 1]), ("red", "blue"))
    with pytest.raises(TeachError, match="only one image"):
        queue.submit(one_image, QUICK, Owner())
    assert queue.counts() == (0, 0)


def test_a_full_queue_says_so():
    queue, owner = TeachQueue(workers=1, max_waiting=1), Owner()
    running = queue.submit(images(), LONG, owner)
    waiting = queue.submit(images(), QUICK, owner)  # kept: a ticket nobody holds leaves the queue
    with pytest.raises(QueueFull, match="waiting already"):
        queue.submit(images(), QUICK, owner)
    for t in (waiting, running):
        queue.cancel(t)
    wait_for(lambda: running.done)


def test_an_unexpected_failure_ends_the_ticket_with_a_message(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("/secret/server/path exploded")

    monkeypatch.setattr(teach_queue, "teach", broken)
    queue = TeachQueue()
    ticket = queue.submit(images(), QUICK, Owner())
    wait_for(lambda: ticket.done)
    assert ticket.state == "failed" and "/secret" not in ticket.error and "log" in ticket.error
    assert queue.counts() == (0, 0)
