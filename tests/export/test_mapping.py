"""What each pm2 field becomes, checked on the exporters' output itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pyvm2 import ecosystem
from pyvm2.export import Options, export
from pyvm2.export.systemd import on_calendar, unit_stem


def _load(tmp_path: Path, text: str) -> list:
    (tmp_path / "app.py").write_text("print(1)\n")
    path = tmp_path / "eco.json"
    path.write_text(text)
    return ecosystem.load(str(path)).apps


@pytest.mark.parametrize(("cron", "calendar"), [
    ("*/15 * * * *", "*-*-* *:0/15:00"),
    ("0 3 * * *", "*-*-* 03:00:00"),
    ("30 0 3 * * 1-5", "Mon..Fri *-*-* 03:00:30"),
    ("0 0 1,15 jan-mar *", "*-1..3-1,15 00:00:00"),
    ("@weekly", "Sun *-*-* 00:00:00"),
    ("0 0 * * 0,6", "Sun,Sat *-*-* 00:00:00"),
])
def test_cron_patterns_become_on_calendar(cron: str, calendar: str) -> None:
    assert on_calendar(cron)[0] == calendar


def test_a_cron_pattern_systemd_cannot_express_is_named() -> None:
    value, why = on_calendar("0 0 * * */2")
    assert value is None and why and "*/2" in why


def test_unit_names_escape_what_systemd_cannot_hold() -> None:
    assert unit_stem("up4_worker-2") == "pyvm2-up4_worker-2"
    assert unit_stem("job one") == "pyvm2-job\\x20one"
    assert unit_stem("报表") == "pyvm2-" + "".join(f"\\x{b:02x}" for b in "报表".encode())


def test_kubernetes_fields(tmp_path: Path) -> None:
    apps = _load(tmp_path, '{"apps": [{"name": "Crawler_1", "script": "app.py", "instances": 100,'
                           ' "max_memory_restart": "100M", "kill_timeout": 3500,'
                           ' "env": {"N": 5}}]}')
    result = export("kubernetes", apps, Options(image="crawler:1", source_dir=str(tmp_path),
                                               app_dir="/srv"))
    (doc,) = result.documents
    dep = yaml.safe_load(doc.text)
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["metadata"]["name"] == c["name"] == "crawler-1"
    assert dep["spec"]["replicas"] == 100
    assert pod["terminationGracePeriodSeconds"] == 4
    assert c["command"] == ["python3", "app.py"] and c["workingDir"] == "/srv"
    assert c["resources"]["limits"]["memory"] == "100Mi"
    assert c["env"] == [{"name": "N", "value": "5"}, {"name": "PYTHONUNBUFFERED", "value": "1"}]
    assert any("OOMKilled" in n for n in result.notes)
    assert "# - max_memory_restart" in doc.text


def test_compose_fields(tmp_path: Path) -> None:
    apps = _load(tmp_path, '{"apps": [{"name": "w", "script": "app.py", "instances": 4,'
                           ' "max_memory_restart": "512M", "kill_timeout": 1600,'
                           ' "kill_signal": "SIGTERM", "stop_exit_codes": [0],'
                           ' "restart_delay": 2000}]}')
    (doc,) = export("compose", apps, Options(image="w:1")).documents
    svc = yaml.safe_load(doc.text)["services"]["w"]
    assert svc["deploy"] == {"replicas": 4, "restart_policy": {"condition": "on-failure",
                                                               "delay": "2s"},
                             "resources": {"limits": {"memory": "512M"}}}
    assert (svc["stop_signal"], svc["stop_grace_period"], svc["init"]) == ("SIGTERM", "1600ms", True)


def test_a_virtualenv_inside_the_project_is_named_not_moved_into_the_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI and many users keep `.venv` in the project folder: its python3 is found first on PATH
    here, but the image has its own, so the command names `python3`."""
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python3").write_text("#!/bin/sh\n")
    (venv_bin / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    apps = _load(tmp_path, '{"apps": [{"name": "w", "script": "app.py"}]}')
    (doc,) = export("compose", apps, Options(image="w:1", source_dir=str(tmp_path),
                                             app_dir="/app")).documents
    svc = yaml.safe_load(doc.text)["services"]["w"]
    assert svc["entrypoint"] == ["python3", "app.py"], svc


def test_systemd_quotes_what_it_would_otherwise_expand(tmp_path: Path) -> None:
    apps = _load(tmp_path, r'{"apps": [{"name": "q", "script": "app.py",'
                           r' "args": ["100%", "$HOME", "a \"b\""],'
                           r' "env": {"V": "50% of $X"}}]}')
    (doc,) = export("systemd", apps, Options()).documents
    assert 'ExecStart=' in doc.text
    line = next(x for x in doc.text.splitlines() if x.startswith("ExecStart="))
    assert line.endswith(' 100%% "$$HOME" "a \\"b\\""')
    assert 'Environment="V=50%% of $X"' in doc.text


def test_cli_says_what_did_not_map_on_stderr_and_in_the_output(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "eco.json").write_text('{"apps": [{"name": "a", "script": "app.py", "watch": true}]}')
    res = subprocess.run([sys.executable, "-m", "pyvm2", "export", "kubernetes", "eco.json",
                          "--image", "a:1"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "a: watch: no file watching" in res.stderr
    assert "# - watch: no file watching" in res.stdout
    assert [d["kind"] for d in yaml.safe_load_all(res.stdout)] == ["Deployment"]


def test_cli_rejects_an_unknown_target(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pyvm2", "export", "nomad", "x.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert res.stderr.splitlines()[0].startswith("[PYVM2][ERROR] unknown export target")
