"""Resource guards: max_memory_restart on the whole process tree, cpu and memory figures of the
tree, and cron_restart re-running a periodic task that a user's stop pauses."""

from __future__ import annotations

import re
import sys
import time

import psutil
import pytest
from conftest import Pyvm2, wait_for
from helpers_more import env_of, floats_after

MIB = 1024 * 1024


@pytest.mark.timeout(90)
def test_a_bash_wrapper_whose_child_grows_past_the_limit_is_restarted_within_3s(
        pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("grow", "grow_tree.sh", max_memory_restart="120M",
                               env={"PYTHON": sys.executable})])
    pv.ok("start", str(eco))
    first = pv.proc("grow")
    assert first["pm2_env"]["status"] == "online", first

    text = pv.wait_log("grow", "stopping ", timeout=30)
    crossed = floats_after(text, "crossed")
    stopping = floats_after(text, "stopping")
    assert crossed and stopping, text
    reaction = stopping[0] - crossed[0]
    print(f"memory limit crossed -> stop signal: {reaction:.2f}s")
    assert reaction >= 0, f"the restart began before the limit was crossed:\n{text}"

    got = wait_for(lambda: pv.proc("grow"),
                   lambda p: p["pm2_env"]["restart_time"] >= 1 and p["pid"] not in (None, 0,
                                                                                    first["pid"]),
                   timeout=15, what="grow to be restarted by the memory guard")
    reason = got["pm2_env"]["last_restart_reason"] or got["pm2_env"]["status_reason"] or ""
    assert re.fullmatch(r"memory \d+\.\dM > 120\.0M", reason), got["pm2_env"]
    started = floats_after(pv.read_log("grow"), "start")
    print(f"crossed -> new run started: {started[1] - crossed[0]:.2f}s" if len(started) > 1
          else "new run not started yet")

    described = pv.ok("describe", "grow").out
    assert re.search(r"memory \d+\.\dM > 120\.0M", described), described
    assert re.search(r"max memory restart\s*│\s*120", described), described
    listed = pv.ok("list").out
    row = next(ln for ln in listed.splitlines() if " grow " in ln)
    cells = [c.strip() for c in row.split("│")]
    assert int(cells[cells.index("grow") + 6]) >= 1, row   # the ↺ column counts it
    pv.ok("stop", "grow")


@pytest.mark.timeout(60)
def test_memory_of_a_bash_wrapper_includes_its_child(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("tree", "grow_tree.sh",
                               env={"PYTHON": sys.executable, "GROW_CAP_MB": "80",
                                    "GROW_LIMIT_MB": "100000"})])
    pv.ok("start", str(eco))
    root = pv.proc("tree")["pid"]
    wait_for(lambda: pv.proc("tree")["monit"]["memory"], lambda m: m > 80 * MIB,
             what="the tree's memory (bash + an 80 MiB python child) in jlist")
    own = psutil.Process(root).memory_info().rss
    assert own < 20 * MIB, f"the wrapper itself should be small, got {own}"


@pytest.mark.timeout(60)
def test_a_busy_loop_shows_its_cpu_as_a_share_of_one_core(pv: Pyvm2) -> None:
    # How much of a core the loop gets depends on the machine's load; only the bounds of the
    # measurement are checked: clearly above zero, never above one core for one thread.
    eco = pv.write_eco([pv.app("spin", "busy.py")])
    pv.ok("start", str(eco))
    cpu = wait_for(lambda: pv.proc("spin")["monit"]["cpu"], lambda c: c >= 10, timeout=30,
                   what="cpu of at least 10% for a busy loop")
    print(f"busy loop cpu: {cpu}%")
    assert cpu < 130, cpu
    assert re.search(r"│\s*spin\s*│.*│\s*\d{2,3}(\.\d)?%\s*│", pv.ok("list").out)


def runs(pv: Pyvm2) -> int:
    return len(floats_after(pv.read_log("job"), "run"))


@pytest.mark.timeout(90)
def test_cron_restart_reruns_a_finished_job_and_stop_pauses_it(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("job", "cron_job.py", cron_restart="*/2 * * * * *",
                               autorestart=False)])
    pv.ok("start", str(eco))
    # the start runs it once; the cron must run it at least twice more within ~8 s
    wait_for(lambda: runs(pv), lambda n: n >= 3, timeout=10,
             what="the job to run again at two cron ticks")
    # runs after the first are cron ticks, one per tick (2 s apart); the first tick may come
    # right after the start's own run
    ticks = floats_after(pv.read_log("job"), "run")[1:]
    assert all(b - a > 1.0 for a, b in zip(ticks, ticks[1:], strict=False)), ticks
    assert env_of(pv, "job")["cron_restart"] == "*/2 * * * * *"

    pv.ok("stop", "job")
    pv.wait_status("job", "stopped")
    paused = runs(pv)
    time.sleep(5)   # fixed observation window: two ticks pass while stopped
    assert runs(pv) == paused, pv.read_log("job")
    assert pv.status("job") == ["stopped"]

    pv.ok("start", "job")
    wait_for(lambda: runs(pv), lambda n: n >= paused + 2, timeout=10,
             what="the job to run on start and at the next tick")
