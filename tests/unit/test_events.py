"""The daemon's event plumbing: the history rings and a subscriber's bounded queue."""

from __future__ import annotations

from pyvm2.daemon import events
from pyvm2.daemon.events import History, Subscriber


def test_history_keeps_one_point_per_read_within_its_size():
    h = History(window_s=3600.0, size=4)
    for t in range(10):
        h.record(0, 100.0 + t, float(t), t * 10)
    h.record(1, 105.0, 1.0, 7)
    s0 = h.series(0, now=110.0)
    assert s0 == {"t": [106.0, 107.0, 108.0, 109.0], "cpu": [6.0, 7.0, 8.0, 9.0],
                  "memory": [60, 70, 80, 90]}
    assert h.series(1, now=110.0) == {"t": [105.0], "cpu": [1.0], "memory": [7]}


def test_history_keeps_the_last_window_only():
    h = History(window_s=60.0, size=1000)
    for t in range(0, 300, 10):
        h.record(0, 1000.0 + t, 1.0, 1)
    s = h.series(0, now=1300.0)
    assert s["t"] == [1240.0, 1250.0, 1260.0, 1270.0, 1280.0, 1290.0]
    # what fell out is dropped from memory too, a bit at a time
    assert len(h._t[0]) < 30


def test_history_forgets_deleted_processes():
    h = History(size=3)
    h.record(0, 1.0, 1.0, 1)
    h.record(1, 1.0, 2.0, 2)
    h.record(1, 2.0, 2.0, 2)
    h.retain({1})
    assert h.series(0, now=3.0) == {"t": [], "cpu": [], "memory": []}
    assert h.series(1, now=3.0)["t"] == [1.0, 2.0]


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


class _Proc:
    """What a progress record reads of an instance."""

    def __init__(self, pm_id: int) -> None:
        self.pm_id = pm_id
        self.label = f"app:{pm_id}"


def _progress_of(sub: Subscriber) -> dict | None:
    import json

    return None if sub.progress_msg is None else json.loads(sub.progress_msg)


def test_progress_reaches_only_the_subscriptions_of_the_same_client():
    ev = events.Events(daemon=None)  # type: ignore[arg-type]
    token = events.CLIENT.set(41)
    try:
        mine = Subscriber({"progress": True})
    finally:
        events.CLIENT.reset(token)
    token = events.CLIENT.set(99)
    try:
        other = Subscriber({"progress": True})
    finally:
        events.CLIENT.reset(token)
    ev.subscribers.update({mine, other})
    procs = [_Proc(i) for i in range(3)]
    token = events.CLIENT.set(41)
    try:
        with ev.progress("stopping", procs) as prog:
            assert _progress_of(mine) == {"type": "progress", "verb": "stopping", "done": 0,
                                          "total": 3, "waiting": "app:0"}
            prog.done(procs[1])   # out of order: still waiting for the first
            prog.done(procs[1])   # counted once
            assert _progress_of(mine) == {"type": "progress", "verb": "stopping", "done": 1,
                                          "total": 3, "waiting": "app:0"}
            prog.done(procs[0])
            prog.done(procs[2])
            assert _progress_of(mine)["done"] == 3 and _progress_of(mine)["waiting"] is None
            with ev.progress("starting", procs[:1]):   # a nested record is the one shown
                assert _progress_of(mine)["verb"] == "starting"
            assert _progress_of(mine)["verb"] == "stopping"
    finally:
        events.CLIENT.reset(token)
    assert other.progress_msg is None
    assert ev._progress == {}   # closed records are forgotten


def test_a_command_without_a_known_client_keeps_no_record():
    ev = events.Events(daemon=None)  # type: ignore[arg-type]
    with ev.progress("stopping", [_Proc(0)]) as prog:
        prog.done(_Proc(0))
    assert ev._progress == {}
