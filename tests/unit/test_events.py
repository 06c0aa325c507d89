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
