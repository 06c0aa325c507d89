"""Every example and test ecosystem exported to Kubernetes, Compose and systemd, and each result
checked by the platform's own offline validator in its strictest mode."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ecosystems"
#: Fixtures that exist to be rejected (the error-message tests use them).
INVALID = {"bad-values.json", "js-expression.json", "missing-comma.json", "seed-fullwidth.json"}
#: Kubernetes versions the manifests must validate against: an old supported one and a new one.
K8S_VERSIONS = ("1.28.0", "1.33.0")

#: An ecosystem that uses every option an export has to map or to explain.
EVERYTHING = r"""
{
  "apps": [
    {"name": "Web_API", "script": "app.py", "instances": 3, "exec_mode": "cluster",
     "env": {"PORT": 8080, "QUOTED": "say \"hi\" 100% $HOME \\ back", "EMPTY": ""},
     "env_production": {"MODE": "prod"},
     "max_memory_restart": "1536M", "kill_timeout": 2500, "kill_signal": "SIGTERM",
     "restart_delay": 300, "stop_exit_codes": [0], "cron_restart": "*/15 * * * *",
     "out_file": "logs/out.log", "error_file": "/dev/null", "log_date_format": "YYYY",
     "watch": true, "min_uptime": 5000, "max_restarts": 3, "namespace": "team a",
     "increment_var": "PORT", "log_max_size": "5M", "log_retain": 2},
    {"name": "nightly report", "script": "worker.php", "autorestart": false,
     "cron_restart": "0 30 3 * * 1-5", "instances": 2, "treekill": false,
     "args": ["--since", "yesterday", "a b"], "log_file": true},
    {"name": "seconds", "script": "app.py", "autorestart": false, "cron_restart": "*/10 * * * * *"},
    {"name": "once", "script": "app.py", "autorestart": false, "autostart": false,
     "exp_backoff_restart_delay": 200, "stop_exit_codes": [2, 3], "pid_file": "app.pid"},
    {"name": "weekly", "script": "sleep 5", "cron_restart": "@weekly", "filter_env": true},
    {"name": "digits-9", "script": "app.py", "interpreter_args": "-u", "disable_logs": true,
     "cron_restart": "0 0 1 * 1"}
  ]
}
"""


def _project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    (proj / "conf").mkdir(parents=True)
    (proj / "app.py").write_text("print(1)\n")
    (proj / "worker.php").write_text("<?php\n")
    (proj / "symfony").write_text("<?php\n")
    return proj


def ecosystems() -> list[str]:
    found = ["ecosystem.example.json"]
    found += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").rglob("*")
                    if p.is_file() and _is_ecosystem(p.name))
    found += sorted(f"tests/fixtures/ecosystems/{p.name}" for p in FIXTURES.iterdir()
                    if p.name not in INVALID)
    return found + ["<everything>"]


def _is_ecosystem(name: str) -> bool:
    from pyvm2.ecosystem import is_ecosystem_file

    return is_ecosystem_file(name)


def _place(name: str, tmp_path: Path) -> Path:
    """The ecosystem file where it can load: the repo's own in place, fixtures next to the
    scripts they name (seed-fixed.json one folder below its `symfony`)."""
    if name == "<everything>":
        path = _project(tmp_path) / "everything.json"
        path.write_text(EVERYTHING)
        return path
    if not name.startswith("tests/fixtures/"):
        return ROOT / name
    proj = _project(tmp_path)
    folder = proj / "conf" if name.endswith("seed-fixed.json") else proj
    target = folder / Path(name).name
    shutil.copyfile(ROOT / name, target)
    return target


def _export(target: str, path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    if path.name.endswith((".js", ".mjs")) and shutil.which("node") is None:
        pytest.skip("node is not installed: .config.js files cannot be read")
    res = subprocess.run([sys.executable, "-m", "pyvm2", "export", target, str(path),
                          "--out", str(out), "--image", "example/app:1", *extra],
                         capture_output=True, text=True, timeout=60, cwd=path.parent)
    assert res.returncode == 0, res.stderr
    return res


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]'; apt-get install systemd)")
    return found


@pytest.mark.parametrize("name", ecosystems())
def test_kubernetes_export_validates_strictly(name: str, tmp_path: Path) -> None:
    tool = _need("kubernetes-validate")
    out = tmp_path / "k8s"
    _export("kubernetes", _place(name, tmp_path), out, "--app-dir", "/app")
    files = sorted(out.iterdir())
    assert files
    for doc in files:
        obj = yaml.safe_load(doc.read_text())
        assert obj["metadata"]["name"], doc
    for version in K8S_VERSIONS:
        res = subprocess.run([tool, "--strict", "-k", version, *map(str, files)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", ecosystems())
def test_compose_export_validates_against_the_compose_spec(name: str, tmp_path: Path) -> None:
    tool = _need("check-jsonschema")
    out = tmp_path / "compose"
    _export("compose", _place(name, tmp_path), out, "--app-dir", "/app")
    compose = out / "compose.yaml"
    res = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(compose)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert yaml.safe_load(compose.read_text())["services"]


@pytest.mark.parametrize("name", ecosystems())
def test_systemd_export_verifies_without_a_single_warning(name: str, tmp_path: Path) -> None:
    tool = _need("systemd-analyze")
    out = tmp_path / "units"
    _export("systemd", _place(name, tmp_path), out)
    units = sorted(p.name for p in out.iterdir())
    assert units
    res = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=120,
                         cwd=out)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    for unit in units:
        for line in (out / unit).read_text().splitlines():
            if line.startswith("OnCalendar="):
                res = subprocess.run([tool, "calendar", line.split("=", 1)[1]],
                                     capture_output=True, text=True, timeout=60)
                assert res.returncode == 0 and res.stderr == "", (line, res.stderr)
