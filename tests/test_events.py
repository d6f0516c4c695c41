"""The event stream: one writer and one reader, whole or incremental, that never return half a record."""
from __future__ import annotations

import json
import os

from resnet_demo.store.events import EventLog, last, latest_attempt_end, read_events, write_events


def test_a_live_log_reads_the_same_whole_and_incrementally(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log({"type": "start", "step": 0})
    log({"type": "step", "step": 1, "loss": float("nan")})  # NaN survives: a diverged run's last record
    assert read_events(path) == read_events(path, cached=True)
    assert [e["type"] for e in read_events(path, cached=True)] == ["start", "step"]
    with open(path, "a") as f:  # a writer mid-line: neither reader returns the half record
        f.write('{"type": "step", "st')
    assert len(read_events(path)) == len(read_events(path, cached=True)) == 2
    with open(path, "a") as f:
        f.write('ep": 2}\n')
    assert read_events(path, cached=True)[-1] == {"type": "step", "step": 2} == read_events(path)[-1]
    log.close()


def test_the_incremental_reader_starts_over_on_a_new_or_shorter_file(tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(path, [{"type": "start"}, {"type": "step", "step": 1}, {"type": "end", "status": "stopped"}])
    assert len(read_events(path, cached=True)) == 3
    write_events(path, [{"type": "start", "fresh": True}])  # replaced atomically: another inode
    assert read_events(path, cached=True) == [{"type": "start", "fresh": True}]
    with open(path, "r+") as f:  # truncated in place and rewritten shorter
        f.truncate(0)
        f.write(json.dumps({"type": "end"}) + "\n")
    assert read_events(path, cached=True) == [{"type": "end"}]
    os.unlink(path)
    assert read_events(path, cached=True) == [] == read_events(path)


def test_damaged_lines_are_skipped_and_the_latest_attempt_is_told_apart(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "start"}\nnot json\n{"type": "end", "status": "stopped", "step": 3}\n'
                    '{"type": "start", "resumed_from_step": 3}\n{"type": "checkpoint", "step": 4}\n')
    events = read_events(path)
    assert [e["type"] for e in events] == ["start", "end", "start", "checkpoint"]
    assert last(events, "start") == {"type": "start", "resumed_from_step": 3} and last(events, "epoch") is None
    assert latest_attempt_end(events) is None  # the resumed attempt has not ended
    assert latest_attempt_end(events[:2]) == {"type": "end", "status": "stopped", "step": 3}


def test_current_phase_is_that_of_the_latest_records():
    from resnet_demo.store.events import current_phase

    phase = {"type": "phase", "phase": "final_evaluation", "step": 2, "test_images": 10}
    start, step, end = {"type": "start"}, {"type": "step", "step": 2}, {"type": "end", "status": "completed"}
    assert current_phase([start, step, {"type": "checkpoint"}, phase]) == phase
    assert current_phase([start, step]) is None and current_phase([]) is None
    assert current_phase([start, step, phase, end]) is None  # it ended
    assert current_phase([start, step, phase, start, step]) is None  # resumed, training again
