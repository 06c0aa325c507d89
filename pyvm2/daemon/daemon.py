"""Daemon: the registry pm_id -> ManagedProcess, the commands the CLI sends, shutdown order."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvm2 import __version__, protocol
from pyvm2.daemon import spawn, tree
from pyvm2.daemon.journal import Journal, atomic_write, pack, unpack
from pyvm2.daemon.logs import DEFAULT_MAX_SIZE, DEFAULT_RETAIN, LogFile, Rotation
from pyvm2.daemon.monitor import Monitor
from pyvm2.daemon.policy import Trigger
from pyvm2.daemon.process import Hooks, LogPaths, ManagedProcess
from pyvm2.errors import NotFound, Pyvm2Error, UsageError
from pyvm2.launch import Launch
from pyvm2.paths import Home, sanitize
from pyvm2.protocol import PROTOCOL_VERSION, BadRequest
from pyvm2.spec import LOG_FILE_DEFAULT, AppSpec, parse_log_size
from pyvm2.status import Desired, Status, is_settled

if TYPE_CHECKING:  # watchdog and croniter are loaded only when an app watches or has a cron
    from pyvm2.daemon.cron import CronJob
    from pyvm2.daemon.watch import Watcher

#: Commands whose reply waits until the state file holds their effect.
PERSISTED = frozenset({"start", "stop", "restart", "delete", "reset", "resurrect"})
#: After a restart, file changes seen during it and this long after are dropped.
WATCH_MUTE_S = 0.25
#: Signals whose default action would end the daemon and that mean nothing to it: a stray
#: `kill -USR1` must not cost the apps their supervisor. Handled, not ignored, so that children
#: still start with the default action.
_STRAY_SIGNALS = tuple(getattr(signal, n) for n in (
    "SIGUSR1", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT")
    if hasattr(signal, n))
#: How often the monitor samples cpu and memory of every app's tree.
SAMPLE_INTERVAL_S = 1.0
#: `start` and `restart` answer once every instance is settled, or after this long.
SETTLE_DEADLINE_S = 20.0
#: An instance online this long (or min_uptime, if shorter) counts as started.
SETTLE_ONLINE_S = 1.0


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


class Daemon:
    """The registry pm_id -> ManagedProcess of one PYVM2_HOME, and everything around it: the
    commands the CLI sends (`cmd_*`, through `dispatch`), the schedules that restart apps on their
    own (cron, watch, the memory limit), the journal, start-up and shutdown.

    Owns: `procs` and `next_id` (created by `_create`, removed by `_delete`, `kill` and nothing
    else), the cron jobs and the watcher (one per daemon, shared by every watching app), the
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
        self.next_id = 0
        self.started_at = time.time()
        self._stopping = asyncio.Event()
        self._handover = False
        self._keep_state = False      # another daemon may own the state file now
        self.socket_ino = 0
        self._watcher: Watcher | None = None
        self._watching: dict[str, tuple] = {}      # app name -> what its watch was set up with
        self._watch_keys: dict[str, int] = {}
        self._crons: dict[int, tuple[str, CronJob]] = {}
        self._monitor = Monitor(lambda pm_id, reason: self.request_restart(pm_id, reason,
                                                                           Trigger.MEMORY))
        self._broken: dict[int, str] = {}   # pm_id -> why its restored definition cannot run
        self.journal = Journal(str(home.state), self._collect_state, self.log)
        self.settings = Settings()
        self.load_settings()
        self.hooks = Hooks(log=self.log, changed=self.journal.changed, home=str(home.root),
                           run_dir=str(home.run), shutting_down=self._stopping.is_set,
                           rotation=self.rotation_for, background=self._background,
                           scanner=tree.Scanner())

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
        return pack([p.to_state() for p in self.procs.values()], self.next_id)

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
            self.procs[p.pm_id] = p
            if problem is not None:
                await self._restore_broken(p, r)
                continue
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
        self._clean_run_dir(live_tokens)
        for p in to_start:
            loop.create_task(p.start())
        self.sync_schedules()
        if entries:
            self.log(f"restored {len(self.procs)} process(es): {len(live_tokens)} re-adopted, "
                     f"{len(to_start)} restarted")

    async def _restore_broken(self, p: ManagedProcess, run: dict | None) -> None:
        """An app whose saved definition cannot run stays listed, errored with the reason, and
        is never started (what is left of its last run is stopped); every other app restores."""
        reason = p.status_reason or "invalid definition"
        self._broken[p.pm_id] = reason
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
        await self.restore()
        server = Server(self)
        await server.start()
        self.socket_ino = os.stat(self.home.socket).st_ino
        self.log(f"pyvm2 daemon {__version__} started (pid {os.getpid()}, home {self.home.root})")
        sampler = loop.create_task(self._sample_forever())
        await self._stopping.wait()
        sampler.cancel()
        await server.close()
        for _, job in self._crons.values():
            job.stop()
        if self._watcher is not None:
            self._watcher.close()
        if not self._handover:
            await self.stop_all(keep_desired=True)
        if not self._keep_state:
            self.journal.flush()
        self.log("pyvm2 daemon exited")
        try:
            if self.home.pid.read_text().strip() == str(os.getpid()):
                self.home.pid.unlink()
        except (OSError, ValueError):
            pass

    def shutdown(self) -> None:
        self._stopping.set()

    async def stop_all(self, keep_desired: bool = False) -> list[ManagedProcess]:
        """Stop every app; return those still running afterwards (their stop failed)."""
        procs = list(self.procs.values())
        for tier in stop_tiers(procs):
            results = await asyncio.gather(*(p.stop("daemon stopping", keep_desired=keep_desired)
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
            return os.stat(self.home.socket).st_ino != self.socket_ino
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

    async def _sample_forever(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            tick += 1
            if tick % 5 == 0:
                self._leave_if_orphaned()
                if self._stopping.is_set():
                    return
            try:
                await self._monitor.tick(self.procs.values())
            except Exception as e:  # sampling must never take the daemon down
                self.log(f"sampling failed: {e!r}")

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

    # ---- registry ----------------------------------------------------------------------
    def _create(self, spec: AppSpec, instance: int, base_env: dict[str, str]) -> ManagedProcess:
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
            pid=spec.pid_file and _log_path(spec.pid_file, pm_id, True) or
            str(self.home.pids / f"{stem}-{pm_id}.pid"),
        )
        p = ManagedProcess(pm_id, spec, instance, base_env, paths, self.hooks)
        self.procs[pm_id] = p
        return p

    def _by_name(self, name: str) -> list[ManagedProcess]:
        return [p for p in self.procs.values() if p.name == name]

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
                found = self._by_name(t) or [p for p in self.procs.values() if p.spec.namespace == t]
            if not found:
                raise NotFound(f"process or namespace {t!r} not found",
                               "see the names and ids with: pyvm2 list")
            for p in found:
                out[p.pm_id] = p
        return sorted(out.values(), key=lambda p: p.pm_id)

    def snapshot(self, procs: Iterable[ManagedProcess] | None = None) -> list[dict[str, Any]]:
        procs = self.procs.values() if procs is None else procs
        out = []
        for p in procs:
            snap = p.snapshot()
            mode = self.watch_state(p.name)
            env = snap["pm2_env"]
            env["watching"] = mode
            if mode is None:
                env["watch"] = False
            out.append(snap)
        return out

    async def _settle(self, procs: list[ManagedProcess]) -> None:
        """Wait until each instance has clearly started, or settled, so the table is true."""
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        while time.monotonic() < deadline:
            pending = False
            for p in procs:
                if p.status == Status.ONLINE and p.run is not None:
                    need = min(p.spec.min_uptime / 1000, SETTLE_ONLINE_S)
                    if time.monotonic() - p.run.started_mono < need:
                        pending = True
                elif not (is_settled(p.status) or p.status == Status.WAITING_RESTART):
                    pending = True
            if not pending:
                return
            await asyncio.sleep(0.05)

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
        for p in self._by_name(name):
            self.request_restart(p, reason, Trigger.WATCH)

    def watch_state(self, name: str) -> str | None:
        if name not in self._watching or self._watcher is None:
            return None
        return self._watcher.mode(self._watch_keys[name]) or "starting"

    async def dispatch(self, cmd: str, args: dict[str, Any]) -> Any:
        """Run `cmd_<cmd>(**args)` with the arguments `protocol.parse_request` checked, then bring
        watch and cron in line; commands that change what runs answer once the state file holds
        it. A reply that does not have the command's declared shape is a daemon bug."""
        try:
            result = await getattr(self, f"cmd_{cmd}")(**args)
        finally:
            if not self._stopping.is_set():
                self.sync_schedules()
                if cmd in PERSISTED:
                    await self.journal.persist()
        if isinstance(result, dict) and "list" in result:
            result["list"] = self.snapshot()  # with watching as it now is
        problem = protocol.COMMANDS[cmd].reply_problem(result)
        if problem is not None:
            raise RuntimeError(f"the reply of {cmd} does not have its declared shape: {problem}")
        return result

    def _specs(self, apps: list[dict[str, Any]]) -> list[AppSpec]:
        """The door for app definitions a client sends: each must be usable, or nothing runs."""
        specs = []
        for i, d in enumerate(apps):
            try:
                spec = AppSpec.from_dict(d)
            except (TypeError, ValueError) as e:
                raise BadRequest(f"apps[{i}] is not an app definition: {e}") from None
            problem = definition_problem(spec)
            if problem is not None:
                raise BadRequest(f"apps[{i}] ({str(spec.name)[:60]}): {problem}",
                                 "correct the app's definition and start it again")
            specs.append(spec)
        if not specs:
            raise UsageError("nothing to start")
        return specs

    def _runnable(self, procs: list[ManagedProcess]) -> list[ManagedProcess]:
        """Those of `procs` whose definition can run. An app restored with an unusable
        definition stays errored (its reason says why); if it alone was asked for, that is
        the error."""
        ok = [p for p in procs if p.pm_id not in self._broken]
        if procs and not ok:
            p = procs[0]
            raise UsageError(f"{p.name} ({p.pm_id}) cannot run: {self._broken[p.pm_id]}",
                             "fix its definition and start it from its file again, "
                             f"or remove it with: pyvm2 delete {p.pm_id}")
        return ok

    # ---- commands: one per entry of protocol.COMMANDS, taking its arguments -----------------
    async def cmd_hello(self, version: str, protocol: int) -> dict:
        return {"version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
                "home": str(self.home.root)}

    async def cmd_ping(self) -> dict:
        return {"msg": "pong", "pid": os.getpid(), "uptime_ms": int((time.time() - self.started_at) * 1000)}

    async def cmd_list(self) -> list:
        return self.snapshot()

    async def cmd_describe(self, targets: list[str]) -> list:
        return self.snapshot(self.resolve(targets))

    async def cmd_targets(self, targets: list[str]) -> list:
        if targets == ["all"] and not self.procs:
            return []
        return self.snapshot(self.resolve(targets))

    async def cmd_start(self, targets: list[str], apps: list[dict[str, Any]],
                        base_env: dict[str, str], from_file: bool) -> dict:
        """Start apps from specs (file or script), or existing processes by target."""
        if targets and apps:
            raise BadRequest("start: give targets or apps, not both")
        if targets:
            procs = self._runnable(self.resolve(targets))
            await asyncio.gather(*(p.start() for p in procs))
            await self._settle(procs)
            return {"actions": [{"pm_id": p.pm_id, "name": p.name, "action": "started"} for p in procs],
                    "list": self.snapshot()}
        actions, _ = await self._start_specs(self._specs(apps), base_env, from_file)
        return {"actions": actions, "list": self.snapshot()}

    async def _start_specs(self, specs: list[AppSpec], base_env: dict[str, str],
                           from_file: bool) -> tuple[list[dict], list[ManagedProcess]]:
        if not from_file:
            for spec in specs:
                running = [p for p in self._by_name(spec.name) if p.run is not None]
                if running:
                    raise UsageError(f"app {spec.name!r} is already running (id {running[0].pm_id})",
                                     f"restart it with: pyvm2 restart {spec.name}, or pick another --name",
                                     code=1)
        actions: list[dict] = []
        touched: list[ManagedProcess] = []
        tasks = []
        for spec in specs:
            existing = self._by_name(spec.name)
            for extra in existing[spec.instances:]:
                tasks.append(self._delete(extra))
                actions.append({"pm_id": extra.pm_id, "name": spec.name, "action": "deleted"})
            existing = existing[: spec.instances]
            for i in range(len(existing), spec.instances):
                existing.append(self._create(spec, i, base_env))
            for p in existing:
                touched.append(p)
                self._broken.pop(p.pm_id, None)  # it gets a checked definition now
                if p.spec.definition() != spec.definition() and p.run is not None:
                    tasks.append(p.restart("definition changed", spec=spec, base_env=base_env))
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "restarted"})
                elif p.run is None and spec.autostart:
                    p.replace_spec(spec)
                    p.base_env = base_env
                    tasks.append(p.start())
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "started"})
                elif p.run is None:
                    p.replace_spec(spec)
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "registered"})
                else:
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "unchanged"})
        await asyncio.gather(*tasks)
        await self._settle(touched)
        return actions, touched

    async def cmd_restart(self, targets: list[str], apps: list[dict[str, Any]],
                          base_env: dict[str, str], toggle_watch: bool) -> dict:
        if targets and apps:
            raise BadRequest("restart: give targets or apps, not both")
        if apps:
            specs = self._specs(apps)
            procs = [p for s in specs for p in self._by_name(s.name)]
            for p in procs:
                self._broken.pop(p.pm_id, None)  # it gets a checked definition now
            by_name = {s.name: s for s in specs}
            await asyncio.gather(*(p.restart(spec=by_name[p.name], base_env=base_env)
                                   for p in procs))
            missing = [s for s in specs if not self._by_name(s.name)]
            if missing:
                _, started = await self._start_specs(missing, base_env, from_file=True)
                procs += started
        else:
            procs = self._runnable(self.resolve(targets))
            if toggle_watch:
                await asyncio.gather(*(p.restart(spec=dataclasses.replace(p.spec, watch=not p.spec.watch))
                                       for p in procs))
            else:
                await asyncio.gather(*(p.restart() for p in procs))
        await self._settle(procs)
        return {"ids": [p.pm_id for p in procs], "list": self.snapshot()}

    async def cmd_stop(self, targets: list[str]) -> dict:
        procs = self.resolve(targets)
        for tier in stop_tiers(procs):
            await asyncio.gather(*(p.stop() for p in tier))
        return {"ids": [p.pm_id for p in procs], "list": self.snapshot()}

    async def _delete(self, p: ManagedProcess) -> None:
        if await p.delete():
            self.procs.pop(p.pm_id, None)
            self._broken.pop(p.pm_id, None)

    async def cmd_delete(self, targets: list[str]) -> dict:
        procs = self.resolve(targets)
        await asyncio.gather(*(self._delete(p) for p in procs))
        if not self.procs:
            self.next_id = 0
        return {"ids": [p.pm_id for p in procs], "list": self.snapshot()}

    async def cmd_reset(self, targets: list[str]) -> dict:
        procs = self.resolve(targets)
        for p in procs:
            p.reset()
        return {"ids": [p.pm_id for p in procs], "list": self.snapshot()}

    async def cmd_flush(self, targets: list[str]) -> dict:
        procs = self.resolve(targets) if targets else list(self.procs.values())
        for p in procs:
            p.flush_logs()
        if not targets:
            try:
                os.truncate(self.home.log, 0)
            except OSError:
                pass
        return {"ids": [p.pm_id for p in procs]}

    async def cmd_reload_logs(self) -> dict:
        self.reopen_logs()
        return {"reopened": len(self.procs)}

    async def cmd_save(self, force: bool) -> dict:
        """Write every app and whether it should run to dump.json (atomically, old copy kept)."""
        entries = [{k: v for k, v in p.to_state().items() if k in ("pm_id", "instance", "spec", "base_env", "desired")}
                   for p in self.procs.values()]
        path = str(self.home.dump)
        if not entries and not force:
            raise UsageError("no app is managed, so the saved list was left as it is",
                             "use pyvm2 save --force to save an empty list")
        await asyncio.to_thread(atomic_write, path, pack(entries, self.next_id), keep_backup=True)
        self.log(f"saved {len(entries)} process(es) to {path}")
        return {"path": path, "count": len(entries)}

    def read_dump(self) -> list[dict]:
        last_error = None
        for path in (str(self.home.dump), str(self.home.dump) + ".bak"):
            try:
                with open(path, "rb") as f:
                    entries, _ = unpack(f.read())
                return entries
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                last_error = f"{path}: {e}"
                self.log(f"cannot read {last_error}")
        if last_error:
            raise UsageError(f"the saved list cannot be read ({last_error})", "save again with: pyvm2 save")
        raise NotFound(f"nothing saved yet ({self.home.dump} does not exist)", "save the running apps with: pyvm2 save")

    async def cmd_resurrect(self, entries: list[dict[str, Any]] | None, if_saved: bool) -> dict:
        """Bring back saved apps: each app not already known is registered and, if it was
        running, started. Running it twice changes nothing. Entries sent by the client must all
        be usable; an unusable entry of the dump file is skipped and reported."""
        from_client = entries is not None
        if entries is None:
            try:
                entries = self.read_dump()
            except NotFound:
                if not if_saved:
                    raise
                entries = []
        actions: list[dict] = []
        started: list[ManagedProcess] = []
        usable: list[tuple[AppSpec, dict[str, Any]]] = []
        for i, e in enumerate(entries):
            try:
                spec = AppSpec.from_dict(e["spec"])
                problem = definition_problem(spec)
                if problem is not None:
                    raise ValueError(f"{spec.name}: {problem}")
            except (KeyError, TypeError, ValueError) as err:
                what = f"entry {i} ({e.get('spec', {}).get('name', '?')!s:.60})" \
                    if isinstance(e.get("spec"), dict) else f"entry {i}"
                if from_client:
                    raise BadRequest(f"resurrect: {what} is not usable: {err}") from None
                self.log(f"{self.home.dump}: {what} skipped: {err}")
                actions.append({"name": what, "pm_id": None, "action": f"skipped: {err}"})
                continue
            usable.append((spec, e))
        for spec, e in usable:
            instance = int(e.get("instance") or 0)
            present = [p for p in self.procs.values() if p.name == spec.name and p.instance == instance]
            if present:
                actions.append({"name": spec.name, "pm_id": present[0].pm_id, "action": "already present"})
                continue
            p = self._create(spec, instance, dict(e.get("base_env") or {}))
            if e.get("desired") == "running":
                started.append(p)
                actions.append({"name": p.name, "pm_id": p.pm_id, "action": "started"})
            else:
                p.hooks.changed()
                actions.append({"name": p.name, "pm_id": p.pm_id, "action": "restored stopped"})
        await asyncio.gather(*(p.start() for p in started))
        await self._settle(started)
        return {"actions": actions, "list": self.snapshot()}

    async def cmd_handover(self) -> dict:
        """Leave, keeping every app running, so that a new daemon can adopt them."""
        self.log("handing over to a new daemon; apps keep running")
        self._handover = True
        asyncio.get_running_loop().call_soon(self.shutdown)
        return {"pid": os.getpid(), "kept": sum(1 for p in self.procs.values() if p.run is not None)}

    async def cmd_kill(self) -> dict:
        n = len(self.procs)
        left = await self.stop_all()
        if left:
            names = ", ".join(f"{p.name} ({p.pm_id})" for p in left[:10])
            raise Pyvm2Error(f"{len(left)} app(s) could not be stopped: {names}; the daemon keeps running",
                             f"see {self.home.log}, then try pyvm2 kill again")
        self.procs.clear()
        self.next_id = 0
        self.journal.flush()
        asyncio.get_running_loop().call_soon(self.shutdown)
        return {"stopped": n, "pid": os.getpid()}


