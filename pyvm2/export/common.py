"""What every export target shares: options, documents, notes, the command line and sizes."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyvm2.launch import resolve_launch
from pyvm2.spec import AppSpec
from pyvm2.units import MIB

#: Interpreters living here on this machine are named without their folder in a container image,
#: so the image's own PATH finds them (/usr/bin/python3 here may be /usr/local/bin/python3 there).
SYSTEM_BIN_DIRS = ("/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin")

#: Images chosen when --image is not given, by the program that runs the app.
DEFAULT_IMAGES = {
    "python3": "python:3-slim", "python": "python:3-slim", "php": "php:8-cli",
    "node": "node:lts-slim", "bun": "oven/bun:slim", "ruby": "ruby:slim", "perl": "perl:slim",
}
FALLBACK_IMAGE = "debian:stable-slim"

#: pyvm2's own defaults, so that a note is only written for a value somebody chose.
DEFAULTS = AppSpec(name="x", script="/x", cwd="/")


@dataclass(frozen=True)
class Options:
    """How to export: the image, where the ecosystem file's folder is inside it, and the file."""

    image: str | None = None
    source_dir: str = ""          # the ecosystem file's folder on this machine
    app_dir: str | None = None    # that folder inside the image (None: the same path)
    source_name: str = ""         # the file, as the user named it (for comments)
    user: str | None = None       # systemd: User= for the services (None: the manager's user)


@dataclass(frozen=True)
class Document:
    """One object (or, for Compose, the whole file): its file name in --out DIR and its text."""

    filename: str
    text: str


@dataclass
class Export:
    documents: list[Document] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # "app: what was not carried over", in order

    def stdout_text(self, separator: str) -> str:
        parts = [d.text.rstrip("\n") + "\n" for d in self.documents]
        return separator.join(parts)


class Notes:
    """What one app loses on the way, for the comment above its objects and for stderr."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.items: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)

    def comment(self, prefix: str = "# ") -> str:
        if not self.items:
            return ""
        lines = [f"{prefix}Not carried over, or changed in meaning:"]
        lines += [f"{prefix}- {item}" for item in self.items]
        return "\n".join(lines) + "\n"

    def flush_into(self, result: Export) -> None:
        result.notes.extend(f"{self.app}: {item}" for item in self.items)


def header(spec: AppSpec, options: Options, target: str, prefix: str = "# ") -> str:
    source = options.source_name or spec.source or "the command line"
    return f"{prefix}{target} for app {spec.name!r} of {source}, written by pyvm2 export\n"


# ---- names ----------------------------------------------------------------------------------

def dns_label(name: str, limit: int = 63) -> str:
    """A DNS-1123 label ([a-z0-9-], alphanumeric at both ends, at most `limit` long)."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    text = re.sub(r"-{2,}", "-", text)[:limit].strip("-")
    return text or "app"


def label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def unique(names: Sequence[str]) -> list[str]:
    """`names` with -2, -3... appended where two apps sanitize to the same name."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            n = f"{n}-{seen[n]}"
        seen.setdefault(n, 1)
        out.append(n)
    return out


# ---- the command ----------------------------------------------------------------------------

def host_argv(spec: AppSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(program part, app args) of what pyvm2 runs on this machine, all paths absolute."""
    path_env = spec.env.get("PATH") or os.environ.get("PATH")
    argv = resolve_launch(spec, path_env).argv
    n = len(spec.args)
    return tuple(argv[: len(argv) - n]), tuple(argv[len(argv) - n:])


def in_image(path: str, options: Options) -> str:
    """Where a path of this machine is inside the image."""
    if options.app_dir is None or not options.source_dir:
        return path
    base = options.source_dir.rstrip("/") or "/"
    if path == base:
        return options.app_dir
    if path.startswith(base.rstrip("/") + "/"):
        return options.app_dir.rstrip("/") + "/" + path[len(base.rstrip("/")) + 1:]
    return path


