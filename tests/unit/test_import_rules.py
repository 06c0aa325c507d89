"""The import rules of ARCHITECTURE.md, checked by walking every module's AST."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "pyvm2"
LEAF = {"pyvm2.errors", "pyvm2.status", "pyvm2.units", "pyvm2.paths", "pyvm2.protocol"}
THIRD_PARTY = {"typer", "click", "rich", "psutil", "watchdog", "json5", "yaml", "croniter", "dotenv"}


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


def test_format_readers_use_only_the_standard_library_their_parser_and_errors():
    """pyvm2.formats turns bytes into data: it knows nothing of apps, the daemon or the CLI."""
    allowed_own = {"pyvm2.errors", "pyvm2.units", "pyvm2.formats"}
    found_any = False
    for mod, path in modules().items():
        if not mod.startswith("pyvm2.formats"):
            continue
        found_any = True
        found = imports(path)
        own = {n for n in found if n.startswith("pyvm2")} - {"pyvm2"}
        assert all(any(n == a or n.startswith(a + ".") for a in allowed_own) for n in own), (mod, own)
        assert not roots(found) & (THIRD_PARTY - {"json5", "yaml"}), (mod, found)
        assert not roots(top_level_imports(path)) & {"json5", "yaml"}, mod  # imported on use
    assert found_any


def test_cli_never_imports_the_daemon_or_heavy_libraries():
    for mod, path in modules().items():
        if not (mod.startswith("pyvm2.cli") or mod in ("pyvm2.client", "pyvm2.spec",
                                                        "pyvm2.ecosystem", "pyvm2.launch",
                                                        "pyvm2.options", "pyvm2.values")
                or mod.startswith("pyvm2.formats")):
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
        assert not any(n.startswith(("pyvm2.cli", "pyvm2.client", "pyvm2.ecosystem", "pyvm2.formats"))
                       for n in found), (mod, found)
        assert not roots(found) & {"typer", "click", "rich"}, (mod, found)


def test_watch_monitor_and_cron_never_import_daemon_or_process():
    for mod in ("pyvm2.daemon.watch", "pyvm2.daemon.monitor", "pyvm2.daemon.cron"):
        path = modules().get(mod)
        if path is None:
            continue
        found = imports(path)
        assert not found & {"pyvm2.daemon.daemon", "pyvm2.daemon.process"}, (mod, found)


def test_heavy_parsers_are_imported_lazily():
    for mod in ("pyvm2.ecosystem", "pyvm2.spec", "pyvm2.options", "pyvm2.values",
                "pyvm2.cli.commands"):
        heavy = {"json5", "yaml", "croniter", "rich", "dotenv"}
        assert not roots(top_level_imports(modules()[mod])) & heavy, mod


def test_importing_pyvm2_list_path_loads_no_heavy_module():
    code = ("import sys, pyvm2.cli, pyvm2.cli.commands, pyvm2.client; "
            "print(' '.join(sorted(m for m in ('asyncio','psutil','watchdog','json5','yaml','croniter','rich','dotenv') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"loaded on the list path: {out}"


def test_the_back_off_policy_is_pure():
    """Every back-off is decided from times passed in: no clock, no OS, no event loop."""
    found = roots(imports(modules()["pyvm2.daemon.policy"]))
    assert not found & {"asyncio", "time", "os", "psutil", "subprocess", "signal"}, found
