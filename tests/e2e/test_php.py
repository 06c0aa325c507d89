"""PHP apps: the seed's Symfony console entry, and a while(true) worker that dies."""

from __future__ import annotations

import json
import re
import shutil

from conftest import Pyvm2, fixture, needs_php, wait_for

SEED_APP = {
    "name": "up4",
    "args": "trade:UpdateCommentDgTags updateUserPublishment  --split=4",
    "script": "symfony",
    "exec_interpreter": "php",
    "max_memory_restart": "100M",
    "cwd": "../",
}


@needs_php
def test_seed_symfony_entry_runs_with_exact_argv_in_the_parent_folder(pv: Pyvm2) -> None:
    project = pv.workdir / "project"
    (project / "deploy").mkdir(parents=True)
    shutil.copy(fixture("symfony"), project / "symfony")
    eco = pv.write_eco([SEED_APP], folder=project / "deploy")

    # started from another folder: the file's own folder is what `cwd: "../"` is relative to
    pv.ok("start", str(eco), cwd=pv.workdir)
    p = pv.proc("up4")
    assert p["pm2_env"]["status"] == "online", p
    assert p["pm2_env"]["pm_cwd"] == str(project)
    assert p["pm2_env"]["max_memory_restart"] == 100 * 1024 * 1024
    assert p["pm2_env"]["args"] == ["trade:UpdateCommentDgTags", "updateUserPublishment",
                                    "--split=4"]

    log = pv.wait_log("up4", "cwd=")
    argv = json.loads(log.splitlines()[0])
    assert argv == ["symfony", "trade:UpdateCommentDgTags", "updateUserPublishment",
                    "--split=4"], argv
    assert f"cwd={project}" in log


@needs_php
def test_seed_symfony_entry_started_from_its_own_folder_runs_the_same(pv: Pyvm2) -> None:
    project = pv.workdir / "project"
    (project / "deploy").mkdir(parents=True)
    shutil.copy(fixture("symfony"), project / "symfony")
    pv.write_eco([SEED_APP], folder=project / "deploy")
    pv.ok("start", "eco.json", cwd=project / "deploy")
    log = pv.wait_log("up4", "cwd=")
    argv = json.loads(log.splitlines()[0])
    assert argv == ["symfony", "trade:UpdateCommentDgTags", "updateUserPublishment",
                    "--split=4"], argv
    assert f"cwd={project}" in log
    assert pv.proc("up4")["pm2_env"]["pm_cwd"] == str(project)


@needs_php
def test_php_worker_that_dies_is_restarted(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("phpw", "worker.php", min_uptime=100)])
    pv.ok("start", str(eco))
    p = pv.proc("phpw")
    assert p["pm2_env"]["exec_interpreter"] == "php", p
    wait_for(lambda: pv.proc("phpw")["pm2_env"]["restart_time"], lambda n: n >= 2,
             what="the php worker to be restarted twice")
    pids = set(re.findall(r"php tick 0 pid (\d+)", pv.read_log("phpw")))
    assert len(pids) >= 2, pv.read_log("phpw")
    assert pv.status("phpw")[0] in ("online", "waiting restart", "stopping", "launching")
