"""The monitor's schedule: how soon an app is read again, from its headroom and its growth."""

from __future__ import annotations

import pytest

from pyvm2.daemon import monitor
from pyvm2.daemon.monitor import GROWTH_BOUND, LAG_S, MAX_S, MIN_S, SLOW_S, next_interval

MB = 1000 * 1000


def test_an_app_without_a_limit_is_read_slowly():
    assert next_interval(50 * MB, None, 0.0) == SLOW_S
    assert next_interval(50 * MB, None, 10 * MB, slow_s=40.0) == 40.0


def test_a_steady_app_far_below_its_limit_is_read_every_few_seconds():
    assert next_interval(1 * MB, 1000 * MB, 0.0) == pytest.approx(LAG_S + 999 * MB / GROWTH_BOUND)
    assert next_interval(1 * MB, 100_000 * MB, 0.0) == MAX_S


@pytest.mark.parametrize("rate", [10 * MB, 100 * MB, GROWTH_BOUND])
def test_growth_up_to_the_bound_is_seen_within_the_lag_of_crossing(rate):
    """Simulated: an app idle at 10 MB, then growing at `rate` until read over its limit."""
    limit, memory, t, start = 300 * MB, 10 * MB, 0.0, 7.3
    prev = None
    while True:
        grown = max(0.0, t - start) * rate
        memory = 10 * MB + grown
        if memory > limit:
            crossed = start + (limit - 10 * MB) / rate
            assert t - crossed <= LAG_S + MIN_S
            return
        growth = 0.0 if prev is None else max(0.0, (memory - prev[0]) / (t - prev[1]))
        prev = (memory, t)
        t += next_interval(int(memory), limit, growth)


def test_over_the_limit_is_read_again_at_once():
    assert next_interval(200 * MB, 100 * MB, 0.0) == MIN_S


def test_pss_of_a_live_process_is_at_most_its_rss():
    import os

    st = monitor._stat(os.getpid())
    assert st is not None
    pss = monitor._pss(os.getpid())
    assert 0 < pss <= st[2] + 4096 * 64


def test_a_kept_file_of_an_exited_process_is_never_read_for_its_pids_next_owner():
    import subprocess

    p = subprocess.Popen(["sleep", "30"])
    try:
        assert monitor._stat(p.pid, cached=True)
        assert (p.pid, "stat") in monitor._FILES._fds
    finally:
        p.kill()
        p.wait()
    assert monitor._stat(p.pid, cached=True) is None
    assert (p.pid, "stat") not in monitor._FILES._fds


def test_kept_files_are_bounded():
    files = monitor._OpenFiles(cap=2)
    import os

    for name in ("stat", "statm", "status"):
        files.read(os.getpid(), name)
    assert len(files) == 2 and (os.getpid(), "stat") not in files._fds   # the oldest went
    files.read(os.getpid(), "stat")
    files.drop(os.getpid())
    assert list(files._fds) == [(os.getpid(), "status")]


def test_a_lone_guarded_process_takes_the_short_read_until_it_has_a_child():
    import os
    import subprocess
    import sys
    import time

    class App:
        pm_id, cpu, memory, memory_measure, memory_limit = 0, 0.0, 0, "rss", 1 << 40

        def __init__(self, pid: int) -> None:
            self.pid = pid

    # a child that forks a grandchild when its stdin gets a line
    code = "import os, sys, time\nsys.stdin.readline()\nif os.fork() == 0: time.sleep(60)\n" \
           "time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        app = App(p.pid)
        m = monitor.Monitor(lambda pm_id, reason: None)
        m.sample_now([app])                       # the full read: it keeps statm and children
        t = m._tracks[0]
        assert t.single is not None and t.members == {p.pid}
        assert m._quick([t], time.monotonic()) == [t]  # its statm is not kept yet
        monitor._read(t, time.monotonic() + 0.01)  # a read between cpu reads keeps it
        assert m._quick([t], time.monotonic() + 0.02) == [] and app.memory > 0
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
        deadline = time.monotonic() + 20
        while not open(f"/proc/{p.pid}/task/{p.pid}/children").read().strip():
            assert time.monotonic() < deadline, "the grandchild never appeared"
            time.sleep(0.01)
        assert m._quick([t], time.monotonic()) == [t]  # a child: the full read walks the tree
        m.apply([t], monitor._read_all([t], time.monotonic()), time.monotonic())
        assert len(t.members) == 2 and t.single is None
    finally:
        for kid in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split():
            os.kill(int(kid), 9)
        p.kill()
        p.wait()


def test_reads_fall_early_onto_the_grid_never_late():
    import random

    rnd = random.Random(7)
    for _ in range(2000):
        now, interval = rnd.uniform(0, 1e6), rnd.choice([0.1, 0.3, 0.9, 1.0, 1.7, 2.0, 3.1, 10.0])
        due = monitor.aligned(now, interval)
        assert now + interval / 2 <= due <= now + interval
        if interval >= 2 * monitor.GRID_S:
            assert due == int(due)              # whole seconds: shared with the daemon's tick
        elif interval >= monitor.GRID_S:
            assert due * 2 == int(due * 2)


def test_every_read_is_recorded_and_a_stopped_app_gets_a_zero():
    import subprocess
    import time

    class App:
        pm_id, cpu, memory, memory_measure, memory_limit = 3, 0.0, 0, "rss", None

        def __init__(self, pid: int | None) -> None:
            self.pid = pid

    p = subprocess.Popen(["sleep", "60"])
    try:
        points: list[tuple] = []
        m = monitor.Monitor(lambda pm_id, reason: None, record=lambda *a: points.append(a))
        app = App(p.pid)
        m.sample_now([app])
        assert len(points) == 1 and points[0][0] == 3 and points[0][3] > 0
        # a lone process without a limit keeps its files while they all fit: the short read
        t = m._tracks[3]
        assert m._keep_all and t.single is not None and t.single[0][1] == "stat"
        assert m._quick([t], time.monotonic() + 1) == [] and len(points) == 2
        app.pid = None
        m.sweep([app], time.monotonic())
        assert points[-1][0] == 3 and points[-1][2:] == (0.0, 0) and 3 not in m._tracks
    finally:
        p.kill()
        p.wait()
