"""Stopping kills the whole process tree, escaped grandchildren and signal-ignorers included,
and returns only once it is gone."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import Pyvm2, alive, fixture, wait_for


def start_tree(pv: Pyvm2, pidfile: Path) -> list[int]:
    eco = pv.write_eco([pv.app("tree", "tree.sh", kill_timeout=500,
                               env={"TREE_PIDFILE": str(pidfile)})])
    pv.ok("start", str(eco))
    text = wait_for(lambda: pidfile.read_text() if pidfile.exists() else "",
                    lambda s: len(s.split()) == 4, what="tree.sh to write its pids")
    pids = [int(p) for p in text.split()]
    assert all(alive(p) for p in pids), pids
    return pids


def test_stop_kills_the_whole_tree_including_an_escaped_grandchild(pv: Pyvm2) -> None:
    pids = start_tree(pv, pv.workdir / "tree.pids")
    assert pv.proc("tree")["pid"] == pids[0]

    r = pv.ok("stop", "tree")
    survivors = [p for p in pids if alive(p)]
    assert survivors == [], f"still alive after `pyvm2 stop` returned: {survivors}\n{r}"
    [p] = pv.jlist()
    assert p["pm2_env"]["status"] == "stopped", p
    assert p["pid"] in (0, None)


def test_restart_replaces_the_whole_tree(pv: Pyvm2) -> None:
    pidfile = pv.workdir / "tree.pids"
    old = start_tree(pv, pidfile)
    pidfile.unlink()
    pv.ok("restart", "tree")
    assert [p for p in old if alive(p)] == []
    new = wait_for(lambda: pidfile.read_text() if pidfile.exists() else "",
                   lambda s: len(s.split()) == 4, what="the restarted tree to write its pids")
    assert set(int(p) for p in new.split()).isdisjoint(old)


def test_delete_kills_the_whole_tree(pv: Pyvm2) -> None:
    pids = start_tree(pv, pv.workdir / "tree.pids")
    pv.ok("delete", "tree")
    assert [p for p in pids if alive(p)] == []
    assert pv.jlist() == []


def test_a_child_ignoring_sigint_is_sigkilled_after_kill_timeout(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("stubborn", "ignore_signals.py", kill_timeout=1500)])
    pv.ok("start", str(eco))
    pv.wait_log("stubborn", "ignoring signals")
    pid = pv.proc("stubborn")["pid"]

    began = time.monotonic()
    pv.ok("stop", "stubborn")
    took = time.monotonic() - began
    assert not alive(pid), "stop returned while the process was still alive"
    assert took >= 1.4, f"stop returned after {took:.2f}s, before kill_timeout (1.5s)"
    assert took < 15, f"stop took {took:.2f}s"
    assert pv.status("stubborn") == ["stopped"]


def test_kill_signal_option_is_the_first_signal_sent(pv: Pyvm2) -> None:
    script = pv.workdir / "on_term.py"
    script.write_text(
        "import signal, sys, time\n"
        "def bye(sig, frame):\n"
        "    print('got', signal.Signals(sig).name, flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "signal.signal(signal.SIGINT, bye)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.1)\n")
    eco = pv.write_eco([pv.app("termed", str(script), kill_signal="SIGTERM"),
                        pv.app("inted", str(script))])
    pv.ok("start", str(eco))
    pv.wait_log("termed", "ready")
    pv.wait_log("inted", "ready")
    pv.ok("stop", "all")
    assert "got SIGTERM" in pv.read_log("termed")
    assert "got SIGINT" in pv.read_log("inted")


def test_stop_of_a_stopped_app_is_harmless(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("calm", fixture("show_env.py"))])
    pv.ok("start", str(eco))
    pv.ok("stop", "calm")
    pv.ok("stop", "calm")
    assert pv.status("calm") == ["stopped"]
