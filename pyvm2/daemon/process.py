"""ManagedProcess: one instance of an app; drives the state machine, spawns, stops the whole
tree, schedules restarts and keeps the counters pm2 shows."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyvm2.daemon import policy, spawn, tree
from pyvm2.daemon.logs import LogSink, Rotation
from pyvm2.errors import SpawnError
from pyvm2.spec import AppSpec
from pyvm2.status import Status, check_transition

#: How long a stop waits after SIGKILL before it calls the process unkillable.
KILL_GRACE_S = 5.0


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
    #: told of every state change and of every chunk of output (events.py)
    state: Callable[[ManagedProcess], None] = lambda _p: None
    output: Callable[[ManagedProcess, str, bytes], None] = lambda _p, _s, _d: None


@dataclass(frozen=True)
class LogPaths:
    out: str
    err: str
    combined: str | None
    pid: str


def _leader(run: spawn.Run) -> int | None:
    """The run's pid, usable as a process and group id only until we reap it: after that the
    kernel may give it to someone else, and the run is found by its token alone."""
    return run.pid if run.alive else None


def _ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


class ManagedProcess:
    def __init__(self, pm_id: int, spec: AppSpec, instance: int, base_env: Mapping[str, str],
                 paths: LogPaths, hooks: Hooks) -> None:
        self.pm_id = pm_id
        self.spec = spec
        self.instance = instance
        self.base_env = dict(base_env)
        self.paths = paths
        self.hooks = hooks
        self.status = Status.STOPPED
        self.status_reason: str | None = None
        self.last_restart_reason: str | None = None
        self.run: spawn.Run | None = None
        self.restart_time = 0
        self.restart_state = policy.RestartState()
        self.created_at = time.time()
        self.exit_code: int | None = None
        self.next_restart_at: float | None = None
        self.desired = "stopped"       # what the user asked for: "running" or "stopped"
        self.cpu = 0.0
        self.memory = 0
        self.lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._limit_delay_ms = 0
        self._sink: LogSink | None = None
        self.warnings: list[str] = []

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

    # ---- state --------------------------------------------------------------------------
    def _set(self, status: Status, reason: str | None = None) -> None:
        if status != self.status:
            check_transition(self.status, status)
            self.status = status
        self.status_reason = reason
        self.hooks.changed()
        self.hooks.state(self)

    def sink(self) -> LogSink:
        if self._sink is None:
            self._sink = LogSink(self.paths.out, self.paths.err, self.paths.combined,
                                 self.spec.log_date_format, self._log_warning,
                                 rotation=self.hooks.rotation(self.spec),
                                 background=self.hooks.background,
                                 json_app=(self.pm_id, self.name) if self.spec.log_type == "json" else None)
        return self._sink

    def _log_warning(self, msg: str) -> None:
        self.hooks.log(f"App [{self.label}] {msg}")
        if msg not in self.warnings:
            self.warnings = (self.warnings + [msg])[-5:]
            self.hooks.changed()

    # ---- commands (each takes the lock) --------------------------------------------------
    async def start(self) -> None:
        """Start if not running; a user start also forgets earlier crash accounting."""
        self.desired = "running"
        self.cancel_timer()
        async with self.lock:
            if self.run is not None:
                return
            self.restart_state = policy.RestartState()
            self._spawn()

    async def stop(self, reason: str = "stopped by user", *, keep_desired: bool = False) -> None:
        if not keep_desired:
            self.desired = "stopped"
        self.cancel_timer()
        async with self.lock:
            await self._stop_locked(reason)

    async def restart(self, reason: str = "restarted by user", spec: AppSpec | None = None,
                      base_env: Mapping[str, str] | None = None) -> None:
        self.desired = "running"
        self.cancel_timer()
        async with self.lock:
            was_running = self.run is not None
            await self._stop_locked(reason)
            if spec is not None:
                self.replace_spec(spec)
            if base_env is not None:
                self.base_env = dict(base_env)
            if was_running:
                self.restart_time += 1
            self.restart_state = policy.RestartState()
            self.created_at = time.time()
            self.last_restart_reason = reason
            self._spawn()

    async def limit_restart(self, reason: str) -> None:
        """A restart the daemon decided on (memory limit): counted in ↺, and backing off when
        the app crosses its limit again soon after starting, so it never becomes a tight loop."""
        self.cancel_timer()
        async with self.lock:
            run = self.run
            if run is None or self.desired != "running":
                return
            uptime_ms = (time.monotonic() - run.started_mono) * 1000
            self.hooks.log(f"App [{self.label}] restarting: {reason}")
            if not await self._end_run(run, reason):
                return
            # the first restart is immediate; a limit crossed again soon after starting waits
            # 1 s, then x1.5; a run of 30 s forgives
            if uptime_ms < policy.BACKOFF_RESET_MS:
                delay = self._limit_delay_ms
                self._limit_delay_ms = policy.next_backoff(self._limit_delay_ms, 1000)
            else:
                delay = self._limit_delay_ms = 0
            if delay:
                self._set(Status.WAITING_RESTART, reason)
                self.hooks.log(f"App [{self.label}] will restart in {delay}ms")
                self._schedule_restart(delay / 1000, reason)
                return
            self.restart_time += 1
            self.last_restart_reason = reason
            self._spawn()

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
        self.created_at = time.time()
        self.hooks.changed()

    def reopen_logs(self) -> None:
        if self._sink is not None:
            self._sink.reopen()

    def flush_logs(self) -> None:
        for p in {self.paths.out, self.paths.err, self.paths.combined}:
            if p and p != "/dev/null" and os.path.exists(p):
                with contextlib.suppress(OSError), open(p, "r+b") as f:
                    f.truncate(0)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.next_restart_at = None

    # ---- internals ----------------------------------------------------------------------
    async def _stop_locked(self, reason: str) -> None:
        run = self.run
        if run is None:
            if self.status in (Status.WAITING_RESTART, Status.ERRORED, Status.STOPPED):
                if self.status != Status.STOPPED or self.status_reason != reason:
                    self._set(Status.STOPPED, reason)
            return
        self.hooks.log(f"Stopping app:{self.name} id:{self.pm_id}")
        if await self._end_run(run, reason):
            self._set(Status.STOPPED, reason)

    async def _end_run(self, run: spawn.Run, reason: str) -> bool:
        """Stopping until every process of the run is gone; errored (False) if one survived."""
        self._set(Status.STOPPING, reason)
        failure = await self._terminate(run)
        self._finish_run(run)
        if failure:
            self._set(Status.ERRORED, failure)
            self.hooks.log(f"App [{self.label}] {failure}")
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

    def _spawn(self) -> None:
        """Start one run. Must hold the lock. Failures end errored: no restart storm."""
        loop = asyncio.get_running_loop()
        self._set(Status.LAUNCHING, None)
        env = spawn.build_env(self.spec, self.base_env, self._extra_env())
        capture = not self.spec.disable_logs
        try:
            run = spawn.start(self.spec, env, uuid.uuid4().hex, loop, self.hooks.run_dir,
                              capture=capture)
        except SpawnError as e:
            self.run = None
            self._set(Status.ERRORED, e.message)
            self.hooks.log(f"App [{self.label}] cannot start: {e.message}")
            return
        self._attach(run)
        self._write_pid(run.pid)
        self._set(Status.ONLINE, None)
        self.hooks.log(f"App [{self.label}] online (pid {run.pid})")

    def _attach(self, run: spawn.Run) -> None:
        """Read the run's output and supervise its exit."""
        loop = asyncio.get_running_loop()
        self.run = run
        self.exit_code = None
        sink = self.sink()
        for stream, fd in (("out", run.out_fd), ("err", run.err_fd)):
            if fd is not None:
                spawn.pipe_reader(fd, loop, functools.partial(self._output, sink, stream),
                                  functools.partial(self._pipe_closed, sink, stream))
        loop.create_task(self._supervise(run))

    def _output(self, sink: LogSink, stream: str, data: bytes) -> None:
        sink.feed(stream, data)
        self.hooks.output(self, stream, data)

    def _pipe_closed(self, sink: LogSink, stream: str) -> None:
        sink.flush_partial(stream)
        if sink is not self._sink:
            sink.close()  # replaced while this run was still writing

    def adopt(self, run: spawn.Run) -> None:
        """Take over a run found alive after a daemon restart."""
        self._attach(run)
        self.status = Status.ONLINE
        self.status_reason = None
        self.hooks.log(f"App [{self.label}] re-adopted (pid {run.pid})")
        self.hooks.changed()
        self.hooks.state(self)

    def _write_pid(self, pid: int | None) -> None:
        path = self.paths.pid
        try:
            if pid is None:
                os.unlink(path)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(str(pid))
        except OSError:
            pass

    def _finish_run(self, run: spawn.Run) -> None:
        if self.run is run:
            self.run = None
        self.exit_code = run.exit_code
        spawn.remove_fifos(self.hooks.run_dir, run.token)
        self._write_pid(None)
        self.cpu, self.memory = 0.0, 0

    async def _supervise(self, run: spawn.Run) -> None:
        code, sig = await asyncio.shield(run.exited)
        async with self.lock:
            if self.run is not run:
                return  # a stop or restart already handled this exit
            self.hooks.log(f"App [{self.label}] {policy.describe_exit(code, sig)}")
            # what the app left behind must go before anything new starts
            if not await self._end_run(run, policy.describe_exit(code, sig)):
                return
            if self.desired != "running" or self.hooks.shutting_down():
                self._set(Status.STOPPED, policy.describe_exit(code, sig))
                return
            uptime_ms = (time.monotonic() - run.started_mono) * 1000
            d = policy.decide(self.spec, self.restart_state, code=code, signal_name=sig,
                              uptime_ms=uptime_ms)
            self.restart_state = d.state
            self._set(d.status, d.reason)
            if d.status == Status.ERRORED:
                self.hooks.log(f"Script {self.spec.script} had too many unstable restarts "
                               f"({self.spec.max_restarts}). Stopped. \"errored\"")
            elif d.status == Status.WAITING_RESTART:
                self.hooks.log(f"App [{self.label}] will restart in {d.delay_ms}ms")
                self._schedule_restart(d.delay_ms / 1000, d.reason)

    def _schedule_restart(self, delay_s: float, reason: str) -> None:
        loop = asyncio.get_running_loop()
        self.next_restart_at = time.time() + delay_s

        def fire() -> None:
            self._timer = None
            loop.create_task(self._auto_restart(reason))

        self._timer = loop.call_later(delay_s, fire)

    async def _auto_restart(self, reason: str) -> None:
        async with self.lock:
            if self.status != Status.WAITING_RESTART or self.run is not None:
                return
            self.next_restart_at = None
            self.restart_time += 1
            self.last_restart_reason = reason
            self._spawn()

    async def _terminate(self, run: spawn.Run) -> str | None:
        """Stop every process of this run; return a reason if something could not be killed."""
        sig = getattr(signal, self.spec.kill_signal, signal.SIGINT)
        procs = tree.members(_leader(run), run.token, await self.hooks.scanner.fresh())
        if not procs and not run.alive:
            return None  # it exited and left nothing behind: the common case, one scan
        if self.spec.treekill:
            tree.signal_all(procs, sig, group=_leader(run))
        elif run.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, sig)
        if await self._wait_gone(run, procs, self.spec.kill_timeout / 1000, sig):
            return None
        survivors = tree.members(_leader(run), run.token, await self.hooks.scanner.fresh(), procs)
        self.hooks.log(f"App [{self.label}] still alive after {self.spec.kill_timeout}ms, "
                       f"sending SIGKILL to {len(survivors)} process(es)")
        tree.signal_all(survivors, signal.SIGKILL, group=_leader(run))
        if await self._wait_gone(run, survivors, KILL_GRACE_S, signal.SIGKILL):
            return None
        left = tree.still_alive(survivors)
        pids = ", ".join(str(p.pid) for p in left) or str(run.pid)
        return f"could not be killed (pid {pids} survived SIGKILL)"

    async def _wait_gone(self, run: spawn.Run, procs: list, timeout: float, sig: int) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.01
        rescanned = False
        while True:
            if not run.alive and not tree.still_alive(procs):
                if rescanned:
                    return True
                # something may have been forked while we waited
                procs = tree.members(_leader(run), run.token, await self.hooks.scanner.fresh(), procs)
                rescanned = True
                if not procs:
                    return True
                tree.signal_all(procs, sig)
                continue
            if time.monotonic() >= deadline:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(run.exited), delay)
            delay = min(delay * 2, 0.1)

    async def sweep_orphans(self, token: str) -> None:
        """Stop what is left of a run whose leader died while no daemon watched it."""
        procs = tree.members(None, token, await self.hooks.scanner.fresh())
        if not procs:
            return
        self.hooks.log(f"App [{self.label}] stopping {len(procs)} orphaned process(es) of its last run")
        sig = getattr(signal, self.spec.kill_signal, signal.SIGINT)
        tree.signal_all(procs, sig)
        deadline = time.monotonic() + self.spec.kill_timeout / 1000
        while tree.still_alive(procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        tree.signal_all(tree.still_alive(procs), signal.SIGKILL)

    def to_state(self) -> dict[str, Any]:
        run = self.run
        return {
            "pm_id": self.pm_id, "instance": self.instance, "spec": self.spec.to_dict(),
            "base_env": self.base_env, "paths": dataclasses.asdict(self.paths),
            "desired": self.desired, "status": self.status.value,
            "status_reason": self.status_reason, "restart_time": self.restart_time,
            "created_at": self.created_at, "last_restart_reason": self.last_restart_reason,
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
            "monit": {"memory": self.memory if online else 0, "cpu": self.cpu if online else 0},
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
                "autorestart": s.autorestart, "username": _username(), "version": "N/A",
                "max_memory_restart": s.max_memory_restart, "cron_restart": s.cron_restart,
                "kill_signal": s.kill_signal, "kill_timeout": s.kill_timeout,
                "min_uptime": s.min_uptime, "max_restarts": s.max_restarts,
                "restart_delay": s.restart_delay, "status_reason": self.status_reason,
                "next_restart_at": _ms(self.next_restart_at),
                "last_restart_reason": self.last_restart_reason, "source": s.source,
                "warnings": list(self.warnings), "instance": self.instance,
                "desired": self.desired, "axm_options": {},
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
