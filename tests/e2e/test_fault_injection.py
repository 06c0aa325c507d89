"""kill -9 of the daemon at random moments while many apps start, stop, restart, are deleted and
restart on their own, with several CLIs at once on overlapping apps. After each round: each app
runs exactly once, the desired states a command confirmed are kept, and no process of the home
is unknown to `list`. The seed is printed; PYVM2_FAULT_SEED replays a run and PYVM2_FAULT_ROUNDS
runs more rounds (3 by default)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import defaultdict

import psutil
import pytest
from conftest import TOKEN_VAR, Pyvm2, alive, proc_environ, processes_of_home, wait_for

ROUNDS = int(os.environ.get("PYVM2_FAULT_ROUNDS", "3"))
SEED = int(os.environ.get("PYVM2_FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))
#: Apps that run until stopped, and apps that exit on their own now and then (automatic restarts).
STEADY, FLAPPING = 24, 6
SETTLED = {"online", "stopped", "errored"}


def app_copies(pv: Pyvm2) -> dict[str, set[str]]:
    """App name -> run tokens of its live processes (one token per running copy)."""
    found: dict[str, set[str]] = defaultdict(set)
    for p in processes_of_home(pv.home):
        env = proc_environ(p.pid) or {}
        if TOKEN_VAR in env:
            found[env.get("name", "?")].add(env[TOKEN_VAR])
    return dict(found)


def listed_tokens(jlist: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for p in jlist:
        pid = p["pid"]
        if pid:
            token = (proc_environ(pid) or {}).get(TOKEN_VAR)
            if token:
                out[p["name"]].add(token)
    return dict(out)


def daemon_pids(pv: Pyvm2) -> list[int]:
    out = []
    for p in processes_of_home(pv.home):
        try:
            if "pyvm2.daemon" in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


def kill_daemon(pv: Pyvm2) -> None:
    for pid in daemon_pids(pv):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda pid=pid: alive(pid), lambda a: not a, what=f"daemon {pid} to be gone")


def settled_view(pv: Pyvm2, flapping: set[str]) -> tuple[list[dict], dict, dict] | None:
    """jlist, live copies and listed copies once they agree, else None."""
    jl = pv.jlist()
    steady = [p for p in jl if p["name"] not in flapping]
    if any(p["pm2_env"]["status"] not in SETTLED for p in steady):
        return None
    live, listed = app_copies(pv), listed_tokens(jl)
    if live != listed:
        return None
    return jl, live, listed


def check_round(pv: Pyvm2, names: list[str], flapping: set[str], confirmed: dict[str, str],
                figures: dict[str, int], label: str) -> None:
    """Exactly once, nothing unknown, confirmed desired states kept. `confirmed`: app name ->
    the desired state of the last command on it that answered success."""
    view = wait_for(lambda: settled_view(pv, flapping), lambda v: v is not None, timeout=60,
                    what=f"{label}: every app settled and every live copy listed")
    jl, live, _ = view
    figures["checks"] += 1
    by_name: dict[str, list[dict]] = defaultdict(list)
    for p in jl:
        by_name[p["name"]].append(p)
    twice = {n: ps for n, ps in by_name.items() if len(ps) > 1}
    assert not twice, f"{label}: apps listed more than once: {sorted(twice)}"
    extra = {n: t for n, t in live.items() if len(t) > 1}
    figures["duplicates"] += sum(len(t) - 1 for t in extra.values())
    assert not extra, f"{label}: apps running more than once: {extra}"
    unknown = {n for n in live if n not in by_name}
    figures["orphans"] += len(unknown)
    assert not unknown, f"{label}: processes of apps `list` does not show: {unknown}"
    for name, want in confirmed.items():
        got = by_name.get(name)
        if want == "deleted":
            assert not got, f"{label}: {name} was deleted, yet listed: {got}"
            continue
        assert got, f"{label}: {name} ({want}) is missing from list"
        env = got[0]["pm2_env"]
        assert env["desired"] == want, f"{label}: {name} should be {want}: {env['desired']}"
        if want == "stopped":
            assert env["status"] == "stopped" and name not in live, (label, name, env["status"])
        elif name not in flapping:
            assert env["status"] == "online" and len(live.get(name, ())) == 1, \
                (label, name, env["status"], live.get(name))
    for name in names:
        for p in by_name.get(name, ()):
            env = p["pm2_env"]
            if env["desired"] == "stopped":
                assert name not in live, f"{label}: {name} is wanted stopped, yet runs"


def eco_apps(pv: Pyvm2, names: list[str], flapping: set[str]) -> list[dict]:
    apps = []
    for n in names:
        if n in flapping:
            apps.append(pv.app(n, "exit_now.py", args=["3"], env={"EXIT_AFTER": "0.7"},
                               restart_delay=100, min_uptime=200, max_restarts=100000))
        else:
            apps.append(pv.app(n, "ticker.py", env={"TICK_S": "1"}))
    return apps


def finish(popens: list[tuple[list[str], subprocess.Popen]], timeout: float = 90) -> list[tuple[list[str], int]]:
    out = []
    for args, p in popens:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        out.append((args, p.returncode))
    return out


@pytest.mark.timeout(170 + 60 * ROUNDS)
def test_kill_9_at_random_moments_never_leaves_two_copies_or_an_unlisted_process(
        pv: Pyvm2) -> None:
    rng = random.Random(SEED)
    print(f"\nfault injection: seed {SEED}, {ROUNDS} round(s) "
          f"(replay with PYVM2_FAULT_SEED={SEED} PYVM2_FAULT_ROUNDS={ROUNDS})")
    names = [f"a{i:02d}" for i in range(STEADY)] + [f"f{i}" for i in range(FLAPPING)]
    flapping = {n for n in names if n.startswith("f")}
    eco = pv.write_eco(eco_apps(pv, names, flapping))
    figures = {"rounds": 0, "checks": 0, "duplicates": 0, "orphans": 0, "kills": 0}
    confirmed: dict[str, str] = {}

    for rnd in range(ROUNDS):
        label = f"round {rnd} (seed {SEED})"
        # chaos: overlapping commands from several CLIs, the daemon killed in the middle
        subset = lambda k: rng.sample(names, k)  # noqa: E731
        plans: list[list[str]] = [["start", str(eco)]]
        plans += [["stop", *subset(8)], ["restart", *subset(8)], ["delete", *subset(4)],
                  ["start", str(eco)]]
        rng.shuffle(plans)
        popens = []
        for args in plans:
            popens.append((args, pv.popen(*args)))
            time.sleep(rng.uniform(0, 0.3))
        time.sleep(rng.uniform(0.0, 2.5))
        kill_daemon(pv)
        figures["kills"] += 1
        finish(popens)
        confirmed.clear()   # commands cut short may or may not have acted
        pv.ok("ping")
        check_round(pv, names, flapping, confirmed, figures, label + " after chaos")

        # durability: what a command confirmed survives a kill -9 right after its reply
        pv.ok("start", str(eco))
        stopped = rng.sample([n for n in names if n not in flapping], 5)
        pv.ok("stop", *stopped)
        deleted = rng.sample([n for n in names if n not in stopped], 2)
        pv.ok("delete", *deleted)
        confirmed.update({n: "running" for n in names})
        confirmed.update({n: "stopped" for n in stopped})
        confirmed.update({n: "deleted" for n in deleted})
        kill_daemon(pv)
        figures["kills"] += 1
        pv.ok("ping")
        check_round(pv, names, flapping, confirmed, figures, label + " after confirmed commands")

        # a kill -9 right after spawns: start what was stopped and deleted, kill at once
        p = pv.popen("start", str(eco))
        time.sleep(rng.uniform(0.05, 1.0))
        kill_daemon(pv)
        figures["kills"] += 1
        finish([(["start"], p)])
        confirmed.clear()
        pv.ok("ping")
        check_round(pv, names, flapping, confirmed, figures, label + " after a cut start")
        figures["rounds"] += 1

    print(f"fault injection: seed {SEED}: {json.dumps(figures)}")
    assert figures["duplicates"] == 0 and figures["orphans"] == 0


@pytest.mark.timeout(120)
def test_delete_racing_restart_of_an_app_ignoring_signals_leaves_no_ghost(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("r", "ignore_signals.py", kill_timeout=1500)])
    for trial in range(3):
        pv.ok("start", str(eco))
        pv.wait_status("r", "online")
        deleting = pv.popen("delete", "r")
        time.sleep(0.3)
        restart = pv.run("restart", "r")
        assert deleting.wait(60) == 0, f"trial {trial}: delete failed"
        assert "Traceback" not in restart.out + restart.err, str(restart)
        jl = pv.jlist()
        live = app_copies(pv)
        listed = listed_tokens(jl)
        assert live == listed, f"trial {trial}: live {live}, listed {listed}, list {jl}"
        if restart.code != 0:
            assert "not found" in restart.err or "deleted" in restart.err, str(restart)
            assert not jl and not live, (jl, live)
        if jl:
            pv.ok("delete", "all")
        wait_for(lambda: app_copies(pv), lambda c: not c, what="no copy of r left", timeout=10)


@pytest.mark.timeout(120)
def test_a_damaged_state_file_is_set_aside_and_the_apps_run_exactly_once(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app(f"s{i}", "ticker.py", env={"TICK_S": "1"}) for i in range(4)])
    pv.ok("start", str(eco))
    pv.ok("stop", "s3")
    before = {p["name"]: p["pid"] for p in pv.jlist()}
    kill_daemon(pv)
    state = pv.home / "state.json"
    assert (pv.home / "state.json.bak").exists()
    state.write_bytes(state.read_bytes()[: len(state.read_bytes()) // 2])

    jl = {p["name"]: p for p in pv.jlist()}
    assert sorted(jl) == ["s0", "s1", "s2", "s3"], jl
    damaged = list(pv.home.glob("state.json.damaged-*"))
    assert len(damaged) == 1, list(pv.home.iterdir())
    log = (pv.home / "pyvm2.log").read_text()
    assert "is damaged" in log and "previous state file" in log, log[-2000:]
    view = wait_for(lambda: settled_view(pv, set()), lambda v: v is not None,
                    what="every app settled and listed")
    _, live, _ = view
    assert {n: len(t) for n, t in live.items()} == {"s0": 1, "s1": 1, "s2": 1}, live
    assert jl["s3"]["pm2_env"]["status"] == "stopped"
    assert all(before[n] for n in ("s0", "s1", "s2"))


@pytest.mark.timeout(120)
def test_a_state_file_lost_entirely_leaves_no_process_running_unknown(pv: Pyvm2) -> None:
    """With no journal at all, nothing of the home may run unseen: the copies are stopped."""
    pv.ok("start", str(pv.write_eco([pv.app("x", "ticker.py", env={"TICK_S": "1"})])))
    pid = pv.proc("x")["pid"]
    kill_daemon(pv)
    for f in pv.home.glob("state.json*"):
        f.unlink()
    assert pv.jlist() == []
    wait_for(lambda: alive(pid), lambda a: not a, what="the unknown copy to be stopped")
    assert app_copies(pv) == {}
