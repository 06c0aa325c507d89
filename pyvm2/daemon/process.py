"""ManagedProcess: one instance of an app; drives the state machine, spawns, stops the whole
tree, schedules restarts and keeps the counters pm2 shows."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyvm2.daemon import policy, safefs, spawn, tree
from pyvm2.daemon.logs import DEVNULL, LogSink, Rotation
from pyvm2.daemon.notify import IpcReader, Notifier
from pyvm2.daemon.reaper import Orphans
from pyvm2.daemon.runner import Cancellable, Clock, OsSpawner, Spawner, SystemClock
from pyvm2.errors import NotFound, Pyvm2Error, SpawnError
from pyvm2.spec import AppSpec
from pyvm2.status import Desired, Status, is_allowed


@dataclass
class Hooks:
    """What an instance may ask of the daemon."""

    log: Callable[[str], None]
    changed: Callable[[], None]
    home: str
    run_dir: str
    shutting_down: Callable[[], bool]
    rotation: Callable[[AppSpec], Rotation]
    background: Callable[[Callable[[], None]], None]
    scanner: tree.Scanner
    #: the OS side; None: real processes (runner.OsSpawner on run_dir, scanner and orphans)
    spawner: Spawner | None = None
    #: escaped descendants re-parented to the daemon (None: not a subreaper)
    orphans: Orphans | None = None
    clock: Clock = field(default_factory=SystemClock)
    #: Also given every chunk of output (instance, "out"/"err", bytes): pyvm2-runtime's echo.
    echo: Callable[[ManagedProcess, str, bytes], None] | None = None
    #: the app's held listening sockets: (descriptors, names); raises SpawnError
    sockets: Callable[[AppSpec], tuple[tuple[int, ...], tuple[str, ...]]] | None = None
    #: the daemon's NOTIFY_SOCKET; None: apps get none
    notifier: Notifier | None = None
    #: write the state file now (a reload records its replacement before starting it)
    persist: Callable[[], Awaitable[None]] | None = None

    #: told of every state change and of every chunk of output (events.py)
    state: Callable[[ManagedProcess], None] = lambda _p: None
    output: Callable[[ManagedProcess, str, bytes], None] = lambda _p, _s, _d: None


class ReloadFailed(Pyvm2Error):
    """A replacement did not become ready; the instance keeps its previous process."""

    code = 1


#: Without wait_ready, a replacement counts as ready once it has run this long (or min_uptime,
#: if shorter) without exiting.
RELOAD_GRACE_S = 1.0


class _Side:
    """What the daemon keeps beside one run: whether it said it is ready, its channels."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ready: asyncio.Future[str | None] = loop.create_future()  # None, or a failure
        self.timer: Cancellable | None = None
        self.ipc: IpcReader | None = None
        self.handler: Callable[[dict[str, str]], None] | None = None

    def settle(self, failure: str | None = None) -> bool:
        if self.ready.done():
            return False
        self.ready.set_result(failure)
        return True


@dataclass(frozen=True)
class LogPaths:
    out: str
    err: str
    combined: str | None
    pid: str


def _ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


