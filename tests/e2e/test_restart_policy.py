"""What happens when an app exits by itself: back-off, errored, autorestart, stop_exit_codes,
restart_delay."""

from __future__ import annotations

import re
import time
from itertools import pairwise

import pytest
from conftest import Pyvm2, wait_for


def start_times(pv: Pyvm2, name: str) -> list[float]:
    return [float(t) for t in re.findall(r"started (\d+\.\d+)", pv.read_log(name))]


@pytest.mark.timeout(90)
def test_crash_loop_backs_off_with_growing_delays(pv: Pyvm2) -> None:
    # What a crash loop costs in CPU is measured in bench/ (crash_cpu), not asserted here.
    eco = pv.write_eco([pv.app("crash", "exit_now.py", max_restarts=100)])
    pv.ok("start", str(eco))
    wait_for(lambda: len(start_times(pv, "crash")), lambda n: n >= 8, timeout=60,
             what="eight runs of the crashing app")

    p = pv.proc("crash")
    assert p["pm2_env"]["status"] in ("waiting restart", "online", "launching", "stopping"), p
    times = start_times(pv, "crash")
    gaps = [b - a for a, b in pairwise(times)]
    assert len(gaps) >= 4, times
    assert gaps[-1] > 1.5 * gaps[0], f"the restart delays do not grow: {gaps}"
    assert all(g >= 0.09 for g in gaps), f"a restart came without a delay: {gaps}"


def test_unstable_exits_end_errored_after_max_restarts(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("crash", "exit_now.py", max_restarts=3)])
    pv.run("start", str(eco))
    [p] = pv.wait_status("crash", "errored")
    assert p["pm2_env"]["restart_time"] == 2, p
    assert p["pid"] in (0, None), p
    assert len(start_times(pv, "crash")) == 3
    assert p["pm2_env"]["exit_code"] == 1, p
    # errored is final: nothing starts it again
    time.sleep(1)  # an observation window with no restart expected
    assert len(start_times(pv, "crash")) == 3
    assert pv.status("crash") == ["errored"]

    # a user start gives it a fresh chance
    pv.run("start", "crash")
    wait_for(lambda: len(start_times(pv, "crash")), lambda n: n > 3,
             what="the errored app to run again after `pyvm2 start crash`")


def test_stop_during_back_off_cancels_the_pending_restart(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("crash", "exit_now.py", max_restarts=100,
                               restart_delay=2000)])
    pv.ok("start", str(eco))
    pv.wait_status("crash", "waiting restart")
    pv.ok("stop", "crash")
    assert pv.status("crash") == ["stopped"]
    runs = len(start_times(pv, "crash"))
    time.sleep(2.5)  # longer than restart_delay: the cancelled restart must not happen
    assert len(start_times(pv, "crash")) == runs
    assert pv.status("crash") == ["stopped"]


def test_autorestart_false_leaves_the_app_stopped_with_its_exit_code(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("once", "exit_now.py", args=["3"], autorestart=False)])
    pv.ok("start", str(eco))
    [p] = pv.wait_status("once", "stopped")
    assert p["pm2_env"]["exit_code"] == 3, p
    assert p["pm2_env"]["restart_time"] == 0, p
    time.sleep(1)  # an observation window: it must not be restarted
    assert len(start_times(pv, "once")) == 1
    assert pv.status("once") == ["stopped"]


def test_stop_exit_codes_skip_the_restart_only_for_listed_codes(pv: Pyvm2) -> None:
    eco = pv.write_eco([
        pv.app("clean", "exit_now.py", args=["0"], stop_exit_codes=[0], min_uptime=100),
        pv.app("dirty", "exit_now.py", args=["1"], stop_exit_codes=[0], min_uptime=100,
               env={"EXIT_AFTER": "0.3"}),
    ])
    pv.run("start", str(eco))
    [clean] = pv.wait_status("clean", "stopped")
    assert clean["pm2_env"]["exit_code"] == 0
    assert clean["pm2_env"]["restart_time"] == 0
    wait_for(lambda: pv.proc("dirty")["pm2_env"]["restart_time"], lambda n: n >= 2,
             what="the app exiting with an unlisted code to be restarted")
    assert len(start_times(pv, "clean")) == 1


def test_restart_delay_waits_between_runs(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("delayed", "exit_now.py", args=["1"], restart_delay=1500,
                               min_uptime=100, env={"EXIT_AFTER": "0.3"})])
    pv.ok("start", str(eco))
    wait_for(lambda: pv.status("delayed"), lambda s: s == ["waiting restart"],
             what="the app to wait for its restart")
    times = wait_for(lambda: start_times(pv, "delayed"), lambda t: len(t) >= 3,
                     what="three runs of the delayed app")
    gaps = [b - a for a, b in pairwise(times)]
    # each gap is the 0.3 s run plus the 1.5 s delay
    assert all(g >= 1.75 for g in gaps), gaps
    assert pv.proc("delayed")["pm2_env"]["restart_time"] >= 2
