"""`pyvm2 convert`: every format's apps written back as pyvm2 JSON/YAML that loads to the same apps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from pyvm2 import convert, ecosystem
from pyvm2.spec import AppSpec

SUPERVISOR = """\
[supervisord]
environment=APP_ENV="prod"

[group:workers]
programs=queue,mail

[program:queue]
command=/bin/sh -c 'echo %(process_num)d' --port=80%(process_num)02d
process_name=%(program_name)s_%(process_num)02d
numprocs=2
directory=%(here)s
stdout_logfile_maxbytes=1KB
stderr_logfile=NONE

[program:mail]
command=/bin/sh mail.sh
numprocs=3
process_name=%(program_name)s_%(process_num)d
autorestart=true
startsecs=0
stopsignal=QUIT
redirect_stderr=true
umask=002
priority=5

[program:once]
command=/bin/true
autorestart=false
autostart=false
exitcodes=0,3
stopasgroup=false
killasgroup=true
stdout_logfile_maxbytes=1000
stderr_logfile_maxbytes=1000
"""

JSON5 = """\
{apps: [
  {name: 'api', script: 'app.py', args: "--port 80 'a b'", instances: 2, env: {A: 1},
   max_memory_restart: '100M', log_file: true, watch: ['src'], cron_restart: '0 3 * * *',
   kill_signal: 'SIGTERM', autorestart: 'unexpected', stop_exit_codes: [0, 2]},
  {script: 'worker.php', exec_interpreter: 'php', merge_logs: true, instances: 3,
   log_max_size: 0, filter_env: ['SECRET'], namespace: 'jobs'},
]}
"""


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    for name in ("app.py", "worker.php", "mail.sh"):
        (tmp_path / name).write_text("")
    (tmp_path / "supervisord.conf").write_text(SUPERVISOR)
    (tmp_path / "ecosystem.json5").write_text(JSON5)
    return tmp_path


def same(a: list[AppSpec], b: list[AppSpec]) -> None:
    strip = [dataclasses.replace(s, source=None) for s in a]
    assert strip == [dataclasses.replace(s, source=None) for s in b]


@pytest.mark.parametrize("source", ["supervisord.conf", "ecosystem.json5"])
@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_gives_the_same_apps(proj: Path, source: str, fmt: str) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    first = ecosystem.load(source, base_env=env).apps
    text = convert.render(first, fmt)
    out = proj / f"converted.{fmt}"
    out.write_text(text)
    doc = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert set(doc) == {"apps"} and len(doc["apps"]) == len(first)
    same(first, ecosystem.load(str(out), base_env=env).apps)


def test_supervisor_conversion_is_explicit(proj: Path) -> None:
    apps = {a["name"]: a for a in json.loads(convert.render(
        ecosystem.load("supervisord.conf", base_env={"PATH": "/bin"}).apps))["apps"]}
    # groups by (priority, name), then programs by (priority, name) inside a group
    assert list(apps) == ["once", "mail", "queue_00", "queue_01"]
    assert apps["queue_01"]["args"] == ["-c", "echo 1", "--port=8001"]
    assert apps["queue_01"]["log_max_size"] == "1K" and apps["queue_01"]["error_file"] == "/dev/null"
    assert apps["queue_00"]["autorestart"] == "unexpected" and apps["queue_00"]["stop_exit_codes"] == [0]
    assert apps["mail"]["instances"] == 3 and apps["mail"]["redirect_stderr"] is True
    assert apps["mail"]["umask"] == "002"
    assert apps["mail"]["kill_signal"] == "SIGQUIT" and apps["mail"]["min_uptime"] == 100
    assert apps["once"]["autorestart"] is False and apps["once"]["treekill"] is False
    assert apps["once"]["log_max_size"] == "0.9765625K"


@pytest.mark.parametrize(("n", "text"), [(0, 0), (1024, "1K"), (50 * 1024**2, "50M"),
                                         (2 * 1024**3, "2G"), (1536, "1.5K")])
def test_size_text(n: int, text: object) -> None:
    assert convert.size_text(n) == text
