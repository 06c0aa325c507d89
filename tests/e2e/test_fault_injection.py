"""kill -9 of the daemon at random moments while many apps start, stop, restart, are deleted and
restart on their own, with several CLIs at once on overlapping apps. After each round: each app
runs exactly once, the desired states a command confirmed are kept, and no process of the home
is unknown to `list`. The seed is printed; PYVM2_FAULT_SEED replays a run and PYVM2_FAULT_ROUNDS
runs more rounds (4 by default: one of each kind)."""

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
from helpers_more import daemons_of

ROUNDS = int(os.environ.get("PYVM2_FAULT_ROUNDS", "4"))
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


def kill_daemon(pv: Pyvm2) -> None:
    for pid in daemons_of(pv):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda pid=pid: alive(pid), lambda a: not a, what=f"daemon {pid} to be gone")


def daemon_children(pid: int) -> set[int]:
    try:
        return {c.pid for c in psutil.Process(pid).children()}
    except psutil.Error:
        return set()


def kill_daemon_after_spawns(pv: Pyvm2, count: int, delay: float, names: set[str] | None = None,
                             timeout: float = 30) -> int:
    """kill -9 the daemon `delay` seconds after it has spawned `count` new children (of `names`,
    if given): inside the moment between a spawn and the journal's next write. Returns how many
    new children it had spawned."""
    (pid,) = wait_for(lambda: daemons_of(pv), lambda d: len(d) == 1, what="one daemon")
    before = daemon_children(pid)

    def new() -> set[int]:
        kids = daemon_children(pid) - before
        if names is not None:
            kids = {k for k in kids if (proc_environ(k) or {}).get("name") in names}
        return kids

    deadline = time.monotonic() + timeout
    while len(new()) < count and time.monotonic() < deadline and alive(pid):
        time.sleep(0.002)
    time.sleep(delay)
    spawned = len(new())
    kill_daemon(pv)
    return spawned


def settled_view(pv: Pyvm2, flapping: set[str]) -> tuple[bool, list[dict], dict, str]:
    """(agreed, jlist, live copies, what differs): agreed once every steady app is settled and
    the live copies are exactly those `list` shows."""
    jl = pv.jlist()
    busy = {p["name"]: p["pm2_env"]["status"] for p in jl
            if p["name"] not in flapping and p["pm2_env"]["status"] not in SETTLED}
    live, listed = app_copies(pv), listed_tokens(jl)
    unlisted = {n: sorted(t - listed.get(n, set())) for n, t in live.items()
                if t - listed.get(n, set())}
    dead = {n: sorted(t - live.get(n, set())) for n, t in listed.items()
            if t - live.get(n, set())}
    ok = not busy and not unlisted and not dead
    return ok, jl, live, f"not settled: {busy}; live but not listed: {unlisted}; " \
                         f"listed but not live: {dead}"


