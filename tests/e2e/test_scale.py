"""`scale NAME N|+N|-N` with real daemons, what every instance keeps (the environment of its
first start until `--update-env`, a pid file of its own), and pm2's older command names."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from conftest import PYTHON, Pyvm2, alive, fixture, wait_for


def shown(pv: Pyvm2, name: str, pm_id: int | None = None, runs: int = 1) -> dict:
    """What show_env.py printed in its `runs`-th run (one JSON line per run)."""
    def lines() -> list[str]:
        return [ln for ln in pv.read_log(name, pm_id=pm_id).splitlines() if ln.startswith("{")]

    found = wait_for(lines, lambda ls: len(ls) >= runs,
                     what=f"run {runs} of {name} to print its environment")
    return json.loads(found[runs - 1])


def instances(pv: Pyvm2, name: str) -> dict[int, str]:
    """pm_id -> NODE_APP_INSTANCE the process really runs with."""
    return {p["pm_id"]: shown(pv, name, p["pm_id"])["env"]["NODE_APP_INSTANCE"]
            for p in pv.procs(name)}


def test_scale_up_down_and_by_steps(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("multi", "show_env.py", instances=2)])
    pv.ok("start", str(eco))
    first = {p["pm_id"]: p["pid"] for p in pv.procs("multi")}

    r = pv.ok("scale", "multi", "4")
    assert "Scaling up application multi: 2 -> 4 instances" in r.out, r
    assert "[multi](2) started" in r.out and "[multi](3) started" in r.out, r
    assert "│ multi" in r.out, r  # the table follows
    procs = pv.wait_status("multi", "online")
    assert [p["pm_id"] for p in procs] == [0, 1, 2, 3]
    assert instances(pv, "multi") == {0: "0", 1: "1", 2: "2", 3: "3"}
    assert {p["pm_id"]: p["pid"] for p in procs[:2]} == first, "scaling up touched the others"

    r = pv.ok("scale", "multi", "-1")
    assert "Scaling down application multi: 4 -> 3 instances" in r.out, r
    assert "[multi](3) deleted" in r.out, r
    assert [p["pm_id"] for p in pv.procs("multi")] == [0, 1, 2]
    gone = {p["pm_id"]: p["pid"] for p in procs}[3]
    assert not alive(gone), "the deleted instance still runs"

    pv.ok("scale", "multi", "+2")
    assert [p["pm_id"] for p in pv.wait_status("multi", "online")] == [0, 1, 2, 4, 5]
    assert instances(pv, "multi") == {0: "0", 1: "1", 2: "2", 4: "3", 5: "4"}

    # the highest instances go; the app keeps its numbers 0..N-1
    pv.ok("scale", "multi", "2")
    assert instances(pv, "multi") == {0: "0", 1: "1"}
    assert {p["pm_id"]: p["pid"] for p in pv.procs("multi")} == first

    r = pv.ok("scale", "multi", "2")
    assert "multi already has 2 instances: nothing to do" in r.out, r

    # a freed instance number is taken again, as in pm2; an id names its app
    pv.ok("delete", "0")
    pv.ok("scale", "1", "3")
    assert instances(pv, "multi") == {1: "1", 6: "0", 7: "2"}


def test_new_instances_copy_the_app_and_its_first_environment(pv: Pyvm2) -> None:
    env = dict(pv.env, FOO="first", SHOW_VARS="FOO")
    pv.ok("start", fixture("show_env.py"), "--name", "w", "--", "--flag", env=env)
    pv.ok("scale", "w", "+1", env=dict(pv.env, FOO="later", SHOW_VARS="FOO"))
    pv.wait_status("w", "online")
    # one instance started from the command line: its instances share one log (pm2's merge_logs)
    text = pv.wait_log("w", '"pm_id": "1"')
    new = next(json.loads(ln) for ln in text.splitlines() if '"pm_id": "1"' in ln)
    assert new["argv"] == ["--flag"], new
    assert new["env"]["FOO"] == "first", new
    assert new["env"]["NODE_APP_INSTANCE"] == "1" and new["env"]["pm_id"] == "1", new
    assert pv.procs("w")[1]["pm2_env"]["pm_exec_path"] == fixture("show_env.py")


def test_a_stopped_app_grows_stopped(pv: Pyvm2) -> None:
    pv.ok("start", fixture("show_env.py"), "--name", "s")
    pv.ok("stop", "s")
    r = pv.ok("scale", "s", "3")
    assert "registered (stopped, as the app)" in r.out, r
    assert pv.status("s") == ["stopped"] * 3
    pv.ok("start", "s")
    pv.wait_status("s", "online")
    assert len(pv.procs("s")) == 3


def test_bad_scale_requests_say_what_to_do(pv: Pyvm2) -> None:
    pv.ok("start", fixture("show_env.py"), "--name", "web", "-i", "2")
    cases = {
        ("scale", "nope", "3"): (1, "[PYVM2][ERROR] app 'nope' not found", "pyvm2 list"),
        ("scale", "web", "many"): (2, "[PYVM2][ERROR] scale: 'many' is not a number of instances",
                                   "+2 (two more)"),
        ("scale", "web", "0"): (2, "[PYVM2][ERROR] scale: an app needs at least 1 instance, got 0",
                                "pyvm2 delete NAME"),
        ("scale", "web", "-2"): (2, "[PYVM2][ERROR] web cannot have 0 instances (it has 2)",
                                 "pyvm2 delete web"),
        ("scale", "web"): (2, "[PYVM2][ERROR] missing argument", "usage: pyvm2 scale NAME NUMBER"),
    }
    for args, (code, first, hint) in cases.items():
        r = pv.run(*args)
        assert r.code == code, r
        assert r.err.splitlines()[0].startswith(first), r
        assert hint in r.err and "Traceback" not in r.out + r.err, r
    assert len(pv.wait_status("web", "online")) == 2, "a refused scale changed the app"


def test_scale_is_on_disk_when_it_answers(pv: Pyvm2) -> None:
    pv.ok("start", fixture("show_env.py"), "--name", "d")
    pv.ok("scale", "d", "3")
    pids = [p["pid"] for p in pv.wait_status("d", "online")]
    daemon = pv.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: alive(daemon), lambda up: not up, what="the daemon to die")
    # the next daemon re-adopts all three: the scale was in its state file
    assert [p["pid"] for p in pv.wait_status("d", "online")] == pids


def test_starting_the_file_again_brings_back_its_instances(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("f", "show_env.py", instances=2)])
    pv.ok("start", str(eco))
    kept = {p["pm_id"]: p["pid"] for p in pv.procs("f")}
    pv.ok("scale", "f", "4")
    assert len(pv.wait_status("f", "online")) == 4
    r = pv.ok("start", str(eco))
    assert "[f](2) deleted" in r.out and "[f](3) deleted" in r.out, r
    assert {p["pm_id"]: p["pid"] for p in pv.procs("f")} == kept, "the kept instances restarted"
    pv.ok("scale", "f", "1")
    r = pv.ok("start", str(eco))
    assert "[f](4) started" in r.out, r
    assert instances(pv, "f") == {0: "0", 4: "1"}


def test_restart_keeps_the_first_environment_unless_update_env(pv: Pyvm2) -> None:
    def env(foo: str) -> dict[str, str]:
        return dict(pv.env, FOO=foo, SHOW_VARS="FOO")

    pv.ok("start", fixture("show_env.py"), "--name", "e", env=env("1"))
    assert shown(pv, "e")["env"]["FOO"] == "1"

    r = pv.ok("restart", "e", env=env("2"))
    assert "Use --update-env to update environment variables" in r.out, r
    assert shown(pv, "e", runs=2)["env"]["FOO"] == "1"

    r = pv.ok("restart", "e", "--update-env", env=env("2"))
    assert "--update-env" not in r.out, r
    assert shown(pv, "e", runs=3)["env"]["FOO"] == "2"

    pv.ok("restart", "e", env=env("3"))
    assert shown(pv, "e", runs=4)["env"]["FOO"] == "2", "the updated environment was not kept"

    pv.ok("restart", "e", "-a", env=env("4"))
    assert shown(pv, "e", runs=5)["env"]["FOO"] == "4"

    pv.ok("reload", "e", env=env("5"))
    assert shown(pv, "e", runs=6)["env"]["FOO"] == "4"
    pv.ok("reload", "e", "--update-env", env=env("6"))
    assert shown(pv, "e", runs=7)["env"]["FOO"] == "6"
    pv.ok("gracefulReload", "e", "-a", env=env("7"))
    assert shown(pv, "e", runs=8)["env"]["FOO"] == "7"


def test_each_instance_writes_its_own_pid_file(pv: Pyvm2) -> None:
    given = pv.workdir / "run" / "app.pid"
    pv.ok("start", fixture("show_env.py"), "--name", "p", "-i", "2", "-p", str(given))
    pv.ok("start", fixture("show_env.py"), "--name", "q")
    pv.ok("scale", "p", "+1")

    def pid_files() -> dict[str, int]:
        found = {}
        for folder in (given.parent, pv.home / "pids"):
            for f in folder.iterdir():
                text = f.read_text().strip()
                if text:
                    found[f.name] = int(text)
        return found

    expected = {f"app-{p['pm_id']}.pid": p["pid"] for p in pv.procs("p")}
    expected |= {f"q-{p['pm_id']}.pid": p["pid"] for p in pv.procs("q")}
    assert set(expected) == {"app-0.pid", "app-1.pid", "app-3.pid", "q-2.pid"}
    assert wait_for(pid_files, lambda f: f == expected, what="one pid file per instance")
    for p in pv.procs("p"):
        assert p["pm2_env"]["pm_pid_path"] == str(given.parent / f"app-{p['pm_id']}.pid")

    pv.ok("stop", "all")
    wait_for(pid_files, lambda f: not f, what="the pid files to go with their processes")


def test_help_and_completion_know_scale(pv: Pyvm2) -> None:
    assert "scale" in pv.ok("--help").out
    assert "+N" in pv.ok("scale", "--help").out
    env = dict(pv.env, COMP_WORDS="pyvm2 sca", COMP_CWORD="1", _PYVM2_COMPLETE="complete_bash")
    done = subprocess.run([PYTHON, "-m", "pyvm2"], capture_output=True, env=env, timeout=60,
                          cwd=str(pv.workdir))
    assert done.stdout.decode().split() == ["scale"], done
    eco = pv.write_eco([pv.app("g", "show_env.py")])
    pv.ok("startOrGracefulReload", str(eco))
    assert pv.status("g") == ["online"]
    pv.ok("startOrGracefulReload", str(eco))
    assert [p["pm2_env"]["restart_time"] for p in pv.procs("g")] == [1]
