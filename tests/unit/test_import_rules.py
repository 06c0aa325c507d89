"""The import rules of ARCHITECTURE.md, checked by walking every module's AST."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "pyvm2"
LEAF = {"pyvm2.errors", "pyvm2.status", "pyvm2.units", "pyvm2.paths", "pyvm2.protocol"}
THIRD_PARTY = {"typer", "click", "rich", "psutil", "watchdog", "json5", "yaml", "croniter"}


def modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("mod", sorted(LEAF))
def test_leaf_modules_use_only_the_standard_library(mod):
    found = imports(modules()[mod])
    own = {n for n in found if n.startswith("pyvm2")} - {"pyvm2"}
    assert all(any(n == leaf or n.startswith(leaf + ".") for leaf in LEAF) for n in own), found
    assert not roots(found) & THIRD_PARTY


def test_cli_never_imports_the_daemon_or_heavy_libraries():
    for mod, path in modules().items():
        if not (mod.startswith("pyvm2.cli") or mod in ("pyvm2.client", "pyvm2.spec",
                                                        "pyvm2.ecosystem", "pyvm2.launch")):
            continue
        found = imports(path)
        assert not any(n.startswith("pyvm2.daemon") for n in found), (mod, found)
        assert not roots(found) & {"asyncio", "psutil", "watchdog"}, (mod, found)


def test_only_render_touches_rich():
    for mod, path in modules().items():
        if mod.startswith("pyvm2.cli.render") or mod.startswith("pyvm2.cli.monit"):
            continue
        assert "rich" not in roots(imports(path)), mod


def test_daemon_never_imports_the_cli_side():
    for mod, path in modules().items():
        if not mod.startswith("pyvm2.daemon"):
            continue
        found = imports(path)
        assert not any(n.startswith(("pyvm2.cli", "pyvm2.client", "pyvm2.ecosystem")) for n in found), (mod, found)
        assert not roots(found) & {"typer", "click", "rich"}, (mod, found)


def test_watch_monitor_and_cron_never_import_daemon_or_process():
    for mod in ("pyvm2.daemon.watch", "pyvm2.daemon.monitor", "pyvm2.daemon.cron"):
        path = modules().get(mod)
        if path is None:
            continue
        found = imports(path)
        assert not found & {"pyvm2.daemon.daemon", "pyvm2.daemon.process"}, (mod, found)


def test_heavy_parsers_are_imported_lazily():
    for mod in ("pyvm2.ecosystem", "pyvm2.spec", "pyvm2.cli.commands"):
        assert not roots(top_level_imports(modules()[mod])) & {"json5", "yaml", "croniter", "rich"}, mod


def test_importing_pyvm2_list_path_loads_no_heavy_module():
    code = ("import sys, pyvm2.cli, pyvm2.cli.commands, pyvm2.client; "
            "print(' '.join(sorted(m for m in ('asyncio','psutil','watchdog','json5','yaml','croniter','rich') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"loaded on the list path: {out}"


WEB_STACK = {"starlette", "uvicorn", "prometheus_client"}


def test_the_web_server_is_a_layer_of_its_own():
    """pyvm2.web talks to the daemon over the socket only; the daemon and the CLI never load the
    web stack (the CLI may import pyvm2.web's stdlib-only parts: its package and auth)."""
    web_modules = {m for m in modules() if m.startswith("pyvm2.web")}
    for mod, path in modules().items():
        found = imports(path)
        if mod.startswith("pyvm2.web"):
            assert not any(n.startswith(("pyvm2.daemon", "pyvm2.cli", "pyvm2.client")) for n in found), (mod, found)
        elif mod.startswith("pyvm2.daemon"):
            assert not any(n.startswith("pyvm2.web") for n in found), (mod, found)
            assert not roots(found) & WEB_STACK, (mod, found)
        elif mod.startswith("pyvm2.cli"):
            assert not roots(found) & WEB_STACK, (mod, found)
            assert not found & (web_modules - {"pyvm2.web", "pyvm2.web.auth"}), (mod, found)


def test_web_auth_and_package_use_only_the_standard_library():
    for mod in ("pyvm2.web", "pyvm2.web.auth"):
        found = imports(modules()[mod])
        assert not roots(found) & (WEB_STACK | THIRD_PARTY), (mod, found)
