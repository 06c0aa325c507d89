"""Daemon: the registry pm_id -> ManagedProcess, restore after a crash, the schedules that restart
apps on their own, housekeeping, shutdown order. The command handlers are in `commands`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import math
import os
import re
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvm2 import __version__, protocol
from pyvm2.daemon import fds, reaper, runner, spawn, tree
from pyvm2.daemon.commands import Commands, definition_problem, stop_tiers
from pyvm2.daemon.events import Events
from pyvm2.daemon.journal import Entries, Journal, NotSaved
from pyvm2.daemon.logs import (
    DEFAULT_MAX_SIZE,
    DEFAULT_RETAIN,
    DEVNULL,
    LogFile,
    Rotation,
    close_idle,
)
from pyvm2.daemon.monitor import Monitor
from pyvm2.daemon.notify import Notifier
from pyvm2.daemon.policy import Trigger
from pyvm2.daemon.process import Hooks, LogPaths, ManagedProcess
from pyvm2.daemon.sockets import Listeners
from pyvm2.errors import DaemonError, NotFound, Pyvm2Error, SpawnError
from pyvm2.launch import Launch
from pyvm2.paths import Home, sanitize
from pyvm2.spec import LOG_FILE_DEFAULT, AppSpec, parse_log_size
from pyvm2.status import Desired, Status

if TYPE_CHECKING:  # watchdog and croniter are loaded only when an app watches or has a cron
    from pyvm2.daemon.cron import CronJob
    from pyvm2.daemon.watch import Watcher

#: Commands whose reply waits until the state file holds their effect.
PERSISTED = frozenset({"start", "stop", "restart", "delete", "reset", "resurrect", "reload",
                       "scale"})
#: After a restart, file changes seen during it and this long after are dropped.
WATCH_MUTE_S = 0.25
#: Signals whose default action would end the daemon and that mean nothing to it: a stray
#: `kill -USR1` must not cost the apps their supervisor. Handled, not ignored, so that children
#: still start with the default action.
_STRAY_SIGNALS = tuple(getattr(signal, n) for n in (
    "SIGUSR1", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT")
    if hasattr(signal, n))
#: Commands that change nothing; the only ones answered while a handover waits.
READ_ONLY = frozenset({"hello", "ping", "list", "describe", "targets", "handover"})
#: A handover waits this long at most for the commands in flight to finish.
HANDOVER_WAIT_S = 120.0
#: How often idle log files are closed and the socket is checked.
HOUSEKEEPING_S = 5
#: SIGCHLDs arriving within this long share one orphan poll: a mass stop ends thousands of
#: children, and each poll reads the daemon's whole list of children.
SIGCHLD_POLL_S = 0.05


@dataclass(frozen=True)
class Settings:
    """Global settings from $PYVM2_HOME/config.json; each app may override them."""

    log_max_size: int = DEFAULT_MAX_SIZE
    log_retain: int = DEFAULT_RETAIN
    log_compress: bool = False


def _retain(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 0 <= value <= 10_000:
        raise ValueError(f"expected a whole number of files from 0 to 10000, got {value!r}")
    return int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


#: config.json's keys and how each is read.
_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "log_max_size": parse_log_size, "log_retain": _retain, "log_compress": _flag,
}


def _log_path(base: str, pm_id: int, suffix: bool) -> str:
    if not suffix or not base.endswith(".log"):
        return base
    return base[: -len(".log")] + f"-{pm_id}.log"


def pid_path(base: str, pm_id: int) -> str:
    """Each instance's own pid file, as pm2 names it: a `.pid` or `-N.pid` ending becomes
    `-<id>.pid` (`app.pid` -> `app-3.pid`). pm2 leaves a name without `.pid` as it is, so its
    instances overwrite each other's file; pyvm2 appends `-<id>` to it. `/dev/null` means no pid
    file."""
    if base == DEVNULL:
        return base
    if base.endswith(".pid"):
        return re.sub(r"(-[0-9]+)?\.pid$", f"-{pm_id}.pid", base)
    return f"{base}-{pm_id}"


class Daemon:
    """The registry pm_id -> ManagedProcess of one PYVM2_HOME, and everything around it: the
    door for the commands the CLI sends (`dispatch`, which runs `Commands.cmd_*`), the schedules
    that restart apps on their own (cron, watch, the memory limit), the journal, start-up and
    shutdown.

    Owns: `procs` and `next_id` (created by `add`, removed by `remove` and `kill`; `next_id`
    starts again from 0 once nothing is left), the cron jobs and the watcher (one per daemon, shared by every watching app), the
    monitor, the daemon log, the settings from config.json.

    Threads: everything runs on one event loop. Off the loop: the monitor's sampling and the
    spawner's /proc scans (asyncio.to_thread, results handed back to the loop), journal and dump
    writes (to_thread), log rotation and compression (`_background`, the loop's executor), the
    watcher's observer threads (which call back through the loop), and exit watchers where pidfd
    is missing. None of them touch `procs` or an instance.

    Automatic restarts have one entry, `request_restart(target, reason, trigger)`: cron ticks,
    watch bursts and the monitor's memory check call it; the instance decides under its lock
    whether and when (see ManagedProcess). A restart of a watched app mutes its watch briefly
    afterwards, so what the app writes while starting does not restart it again.

    Invariants:

    * After every command, `sync_schedules` makes cron and watch follow `desired`: they run for
      apps the user wants running and pause on a user's stop.
    * A command in PERSISTED answers only once the journal holds its effect on disk.
    * SIGTERM stops every app but keeps `desired`, so the next daemon brings them back; `kill`
      stops and forgets them. A handover (`update`) leaves them running for the next daemon to
      adopt; so does a lost socket, which also leaves the journal alone (another daemon may own
      it).
    """

    def __init__(self, home: Home) -> None:
        self.home = home
        self.procs: dict[int, ManagedProcess] = {}
        self._named: dict[str, dict[int, ManagedProcess]] = {}   # name -> its instances, by pm_id
        self.next_id = 0
        self.started_at = time.time()
        self._stopping = asyncio.Event()
        self._handover = False
        self._handing_over = False    # `update` waits for the commands in flight to finish
        self._in_flight = 0           # commands being run (dispatch), handover included
        self._keep_state = False      # another daemon may own the state file now
        self._sigchld_poll: asyncio.TimerHandle | None = None
        self.socket_ino = 0
        self._socket_path = str(home.socket)
        self._watcher: Watcher | None = None
        self._watching: dict[str, tuple] = {}      # app name -> what its watch was set up with
        self._watch_keys: dict[str, int] = {}
        self._crons: dict[int, tuple[str, CronJob]] = {}
        self.broken: dict[int, str] = {}   # pm_id -> why its restored definition cannot run
        self._entries = Entries()
        self.journal = Journal(str(home.state), self._collect_state, self.log)
        self.settings = Settings()
        self.load_settings()
        self.listeners = Listeners()
        self.notifier = Notifier(str(home.root / "notify.sock"), self.log)
        self.orphans = reaper.Orphans(self._leaders, str(home.run))
        self.events = Events(self)
        self._monitor = Monitor(lambda pm_id, reason: self.request_restart(pm_id, reason,
                                                                           Trigger.MEMORY),
                                record=self.events.history.record)
        self.commands = Commands(self)
        self.hooks = Hooks(log=self.log, changed=self._changed, home=str(home.root),
                           run_dir=str(home.run), shutting_down=self._stopping.is_set,
                           rotation=self.rotation_for, background=self._background,
                           scanner=tree.Scanner(), sockets=self.sockets_for,
                           notifier=self.notifier, persist=self.journal.persist,
                           orphans=self.orphans, state=self.events.state,
                           output=self.events.output)

    # ---- settings and the daemon's own log -------------------------------------------------
    def load_settings(self) -> None:
        """Read $PYVM2_HOME/config.json. A file that cannot be read or parsed keeps every default;
        a bad value keeps that setting's default. Either way the daemon starts and says why."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        try:
            with open(self.home.config, "rb") as f:
                raw = json.load(f)
            if not isinstance(raw, dict):
                raise ValueError("expected a JSON object")
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError, RecursionError) as e:
            raw = {}
            problems.append(f"ignoring {self.home.config}: {e}")
        for key, convert in _SETTINGS.items():
            if key in raw:
                try:
                    values[key] = convert(raw[key])
                except (ValueError, TypeError, OverflowError, Pyvm2Error) as e:
                    problems.append(f"ignoring {key} in {self.home.config}: {e}; "
                                    f"keeping {getattr(Settings, key)!r}")
        self.settings = Settings(**values)
        self._log = LogFile(str(self.home.log), lambda _m: None, self.rotation_for(None))
        for problem in problems:
            self.log(problem)

    def rotation_for(self, spec: AppSpec | None) -> Rotation:
        g = self.settings
        if spec is None:
            return Rotation(g.log_max_size, g.log_retain, g.log_compress)
        return Rotation(g.log_max_size if spec.log_max_size is None else spec.log_max_size,
                        g.log_retain if spec.log_retain is None else spec.log_retain,
                        g.log_compress if spec.log_compress is None else spec.log_compress)

    def _background(self, job: Callable[[], None]) -> None:
        asyncio.get_running_loop().run_in_executor(None, job)

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}: PYVM2 log: {msg}\n".encode(errors="replace")
        self._log.write(line)

    def _collect_state(self) -> bytes:
        return self._entries.pack(((p.pm_id, p.state_key(), p.to_state)
                                   for p in self.procs.values()), self.next_id)

    async def restore(self) -> None:
        """Rebuild the registry from the last daemon's state: re-adopt what still runs (same pid
        and start time), stop what a dead run left behind, start what should be running."""
        entries, next_id = self.journal.read()
        loop = asyncio.get_running_loop()
        live_tokens: set[str] = set()
        to_start: list[ManagedProcess] = []
        for e in entries:
            try:
                spec = AppSpec.from_dict(e["spec"])
                pm_id, instance = int(e["pm_id"]), int(e.get("instance", 0))
                paths = LogPaths(**e["paths"])
                r = e.get("run")
                problem = definition_problem(spec)
                run = None
                if r and problem is None:
                    launch = Launch(tuple(r.get("argv") or ()), r.get("interpreter") or "",
                                    bool(r.get("is_python")))
                    run = spawn.adopt(int(r["pid"]), r["token"], float(r["create_time"]),
                                      float(r["started_at"]), launch, loop, str(self.home.run))
            except (KeyError, TypeError, ValueError) as err:
                self.log(f"state entry skipped: {err!r}")
                continue
            if problem is not None:
                status, reason = Status.ERRORED, f"invalid definition in {self.home.state}: {problem}"
            elif run is not None:
                status, reason = Status.ONLINE, None
            elif e.get("status") == Status.ERRORED.value:
                status, reason = Status.ERRORED, e.get("status_reason")
            else:
                status, reason = Status.STOPPED, None
            p = ManagedProcess(pm_id, spec, instance, e.get("base_env") or {}, paths, self.hooks,
                               status=status, status_reason=reason)
            try:
                if problem is None:
                    p.desired = Desired(e.get("desired", "stopped"))
            except ValueError:
                self.log(f"App [{p.label}] unknown desired state {e.get('desired')!r}: stopped")
            p.restart_time = int(e.get("restart_time") or 0)
            p.created_at = float(e.get("created_at") or time.time())
            p.last_restart_reason = e.get("last_restart_reason")
            self._register(p)
            if problem is not None:
                await self._restore_broken(p, r)
                continue
            pending = e.get("pending_token")
            if isinstance(pending, str) and pending:
                # a reload was under way: its replacement never took over
                await p.sweep_orphans(pending)
            if run is not None:
                live_tokens.add(run.token)
                p.adopt(run)
                continue
            if r:
                await p.sweep_orphans(r["token"])
                self.log(f"App [{p.label}] was not running any more when the daemon started")
            if p.desired is Desired.RUNNING:
                to_start.append(p)
        self.next_id = max([next_id] + [i + 1 for i in self.procs])
        # runs of this home the journal does not know (spawned just before the last daemon
        # died, or known only to a lost journal) go before anything starts: never two copies
        scan = await self.hooks.scanner.fresh()
        unknown = scan.tokens_of_home(str(self.home.root)) - live_tokens
        await runner.stop_unknown(unknown, self.hooks.scanner, self.log)
        self._clean_run_dir(live_tokens)
        for name in sorted({p.name for p in self.procs.values()
                            if p.spec.listen and p.desired is Desired.RUNNING}):
            spec = next(p.spec for p in self.procs.values() if p.name == name)
            try:
                self.sockets_for(spec)
            except SpawnError as err:
                self.log(f"App [{name}] {err.message}")
        for p in to_start:
            loop.create_task(p.start())
        for p in self.procs.values():
            if p.run is not None and p.desired is Desired.STOPPED:
                # the last daemon died during a stop the user asked for: finish it
                loop.create_task(p.stop("stopped by user"))
        self.sync_schedules()
        if entries:
            self.log(f"restored {len(self.procs)} process(es): {len(live_tokens)} re-adopted, "
                     f"{len(to_start)} restarted")

    async def _restore_broken(self, p: ManagedProcess, run: dict | None) -> None:
        """An app whose saved definition cannot run stays listed, errored with the reason, and
        is never started (what is left of its last run is stopped); every other app restores."""
        reason = p.status_reason or "invalid definition"
        self.broken[p.pm_id] = reason
        self.log(f"App [{p.label}] {reason}")
        if run and isinstance(run.get("token"), str):
            await p.sweep_orphans(run["token"])

    def _clean_run_dir(self, keep: set[str]) -> None:
        try:
            names = os.listdir(self.home.run)
        except OSError:
            return
        for name in names:
            if name.split(".")[0] not in keep:
                try:
                    os.unlink(os.path.join(self.home.run, name))
                except OSError:
                    pass

    # ---- lifecycle ---------------------------------------------------------------------
    async def serve(self) -> None:
        from pyvm2.daemon.server import Server

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGUSR2, self.reopen_logs)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        for sig in _STRAY_SIGNALS:
            loop.add_signal_handler(sig, self.log, f"ignored signal {signal.Signals(sig).name}")
        self.notifier.open(loop)
        fds.BUDGET.log = self.log
        fds.BUDGET.hold()
        loop.set_exception_handler(self._loop_error)
        self.orphans.enabled = reaper.become_subreaper()
        if self.orphans.enabled:
            loop.add_signal_handler(signal.SIGCHLD, self._sigchld)
        await self.restore()
        server = Server(self)
        await server.start()
        self._socket_path = str(self.home.socket)
        self.socket_ino = os.stat(self._socket_path).st_ino
        self.log(f"pyvm2 daemon {__version__} started (pid {os.getpid()}, home {self.home.root})")
        # what start-up built lives as long as the daemon: keep it out of every garbage
        # collection, which the monitor's small allocations would otherwise trigger over it
        gc.freeze()
        sampler = loop.create_task(self._monitor.run(
            self.procs.values, lambda e: self.log(f"sampling failed: {e!r}")))
        housekeeping = loop.create_task(self._housekeeping())
        await self._stopping.wait()
        sampler.cancel()
        housekeeping.cancel()
        await server.close()
        for _, job in self._crons.values():
            job.stop()
        if self._watcher is not None:
            self._watcher.close()
        if not self._handover:
            await self.stop_all(keep_desired=True)
        if not self._keep_state:
            self.journal.flush()
        self.notifier.close(loop)
        self.listeners.close_all(unlink=not self._handover)
        self.log("pyvm2 daemon exited")
        try:
            if self.home.pid.read_text().strip() == str(os.getpid()):
                self.home.pid.unlink()
        except (OSError, ValueError):
            pass

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of descriptors, the server stops accepting clients for a second: give back the
        reserve so that the next try lets `stop` and `kill` in."""
        if fds.exhausted(context.get("exception")):
            fds.BUDGET.release()
        loop.default_exception_handler(context)

    def shutdown(self) -> None:
        self._stopping.set()

    async def stop_all(self, keep_desired: bool = False) -> list[ManagedProcess]:
        """Stop every app; return those still running afterwards (their stop failed)."""
        procs = list(self.procs.values())
        with self.events.progress("stopping", procs) as prog:
            for tier in stop_tiers(procs):
                results = await asyncio.gather(
                    *(prog.track(p, p.stop("daemon stopping", keep_desired=keep_desired))
                      for p in tier), return_exceptions=True)
                for p, r in zip(tier, results, strict=True):
                    if isinstance(r, BaseException):
                        self.log(f"App [{p.label}] could not be stopped: {r!r}")
        return [p for p in procs if p.run is not None]

    def reopen_logs(self) -> None:
        self._log.close()
        self.load_settings()
        for p in self.procs.values():
            p.reopen_logs()
        self.log("log files reopened")

    def _socket_lost(self) -> bool:
        try:
            return os.stat(self._socket_path).st_ino != self.socket_ino
        except FileNotFoundError:
            return True

    def _leave_if_orphaned(self) -> None:
        """A daemon whose socket was removed or replaced can no longer be reached. If its home
        is still there, it leaves the apps running for the next daemon to adopt (touching
        nothing); if the home was deleted, nothing could adopt them, so it stops them."""
        if not self._socket_lost():
            return
        if self.home.root.is_dir():
            self.log("the socket was removed or replaced: leaving the apps to the next daemon")
            self._handover = True
            self._keep_state = True
        else:
            self.log("PYVM2_HOME was removed: stopping every app")
        self.shutdown()

    def _leaders(self) -> dict[int, str]:
        """pid -> token of every run leader this daemon spawned and has not finished with,
        a reload's replacement included (it is not the instance's run until it is ready)."""
        return {r.pid: r.token for p in self.procs.values() for r in (p.run, p.pending)
                if r is not None and r.popen is not None}

    def _sigchld(self) -> None:
        if self._sigchld_poll is None:
            self._sigchld_poll = asyncio.get_running_loop().call_later(SIGCHLD_POLL_S,
                                                                       self._poll_orphans)

    def _poll_orphans(self) -> None:
        """Reap escaped descendants that exited; stop those whose runs have all ended."""
        if self._sigchld_poll is not None:
            self._sigchld_poll.cancel()
            self._sigchld_poll = None
        try:
            self.orphans.poll()
            strays = self.orphans.strays()
        except Exception as e:  # reaping must never take the daemon down
            self.log(f"reaping failed: {e!r}")
            return
        if strays:
            asyncio.get_running_loop().create_task(runner.stop_procs(strays, self.log))

    def _changed(self) -> None:
        """An instance changed: the journal writes it soon, the monitor looks at it soon."""
        self.journal.changed()
        self._monitor.poke()

    async def _housekeeping(self) -> None:
        """Each second while a subscription wants the figures or the descriptor reserve is
        short: the figures to those subscriptions, the reserve taken again. Every
        HOUSEKEEPING_S: idle log files closed, orphans polled (SIGCHLD covers the rest), the
        socket checked, what was kept of deleted processes dropped. Ticks fall on whole seconds
        of the loop's clock, as the monitor's reads do, so that they share wake-ups."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            now = loop.time()
            step = 1.0 if self.events.wants_samples or fds.BUDGET.short else HOUSEKEEPING_S
            tick = (math.floor(now / step) + 1) * step
            woke: asyncio.Future[None] = loop.create_future()
            timer = loop.call_at(tick, woke.set_result, None)
            try:
                await woke
            finally:
                timer.cancel()
            fds.BUDGET.refill()
            self.events.sampled(self.procs)
            if round(tick) % HOUSEKEEPING_S == 0:
                close_idle()
                self.events.forget_gone(self.procs)
                self._poll_orphans()
                self._leave_if_orphaned()

    def request_restart(self, target: int | ManagedProcess, reason: str, trigger: Trigger) -> None:
        """The one entry point of automatic restarts: cron, watch and the memory limit. The
        instance decides under its lock whether (not while a command or another restart is in
        flight, not when stopped or deleted) and when (policy's back-off for its trigger)."""
        p = self.procs.get(target) if isinstance(target, int) else target
        if p is None or self.procs.get(p.pm_id) is not p:
            return
        task = p.request_restart(reason, trigger)
        if task is not None and p.name in self._watching:
            task.add_done_callback(functools.partial(self._mute_watch, p.name))

    def _mute_watch(self, name: str, _done: object = None) -> None:
        """What the app wrote while it stopped and started must not restart it again."""
        if self._watcher is not None and name in self._watching:
            self._watcher.discard(self._watch_keys[name], WATCH_MUTE_S)

    def sockets_for(self, spec: AppSpec) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """The app's held listening sockets (bound on first use); raises SpawnError. A unix
        socket path that instances of the app still hold (adopted after a daemon crash) is
        taken over."""
        takeover = any(p.run is not None for p in self.by_name(spec.name))
        held = self.listeners.get(spec.name, spec.listen, takeover=takeover)
        name = spec.name.replace(":", "_")
        return tuple(held.fds()), (name,) * len(held.socks)

    # ---- registry ----------------------------------------------------------------------
    def add(self, spec: AppSpec, instance: int, base_env: dict[str, str]) -> ManagedProcess:
        pm_id = self.next_id
        self.next_id += 1
        suffix = not spec.merge_logs
        stem = sanitize(spec.name)
        out = spec.out_file or str(self.home.logs / f"{stem}-out.log")
        err = spec.error_file or str(self.home.logs / f"{stem}-error.log")
        combined = spec.log_file
        if combined == LOG_FILE_DEFAULT:
            combined = str(self.home.logs / f"{stem}.log")
        paths = LogPaths(
            out=_log_path(out, pm_id, suffix), err=_log_path(err, pm_id, suffix),
            combined=_log_path(combined, pm_id, suffix) if combined else None,
            pid=pid_path(spec.pid_file, pm_id) if spec.pid_file else
            str(self.home.pids / f"{stem}-{pm_id}.pid"),
        )
        p = ManagedProcess(pm_id, spec, instance, base_env, paths, self.hooks)
        self._register(p)
        return p

    def _register(self, p: ManagedProcess) -> None:
        old = self.procs.get(p.pm_id)
        if old is not None:
            self._named.get(old.name, {}).pop(old.pm_id, None)
        self.procs[p.pm_id] = p
        self._named.setdefault(p.name, {})[p.pm_id] = p

    def by_name(self, name: str) -> list[ManagedProcess]:
        """The instances of an app, in the order they were registered (an instance keeps its
        name: a definition is only ever replaced by one of the same name)."""
        return list(self._named.get(name, {}).values())

    async def remove(self, p: ManagedProcess) -> None:
        """Delete the instance and, once it is gone, forget it."""
        if await p.delete():
            self.procs.pop(p.pm_id, None)
            same = self._named.get(p.name, {})
            same.pop(p.pm_id, None)
            if not same:
                self._named.pop(p.name, None)
            self.broken.pop(p.pm_id, None)
            if not self.by_name(p.name):
                self.listeners.release(p.name)

    def resolve(self, targets: Iterable[str]) -> list[ManagedProcess]:
        """pm2's targets: `all`, an id, a name, a namespace; several at once; unknown -> error."""
        out: dict[int, ManagedProcess] = {}
        for t in targets:
            t = str(t)
            if t == "all":
                found = list(self.procs.values())
                if not found:
                    raise NotFound("no process is managed yet", "start one with: pyvm2 start <script|ecosystem.json>")
            elif t.isdigit() and int(t) in self.procs:
                found = [self.procs[int(t)]]
            else:
                found = self.by_name(t) or [p for p in self.procs.values() if p.spec.namespace == t]
            if not found:
                raise NotFound(f"process or namespace {t!r} not found",
                               "see the names and ids with: pyvm2 list")
            for p in found:
                out[p.pm_id] = p
        return sorted(out.values(), key=lambda p: p.pm_id)

    def snapshot(self, procs: Iterable[ManagedProcess] | None = None, *,
                 table: bool = False) -> protocol.Encoded:
        """pm2's jlist entries of `procs` (all by default) as their JSON texts, for a reply;
        `table`: only protocol.TABLE_KEYS of each."""
        procs = self.procs.values() if procs is None else procs
        return protocol.Encoded([p.view(self.watch_state(p.name), table=table) for p in procs])

    # ---- schedules: watch and cron follow what each app should be doing ------------------
    def sync_schedules(self) -> None:
        """Watching and cron run for apps the user wants running; a user's stop pauses them."""
        loop = asyncio.get_running_loop()
        for pm_id, p in self.procs.items():
            want = p.spec.cron_restart if p.desired is Desired.RUNNING else None
            have = self._crons.get(pm_id)
            if have and have[0] != want:
                have[1].stop()
                del self._crons[pm_id]
                have = None
            if want and not have:
                from pyvm2.daemon.cron import CronJob

                try:
                    job = CronJob(loop, want, functools.partial(
                        self.request_restart, pm_id, f"cron_restart {want}", Trigger.CRON))
                except ValueError as e:  # refused at the door; never let one app stop the others
                    self.log(f"App [{p.label}] cron_restart not scheduled: {e}")
                    continue
                job.start()
                self._crons[pm_id] = (want, job)
        for pm_id in [i for i in self._crons if i not in self.procs]:
            self._crons.pop(pm_id)[1].stop()

        wanted: dict[str, list[ManagedProcess]] = {}
        for p in self.procs.values():
            if p.spec.watch and p.desired is Desired.RUNNING:
                wanted.setdefault(p.name, []).append(p)
        for name, procs in wanted.items():
            spec = procs[0].spec
            extra = [str(self.home.root)] + sorted({x for p in procs for x in (p.paths.out, p.paths.err, p.paths.combined, p.paths.pid) if x})
            sig = (spec.cwd, spec.watch, spec.ignore_watch, spec.watch_delay, tuple(extra))
            if self._watching.get(name) == sig:
                continue
            if self._watcher is None:
                from pyvm2.daemon.watch import Watcher

                self._watcher = Watcher(loop, self.log)
            key = self._watch_keys.setdefault(name, len(self._watch_keys))
            self._watcher.add(key, cwd=spec.cwd, paths=spec.watch if spec.watch is True else list(spec.watch or ()),
                              ignore=list(spec.ignore_watch), extra_ignore=extra, delay_ms=spec.watch_delay,
                              on_change=functools.partial(self._files_changed, name))
            self._watching[name] = sig
            self.log(f"[Watch] Start watching {name}")
        for name in [n for n in self._watching if n not in wanted]:
            del self._watching[name]
            if self._watcher is not None:
                self._watcher.remove(self._watch_keys[name])
            self.log(f"[Watch] Stop watching {name}")

    def _files_changed(self, name: str, paths: list[str]) -> None:
        from pyvm2.daemon.watch import MAX_PATHS

        more = len(paths) - 5
        # the watcher reports at most MAX_PATHS paths per burst
        shown = ", ".join(paths[:5]) + (f" and {more}{'+' if len(paths) >= MAX_PATHS else ''} more" if more > 0 else "")
        reason = f"file changed: {shown}"
        for p in self.by_name(name):
            self.request_restart(p, reason, Trigger.WATCH)

    def watch_state(self, name: str) -> str | None:
        if name not in self._watching or self._watcher is None:
            return None
        return self._watcher.mode(self._watch_keys[name]) or "starting"

    async def dispatch(self, cmd: str, args: dict[str, Any]) -> Any:
        """Run `cmd_<cmd>(**args)` with the arguments `protocol.parse_request` checked, then bring
        watch and cron in line; commands that change what runs answer once the state file holds
        it. A reply that does not have the command's declared shape is a daemon bug."""
        if self._handing_over and cmd not in READ_ONLY:
            raise DaemonError(f"{cmd}: the daemon is being replaced by a new one (pyvm2 update)",
                              "run the command again in a moment; the new daemon will take it")
        self._in_flight += 1
        try:
            result = await self._run(cmd, args)
        finally:
            self._in_flight -= 1
        if isinstance(result, dict) and "list" in result:
            result["list"] = self.snapshot()  # with watching as it now is
        problem = protocol.COMMANDS[cmd].reply_problem(result)
        if problem is not None:
            raise RuntimeError(f"the reply of {cmd} does not have its declared shape: {problem}")
        return result

    async def _run(self, cmd: str, args: dict[str, Any]) -> Any:
        try:
            result = await getattr(self.commands, f"cmd_{cmd}")(**args)
        except BaseException:
            if not self._stopping.is_set():
                self.sync_schedules()
                if cmd in PERSISTED:
                    with contextlib.suppress(NotSaved):
                        await self.journal.persist()
            raise
        if not self._stopping.is_set() and cmd not in READ_ONLY:
            self.sync_schedules()
            if cmd in PERSISTED:
                await self.journal.persist(f"the {cmd}")
        return result

    async def hand_over(self) -> dict:
        """Leave, keeping every app running, so that a new daemon can adopt them. Commands in
        flight (a slow stop), automatic restarts and exits being handled finish first, so each
        gets its true answer and the new daemon adopts settled instances; commands that would
        change something are refused meanwhile."""
        self._handing_over = True
        deadline = time.monotonic() + HANDOVER_WAIT_S
        waited = False
        while self._in_flight > 1 or any(p.busy for p in self.procs.values()):
            if time.monotonic() >= deadline:
                self.log(f"handing over with work still in flight after {HANDOVER_WAIT_S:.0f}s")
                break
            if not waited:
                self.log("handover: waiting for the commands in flight to finish")
                waited = True
            await asyncio.sleep(0.05)
        self.log("handing over to a new daemon; apps keep running")
        self._handover = True
        asyncio.get_running_loop().call_soon(self.shutdown)
        return {"pid": os.getpid(), "kept": sum(1 for p in self.procs.values() if p.run is not None)}


    async def kill(self) -> dict:
        """Stop every app and forget them all, then leave (`pyvm2 kill`)."""
        n = len(self.procs)
        left = await self.stop_all()
        if left:
            names = ", ".join(f"{p.name} ({p.pm_id})" for p in left[:10])
            raise Pyvm2Error(f"{len(left)} app(s) could not be stopped: {names}; the daemon keeps running",
                             f"see {self.home.log}, then try pyvm2 kill again")
        self.procs.clear()
        self._named.clear()
        self.next_id = 0
        self.listeners.close_all(unlink=True)
        if self.journal.flush() is not None:
            # no file is an empty registry too, and removing one needs no free space; the
            # backup goes first, or the next daemon would read it in place of the missing file
            for path in (f"{self.home.state}.bak", str(self.home.state)):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise self.journal.not_saved("the kill") from e
        asyncio.get_running_loop().call_soon(self.shutdown)
        return {"stopped": n, "pid": os.getpid()}