def container_argv(spec: AppSpec, options: Options) -> tuple[list[str], list[str]]:
    """(command, args) for a container: interpreters found on PATH here are named, so the
    image's PATH finds them; paths under the ecosystem file's folder move to --app-dir."""
    program, args = host_argv(spec)
    words = []
    for i, word in enumerate(program):
        moved = in_image(word, options) if os.path.isabs(word) else word
        if i == 0 and os.path.isabs(word) and word != spec.script:
            # an interpreter found on PATH here (a virtualenv's inside the project folder
            # included) is named; one the app gives by its path stays that path
            by_name = "/" not in (spec.interpreter or "").split(" ")[0]
            if by_name or os.path.dirname(word) in SYSTEM_BIN_DIRS:
                moved = os.path.basename(word)
        words.append(moved)
    return words, list(args)


def default_image(spec: AppSpec) -> str:
    program, _ = host_argv(spec)
    runner = os.path.basename(program[0]) if program else ""
    runner = re.sub(r"[\d.]+$", "", runner) if runner.startswith("python") and runner != "python3" \
        else runner
    return DEFAULT_IMAGES.get(runner, FALLBACK_IMAGE)


# ---- values ---------------------------------------------------------------------------------

def size(n: int, units: Sequence[tuple[int, str]]) -> str:
    """`n` bytes in the biggest of `units` ((factor, suffix), biggest first) that divides it."""
    for factor, suffix in units:
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def mib_text(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n % MIB == 0 else f"{n} bytes"


def seconds_up(ms: int) -> int:
    return -(-ms // 1000)


def duration(ms: int) -> str:
    """A duration as Compose and systemd both read it: 2s, 1600ms."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def common_notes(spec: AppSpec, notes: Notes, *, logs: str | None) -> None:
    """Notes every target shares: watch, log files, filter_env, pid files, the instance index."""
    if spec.watch:
        notes.add("watch: no file watching (it is for development); redeploy instead")
    written = [k for k in ("out_file", "error_file", "log_file") if getattr(spec, k)]
    if written and logs:
        notes.add(f"{', '.join(written)}: {logs}")
    if spec.disable_logs and logs:
        notes.add("disable_logs: the platform still collects the output")
    if spec.log_date_format:
        notes.add("log_date_format: lines carry no pyvm2 time prefix; the log collector stamps them")
    if spec.log_type == "json":
        notes.add("log_type json: lines are written as the app prints them")
    if spec.log_max_size is not None or spec.log_retain is not None or spec.log_compress:
        notes.add("log_max_size/log_retain/log_compress: rotation is the platform's")
    if spec.filter_env:
        notes.add("filter_env: the app starts from the environment given here, not a shell's")
    if spec.pid_file:
        notes.add("pid_file: no pid file is written")


def index_vars(spec: AppSpec) -> str:
    """The per-instance variables pyvm2 sets, as named in a note."""
    return spec.instance_var + (f"/{spec.increment_var}" if spec.increment_var else "")


def env_items(spec: AppSpec) -> list[tuple[str, str]]:
    """The app's environment; a Python app also gets PYTHONUNBUFFERED=1, as pyvm2 gives it, so
    its lines reach the log as they are printed."""
    env = dict(spec.env)
    path_env = spec.env.get("PATH") or os.environ.get("PATH")
    if resolve_launch(spec, path_env).is_python:
        env.setdefault("PYTHONUNBUFFERED", "1")
    return sorted(env.items())


def yaml_dump(data: Any) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000)


def five_field_cron(pattern: str) -> str | None:
    """A 5-field cron (or @nickname) for a scheduler without seconds; None if seconds matter."""
    fields = pattern.split()
    if len(fields) == 6:
        return " ".join(fields[1:]) if fields[0] == "0" else None
    return pattern


def listen_port(spec: AppSpec) -> int | None:
    """The port the app listens on, as pm2's `port` (PORT in its env) says."""
    value = spec.env.get("PORT", "")
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else None


def restart_notes(spec: AppSpec, notes: Notes, platform: str, *, cron: bool = False) -> None:
    """The restart-policy fields no orchestrator has, named when they differ from pyvm2's default."""
    changed = [k for k in ("min_uptime", "max_restarts", "exp_backoff_restart_delay")
               if getattr(spec, k) != getattr(DEFAULTS, k)]
    if changed:
        notes.add(f"{', '.join(changed)}: {platform}")
    if spec.cron_restart and spec.autorestart and not cron:
        notes.add(f"cron_restart {spec.cron_restart!r} on a long-running app: no periodic restart "
                  "is scheduled")
