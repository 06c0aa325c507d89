"""The commands the CLI sends: one `cmd_<name>` per entry of protocol.COMMANDS, taking its
arguments, run by `Daemon.dispatch` against the daemon's registry."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pyvm2 import __version__, protocol
from pyvm2.daemon.journal import atomic_write, pack, unpack
from pyvm2.daemon.process import ManagedProcess, ReloadFailed
from pyvm2.errors import NotFound, Pyvm2Error, SpawnError, UsageError
from pyvm2.protocol import PROTOCOL_VERSION, BadRequest
from pyvm2.spec import AppSpec
from pyvm2.status import Desired, Status, is_settled
from pyvm2.units import UnitError, visible
from pyvm2.values import MAX_INSTANCES, check_name

if TYPE_CHECKING:
    from pyvm2.daemon.daemon import Daemon
    from pyvm2.daemon.events import Progress

#: `start` and `restart` answer once every instance has reached its goal, or after this long.
SETTLE_DEADLINE_S = 20.0
#: With `wait`, an instance online this long (or min_uptime, if shorter) counts as started.
SETTLE_ONLINE_S = 1.0

Goal = Callable[[ManagedProcess], bool]


def running(p: ManagedProcess) -> bool:
    """The goal of `start` and `restart`: the instance was spawned (its pid is known) and, if it
    must say it is ready (wait_ready), it did or listen_timeout passed; or it could not start.
    A crash right after shows in the next `list`."""
    return p.status is not Status.LAUNCHING


def outcome_known(p: ManagedProcess) -> bool:
    """The goal with `wait`: online for min(min_uptime, SETTLE_ONLINE_S), or come to rest
    (stopped, errored, waiting to restart after an exit)."""
    if p.status == Status.ONLINE and p.run is not None:
        need = min(p.spec.min_uptime / 1000, SETTLE_ONLINE_S)
        return time.monotonic() - p.run.started_mono >= need
    return is_settled(p.status) or p.status == Status.WAITING_RESTART


class Commands:
    """What each command does, in terms of the registry (`Daemon.procs`, `resolve`, `add`,
    `remove`, `snapshot`) and of each instance's own operations (start, stop, restart, reload,
    delete), which order themselves under the instance's lock. Holds no state of its own."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @staticmethod
    def _goal(wait: bool) -> Goal:
        return outcome_known if wait else running

    @staticmethod
    async def _settle(procs: list[ManagedProcess], goal: Goal,
                      prog: Progress | None = None) -> None:
        """Wait until each instance reached `goal` (marking it done in `prog`), or for
        SETTLE_DEADLINE_S; then the table the command prints is true."""
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        pending = list(procs)
        while True:
            left = []
            for p in pending:
                if goal(p):
                    if prog is not None:
                        prog.done(p)
                else:
                    left.append(p)
            pending = left
            if not pending or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.05)

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
        ok = [p for p in procs if p.pm_id not in self.d.broken]
        if procs and not ok:
            p = procs[0]
            raise UsageError(f"{p.name} ({p.pm_id}) cannot run: {self.d.broken[p.pm_id]}",
                             "fix its definition and start it from its file again, "
                             f"or remove it with: pyvm2 delete {p.pm_id}")
        return ok

    async def cmd_hello(self, version: str, protocol: int) -> dict:
        return {"version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
                "home": str(self.d.home.root)}

    async def cmd_ping(self) -> dict:
        return {"msg": "pong", "pid": os.getpid(), "uptime_ms": int((time.time() - self.d.started_at) * 1000)}

    async def cmd_list(self, table: bool, env: bool) -> protocol.Encoded | list[dict[str, Any]]:
        """Every instance; with `env`, each one's environment too, as pm2's jlist has it: every
        variable beside pm2_env's own keys, and the whole as `pm2_env.env` (`pyvm2 jlist`, over
        the private socket; the web server never asks for it)."""
        if not env:
            return self.d.snapshot(table=table)
        from pyvm2.daemon.spawn import build_env

        procs = list(self.d.procs.values())
        entries: list[dict[str, Any]] = self.d.snapshot(procs).decoded()
        for p, entry in zip(procs, entries, strict=True):
            variables = build_env(p.spec, p.base_env, {})
            pm2_env = entry["pm2_env"]
            for k, v in variables.items():
                pm2_env.setdefault(k, v)
            pm2_env["env"] = variables
        return entries

    async def cmd_describe(self, targets: list[str]) -> protocol.Encoded:
        return self.d.snapshot(self.d.resolve(targets))

    async def cmd_targets(self, targets: list[str]) -> protocol.Encoded | list:
        if targets == ["all"] and not self.d.procs:
            return []
        return self.d.snapshot(self.d.resolve(targets))

    async def cmd_start(self, targets: list[str], apps: list[dict[str, Any]],
                        base_env: dict[str, str], from_file: bool, wait: bool) -> dict:
        """Start apps from specs (file or script), or existing processes by target; answer
        once each runs (see `running`), or with `wait` once its outcome is known."""
        if targets and apps:
            raise BadRequest("start: give targets or apps, not both")
        if targets:  # as pm2: a running app is restarted, a stopped one started
            procs = self._runnable(self.d.resolve(targets))
            running = {p.pm_id for p in procs if p.run is not None}
            goal = self._goal(wait)
            with self.d.events.progress("starting", procs) as prog:
                await asyncio.gather(*(prog.track(p, p.restart() if p.pm_id in running
                                                  else p.start(), goal) for p in procs))
                await self._settle(procs, goal, prog)
            return {"actions": [{"pm_id": p.pm_id, "name": p.name,
                                 "action": "restarted" if p.pm_id in running else "started"}
                                for p in procs],
                    "list": self.d.snapshot()}
        actions, _ = await self._start_specs(self._specs(apps), base_env, from_file, wait)
        return {"actions": actions, "list": self.d.snapshot()}

    async def _start_specs(self, specs: list[AppSpec], base_env: dict[str, str],
                           from_file: bool, wait: bool = False
                           ) -> tuple[list[dict], list[ManagedProcess]]:
        if not from_file:
            for spec in specs:
                running = [p for p in self.d.by_name(spec.name) if p.run is not None]
                if running:
                    raise UsageError(f"app {spec.name!r} is already running (id {running[0].pm_id})",
                                     f"restart it with: pyvm2 restart {spec.name}, or pick another --name",
                                     code=1)
        for spec in specs:
            if spec.listen and spec.autostart:
                try:
                    self.d.sockets_for(spec)
                except SpawnError as e:
                    raise UsageError(f"{spec.name}: {e.message}", e.hint, code=1) from None
        actions: list[dict] = []
        touched: list[ManagedProcess] = []
        tasks: list[Awaitable[Any]] = []
        ops: list[tuple[ManagedProcess, Awaitable[Any]]] = []
        for spec in specs:
            # the file's `instances` wins over a `scale`: the highest instances go, or the
            # free instance numbers are filled
            existing = self._instances(spec.name)
            for extra in existing[spec.instances:]:
                tasks.append(self.d.remove(extra))
                actions.append({"pm_id": extra.pm_id, "name": spec.name, "action": "deleted"})
            existing = existing[: spec.instances]
            for i in _free_instances(existing, spec.instances - len(existing)):
                existing.append(self.d.add(spec, i, base_env))
            for p in existing:
                touched.append(p)
                self.d.broken.pop(p.pm_id, None)  # it gets a checked definition now
                if p.spec.definition() != spec.definition() and p.run is not None:
                    ops.append((p, p.restart("definition changed", spec=spec, base_env=base_env)))
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "restarted"})
                elif p.run is None and spec.autostart:
                    p.replace_spec(spec)
                    p.base_env = base_env
                    ops.append((p, p.start()))
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "started"})
                elif p.run is None:
                    p.replace_spec(spec)
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "registered"})
                else:
                    p.spec = spec  # the same definition; `instances` and `source` may differ
                    actions.append({"pm_id": p.pm_id, "name": p.name, "action": "unchanged"})
        goal = self._goal(wait)
        with self.d.events.progress("starting", touched) as prog:
            await asyncio.gather(*tasks, *(prog.track(p, op, goal) for p, op in ops))
            await self._settle(touched, goal, prog)
        return actions, touched

    async def cmd_restart(self, targets: list[str], apps: list[dict[str, Any]],
                          base_env: dict[str, str], toggle_watch: bool, update_env: bool,
                          wait: bool) -> dict:
        """Restart; answer once each instance runs again (see `running`), or with `wait` once
        its outcome is known. Apps of a file not known yet are started."""
        if targets and apps:
            raise BadRequest("restart: give targets or apps, not both")
        goal = self._goal(wait)
        started: list[ManagedProcess] = []
        if apps:
            specs = self._specs(apps)
            procs = [p for s in specs for p in self.d.by_name(s.name)]
            for p in procs:
                self.d.broken.pop(p.pm_id, None)  # it gets a checked definition now
            by_name = {s.name: s for s in specs}
            with self.d.events.progress("restarting", procs) as prog:
                await asyncio.gather(*(prog.track(p, p.restart(spec=by_name[p.name],
                                                               base_env=base_env), goal)
                                       for p in procs))
                missing = [s for s in specs if not self.d.by_name(s.name)]
                if missing:
                    _, started = await self._start_specs(missing, base_env, True, wait)
                await self._settle(procs, goal, prog)
        else:
            procs = self._runnable(self.d.resolve(targets))
            env = base_env if update_env else None  # pm2: the first start's env, unless asked
            with self.d.events.progress("restarting", procs) as prog:
                await asyncio.gather(*(prog.track(p, p.restart(
                    spec=dataclasses.replace(p.spec, watch=not p.spec.watch) if toggle_watch
                    else None, base_env=env), goal) for p in procs))
                await self._settle(procs, goal, prog)
        procs += started
        return {"ids": [p.pm_id for p in procs], "list": self.d.snapshot()}

    async def cmd_reload(self, targets: list[str], apps: list[dict[str, Any]],
                         base_env: dict[str, str], update_env: bool) -> dict:
        """Rolling reload, one instance at a time; the first that fails stops it there. Apps of
        a file not known yet are started."""
        if targets and apps:
            raise BadRequest("reload: give targets or apps, not both")
        specs_by_name: dict[str, AppSpec] = {}
        started: list[ManagedProcess] = []
        if apps:
            specs = self._specs(apps)
            specs_by_name = {s.name: s for s in specs}
            procs = [p for s in specs for p in self.d.by_name(s.name)]
            missing = [s for s in specs if not self.d.by_name(s.name)]
            if missing:
                _, started = await self._start_specs(missing, base_env, from_file=True)
        else:
            procs = self._runnable(self.d.resolve(targets))
        for wanted in specs_by_name.values():
            if wanted.listen:
                try:
                    self.d.sockets_for(wanted)
                except SpawnError as e:
                    raise UsageError(f"{wanted.name}: {e.message}", e.hint, code=1) from None
        done: list[str] = []
        env = base_env if (update_env or apps) else None
        with self.d.events.progress("reloading", procs) as prog:
            for p in procs:
                spec = specs_by_name.get(p.name)
                if spec is not None:
                    self.d.broken.pop(p.pm_id, None)
                    if spec.instances <= p.instance:
                        prog.done(p)
                        continue
                try:
                    action = await p.reload(spec=spec, base_env=env)
                except ReloadFailed as e:
                    so_far = f" ({', '.join(done)} replaced before it)" if done else ""
                    raise Pyvm2Error(f"reload stopped: {e.message}{so_far}", e.hint) from None
                prog.done(p)
                done.append(p.label)
                self.d.log(f"App [{p.label}] {action}")
        for wanted in specs_by_name.values():  # more instances than before
            if len(self.d.by_name(wanted.name)) != wanted.instances:
                _, more = await self._start_specs([wanted], base_env, from_file=True)
                started += more
        return {"ids": [p.pm_id for p in procs + started], "list": self.d.snapshot()}

    def _instances(self, name: str) -> list[ManagedProcess]:
        """The instances of the app `name` (not those already deleted), by instance number."""
        return sorted((p for p in self.d.by_name(name) if not p.removed),
                      key=lambda p: (p.instance, p.pm_id))

    async def cmd_scale(self, name: str, count: int, relative: bool) -> dict:
        """pm2's scale: new instances copy the app's first instance (its definition and the
        environment it was started with) under the lowest free instance numbers and the next
        ids; shrinking deletes the highest instances, so the app keeps its numbers 0..N-1."""
        procs = self._instances(name)
        if not procs and name.isdigit() and int(name) in self.d.procs:
            procs = self._instances(self.d.procs[int(name)].name)
        if not procs:
            raise NotFound(f"app {name!r} not found",
                           "see the names with: pyvm2 list; start it first with: pyvm2 start")
        name = procs[0].name
        current = len(procs)
        wanted = current + count if relative else count
        if wanted < 1:
            raise UsageError(f"{name} cannot have {wanted} instances (it has {current})",
                             f"scale to 1 at least; to remove the app: pyvm2 delete {name}", code=2)
        if wanted > MAX_INSTANCES:
            raise UsageError(f"{name} cannot have {wanted} instances (at most {MAX_INSTANCES}, "
                             "as in an ecosystem file)",
                             "split the work over several apps, or scale to fewer", code=2)
        if wanted == current:
            return {"actions": [], "list": self.d.snapshot()}
        if wanted < current:
            extra = procs[wanted:]
            for p in procs[:wanted]:
                p.spec = dataclasses.replace(p.spec, instances=wanted)
            with self.d.events.progress("deleting", extra) as prog:
                await asyncio.gather(*(prog.track(p, self.d.remove(p)) for p in extra))
            # an instance whose stop failed is still there, and said so in the daemon log
            actions = [{"pm_id": p.pm_id, "name": name, "action": "deleted"} for p in extra
                       if p.pm_id not in self.d.procs]
            return {"actions": actions, "list": self.d.snapshot()}
        template = self._runnable(procs)[0]
        spec = dataclasses.replace(template.spec, instances=wanted)
        for p in procs:
            p.spec = dataclasses.replace(p.spec, instances=wanted)
        run = any(p.desired is Desired.RUNNING for p in procs)
        added = [self.d.add(spec, i, template.base_env)
                 for i in _free_instances(procs, wanted - current)]
        if run:
            with self.d.events.progress("starting", added) as prog:
                await asyncio.gather(*(prog.track(p, p.start(), running) for p in added))
                await self._settle(added, running, prog)
        else:
            for p in added:
                p.hooks.changed()
        actions = [{"pm_id": p.pm_id, "name": name,
                    "action": "started" if run else "registered (stopped, as the app)"}
                   for p in added]
        return {"actions": actions, "list": self.d.snapshot()}

    async def cmd_stop(self, targets: list[str], unwatch: bool) -> dict:
        """Stop, tier by tier; watching pauses until the next start, or with `unwatch` (pm2's
        `stop --watch`) ends: the app runs unwatched from then on."""
        procs = self.d.resolve(targets)
        with self.d.events.progress("stopping", procs) as prog:
            for tier in stop_tiers(procs):
                await asyncio.gather(*(prog.track(p, p.stop()) for p in tier))
        if unwatch:
            for p in procs:
                if p.spec.watch:
                    p.replace_spec(dataclasses.replace(p.spec, watch=False))
        return {"ids": [p.pm_id for p in procs], "list": self.d.snapshot()}

    async def cmd_delete(self, targets: list[str]) -> dict:
        procs = self.d.resolve(targets)
        with self.d.events.progress("deleting", procs) as prog:
            await asyncio.gather(*(prog.track(p, self.d.remove(p)) for p in procs))
        if not self.d.procs:
            self.d.next_id = 0
        return {"ids": [p.pm_id for p in procs], "list": self.d.snapshot()}

    async def cmd_reset(self, targets: list[str]) -> dict:
        procs = self.d.resolve(targets)
        for p in procs:
            p.reset()
        return {"ids": [p.pm_id for p in procs], "list": self.d.snapshot()}

    async def cmd_flush(self, targets: list[str]) -> dict:
        procs = self.d.resolve(targets) if targets else list(self.d.procs.values())
        for p in procs:
            p.flush_logs()
        if not targets:
            try:
                os.truncate(self.d.home.log, 0)
            except OSError:
                pass
        return {"ids": [p.pm_id for p in procs]}

    async def cmd_reload_logs(self) -> dict:
        self.d.reopen_logs()
        return {"reopened": len(self.d.procs)}

    async def cmd_save(self, force: bool) -> dict:
        """Write every app and whether it should run to dump.json (atomically, old copy kept)."""
        entries = [{k: v for k, v in p.to_state().items() if k in ("pm_id", "instance", "spec", "base_env", "desired")}
                   for p in self.d.procs.values()]
        path = str(self.d.home.dump)
        if not entries and not force:
            raise UsageError("no app is managed, so the saved list was left as it is",
                             "use pyvm2 save --force to save an empty list")
        try:
            await asyncio.to_thread(atomic_write, path, pack(entries, self.d.next_id),
                                    keep_backup=True)
        except OSError as e:
            self.d.log(f"cannot save to {path}: {e.strerror or e}")
            raise Pyvm2Error(f"cannot write {path}: {e.strerror or e}; nothing was saved",
                             _disk_hint(e, path, "then run pyvm2 save again; the list saved "
                                                 "before is unchanged")) from None
        self.d.log(f"saved {len(entries)} process(es) to {path}")
        return {"path": path, "count": len(entries)}

    def read_dump(self) -> list[dict]:
        last_error = None
        for path in (str(self.d.home.dump), str(self.d.home.dump) + ".bak"):
            try:
                with open(path, "rb") as f:
                    entries, _ = unpack(f.read())
                return entries
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError, AttributeError, RecursionError) as e:
                if isinstance(e, RecursionError):
                    why = "nested too deeply to read"
                elif isinstance(e, OSError):
                    why = e.strerror or str(e)
                elif isinstance(e, ValueError):
                    why = f"not a saved list ({str(e)[:200]})"
                else:
                    why = "not a saved list (its parts do not have the expected types)"
                last_error = f"{path}: {why}"
                self.d.log(f"cannot read {last_error}")
        if last_error:
            raise UsageError(f"the saved list cannot be read ({last_error})", "save again with: pyvm2 save")
        raise NotFound(f"nothing saved yet ({self.d.home.dump} does not exist)", "save the running apps with: pyvm2 save")

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
                if not isinstance(e, dict) or not isinstance(e.get("spec"), dict):
                    raise ValueError("it has no app definition (its \"spec\" object)")
                spec = AppSpec.from_dict(e["spec"])
                problem = definition_problem(spec)
                if problem is not None:
                    raise ValueError(f"{spec.name}: {problem}")
                instance = e.get("instance") or 0
                if not isinstance(instance, int) or isinstance(instance, bool) or instance < 0:
                    raise ValueError(f"instance must be a whole number, got {instance!r:.40}")
                if not isinstance(e.get("base_env") or {}, dict):
                    raise ValueError("base_env must be an object")
            except (KeyError, TypeError, ValueError) as err:
                name = e["spec"].get("name") if isinstance(e, dict) and \
                    isinstance(e.get("spec"), dict) else None
                what = f"entry {i} ({visible(str(name)):.60})" if name else f"entry {i}"
                if from_client:
                    raise BadRequest(f"resurrect: {what} is not usable: {err}") from None
                self.d.log(f"{self.d.home.dump}: {what} skipped: {err}")
                actions.append({"name": what, "pm_id": None, "action": f"skipped: {err}"})
                continue
            usable.append((spec, e))
        for spec, e in usable:
            instance = e.get("instance") or 0
            present = [p for p in self.d.procs.values() if p.name == spec.name and p.instance == instance]
            if present:
                actions.append({"name": spec.name, "pm_id": present[0].pm_id, "action": "already present"})
                continue
            p = self.d.add(spec, instance, dict(e.get("base_env") or {}))
            if e.get("desired") == "running":
                started.append(p)
                actions.append({"name": p.name, "pm_id": p.pm_id, "action": "started"})
            else:
                p.hooks.changed()
                actions.append({"name": p.name, "pm_id": p.pm_id, "action": "restored stopped"})
        with self.d.events.progress("starting", started) as prog:
            await asyncio.gather(*(prog.track(p, p.start(), running) for p in started))
            await self._settle(started, running, prog)
        return {"actions": actions, "list": self.d.snapshot()}

    async def cmd_handover(self) -> dict:
        return await self.d.hand_over()

    async def cmd_kill(self) -> dict:
        return await self.d.kill()


