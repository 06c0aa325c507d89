"""pyvm2 on a real Docker engine: the Compose export of an ecosystem file deployed on a one-node
Swarm, and pyvm2-runtime as the main process of a container (`docker logs`, `pyvm2 list` and
`logs` through `docker exec`, a graceful `docker stop`, orphans reaped, exit codes).

One module, so that the engine and the image (session fixtures) are set up once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from docker_env import ROOT, Engine, engine_fixture, image_fixture, swarm_fixture  # noqa: F401

#: Building the image and starting the engine count against the first test's time.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

MIB = 1024 * 1024
DEADLINE_S = 180.0

#: The seed's crawler, scaled from 100 instances to 3.
CRAWLERS = """\
{"apps": [{
  "name": "crawler", "script": "fixtures/show_env.py", "instances": 3,
  "env": {"SHOW_VARS": "CRAWL_QUEUE", "CRAWL_QUEUE": "redis://queue/0"},
  "max_memory_restart": "64M", "kill_timeout": 3000
}]}
"""


#: The memory limit of the container's cgroup, seen from inside (cgroup v2, else v1).
CGROUP_MEMORY_LIMIT = ("import os\n"
                       "for p in ('/sys/fs/cgroup/memory.max',\n"
                       "          '/sys/fs/cgroup/memory/memory.limit_in_bytes'):\n"
                       "    if os.path.exists(p):\n"
                       "        print(open(p).read().strip())\n"
                       "        break\n")

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
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}",
                pytrace=False)


def export_compose(eco: Path, image: str, out: Path) -> Path:
    res = subprocess.run([sys.executable, "-m", "pyvm2", "export", "compose", str(eco),
                          "--image", image, "--app-dir", "/app", "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return out / "compose.yaml"


def running_tasks(engine: Engine, service: str) -> list[str]:
    """Container ids of the service's running tasks."""
    return engine.out("ps", "-q", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={service}",
                      "--filter", "status=running").split()


@pytest.fixture
def stack(swarm: Engine, image: str, tmp_path: Path):
    names: list[str] = []

    def deploy(name: str, compose: Path) -> None:
        names.append(name)
        swarm.docker("stack", "deploy", "--compose-file", str(compose), name)

    yield deploy
    for name in names:
        swarm.docker("stack", "rm", name, check=False)
    for name in names:  # the stack's containers and network go away asynchronously
        wait(lambda n=name: swarm.out("ps", "-aq", "--filter",
                                      f"label=com.docker.stack.namespace={n}"),
             lambda ids: ids == "", f"the containers of stack {name} to be removed", timeout=120)


def one_task(engine: Engine, service: str) -> str:
    """The container of the service's one running task (a task being replaced is waited for)."""
    (task,) = wait(lambda: running_tasks(engine, service), lambda ids: len(ids) == 1,
                   f"one running task of {service}")
    return str(task)


def task_exec(engine: Engine, service: str, *cmd: str) -> tuple[str, str]:
    """Run cmd in the service's running task: (its container, its output). A task that ended
    between being found and the exec (Swarm replaces it) is told and the next one is used."""
    def attempt() -> tuple[str, str] | None:
        task = one_task(engine, service)
        res = engine.docker("exec", task, *cmd, check=False)
        if res.returncode == 0:
            return task, res.stdout.decode(errors="replace").strip()
        state = engine.out("inspect", "-f", "{{.State.Status}}", task, check=False)
        if state == "running":
            raise AssertionError(f"docker exec {task} {' '.join(cmd)} exited {res.returncode}:\n"
                                 f"{res.stderr.decode(errors='replace')}")
        history = engine.out("service", "ps", "--no-trunc", "--format",
                             "{{.Name}} {{.CurrentState}} {{.Error}}", service, check=False)
        print(f"task {task} of {service} ended before the exec ({state}); tasks:\n{history}")
        return None
    return wait(attempt, lambda r: r is not None, f"a command in a running task of {service}")


def test_the_example_deploys_to_a_swarm(swarm: Engine, image: str, stack, tmp_path: Path) -> None:
    compose = export_compose(ROOT / "ecosystem.example.json", image, tmp_path / "example")
    services = yaml.safe_load(compose.read_text())["services"]
    assert sorted(services) == ["up4", "web", "worker"]
    stack("example", compose)
    for svc in services:
        wait(lambda s=svc: running_tasks(swarm, f"example_{s}"), lambda ids: len(ids) == 1,
             f"one running task of {svc}")

    # the environment inside a task is the app's env
    worker, env = task_exec(swarm, "example_worker", "python3", "-c",
                            "import os; print(os.environ['TICK_SECONDS'], os.getcwd())")
    assert env == "2 /app"
    # the app's own output, as pyvm2 would have logged it
    wait(lambda: swarm.out("logs", worker), lambda s: "processed job" in s, "worker output")
    up4 = one_task(swarm, "example_up4")
    wait(lambda: swarm.out("logs", up4), lambda s: "split 4" in s, "up4 output")

    # max_memory_restart became a memory limit, kill_signal and kill_timeout the stop settings
    web, limit = task_exec(swarm, "example_web", "python3", "-c", CGROUP_MEMORY_LIMIT)
    assert swarm.out("inspect", "-f", "{{.HostConfig.Memory}}", web) == str(100 * MIB)
    assert limit == str(100 * MIB)  # the kernel enforces it, not only the engine's record
    spec = swarm.out("service", "inspect", "-f",
                     "{{json .Spec.TaskTemplate.ContainerSpec.StopSignal}} "
                     "{{.Spec.TaskTemplate.ContainerSpec.StopGracePeriod}}", "example_web")
    assert spec == '"SIGTERM" 1.6s'  # the example's kill_signal

    # a killed task is replaced
    swarm.docker("kill", worker)
    replaced = wait(lambda: running_tasks(swarm, "example_worker"),
                    lambda ids: len(ids) == 1 and ids[0] != worker, "a replacement worker task")
    assert replaced[0] != worker


def test_instances_become_replicas(swarm: Engine, image: str, stack, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "fixtures").symlink_to(ROOT / "tests" / "fixtures")
    (app / "crawlers.json").write_text(CRAWLERS)
    compose = export_compose(app / "crawlers.json", image, tmp_path / "out")
    stack("crawl", compose)
    tasks = wait(lambda: running_tasks(swarm, "crawl_crawler"), lambda ids: len(ids) == 3,
                 "three running crawler tasks")
    replicas = swarm.out("service", "inspect", "-f", "{{.Spec.Mode.Replicated.Replicas}}",
                         "crawl_crawler")
    assert replicas == "3"
    for task in tasks:
        wait(lambda t=task: swarm.out("logs", t), lambda s: '"CRAWL_QUEUE": "redis://queue/0"' in s,
             "the crawler's environment in its output")
        assert swarm.out("inspect", "-f", "{{.HostConfig.Memory}}", task) == str(64 * MIB)


# ---- pyvm2-runtime in a container --------------------------------------------------

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
