"""The import rules of ARCHITECTURE.md, checked by walking every module's AST."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pytest

PKG = Path(__file__).resolve().parents[2] / "pyvm2"


class Layer(NamedTuple):
    members: tuple[str, ...]        # module names, or packages (then everything below them too)
    may_import: frozenset[str]      # pyvm2 layers (its own included)
    libraries: frozenset[str]       # third-party top-level packages
    not_stdlib: frozenset[str] = frozenset()   # standard modules too heavy for this layer


def _layer(members: tuple[str, ...], may_import: Iterable[str], libraries: Iterable[str] = (),
           not_stdlib: Iterable[str] = ()) -> Layer:
    return Layer(members, frozenset(may_import), frozenset(libraries), frozenset(not_stdlib))


#: Every module belongs to one layer; what each layer may import is listed, anything else fails.
#: A new module goes into a layer here (the test names modules that belong to none).
LAYERS: dict[str, Layer] = {
    # Shared by every side, standard library only: errors, statuses, units, paths, the wire format.
    "leaf": _layer(("pyvm2", "pyvm2.errors", "pyvm2.status", "pyvm2.units", "pyvm2.paths",
                    "pyvm2.protocol", "pyvm2.tail", "pyvm2.procfs", "pyvm2.dayjs"), {"leaf"}),
    # An app's definition and how it is launched: both the CLI and the daemon build and check it.
    "spec": _layer(("pyvm2.spec", "pyvm2.launch", "pyvm2.options", "pyvm2.values",
                    "pyvm2.cronexpr"), {"leaf", "spec", "formats"}, {"croniter", "dotenv"}, {"asyncio"}),
    # Reading files into specs (ecosystem files, pm2 dumps): the CLI's side of the door.
    "files": _layer(("pyvm2.ecosystem", "pyvm2.pm2dump", "pyvm2.convert"), {"leaf", "spec", "files", "formats"},
                    {"json5", "yaml"}, {"asyncio"}),
    # Bytes of a file into plain data with positions: knows nothing of apps, daemon or CLI.
    "formats": _layer(("pyvm2.formats",), {"leaf", "formats"}, {"json5", "yaml"}, {"asyncio"}),
    # Talking to the daemon and installing it as a service, without the CLI's libraries.
    "client": _layer(("pyvm2.client", "pyvm2.startup"), {"leaf"}, (), {"asyncio"}),
    # Manifests for orchestrators from specs: pure, no daemon.
    "export": _layer(("pyvm2.export",), {"leaf", "spec", "export"}, {"yaml"}, {"asyncio"}),
    # pyvm2-runtime: the daemon in the foreground for containers, fed by an ecosystem file. The
    # CLI's `runtime` command hands over to it (imported only by that command).
    "runtime": _layer(("pyvm2.runtime",), {"leaf", "spec", "files", "formats", "cli", "daemon"}),
    "cli": _layer(("pyvm2.cli", "pyvm2.__main__"),
                  {"leaf", "spec", "files", "formats", "client", "cli", "export", "runtime",
                   "webgate"},
                  {"typer", "click", "rich"}, {"asyncio"}),
    "daemon": _layer(("pyvm2.daemon",), {"leaf", "spec", "daemon"},
                     {"psutil", "watchdog", "croniter"}),
    # What `pyvm2 web` checks and writes before a server runs (the extra, the token): stdlib only.
    "webgate": _layer(("pyvm2.web.gate", "pyvm2.web.auth"), {"leaf", "webgate"}, (), {"asyncio"}),
    # The web server: its own process, talking to the daemon over the socket only.
    "web": _layer(("pyvm2.web",), {"leaf", "webgate", "web"},
                  {"starlette", "uvicorn", "prometheus_client", "psutil"}),
}


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


def layer_of(mod: str) -> str | None:
    """The layer whose most specific member is `mod` or a package above it (the top package,
    `pyvm2` itself, only for its own `__init__`)."""
    best: tuple[int, str | None] = (-1, None)
    for name, layer in LAYERS.items():
        for member in layer.members:
            below = member != "pyvm2" and mod.startswith(member + ".")
            if (mod == member or below) and len(member) > best[0]:
                best = (len(member), name)
    return best[1]


def own_modules(found: set[str], known: dict[str, Path]) -> set[str]:
    """The pyvm2 modules among imported names (`from pyvm2 import __version__` is `pyvm2`)."""
    out = set()
    for name in found:
        if not name.startswith("pyvm2"):
            continue
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        out.add(name)
    return out


def violations(mod: str, found: set[str], known: dict[str, Path]) -> list[str]:
    """What `mod` imports (`found`) that its layer does not allow."""
    name = layer_of(mod)
    if name is None:
        return [f"{mod} belongs to no layer: add it to LAYERS"]
    layer = LAYERS[name]
    out = [f"{mod} ({name}) may not import {m} ({layer_of(m)})"
           for m in sorted(own_modules(found, known)) if layer_of(m) not in layer.may_import]
    for lib in sorted(roots(found) - {"pyvm2"}):
        if lib in layer.not_stdlib or (lib not in sys.stdlib_module_names
                                       and lib not in layer.libraries):
            out.append(f"{mod} ({name}) may not import {lib}")
    return out


@pytest.mark.parametrize("mod", sorted(modules()))
def test_each_module_imports_only_what_its_layer_allows(mod):
    known = modules()
    assert violations(mod, imports(known[mod]), known) == []


def test_the_allow_list_catches_what_is_not_listed():
    known = modules()
    assert violations("pyvm2.status", {"pyvm2.daemon.tree", "json5"}, known) == [
        "pyvm2.status (leaf) may not import pyvm2.daemon.tree (daemon)",
        "pyvm2.status (leaf) may not import json5"]
    assert violations("pyvm2.daemon.tree", {"pyvm2.client", "rich.text", "os"}, known) == [
        "pyvm2.daemon.tree (daemon) may not import pyvm2.client (client)",
        "pyvm2.daemon.tree (daemon) may not import rich"]
    assert violations("pyvm2.cli.render", {"asyncio", "pyvm2", "pyvm2.__version__"}, known) == [
        "pyvm2.cli.render (cli) may not import asyncio"]
    assert violations("pyvm2.nowhere", set(), known) == [
        "pyvm2.nowhere belongs to no layer: add it to LAYERS"]
    assert layer_of("pyvm2.formats.yaml") == "formats"


def test_only_render_touches_rich():
    for mod, path in modules().items():
        if mod.startswith("pyvm2.cli.render") or mod.startswith("pyvm2.cli.monit"):
            continue
        assert "rich" not in roots(imports(path)), mod


def test_watch_monitor_and_cron_never_import_daemon_or_process():
    for mod in ("pyvm2.daemon.watch", "pyvm2.daemon.watch_rules", "pyvm2.daemon.watch_inotify",
                "pyvm2.daemon.monitor", "pyvm2.daemon.cron"):
        path = modules().get(mod)
        if path is None:
            continue
        found = imports(path)
        assert not found & {"pyvm2.daemon.daemon", "pyvm2.daemon.process"}, (mod, found)


def test_heavy_parsers_are_imported_lazily():
    formats = [m for m in modules() if m.startswith("pyvm2.formats")]
    for mod in ("pyvm2.ecosystem", "pyvm2.spec", "pyvm2.options", "pyvm2.values",
                "pyvm2.cli.commands", *formats):
        assert not roots(top_level_imports(modules()[mod])) & {"json5", "yaml", "croniter", "rich", "dotenv"}, mod


def test_importing_pyvm2_list_path_loads_no_heavy_module():
    code = ("import sys, pyvm2.cli, pyvm2.cli.commands, pyvm2.client; "
            "print(' '.join(sorted(m for m in ('asyncio','psutil','watchdog','json5','yaml','croniter','rich') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"loaded on the list path: {out}"


def test_the_back_off_policy_is_pure():
    """Every back-off is decided from times passed in: no clock, no OS, no event loop."""
    found = roots(imports(modules()["pyvm2.daemon.policy"]))
    assert not found & {"asyncio", "time", "os", "psutil", "subprocess", "signal"}, found