def check_round(pv: Pyvm2, names: list[str], flapping: set[str], confirmed: dict[str, str],
                figures: dict[str, int], label: str) -> None:
    """Exactly once, nothing unknown, confirmed desired states kept. `confirmed`: app name ->
    the desired state of the last command on it that answered success."""
    _, jl, live, _ = wait_for(lambda: settled_view(pv, flapping), lambda v: v[0], timeout=60,
                              what=f"{label}: every app settled and every live copy listed")
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
            apps.append(pv.app(n, "exit_now.py", args=["3"], env={"EXIT_AFTER": "1.5"},
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


class Rounds:
    """One home with STEADY + FLAPPING apps; each round injects one kill -9 of the daemon in one
    of four situations, in turn, then checks."""

    def __init__(self, pv: Pyvm2, rng: random.Random) -> None:
        self.pv, self.rng = pv, rng
        self.names = [f"a{i:02d}" for i in range(STEADY)] + [f"f{i}" for i in range(FLAPPING)]
        self.flapping = {n for n in self.names if n.startswith("f")}
        self.steady = [n for n in self.names if n not in self.flapping]
        self.eco = str(pv.write_eco(eco_apps(pv, self.names, self.flapping)))
        self.figures = {"rounds": 0, "checks": 0, "duplicates": 0, "orphans": 0, "kills": 0}

    def check(self, label: str, confirmed: dict[str, str] | None = None) -> None:
        self.pv.ok("ping")   # a new daemon, restored from what the dead one left
        check_round(self.pv, self.names, self.flapping, confirmed or {}, self.figures, label)

    def kill(self) -> None:
        kill_daemon(self.pv)
        self.figures["kills"] += 1

    def chaos(self, label: str) -> None:
        """Overlapping commands from several CLIs; the daemon killed in the middle."""
        rng, pv = self.rng, self.pv
        plans = [["start", self.eco], ["stop", *rng.sample(self.names, 8)],
                 ["restart", *rng.sample(self.names, 8)], ["delete", *rng.sample(self.names, 4)],
                 ["start", self.eco]]
        rng.shuffle(plans)
        popens = []
        for args in plans:
            popens.append((args, pv.popen(*args)))
            time.sleep(rng.uniform(0, 0.3))
        time.sleep(rng.uniform(0.0, 2.5))
        self.kill()
        finish(popens)
        self.check(label + " after overlapping commands")   # cut short: either outcome holds

    def confirmed(self, label: str) -> None:
        """What a command confirmed survives a kill -9 right after its reply."""
        rng, pv = self.rng, self.pv
        pv.ok("start", self.eco)
        stopped = rng.sample(self.steady, 5)
        pv.ok("stop", *stopped)
        deleted = rng.sample([n for n in self.names if n not in stopped], 2)
        pv.ok("delete", *deleted)
        self.kill()
        want = {n: "running" for n in self.names}
        want.update({n: "stopped" for n in stopped})
        want.update({n: "deleted" for n in deleted})
        self.check(label + " after confirmed commands", want)

    def cut_start(self, label: str) -> None:
        """30 apps started from nothing, the daemon killed after a random number of spawns,
        before or just after the journal's next write."""
        rng, pv = self.rng, self.pv
        cleared = pv.run("delete", "all")
        assert cleared.code == 0 or "no process is managed" in cleared.err, str(cleared)
        p = pv.popen("start", self.eco)
        n = kill_daemon_after_spawns(pv, rng.randint(1, len(self.names)),
                                     rng.choice([0, 0.05, 0.2]))
        self.figures["kills"] += 1
        finish([(["start"], p)])
        self.check(label + f" after a start cut at {n} spawns")

    def cut_restart(self, label: str) -> None:
        """Apps killed; the daemon killed as soon as it has spawned their new copies."""
        rng, pv = self.rng, self.pv
        pv.ok("start", self.eco)
        victims = rng.sample(self.steady, 3)
        pids = [p["pid"] for p in pv.jlist() if p["name"] in victims and p["pid"]]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        kill_daemon_after_spawns(pv, rng.randint(1, max(1, len(pids))), rng.choice([0, 0.05]),
                                 names=set(victims))
        self.figures["kills"] += 1
        self.check(label + " after a cut automatic restart")


@pytest.mark.timeout(120 + 40 * ROUNDS)
def test_kill_9_at_random_moments_never_leaves_two_copies_or_an_unlisted_process(
        pv: Pyvm2) -> None:
    rng = random.Random(SEED)
    print(f"\nfault injection: seed {SEED}, {ROUNDS} round(s) "
          f"(replay with PYVM2_FAULT_SEED={SEED} PYVM2_FAULT_ROUNDS={ROUNDS})")
    r = Rounds(pv, rng)
    kinds = [r.cut_start, r.chaos, r.cut_restart, r.confirmed]
    for rnd in range(ROUNDS):
        t0 = time.monotonic()
        kind = kinds[rnd % len(kinds)]
        kind(f"round {rnd} (seed {SEED})")
        r.figures["rounds"] += 1
        print(f"round {rnd}: {kind.__name__}, {time.monotonic() - t0:.1f}s")
    print(f"fault injection: seed {SEED}: {json.dumps(r.figures)}")
    assert r.figures["duplicates"] == 0 and r.figures["orphans"] == 0


@pytest.mark.timeout(120)
def test_delete_racing_restart_of_an_app_ignoring_signals_leaves_no_ghost(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("r", "ignore_signals.py", kill_timeout=1500)])
    for trial in range(2):
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
    _, _, live, _ = wait_for(lambda: settled_view(pv, set()), lambda v: v[0],
                             what="every app settled and listed")
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