class ManagedProcess:
    """One instance of an app: its status, what the user wants of it (`desired`), its run (the
    OS process it started, at most one), its pending restart, its logs and the counters pm2 shows.

    Everything runs on the daemon's event loop. The spawner does its blocking work (the /proc
    scan) in worker threads and hands back results on the loop; the daemon's monitor writes `cpu`
    and `memory` from the loop after each sample.

    Ordering: `lock` serialises everything that changes the run or the status: the commands
    (`start`, `stop`, `restart`, `delete`), automatic restarts and the handling of an exit. Waiters
    get it in arrival order (asyncio.Lock is FIFO), and each checks again once it holds it: a
    command writes `desired` (and `delete` marks the instance removed) before it waits, so an
    automatic restart queued behind a stop or a delete finds it and does nothing.

    Automatic restarts (cron, watch, the memory limit) all come through `request_restart(reason,
    trigger)`: dropped when the user does not want the app running, when it is deleted, or while
    a command or another restart is in flight (that one decides what runs next); otherwise done
    under the lock, waiting first when policy.before_restart says the trigger backs off. Every
    restart, automatic or not, is counted and recorded in `_restart_now`.

    Invariants:

    * `status` is written only by `_set`, which checks status.TRANSITIONS. A change outside the
      table is a bug: it is logged with its stack in the daemon log, then applied, so the status
      still says what the process does.
    * `run` is set in launching, online and stopping, and only there (seen from any await).
    * Nothing new is spawned while a member of the previous run lives: every end of a run, a stop
      or an exit, goes through `_end_run`, which sweeps the whole tree first; a tree that survives
      SIGKILL leaves the instance errored.
    * The restart timer exists only in waiting restart: leaving that status cancels it.
    * `desired` changes only by the user's commands, never by an automatic restart or an exit.
    * Once removed (deleted), nothing starts again: commands raise NotFound, restarts are dropped.
    """

    def __init__(self, pm_id: int, spec: AppSpec, instance: int, base_env: Mapping[str, str],
                 paths: LogPaths, hooks: Hooks, *, status: Status = Status.STOPPED,
                 status_reason: str | None = None) -> None:
        self.pm_id = pm_id
        self.spec = spec
        self.instance = instance
        self.base_env = dict(base_env)
        self.paths = paths
        self.hooks = hooks
        self.spawner: Spawner = hooks.spawner or OsSpawner(hooks.run_dir, hooks.scanner,
                                                           hooks.orphans)
        self.clock = hooks.clock
        self._status = status           # the initial status is no transition; see _set
        self.status_reason = status_reason
        self.last_restart_reason: str | None = None
        self.run: spawn.Run | None = None
        self.restart_time = 0
        self.restart_state = policy.RestartState()
        self.created_at = self.clock.time()
        self.exit_code: int | None = None
        self.next_restart_at: float | None = None
        self.desired = Desired.STOPPED
        self.removed = False
        self.cpu = 0.0
        self.memory = 0
        self.memory_measure = "rss"   # or "pss" while the tree's RSS sum is over its limit
        self.lock = asyncio.Lock()
        self._timer: Cancellable | None = None
        self._restart_pending = False   # a restart task or a fired timer waits for the lock
        self._sink: LogSink | None = None
        self.warnings: list[str] = []
        self._sides: dict[str, _Side] = {}   # run token -> its side
        self.pending: spawn.Run | None = None  # a reload's replacement, until it takes over
        self.pending_token: str | None = None
        self.status_text: str | None = None    # the last STATUS= the app sent
        self.main_pid: int | None = None       # the last MAINPID= the app sent

    # ---- naming -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return f"{self.name}:{self.pm_id}"

    @property
    def pid(self) -> int | None:
        return self.run.pid if self.run is not None and self.run.alive else None

    @property
    def busy(self) -> bool:
        """A command, an automatic restart or an exit is being handled, or waits to be."""
        return self.lock.locked() or self._restart_pending

    @property
    def memory_limit(self) -> int | None:
        return self.spec.max_memory_restart

    @property
    def status(self) -> Status:
        return self._status

    # ---- state --------------------------------------------------------------------------
    def _set(self, status: Status, reason: str | None = None) -> None:
        """The only writer of `status`."""
        old = self._status
        if not is_allowed(old, status):
            stack = "".join(traceback.format_stack(limit=8)[:-1])
            self.hooks.log(f"BUG: App [{self.label}] illegal status change {old.value!r} -> "
                           f"{status.value!r} ({reason}); please report it. At:\n{stack}")
        self._status = status
        self.status_reason = reason
        if status is not Status.WAITING_RESTART:
            self._cancel_timer()
        self.hooks.changed()
        self.hooks.state(self)

    def _log(self, msg: str) -> None:
        self.hooks.log(f"App [{self.label}] {msg}")

    def sink(self) -> LogSink:
        if self._sink is None:
            self._sink = LogSink(self.paths.out, self.paths.err, self.paths.combined,
                                 self.spec.log_date_format, self._log_warning,
                                 rotation=self.hooks.rotation(self.spec),
                                 background=self.hooks.background,
                                 json_app=(self.pm_id, self.name) if self.spec.log_type == "json" else None)
        return self._sink

    def _log_warning(self, msg: str) -> None:
        self._log(msg)
        if msg not in self.warnings:
            self.warnings = (self.warnings + [msg])[-5:]
            self.hooks.changed()

    def _check_present(self) -> None:
        if self.removed:
            raise NotFound(f"process {self.label} was deleted meanwhile",
                           "see the names and ids with: pyvm2 list")

    # ---- commands (each takes the lock) --------------------------------------------------
    async def start(self) -> None:
        """Start if not running; a user start also forgets earlier crash accounting."""
        self.desired = Desired.RUNNING
        async with self.lock:
            self._check_present()
            if self.run is not None:
                return
            self.restart_state = policy.forgive(self.restart_state)
            self._spawn()

    async def stop(self, reason: str = "stopped by user", *, keep_desired: bool = False) -> None:
        if not keep_desired:
            self.desired = Desired.STOPPED
        async with self.lock:
            if not self.removed:
                await self._stop_locked(reason)

    async def restart(self, reason: str = "restarted by user", spec: AppSpec | None = None,
                      base_env: Mapping[str, str] | None = None) -> None:
        self.desired = Desired.RUNNING
        async with self.lock:
            self._check_present()
            run = self.run
            ended = run is None or await self._end_run(run, reason)
            if spec is not None:
                self.replace_spec(spec)
            if base_env is not None:
                self.base_env = dict(base_env)
            if ended:
                self._restart_now(reason, counted=run is not None, fresh=True)

    async def reload(self, spec: AppSpec | None = None,
                     base_env: Mapping[str, str] | None = None) -> str:
        """Replace the running process with no gap: start a replacement beside it, wait until
        it is ready, then stop the old one gracefully. Returns what was done. Raises
        ReloadFailed, the old process still running, if the replacement cannot start, exits or
        does not become ready; a stopped instance is simply started."""
        self.desired = Desired.RUNNING
        async with self.lock:
            self._check_present()
            if spec is not None:
                self.replace_spec(spec)
            if base_env is not None:
                self.base_env = dict(base_env)
            old = self.run
            if old is None or self.status is not Status.ONLINE:
                ended = old is None or await self._end_run(old, "reloaded")
                if not ended:
                    raise ReloadFailed(f"{self.label}: {self.status_reason}")
                self._restart_now("reloaded", counted=old is not None, fresh=True)
                run = self.run
                if run is None:
                    raise ReloadFailed(f"{self.label} cannot start: {self.status_reason}")
                action = "started"
            else:
                run = await self._replace(old)
                action = "reloaded"
        problem = await self._readiness(run)
        if problem is not None:
            raise ReloadFailed(f"{self.label} {problem}")
        return action

    async def _replace(self, old: spawn.Run) -> spawn.Run:
        """The reload of a running instance, under the lock."""
        token = uuid.uuid4().hex
        self.pending_token = token   # a daemon killed from here on sweeps it, not adopts it
        if self.hooks.persist is not None:
            await self.hooks.persist()
        try:
            try:
                new = self._start_run(token)
            except SpawnError as e:
                raise ReloadFailed(f"{self.label}: the replacement cannot start: {e.message}",
                                   e.hint) from None
            self.pending = new
            self._follow(new)
            self._log(f"reloading: replacement pid {new.pid} started beside pid {old.pid}")
            problem = await self._readiness(new)
            if problem is not None:
                self._log(f"reload abandoned: the replacement {problem}; pid {old.pid} "
                          "keeps running")
                failure = await self.spawner.terminate(new, self.spec, self._log)
                self._release(new)
                if failure:
                    self._log(f"the replacement {failure}")
                raise ReloadFailed(f"{self.label}: the replacement {problem}; "
                                   f"the previous process (pid {old.pid}) keeps running",
                                   f"see its output with: pyvm2 logs {self.name} --nostream")
            # the replacement takes over; the old process finishes what it serves and goes
            self.run = new
            self.exit_code = None
            self.restart_time += 1
            self.restart_state = policy.forgive(self.restart_state)
            self.created_at = self.clock.time()
            self.last_restart_reason = "reloaded"
            self._write_pid(new.pid)
        finally:
            self.pending = None
            self.pending_token = None
            self.hooks.changed()
        self._log(f"reloaded: pid {new.pid} replaces pid {old.pid}")
        failure = await self.spawner.terminate(old, self.spec, self._log)
        self._release(old)
        if self.run is new:
            self._write_pid(new.pid)
        if failure:
            self._log_warning(f"the replaced process {failure}")
        return new

    async def _readiness(self, run: spawn.Run) -> str | None:
        """None once `run` is ready; else why not (it exited, said it stops, or was silent
        until listen_timeout). Without wait_ready, ready means alive after a short grace."""
        side = self._sides.get(run.token)
        if side is None:
            return self._exit_problem(run) if not run.alive else "ended"
        wait_ready = self.spec.wait_ready
        exited = asyncio.ensure_future(asyncio.shield(run.exited))
        try:
            await asyncio.wait([exited, side.ready] if wait_ready else [exited],
                               timeout=None if wait_ready else
                               min(self.spec.min_uptime / 1000, RELOAD_GRACE_S),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if not run.alive:
            return self._exit_problem(run)
        if not wait_ready:
            return None
        return side.ready.result()

    @staticmethod
    def _exit_problem(run: spawn.Run) -> str:
        code, sig = run.exited.result() if run.exited.done() else (None, None)
        return f"{policy.describe_exit(code, sig)} before it was ready"

    async def delete(self) -> bool:
        """Stop for good; True once nothing of it runs (it is then removed and its logs closed),
        False if a process survived the stop (it stays, errored, so `list` still shows it)."""
        self.desired = Desired.STOPPED
        async with self.lock:
            if not self.removed:
                await self._stop_locked("deleted")
                if self.status is Status.STOPPED:
                    self.removed = True
                    self.close_logs()
            return self.removed

    def request_restart(self, reason: str, trigger: policy.Trigger) -> asyncio.Task[bool] | None:
        """The one way in for automatic restarts. Returns the task doing it, or None if dropped."""
        if (self.removed or self.desired is not Desired.RUNNING or self.lock.locked()
                or self._restart_pending):
            return None
        if policy.RULES[trigger].needs_run and self.run is None:
            return None
        self._restart_pending = True
        return asyncio.get_running_loop().create_task(self._auto_restart(reason, trigger))

    def replace_spec(self, spec: AppSpec) -> None:
        self.spec = spec
        self.close_logs()

    def close_logs(self) -> None:
        """Log files are opened again, with the current spec's settings, on the next output."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def reset(self) -> None:
        self.restart_time = 0
        self.restart_state = policy.RestartState()
        self.created_at = self.clock.time()
        self.hooks.changed()

    def reopen_logs(self) -> None:
        if self._sink is not None:
            self._sink.reopen()

    def flush_logs(self) -> None:
        for p in {self.paths.out, self.paths.err, self.paths.combined}:
            if p and p != "/dev/null":
                try:
                    safefs.truncate(p)
                except OSError as e:
                    self._log_warning(f"cannot flush {p}: {e.strerror or e}")

    # ---- restarts -----------------------------------------------------------------------
    async def _auto_restart(self, reason: str, trigger: policy.Trigger) -> bool:
        try:
            async with self.lock:
                self._restart_pending = False
                if self.removed or self.desired is not Desired.RUNNING or self.hooks.shutting_down():
                    return False
                rule = policy.RULES[trigger]
                run = self.run
                if rule.needs_run and run is None:
                    return False
                self._log(f"restarting: {reason}")
                uptime_ms = None
                if run is not None:
                    uptime_ms = (self.clock.monotonic() - run.started_mono) * 1000
                    if not await self._end_run(run, reason):
                        return False
                delay_ms, self.restart_state = policy.before_restart(trigger, self.restart_state,
                                                                     uptime_ms)
                if delay_ms:
                    self._wait(delay_ms, reason)
                else:
                    self._restart_now(reason, counted=run is not None, fresh=rule.fresh)
                return True
        except Exception:  # the daemon stays up; the instance is left as the failure left it
            self._log(f"restart failed: {traceback.format_exc()}")
            return False

    def _restart_now(self, reason: str, *, counted: bool, fresh: bool) -> None:
        """The bookkeeping of every restart, then the spawn. Must hold the lock, with no run."""
        if counted:
            self.restart_time += 1
        if fresh:
            self.restart_state = policy.forgive(self.restart_state)
            self.created_at = self.clock.time()
        self.last_restart_reason = reason
        self._spawn()

    def _wait(self, delay_ms: int, reason: str) -> None:
        """Waiting restart: the timer restarts the instance unless a command comes first."""
        self._set(Status.WAITING_RESTART, reason)
        self._log(f"will restart in {delay_ms}ms")
        loop = asyncio.get_running_loop()
        self.next_restart_at = self.clock.time() + delay_ms / 1000

        def fire() -> None:
            self._timer = None
            self._restart_pending = True
            loop.create_task(self._restart_after_wait(reason))

        self._timer = self.clock.call_later(delay_ms / 1000, fire)

    async def _restart_after_wait(self, reason: str) -> None:
        async with self.lock:
            self._restart_pending = False
            if (self.status is not Status.WAITING_RESTART or self.run is not None or self.removed
                    or self.desired is not Desired.RUNNING):
                return
            self._restart_now(reason, counted=True, fresh=False)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.next_restart_at = None

    # ---- runs ---------------------------------------------------------------------------
    async def _stop_locked(self, reason: str) -> None:
        run = self.run
        if run is None:
            if self.status is not Status.STOPPED or self.status_reason != reason:
                self._set(Status.STOPPED, reason)
            return
        self.hooks.log(f"Stopping app:{self.name} id:{self.pm_id}")
        if await self._end_run(run, reason):
            self._set(Status.STOPPED, reason)

    async def _end_run(self, run: spawn.Run, reason: str) -> bool:
        """Stopping until every process of the run is gone; errored (False) if one survived."""
        self._set(Status.STOPPING, reason)
        failure = await self.spawner.terminate(run, self.spec, self._log)
        self._finish_run(run)
        if failure:
            self._set(Status.ERRORED, failure)
            self._log(failure)
            return False
        return True

    def _extra_env(self) -> dict[str, str]:
        s = self.spec
        extra = {
            "name": s.name, "pm_id": str(self.pm_id), "namespace": s.namespace,
            s.instance_var: str(self.instance), "PYVM2_HOME": self.hooks.home,
            "pm_exec_path": s.script, "pm_cwd": s.cwd, "pm_out_log_path": self.paths.out,
            "pm_err_log_path": self.paths.err, "pm_pid_path": self.paths.pid,
            "restart_time": str(self.restart_time), "unique_id": str(uuid.uuid4()),
        }
        if s.increment_var:
            try:
                base = int(s.env.get(s.increment_var, self.base_env.get(s.increment_var, "0")))
            except ValueError:
                base = 0
            extra[s.increment_var] = str(base + self.instance)
        return extra

    def _start_run(self, token: str) -> spawn.Run:
        """Spawn a run of the current spec with what the daemon hands it (held sockets, the
        notify socket, a Node IPC channel with wait_ready). Raises SpawnError."""
        s = self.spec
        env = spawn.build_env(s, self.base_env, self._extra_env())
        fds: tuple[int, ...] = ()
        names: tuple[str, ...] = ()
        if s.listen and self.hooks.sockets is not None:
            fds, names = self.hooks.sockets(s)
        if self.hooks.notifier is not None and self.hooks.notifier.active:
            env["NOTIFY_SOCKET"] = self.hooks.notifier.path
        handover = spawn.Handover(fds, names, ipc=s.wait_ready)
        return self.spawner.start(s, env, token, not s.disable_logs, handover=handover)

    def _spawn(self) -> None:
        """Start one run. Must hold the lock. Failures end errored: no restart storm. With
        wait_ready the run stays launching until it says it is ready (or listen_timeout)."""
        self._set(Status.LAUNCHING, None)
        try:
            run = self._start_run(uuid.uuid4().hex)
        except SpawnError as e:
            self.run = None
            self._set(Status.ERRORED, e.message)
            self._log(f"cannot start: {e.message}")
            return
        self._attach(run)
        self._write_pid(run.pid)
        if not self.spec.wait_ready:
            self._set(Status.ONLINE, None)
            self._log(f"online (pid {run.pid})")
            return
        self._log(f"launched (pid {run.pid}), waiting for it to say it is ready")
        side = self._sides[run.token]
        side.ready.add_done_callback(lambda f: self._became_ready(run, f.result()))

    def _became_ready(self, run: spawn.Run, failure: str | None) -> None:
        if failure is None and self.run is run and self.status is Status.LAUNCHING:
            self._set(Status.ONLINE, None)
            self._log(f"online (pid {run.pid})")

    def _attach(self, run: spawn.Run) -> None:
        """Make `run` the instance's run: read its output and supervise its exit."""
        self.run = run
        self.exit_code = None
        self._follow(run)

    def _follow(self, run: spawn.Run) -> None:
        """Read the run's output and messages, and supervise its exit."""
        loop = asyncio.get_running_loop()
        sink = self.sink()
        if run.out_fd is not None or run.err_fd is not None:
            sink.open()
        for stream, fd in (("out", run.out_fd), ("err", run.err_fd)):
            if fd is not None:
                spawn.pipe_reader(fd, loop, functools.partial(self._output, sink, stream),
                                  functools.partial(self._pipe_closed, sink, stream))
        side = _Side(loop)
        self._sides[run.token] = side
        side.handler = functools.partial(self._message, run)
        if self.hooks.notifier is not None:
            self.hooks.notifier.register(run.pid, side.handler)
        if run.ipc_fd is not None:
            side.ipc = IpcReader(run.ipc_fd, loop, side.handler)
            run.ipc_fd = None
        if self.spec.wait_ready:
            timeout_ms = self.spec.listen_timeout
            side.timer = self.clock.call_later(timeout_ms / 1000,
                                               functools.partial(self._ready_timeout, run))
        else:
            side.settle()
        loop.create_task(self._supervise(run))

    def _message(self, run: spawn.Run, fields: dict[str, str]) -> None:
        """A notify message (or Node's 'ready') from a process of `run`."""
        side = self._sides.get(run.token)
        if side is None:
            return
        if "STATUS" in fields:
            self.status_text = fields["STATUS"][:200]
        if "MAINPID" in fields and fields["MAINPID"].isdigit():
            self.main_pid = int(fields["MAINPID"])
        if fields.get("STOPPING") == "1":
            self._log(f"pid {run.pid} says it is stopping")
            if side.settle("it said STOPPING=1 before READY=1"):
                self._cancel_side_timer(side)
        if fields.get("READY") == "1" and side.settle():
            self._cancel_side_timer(side)

    def _ready_timeout(self, run: spawn.Run) -> None:
        side = self._sides.get(run.token)
        if side is None or side.ready.done():
            return
        side.timer = None
        if self.run is run:
            self._log_warning(f"not ready after listen_timeout ({self.spec.listen_timeout}ms): "
                              "counted as ready")
            side.settle()
        else:  # a reload's replacement: the previous process keeps serving
            side.settle(f"it did not say it is ready within listen_timeout "
                        f"({self.spec.listen_timeout}ms)")

    @staticmethod
    def _cancel_side_timer(side: _Side) -> None:
        if side.timer is not None:
            side.timer.cancel()
            side.timer = None

    def _output(self, sink: LogSink, stream: str, data: bytes) -> None:
        sink.feed(stream, data)
        self.hooks.output(self, stream, data)
        if self.hooks.echo is not None:
            self.hooks.echo(self, stream, data)

    def _pipe_closed(self, sink: LogSink, stream: str) -> None:
        sink.flush_partial(stream)
        if sink is not self._sink:
            sink.close()  # replaced while this run was still writing

    def adopt(self, run: spawn.Run) -> None:
        """Take over a run found alive after a daemon restart (the instance was built online)."""
        self._attach(run)
        side = self._sides[run.token]
        self._cancel_side_timer(side)
        side.settle()
        self._log(f"re-adopted (pid {run.pid})")
        self.hooks.changed()
        self.hooks.state(self)

    def _write_pid(self, pid: int) -> None:
        if self.paths.pid == DEVNULL:
            return
        try:
            safefs.write_pid(self.paths.pid, pid)
        except OSError as e:
            self._log_warning(f"cannot write pid file {self.paths.pid}: {e.strerror or e}")

    def _finish_run(self, run: spawn.Run) -> None:
        if self.run is run:
            self.run = None
        self.exit_code = run.exit_code
        self._release(run)
        self.cpu, self.memory, self.memory_measure = 0.0, 0, "rss"

    def _release(self, run: spawn.Run) -> None:
        """Let go of what a finished run held: its pipes, its channels, its pid file."""
        self.spawner.release(run)
        side = self._sides.pop(run.token, None)
        if side is not None:
            self._cancel_side_timer(side)
            side.settle("it ended")
            if side.ipc is not None:
                side.ipc.close()
            if self.hooks.notifier is not None and side.handler is not None:
                self.hooks.notifier.unregister(run.pid, side.handler)
        safefs.remove_pid(self.paths.pid, run.pid)

    async def _supervise(self, run: spawn.Run) -> None:
        code, sig = await asyncio.shield(run.exited)
        async with self.lock:
            if self.run is not run:
                return  # a stop or restart already handled this exit
            what = policy.describe_exit(code, sig)
            self._log(what)
            # what the app left behind must go before anything new starts
            if not await self._end_run(run, what):
                return
            if self.desired is not Desired.RUNNING or self.hooks.shutting_down():
                self._set(Status.STOPPED, what)
                return
            uptime_ms = (self.clock.monotonic() - run.started_mono) * 1000
            d = policy.decide(self.spec, self.restart_state, code=code, signal_name=sig,
                              uptime_ms=uptime_ms)
            self.restart_state = d.state
            if d.status == Status.WAITING_RESTART:
                self._wait(d.delay_ms, d.reason)
                return
            self._set(d.status, d.reason)
            if d.status == Status.ERRORED:
                self.hooks.log(f"Script {self.spec.script} had too many unstable restarts "
                               f"({self.spec.max_restarts}). Stopped. \"errored\"")

    async def sweep_orphans(self, token: str) -> None:
        """Stop what is left of a run whose leader died while no daemon watched it."""
        await self.spawner.sweep(token, self.spec, self._log)

    def to_state(self) -> dict[str, Any]:
        run = self.run
        return {
            "pm_id": self.pm_id, "instance": self.instance, "spec": self.spec.to_dict(),
            "base_env": self.base_env, "paths": dataclasses.asdict(self.paths),
            "desired": self.desired.value, "status": self.status.value,
            "status_reason": self.status_reason, "restart_time": self.restart_time,
            "created_at": self.created_at, "last_restart_reason": self.last_restart_reason,
            "pending_token": self.pending_token,
            "run": None if run is None or not run.alive else {
                "pid": run.pid, "token": run.token, "create_time": run.create_time,
                "started_at": run.started_at, "argv": list(run.launch.argv),
                "interpreter": run.launch.interpreter, "is_python": run.launch.is_python,
            },
        }

    # ---- views --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """pm2's jlist shape for this instance."""
        s = self.spec
        run = self.run
        online = run is not None and run.alive
        return {
            "pid": run.pid if run is not None else (0 if self.status == Status.STOPPED else None),
            "name": s.name,
            "pm_id": self.pm_id,
            "monit": {"memory": self.memory if online else 0, "cpu": self.cpu if online else 0,
                      "memory_measure": self.memory_measure},
            "pm2_env": {
                "name": s.name, "namespace": s.namespace, "status": self.status.value,
                "restart_time": self.restart_time,
                "unstable_restarts": self.restart_state.unstable_restarts,
                "pm_uptime": _ms(run.started_at) if run is not None else None,
                "created_at": _ms(self.created_at), "exit_code": self.exit_code,
                "pm_cwd": s.cwd, "pm_exec_path": s.script, "args": list(s.args),
                "exec_interpreter": run.launch.interpreter if run is not None else s.interpreter,
                "node_args": list(s.interpreter_args),
                "pm_out_log_path": self.paths.out, "pm_err_log_path": self.paths.err,
                "pm_log_path": self.paths.combined, "pm_pid_path": self.paths.pid,
                "exec_mode": "cluster_mode" if s.exec_mode == "cluster" else "fork_mode",
                "instances": s.instances, "watch": list(s.watch) if isinstance(s.watch, tuple) else s.watch,
                "autorestart": s.autorestart is not False, "username": s.user or _username(), "version": "N/A",
                "max_memory_restart": s.max_memory_restart, "cron_restart": s.cron_restart,
                "kill_signal": s.kill_signal, "kill_timeout": s.kill_timeout,
                "min_uptime": s.min_uptime, "max_restarts": s.max_restarts,
                "restart_delay": s.restart_delay, "status_reason": self.status_reason,
                "next_restart_at": _ms(self.next_restart_at),
                "last_restart_reason": self.last_restart_reason, "source": s.source,
                "warnings": list(self.warnings), "instance": self.instance,
                "desired": self.desired.value, "axm_options": {},
                "wait_ready": s.wait_ready, "listen_timeout": s.listen_timeout,
                "listen": list(s.listen), "status_text": self.status_text,
                "main_pid": self.main_pid,
            },
        }


_USER: str | None = None


def _username() -> str:
    global _USER
    if _USER is None:
        try:
            import pwd

            _USER = pwd.getpwuid(os.getuid()).pw_name
        except (KeyError, ImportError):
            _USER = str(os.getuid())
    return _USER
