"""Several instances of one app, cluster mode for non-node apps, and the `start` flags."""

from __future__ import annotations

import json
import shutil

from conftest import Pyvm2, alive, fixture


def shown(pv: Pyvm2, name: str, pm_id: int | None = None) -> dict:
    text = pv.wait_log(name, '"argv"', pm_id=pm_id)
    return json.loads(text.splitlines()[0])


def test_three_instances_share_a_name_with_their_own_index_and_log_files(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("multi", "show_env.py", instances=3)])
    pv.ok("start", str(eco))
    procs = pv.procs("multi")
    assert len(procs) == 3, procs
    assert [p["pm_id"] for p in procs] == [0, 1, 2]
    assert all(p["pm2_env"]["status"] == "online" for p in procs)
    assert len({p["pid"] for p in procs}) == 3

    instance_of = {}
    for p in procs:
        assert p["pm2_env"]["pm_out_log_path"] == str(pv.log_path("multi", pm_id=p["pm_id"]))
        assert p["pm2_env"]["pm_err_log_path"] == str(
            pv.log_path("multi", "err", pm_id=p["pm_id"]))
        instance_of[p["pm_id"]] = shown(pv, "multi", p["pm_id"])["env"]["NODE_APP_INSTANCE"]
    assert sorted(instance_of.values()) == ["0", "1", "2"], instance_of
    assert not pv.log_path("multi").exists(), "instances wrote to an unsuffixed log"

    # the name targets every instance
    pv.ok("stop", "multi")
    assert pv.status("multi") == ["stopped"] * 3
    pv.ok("restart", "1")
    assert pv.status("multi") == ["stopped", "online", "stopped"]


def test_scaling_down_in_the_file_removes_extra_instances(pv: Pyvm2) -> None:
    apps = [pv.app("multi", "show_env.py", instances=3)]
    eco = pv.write_eco(apps)
    pv.ok("start", str(eco))
    pids = {p["pm_id"]: p["pid"] for p in pv.procs("multi")}
    apps[0]["instances"] = 2
    pv.write_eco(apps)
    pv.ok("start", str(eco))
    procs = pv.procs("multi")
    assert [p["pm_id"] for p in procs] == [0, 1], procs
    assert not alive(pids[2]), "the removed instance is still running"


def test_cluster_mode_with_python_runs_fork_copies_and_warns_once(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("clus", "show_env.py", instances=2, exec_mode="cluster")])
    r = pv.ok("start", str(eco))
    warnings = [ln for ln in r.err.splitlines() if "WARN" in ln]
    assert len(warnings) == 1, r
    assert "cluster" in warnings[0], r
    procs = pv.procs("clus")
    assert len(procs) == 2 and all(p["pm2_env"]["status"] == "online" for p in procs), procs
    for p in procs:
        assert shown(pv, "clus", p["pm_id"])["env"]["NODE_APP_INSTANCE"] in ("0", "1")


def test_start_flags_build_the_app_like_an_ecosystem_file(pv: Pyvm2) -> None:
    shutil.copy(fixture("show_env.py"), pv.workdir / "worker.py")
    r = pv.ok("start", "worker.py", "--name", "w", "-i", "2", "--max-memory-restart", "100M",
              "--no-autorestart", "--", "--split=4")
    assert "w" in r.out
    procs = pv.procs("w")
    assert len(procs) == 2, procs
    for p in procs:
        env = p["pm2_env"]
        assert env["status"] == "online", p
        assert env["args"] == ["--split=4"], env["args"]
        assert env["autorestart"] is False, env["autorestart"]
        assert env["max_memory_restart"] == 104857600, env["max_memory_restart"]
        assert env["pm_exec_path"] == str(pv.workdir / "worker.py")
        assert shown(pv, "w", p["pm_id"])["argv"] == ["--split=4"]


def test_starting_a_running_script_again_is_refused(pv: Pyvm2) -> None:
    shutil.copy(fixture("show_env.py"), pv.workdir / "worker.py")
    pv.ok("start", "worker.py", "--name", "w")
    r = pv.run("start", "worker.py", "--name", "w")
    assert r.code == 1, r
    assert "Traceback" not in r.out + r.err
    assert "already" in r.err, r
    assert len(pv.procs("w")) == 1


def test_script_given_by_path_gets_its_default_name_from_the_file(pv: Pyvm2) -> None:
    shutil.copy(fixture("show_env.py"), pv.workdir / "worker.py")
    pv.ok("start", "worker.py")
    p = pv.proc("worker")
    assert p["pm2_env"]["status"] == "online"
    assert shown(pv, "worker")["cwd"] == str(pv.workdir)
