"""pyvm2-runtime: an ecosystem file run in the foreground as a container's main process (PID 1)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyvm2 import protocol
from pyvm2.errors import Pyvm2Error
from pyvm2.paths import Home

if TYPE_CHECKING:
    from pyvm2.daemon.process import ManagedProcess
    from pyvm2.spec import AppSpec

#: Exit code when every app has stopped or errored on its own (pm2-runtime's code too).
EXIT_ALL_DOWN = 2
#: Exit code when an app could not be stopped, or the runtime could not start.
EXIT_FAILED = 1
#: How often the runtime looks whether any app is still up, and how many looks in a row must
#: find none before it exits (a restart passes through stopped states for a moment).
CHECK_INTERVAL_S = 0.5
DOWN_CHECKS = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyvm2-runtime",
        description="Run an ecosystem file in the foreground, for containers: apps' output on "
                    "stdout/stderr, SIGTERM/SIGINT stop every app gracefully, orphans are reaped.")
    p.add_argument("file", help="the ecosystem file (JSON, YAML, .config.js)")
    p.add_argument("--env", help="use env_<NAME> from the file")
    p.add_argument("--only", action="append", help="only these apps (comma separated)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--raw", action="store_true", help="the apps' output without prefixes")
    out.add_argument("--json", action="store_true", help="one JSON object per line")
    out.add_argument("--formatted", action="store_true", help="'id|name | ' prefixes (default)")
    p.add_argument("--no-auto-exit", action="store_true",
                   help="keep running when every app has stopped or errored")
    return p


# ---- output ---------------------------------------------------------------------------------

def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            time.sleep(0.01)  # a full pipe: wait for the reader rather than drop the line
            continue
        except OSError:
            return  # nobody reads any more: the apps keep running regardless
        view = view[n:]


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class Echo:
    """The apps' output on the runtime's own stdout and stderr: raw, prefixed or JSON lines."""

    def __init__(self, mode: str, width: int = 0) -> None:
        self.mode = mode
        self.width = width
        self.partial: dict[tuple[int, str], bytes] = {}

    def __call__(self, proc: ManagedProcess, stream: str, data: bytes) -> None:
        fd = 2 if stream == "err" else 1
        if self.mode == "raw":
            _write(fd, data)
            return
        key = (proc.pm_id, stream)
        buf = self.partial.pop(key, b"") + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) <= 65536:
                self.partial[key] = buf
                return
            cut = len(buf)
        elif cut + 1 < len(buf):
            self.partial[key] = buf[cut + 1:]
        self._lines(proc.pm_id, proc.name, stream, buf[:cut].split(b"\n"))

    def _lines(self, pm_id: int, name: str, stream: str, lines: list[bytes]) -> None:
        fd = 2 if stream == "err" else 1
        if self.mode == "json":
            out = b"".join(json.dumps({
                "message": line.decode("utf-8", errors="replace"), "timestamp": _stamp(),
                "type": stream, "process_id": pm_id, "app_name": name,
            }, ensure_ascii=False).encode() + b"\n" for line in lines)
            _write(1, out)
            return
        prefix = f"{pm_id}|{name.ljust(self.width)} | ".encode()
        _write(fd, b"".join(prefix + line + b"\n" for line in lines))

    def flush(self, names: dict[int, str]) -> None:
        for (pm_id, stream), rest in list(self.partial.items()):
            self._lines(pm_id, names.get(pm_id, "?"), stream, [rest])
        self.partial.clear()

    def event(self, proc: ManagedProcess, status: str) -> None:
        """A status change: a JSON line in --json mode, a line on stderr otherwise."""
        if self.mode == "json":
            _write(1, json.dumps({"timestamp": _stamp(), "type": "process_event",
                                  "status": status, "app_name": proc.name,
                                  "process_id": proc.pm_id}).encode() + b"\n")
        elif self.mode != "raw":
            reason = f" ({proc.status_reason})" if proc.status_reason else ""
            say(f"App [{proc.label}] {status}{reason}")


def say(message: str) -> None:
    _write(2, f"[PYVM2-RUNTIME] {message}\n".encode(errors="replace"))


# ---- the run ----------------------------------------------------------------------------------

def _alive(p: ManagedProcess) -> bool:
    from pyvm2.status import Status

    if p.status not in (Status.STOPPED, Status.ERRORED):
        return True
    # an app with a cron schedule and autorestart off waits, stopped, for its next tick
    return p.status == Status.STOPPED and p.desired == "running" and bool(p.spec.cron_restart)


class Runtime:
    def __init__(self, home: Home, apps: Sequence[AppSpec], echo: Echo, auto_exit: bool) -> None:
        from pyvm2.daemon.daemon import Daemon

        self.home = home
        self.apps = list(apps)
        self.echo = echo
        self.auto_exit = auto_exit
        self.daemon = Daemon(home)
        self.daemon.hooks.echo = echo
        journal_changed = self.daemon.hooks.changed

        def changed() -> None:  # every status change passes here
            journal_changed()
            self._report_changes()

        self.daemon.hooks.changed = changed
        self.all_down = False
        self.statuses: dict[int, str] = {}

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        serving = loop.create_task(self.daemon.serve())
        watcher = loop.create_task(self._watch(serving))
        try:
            await serving
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._report_changes()
        self.echo.flush({p.pm_id: p.name for p in self.daemon.procs.values()})
        left = [p for p in self.daemon.procs.values() if p.run is not None]
        if left:
            say("could not stop: " + ", ".join(p.label for p in left))
            return EXIT_FAILED
        if self.all_down:
            say("every app has stopped or errored; exiting")
            return EXIT_ALL_DOWN
        return 0

    async def _watch(self, serving: asyncio.Task) -> None:
        while not self.daemon.socket_ino:
            if serving.done():
                return
            await asyncio.sleep(0.02)
        base_env = dict(os.environ)
        args = {"apps": [a.to_dict() for a in self.apps], "base_env": base_env, "from_file": True}
        await self.daemon.dispatch("start", protocol.command("start").check_args(args))
        down = 0
        while True:
            self._report_changes()
            if self.auto_exit and not any(_alive(p) for p in self.daemon.procs.values()):
                down += 1
                if down >= DOWN_CHECKS:
                    self.all_down = True
                    self.daemon.shutdown()
                    return
            else:
                down = 0
            await asyncio.sleep(CHECK_INTERVAL_S if down else 0.1)

    def _report_changes(self) -> None:
        for p in list(self.daemon.procs.values()):
            status = p.status.value
            if self.statuses.get(p.pm_id) != status:
                self.statuses[p.pm_id] = status
                self.echo.event(p, status)


def _take_home(home: Home) -> int:
    home.ensure()
    fd = os.open(home.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Pyvm2Error(f"a pyvm2 daemon already runs in {home.root}",
                         "stop it with: pyvm2 kill, or give the runtime its own PYVM2_HOME",
                         code=EXIT_FAILED) from None
    # the runtime runs the file's apps, not what an earlier run of this home left registered
    for stale in (home.state, home.socket):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    tmp = f"{home.pid}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, home.pid)
    return fd


def main(argv: list[str] | None = None) -> None:
    # as PID 1, a signal without a handler is ignored: stop cleanly even while loading
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    args = _parser().parse_args(argv)
    mode = "json" if args.json else "raw" if args.raw else "prefixed"
    only = [x for v in args.only or [] for x in v.replace(",", " ").split()] or None
    from pyvm2 import cli, ecosystem

    try:
        # the home first: a `pyvm2 list` run meanwhile must find it taken, not start a daemon
        home = Home.from_env()
        _take_home(home)
        loaded = ecosystem.load(args.file, env_name=args.env, only=only, base_env=dict(os.environ))
        for w in loaded.warnings:
            cli.warn(w)
        from pyvm2.daemon.__main__ import raise_fd_limit

        raise_fd_limit()
        width = max((len(a.name) for a in loaded.apps), default=0)
        runtime = Runtime(home, loaded.apps, Echo(mode, width), auto_exit=not args.no_auto_exit)
        code = asyncio.run(runtime.run())
    except Pyvm2Error as e:
        cli.fail(e)
    sys.exit(code)


if __name__ == "__main__":
    main()
