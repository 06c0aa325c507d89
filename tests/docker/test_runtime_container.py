"""pyvm2-runtime as the main process of a real container: output in `docker logs`, `pyvm2 list`
and `logs` through `docker exec`, a graceful stop on `docker stop`, orphans reaped, exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from docker_env import Engine, engine_fixture, image_fixture  # noqa: F401

#: Building the image and starting the engine count against the first test's time.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

DEADLINE_S = 120.0

ZOMBIES = ("import os\n"
           "z = []\n"
           "for p in os.listdir('/proc'):\n"
           "    if p.isdigit():\n"
           "        try:\n"
           "            s = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()\n"
           "        except OSError:\n"
           "            continue\n"
           "        if s[0] == 'Z':\n"
           "            z.append(p)\n"
           "print(len(z))\n")


def wait(probe, check, what: str, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if check(last):
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}",
                pytrace=False)


@pytest.fixture
def containers(engine: Engine):
    names: list[str] = []
    yield names
    if names:
        engine.docker("rm", "-f", *names, check=False)


def _eco(tmp_path: Path, apps: list[dict]) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    (folder / "eco.json").write_text(json.dumps({"apps": apps}))
    return folder


def test_runtime_is_pid_1_stops_gracefully_and_reaps(engine: Engine, image: str, containers,
                                                    tmp_path: Path) -> None:
    cfg = _eco(tmp_path, [
        {"name": "graceful", "script": "/app/fixtures/count_signals.py", "kill_timeout": 10000},
        {"name": "orphans", "script": "/app/fixtures/orphans.sh"},
    ])
    containers.append("rt")
    engine.docker("run", "-d", "--name", "rt", "-v", f"{cfg}:/cfg:ro", image,
                  "pyvm2-runtime", "/cfg/eco.json")
    wait(lambda: engine.out("logs", "rt"), lambda s: "made 20 orphans" in s and "|graceful | ready" in s,
         "both apps' output in docker logs")
    assert engine.out("exec", "rt", "cat", "/proc/1/cmdline").split("\0")[1].endswith("pyvm2-runtime")
    jl = json.loads(engine.out("exec", "rt", "pyvm2", "jlist"))
    assert sorted((p["name"], p["pm2_env"]["status"]) for p in jl) == \
        [("graceful", "online"), ("orphans", "online")]
    logs = engine.out("exec", "rt", "pyvm2", "logs", "orphans", "--nostream", "--lines", "5")
    assert "made 20 orphans" in logs
    wait(lambda: engine.out("exec", "rt", "python3", "-c", ZOMBIES), lambda n: n == "0",
         "no zombie in the container")

    started = time.monotonic()
    engine.docker("stop", "-t", "30", "rt")
    assert time.monotonic() - started < 15  # graceful, not the 30 s SIGKILL
    assert engine.out("inspect", "-f", "{{.State.ExitCode}}", "rt") == "0"
    assert "stop signals delivered: 1" in engine.out("logs", "rt")


def test_runtime_exits_2_when_every_app_is_down(engine: Engine, image: str, containers,
                                               tmp_path: Path) -> None:
    cfg = _eco(tmp_path, [{"name": "once", "script": "/app/fixtures/exit_now.py", "args": ["0"],
                           "autorestart": False}])
    containers.append("rt-once")
    res = engine.docker("run", "--name", "rt-once", "-v", f"{cfg}:/cfg:ro", image,
                        "pyvm2-runtime", "/cfg/eco.json", "--json", check=False, timeout=120)
    assert res.returncode == 2, res.stderr.decode(errors="replace")
    lines = [json.loads(x) for x in res.stdout.decode().splitlines()]
    assert any(x["type"] == "out" and x["message"].startswith("started") for x in lines)
