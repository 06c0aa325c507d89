"""The daemon's event plumbing: the history rings and a subscriber's bounded queue."""

from __future__ import annotations

from pyvm2.daemon import events
from pyvm2.daemon.events import History, Subscriber


def test_history_keeps_the_last_size_samples_per_process():
    h = History(size=5)
    for t in range(8):
        h.record(100.0 + t, {0: (float(t), t * 10)} if t < 3 else {0: (float(t), t * 10), 1: (1.0, 7)})
    s0 = h.series(0)
    assert s0["t"] == [103.0, 104.0, 105.0, 106.0, 107.0]
    assert s0["cpu"] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert s0["memory"] == [30, 40, 50, 60, 70]
    s1 = h.series(1)
    assert s1["t"] == [103.0, 104.0, 105.0, 106.0, 107.0] and s1["memory"] == [7] * 5


def test_history_forgets_deleted_processes():
    h = History(size=3)
    h.record(1.0, {0: (1.0, 1), 1: (2.0, 2)})
    h.record(2.0, {1: (2.0, 2)})
    assert h.series(0) == {"t": [], "cpu": [], "memory": []}
    assert h.series(1)["t"] == [1.0, 2.0]


def test_a_full_subscriber_queue_drops_and_counts():
    s = Subscriber({})
    for _ in range(events.QUEUE_MAX + 10):
        s.push(b"x\n")
    assert len(s.queue) == events.QUEUE_MAX and s.dropped == 10


def test_claim_takes_only_its_own_commands():
    assert events.claim(b'{"id":1,"cmd":"subscribe","args":{"logs":["a"]}}')["cmd"] == "subscribe"
    assert events.claim(b'{"id":1,"cmd":"history"}')["cmd"] == "history"
    assert events.claim(b'{"id":1,"cmd":"list","args":{"x":"history"}}') is None
    assert events.claim(b'{"cmd":"subscribe", bad json') is None
    assert events.claim(b'{"cmd":"subscribe","args":[]}') is None


def test_subscriber_log_filter():
    s = Subscriber({"logs": [3, "web", "7"]})
    assert s.log_ids == {3, 7} and "web" in s.log_names and not s.log_all
    s.update({"logs": "all"})
    assert s.log_all