def _disk_hint(e: OSError, path: str, then: str) -> str:
    """What to do about a file the daemon could not write."""
    import errno

    folder = os.path.dirname(path)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free space on the file system of {folder} (df -h {folder}), {then}"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"make {folder} writable by the daemon's user, {then}"
    return f"check {folder} and its file system, {then}"


def definition_problem(spec: AppSpec) -> str | None:
    """Why the daemon cannot run `spec` as it is, or None. The CLI validates every definition it
    sends; this catches one that did not pass there (another client, an edited state file)."""
    for key in ("name", "script", "cwd"):
        value = getattr(spec, key)
        if not isinstance(value, str) or not value:
            return f"{key} must be a non-empty string"
    for key in ("name", "namespace"):
        try:
            check_name(str(getattr(spec, key)), key)
        except UnitError as e:
            return str(e)
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


def _free_instances(procs: list[ManagedProcess], n: int) -> list[int]:
    """The `n` lowest instance numbers none of `procs` has (pm2 reuses freed numbers)."""
    taken = {p.instance for p in procs}
    free: list[int] = []
    i = 0
    while len(free) < n:
        if i not in taken:
            free.append(i)
        i += 1
    return free


def stop_tiers(procs: list[ManagedProcess]) -> list[list[ManagedProcess]]:
    """Apps to stop one tier after the other: by supervisor's priority, highest first, so what
    started first stops last. Apps without a priority stop together with priority 999."""
    tiers: dict[int, list[ManagedProcess]] = {}
    for p in procs:
        tiers.setdefault(999 if p.spec.priority is None else p.spec.priority, []).append(p)
    return [tiers[k] for k in sorted(tiers, reverse=True)]
