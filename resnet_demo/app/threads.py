"""How many CPU threads each of the app's torch calls may use: one by default.

Streamlit runs every tab's script in its own thread, and each thread that calls torch on the CPU starts its own
team of intra-op threads. With six students predicting at once on a 2-core server, two threads per call made
twelve threads on two cores that mostly waited for each other: the server's threads spent 181 s runnable but
without a CPU for 14 s of work, and a prediction's p95 was 5.5 s; with one thread per call, 107 s and 3.5 s
(BENCHMARKS.md, "Load"). One thread costs a lone user little: a single image is as fast, ResNet-110 on 500 images
(a knockout click) takes 1.5x as long. The training job runs in its own process and keeps all its threads.
"""
from __future__ import annotations

import torch

from resnet_demo.training import budget

ENV = "RESNET_DEMO_APP_THREADS"
DEFAULT = 1

_done = False


def threads_wanted(name: str = ENV) -> int:
    """The setting's value, or DEFAULT (said in the server's log) where it is unset or not from 1 to 256."""
    return budget.env_count(name, DEFAULT, 256)


def configure_once() -> None:
    """Set torch's CPU threads for this server process, once: later reruns leave it alone."""
    global _done
    if _done:
        return
    _done = True
    torch.set_num_threads(threads_wanted())