def definition_problem(spec: AppSpec) -> str | None:
    """Why the daemon cannot run `spec` as it is, or None. The CLI validates every definition it
    sends; this catches one that did not pass there (another client, an edited state file)."""
    for key in ("name", "script", "cwd"):
        value = getattr(spec, key)
        if not isinstance(value, str) or not value:
            return f"{key} must be a non-empty string"
    if not isinstance(spec.instances, int) or spec.instances < 1:
        return "instances must be a whole number of at least 1"
    if (spec.user or spec.group) and os.geteuid() != 0:
        import pwd

        who = f"user {spec.user}" if spec.user else f"group {spec.group}"
        return (f"running as {who} needs pyvm2's daemon to run as root (it runs as "
                f"{pwd.getpwuid(os.geteuid()).pw_name}); start pyvm2 as root, or remove the "
                f"app's {'user' if spec.user else 'group'}")
    if spec.cron_restart is not None:
        from pyvm2.cronexpr import validate

        problem = validate(spec.cron_restart)
        if problem is not None:
            return f"cron_restart: {problem}"
    return None


def stop_tiers(procs: list[ManagedProcess]) -> list[list[ManagedProcess]]:
    """Apps to stop one tier after the other: by supervisor's priority, highest first, so what
    started first stops last. Apps without a priority stop together with priority 999."""
    tiers: dict[int, list[ManagedProcess]] = {}
    for p in procs:
        tiers.setdefault(999 if p.spec.priority is None else p.spec.priority, []).append(p)
    return [tiers[k] for k in sorted(tiers, reverse=True)]
