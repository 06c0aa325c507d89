"""Watch mode: one shared watchdog observer, debounced change callbacks, polling fallback; the
ignore rules it applies are in watch_rules, its pruning inotify observer in watch_inotify."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserverVFS

from pyvm2.daemon.watch_inotify import LIMIT_ERRNOS, pruning_inotify_observer
from pyvm2.daemon.watch_rules import Rules, under

log = logging.getLogger(__name__)

Mode = Literal["inotify", "polling"]

QUIET_S = 0.05       # a burst ends after this long without events (or watch_delay, if longer)
MAX_WAIT_S = 2.0     # ...but a tree written without pause still gets a restart this long after its first event
MAX_PATHS = 20       # paths reported per change; a git checkout can touch thousands
POLL_INTERVAL_S = 2.0

_FILE_KINDS = frozenset({"created", "modified", "deleted", "moved", "attrib"})
# A new directory counts through the files that appear in it; a directory's own "modified" only
# echoes the file events inside it. A directory deleted or moved away takes code with it.
_DIR_KINDS = frozenset({"deleted", "moved"})
# Only these reach the handler, and the inotify mask is built from them, so reads of the tree
# (IN_OPEN, IN_ACCESS, IN_CLOSE_NOWRITE) never even wake the observer.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, DirDeletedEvent, DirMovedEvent,
]
with contextlib.suppress(ImportError):  # watchdog >= 5 reports chmod/touch apart from modified
    from watchdog.events import FileAttribEvent

    _EVENT_FILTER.append(FileAttribEvent)


# ---- threads -------------------------------------------------------------------------------------

class _Forwarder(FileSystemEventHandler):
    """Observer-thread side of one watched path of one app: drops what is ignored and hands the
    rest to the loop. Paths are batched, so a burst of thousands of events wakes the loop a few
    times, not thousands."""

    def __init__(self, root: str, is_file: bool, rules: Rules,
                 notify: Callable[[_Forwarder], None]) -> None:
        super().__init__()
        self.root = root
        self.is_file = is_file
        self._rules = rules
        self._notify = notify
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._armed = False

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind not in (_DIR_KINDS if event.is_directory else _FILE_KINDS):
            return
        # For a move the destination is the change (an editor's temp renamed onto x.py); the
        # source counts too when it was a watched name, since that file is gone.
        hits = [p for p in (self._relevant(event.src_path),
                            self._relevant(event.dest_path) if kind == "moved" else None) if p]
        if not hits:
            return
        with self._lock:
            if len(self._paths) < MAX_PATHS:
                self._paths.update(hits)
            if self._armed:
                return
            self._armed = True
        self._notify(self)

    def take(self) -> list[str]:
        with self._lock:
            paths, self._paths, self._armed = self._paths, set(), False
        return list(paths)

    def _relevant(self, raw: bytes | str) -> str | None:
        if not raw:
            return None
        path = os.path.normpath(os.fsdecode(raw))
        if self.is_file:
            if path != self.root or self._rules.is_extra(path):
                return None
        elif not under(path, self.root) or self._rules.ignored(path, self.root):
            return None
        return self._rules.relative(path)


class _Worker:
    """One daemon thread running observer calls in order: `schedule` walks a whole tree (seconds
    for 100,000 files with inotify) and must never run on the loop."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pyvm2-watch", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("watch: background job failed")


# ---- registrations -------------------------------------------------------------------------------

@dataclass(eq=False)
class _Reg:
    key: int
    cwd: str
    roots: tuple[str, ...]
    ignore: tuple[str, ...]
    extra: tuple[str, ...]
    quiet: float
    cap: float
    on_change: Callable[[list[str]], None]
    # Set by the worker before anything is scheduled; read by the worker and observer threads.
    rules: Rules | None = None
    forwarders: tuple[_Forwarder, ...] = ()
    # Loop side. `cancelled` is also read by the worker, to skip work for a removed app.
    cancelled: bool = False
    mode: Mode | None = None
    moving: bool = False
    pending: set[str] = field(default_factory=set)
    first: float | None = None
    last: float = 0.0
    timer: asyncio.TimerHandle | None = None
    muted_until: float = 0.0


@dataclass(eq=False)
class _Group:
    """Apps watching the same path share one watchdog watch (instances of one app all do)."""

    root: str
    members: dict[_Reg, _Forwarder]
    rules: tuple[Rules, ...]
    is_file: bool = False
    watch: ObservedWatch | None = None

    def prunes(self, path: str) -> bool:
        # A path is left out only if every member ignores it. A file watched by name is wanted
        # whatever the patterns say; only the daemon's own files are never watched.
        rules = self.rules
        if self.is_file:
            return bool(rules) and all(r.is_extra(path) for r in rules)
        return bool(rules) and all(r.ignored(path, self.root) for r in rules)


def _distinct(rules: Iterable[Rules]) -> tuple[Rules, ...]:
    seen: dict[tuple[Any, ...], Rules] = {}
    for r in rules:
        seen.setdefault(r.signature, r)
    return tuple(seen.values())


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    kept: list[str] = []
    for p in sorted(set(paths)):
        if not any(under(p, k) for k in kept):
            kept.append(p)
    return tuple(kept)


class Watcher:
    """Watches app directories and calls back, on the loop, once per burst of changes.

    One native observer (inotify on Linux) serves every app; an app falls back to polling when the
    kernel's inotify limits are reached, with one warning naming the sysctl to raise.

    What counts: a file created, modified, deleted, moved (its destination, and its source when
    that was a watched name), chmod/touch; a directory deleted or moved away. A directory's own
    "modified" does not. An editor's atomic save (write `x.py.tmp` or `.x.py.swp`, rename onto
    `x.py`) is one change to `x.py`.

    Ignore rules (watch_rules: the daemon's own files, ALWAYS_IGNORED_DIRS and _NAMES, and the
    `ignore_watch` globs) apply to each changed path; directories ignored by rule are not
    descended into at all, to save inotify watches and polling CPU.

    Debounce: after the last event of a burst, wait max(watch_delay, QUIET_S); a tree that keeps
    changing (git checkout, a busy generator) still fires max(MAX_WAIT_S, watch_delay) after the
    burst's first event. Each burst gives one `on_change(paths)`: up to MAX_PATHS changed paths,
    deduplicated and sorted, relative to cwd.

    Threads: `add` and `remove` return at once; scheduling (a tree walk) runs in a worker thread,
    events arrive on watchdog's threads, and everything else, timers and callbacks included, runs
    on the loop. `inotify_observer` / `polling_observer` (zero-argument factories) replace the
    observers, for tests.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, warn: Callable[[str], None], *,
                 inotify_observer: Callable[[], BaseObserver] | None = None,
                 polling_observer: Callable[[], BaseObserver] | None = None,
                 poll_interval: float = POLL_INTERVAL_S) -> None:
        self._loop = loop
        self._warn = warn
        self._inotify_factory = inotify_observer
        self._polling_factory = polling_observer
        self._poll_interval = poll_interval
        self._regs: dict[int, _Reg] = {}
        self._warned: set[str] = set()
        self._closed = False
        self._worker = _Worker()
        # Owned by the worker thread.
        self._observers: dict[Mode, BaseObserver] = {}
        self._groups: dict[tuple[Mode, str], _Group] = {}
        # Replaced whole (never mutated) so the polling threads can read it without a lock.
        self._poll_groups: tuple[_Group, ...] = ()

    # ---- public API (loop thread) -----------------------------------------------------------------

    def add(self, key: int, *, cwd: str, paths: Sequence[str] | bool, ignore: Sequence[str],
            extra_ignore: Sequence[str], delay_ms: int, on_change: Callable[[list[str]], None]) -> None:
        """Start watching for app `key` (replacing any previous watch of that key). `paths`: True
        for cwd, or paths relative to cwd (an empty list means cwd, as in pm2)."""
        if self._closed:
            raise RuntimeError("the watcher is closed")
        if paths is False:
            raise ValueError("paths=False means no watching; call remove() instead")
        self.remove(key)
        cwd = os.path.normpath(os.path.abspath(cwd))
        if isinstance(paths, str):
            paths = [paths]
        wanted = [cwd] if paths is True else [os.path.normpath(os.path.join(cwd, p)) for p in paths]
        quiet = max(max(delay_ms, 0) / 1000, QUIET_S)
        reg = _Reg(key=key, cwd=cwd, roots=_outermost(wanted or [cwd]), ignore=tuple(ignore),
                   extra=tuple(extra_ignore), quiet=quiet, cap=max(MAX_WAIT_S, quiet),
                   on_change=on_change)
        self._regs[key] = reg
        self._worker.submit(functools.partial(self._attach, reg, "inotify"))

    def remove(self, key: int) -> None:
        """Stop watching for `key`. No callback for it fires after this returns."""
        reg = self._regs.pop(key, None)
        if reg is None:
            return
        self._cancel(reg)
        self._worker.submit(functools.partial(self._leave_all, reg))

    def close(self) -> None:
        """Forget every app and stop the observers (in the background: this never blocks)."""
        if self._closed:
            return
        self._closed = True
        for reg in self._regs.values():
            self._cancel(reg)
        self._regs.clear()
        if self._worker.started:
            self._worker.submit(self._shutdown)
            self._worker.stop()

    def discard(self, key: int, mute_s: float = 0.0) -> None:
        """Forget changes seen so far for `key`, and those arriving in the next `mute_s`: what an
        app writes while it is being restarted (a database checkpoint on exit) must not restart
        it again."""
        reg = self._regs.get(key)
        if reg is None:
            return
        if reg.timer is not None:
            reg.timer.cancel()
            reg.timer = None
        reg.pending.clear()
        reg.first = None
        reg.muted_until = self._loop.time() + mute_s

    def is_watching(self, key: int) -> bool:
        """True once the watch for `key` is in place (scheduling a big tree takes a moment)."""
        return self.mode(key) is not None

    def mode(self, key: int) -> Mode | None:
        reg = self._regs.get(key)
        return reg.mode if reg is not None else None

    # ---- loop side --------------------------------------------------------------------------------

    def _cancel(self, reg: _Reg) -> None:
        reg.cancelled = True
        reg.mode = None
        if reg.timer is not None:
            reg.timer.cancel()
            reg.timer = None
        reg.pending.clear()
        reg.first = None

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """From any thread: run fn on the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is exiting
            self._loop.call_soon_threadsafe(fn, *args)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._warn(message)

    def _warn_limit(self, cwd: str, err: int) -> None:
        setting = "max_user_instances=1024" if err == errno.EMFILE else "max_user_watches=524288"
        self._warn_once(
            f"watching {cwd} with polling: inotify limit reached; raise it with: "
            f"sysctl fs.inotify.{setting} (until then the tree is rescanned every "
            f"{self._poll_interval:g} s, which costs CPU on big trees)")

    def _attached(self, reg: _Reg, mode: Mode | None, notes: list[str], limit: int | None) -> None:
        if reg.cancelled:
            return
        reg.mode = mode
        reg.moving = False
        if limit is not None:
            self._warn_limit(reg.cwd, limit)
        for note in notes:
            self._warn_once(note)

    def _on_limit_root(self, root: str, err: int) -> None:
        """The inotify limit was hit after `root` was being watched (a new directory, or a
        rescan): move the apps using it to polling rather than leave part of their tree blind."""
        for reg in list(self._regs.values()):
            if reg.mode == "inotify" and not reg.moving and root in reg.roots:
                reg.moving = True
                self._warn_limit(reg.cwd, err)
                self._worker.submit(functools.partial(self._attach, reg, "polling", leave="inotify"))

    def _on_ready(self, reg: _Reg, fwd: _Forwarder) -> None:
        paths = fwd.take()
        if reg.cancelled:
            return
        now = self._loop.time()
        if now < reg.muted_until:
            return
        if reg.first is None:
            reg.first = now
        reg.last = now
        for p in paths:
            if len(reg.pending) >= MAX_PATHS:
                break
            reg.pending.add(p)
        # One timer per burst, re-armed when it fires early, rather than one per event.
        if reg.timer is None:
            reg.timer = self._loop.call_later(reg.quiet, self._due, reg)

    def _due(self, reg: _Reg) -> None:
        reg.timer = None
        if reg.cancelled or reg.first is None:
            return
        now = self._loop.time()
        at = min(reg.last + reg.quiet, reg.first + reg.cap)
        if now + 0.001 < at:
            reg.timer = self._loop.call_later(at - now, self._due, reg)
            return
        paths = sorted(reg.pending)
        reg.pending = set()
        reg.first = None
        reg.on_change(paths)

    # ---- worker side ------------------------------------------------------------------------------

    def _attach(self, reg: _Reg, mode: Mode, leave: Mode | None = None) -> None:
        if reg.cancelled:
            return
        try:
            if leave is not None:
                self._leave_mode(leave, reg)
            if reg.rules is None:
                self._prepare(reg)
            result = self._attach_roots(reg, mode)
        except Exception as e:
            log.exception("watch: cannot watch %s", reg.cwd)
            result = (None, [f"watching {reg.cwd} failed: {e}"], None)
        self._post(self._attached, reg, *result)

    def _prepare(self, reg: _Reg) -> None:
        reg.rules = Rules.build(reg.cwd, reg.ignore, reg.extra, reg.roots)
        notify = functools.partial(self._post, self._on_ready, reg)
        reg.forwarders = tuple(_Forwarder(root, os.path.isfile(root), reg.rules, notify)
                               for root in reg.roots)

    def _attach_roots(self, reg: _Reg, mode: Mode) -> tuple[Mode | None, list[str], int | None]:
        notes: list[str] = []
        limit: int | None = None
        if mode == "inotify":
            try:
                observer = self._observer("inotify")
            except OSError as e:
                if e.errno in LIMIT_ERRNOS:
                    limit = e.errno
                else:
                    notes.append(f"watching {reg.cwd} with polling: native file events are "
                                 f"unavailable ({e.strerror or e})")
            else:
                try:
                    if self._join_all(observer, "inotify", reg, notes):
                        return "inotify", notes, None
                    return None, notes, None
                except OSError as e:
                    # Half a tree watched would silently miss changes: all of it polls instead.
                    self._leave_mode("inotify", reg)
                    limit = e.errno
        observer = self._observer("polling")
        return ("polling" if self._join_all(observer, "polling", reg, notes) else None), notes, limit

    def _join_all(self, observer: BaseObserver, mode: Mode, reg: _Reg, notes: list[str]) -> int:
        joined = 0
        for fwd in reg.forwarders:
            if reg.cancelled:
                break
            if not os.path.exists(fwd.root):
                notes.append(f"watching {reg.cwd}: {fwd.root} does not exist, so it is not watched")
                continue
            try:
                self._join(observer, mode, fwd.root, reg, fwd)
                joined += 1
            except OSError as e:
                if mode == "inotify" and e.errno in LIMIT_ERRNOS:
                    raise
                notes.append(f"watching {reg.cwd}: cannot watch {fwd.root}: {e.strerror or e}")
        return joined

    def _join(self, observer: BaseObserver, mode: Mode, root: str, reg: _Reg, fwd: _Forwarder) -> None:
        assert reg.rules is not None
        group = self._groups.get((mode, root))
        if group is None:
            group = _Group(root, {reg: fwd}, (reg.rules,), is_file=fwd.is_file)
            self._set_group(mode, group)
            try:
                group.watch = observer.schedule(fwd, root, recursive=True, event_filter=_EVENT_FILTER)
            except BaseException:
                self._drop_group(mode, group)
                raise
            return
        assert group.watch is not None
        group.members[reg] = fwd
        known = any(r.signature == reg.rules.signature for r in group.rules)
        group.rules = _distinct([*group.rules, reg.rules])
        if known or mode == "polling":
            # Polling re-reads the group's rules at every scan, so nothing to redo there.
            observer.add_handler_for_watch(fwd, group.watch)
            return
        # The tree was walked with the other members' rules and may have skipped directories
        # this app wants: walk it again with the union.
        handlers = list(group.members.values())
        with contextlib.suppress(KeyError):
            observer.unschedule(group.watch)
        try:
            group.watch = observer.schedule(handlers[0], root, recursive=True, event_filter=_EVENT_FILTER)
        except OSError as e:
            del group.members[reg]
            self._drop_group(mode, group)
            if e.errno in LIMIT_ERRNOS:
                self._post(self._on_limit_root, root, e.errno)
            else:
                log.warning("watch: lost the watch on %s: %s", root, e)
            raise
        for h in handlers[1:]:
            observer.add_handler_for_watch(h, group.watch)

    def _leave_mode(self, mode: Mode, reg: _Reg) -> None:
        observer = self._observers.get(mode)
        for fwd in reg.forwarders:
            group = self._groups.get((mode, fwd.root))
            if group is None or group.members.pop(reg, None) is None:
                continue
            if not group.members:
                self._drop_group(mode, group)
                if observer is not None and group.watch is not None:
                    with contextlib.suppress(KeyError):
                        observer.unschedule(group.watch)
            else:
                group.rules = _distinct(r.rules for r in group.members if r.rules is not None)
                if observer is not None and group.watch is not None:
                    with contextlib.suppress(KeyError):
                        observer.remove_handler_for_watch(fwd, group.watch)

    def _leave_all(self, reg: _Reg) -> None:
        self._leave_mode("inotify", reg)
        self._leave_mode("polling", reg)

    def _set_group(self, mode: Mode, group: _Group) -> None:
        self._groups[(mode, group.root)] = group
        self._poll_groups = tuple(g for (m, _), g in self._groups.items() if m == "polling")

    def _drop_group(self, mode: Mode, group: _Group) -> None:
        if self._groups.get((mode, group.root)) is group:
            del self._groups[(mode, group.root)]
        self._poll_groups = tuple(g for (m, _), g in self._groups.items() if m == "polling")

    def _observer(self, mode: Mode) -> BaseObserver:
        observer = self._observers.get(mode)
        if observer is None:
            observer = self._new_observer(mode)
            observer.start()
            self._observers[mode] = observer
        return observer

    def _new_observer(self, mode: Mode) -> BaseObserver:
        if mode == "polling":
            if self._polling_factory is not None:
                return self._polling_factory()
            return PollingObserverVFS(os.stat, self._poll_listdir, polling_interval=self._poll_interval)
        if self._inotify_factory is not None:
            return self._inotify_factory()
        pruning = pruning_inotify_observer()
        if pruning is not None:
            return pruning(self._inotify_hooks)
        from watchdog.observers import Observer
        return Observer()

    def _shutdown(self) -> None:
        observers = list(self._observers.values())
        self._observers.clear()
        self._groups.clear()
        self._poll_groups = ()
        for observer in observers:
            observer.stop()
        for observer in observers:
            with contextlib.suppress(RuntimeError):
                observer.join(timeout=5)

    # ---- observer threads -------------------------------------------------------------------------

    def _inotify_hooks(self, path: str) -> tuple[Callable[[bytes], bool], Callable[[OSError], None]]:
        """For the pruning inotify emitter (called in the worker, inside `schedule`): which
        directories to skip, and what to do when the limit is hit later on."""
        group = self._groups.get(("inotify", path))
        if group is None:
            return (lambda _p: False), (lambda _e: None)

        def prune(p: bytes) -> bool:
            return group.prunes(os.fsdecode(p))

        def on_limit(e: OSError) -> None:
            self._post(self._on_limit_root, group.root, e.errno)

        return prune, on_limit

    def _poll_listdir(self, path: str | None) -> Iterator[os.DirEntry[str]]:
        """os.scandir for the polling observer, minus ignored entries: an ignored directory is
        never walked and an ignored file never stat'ed at each scan."""
        with os.scandir(path) as it:
            entries = list(it)
        groups = self._poll_groups
        if not groups:
            return iter(entries)
        top = os.fsdecode(path or ".")
        kept = []
        for entry in entries:
            child = os.path.join(top, entry.name)
            # Watched roots can nest (one app watches the project, another a file in it): an
            # entry is skipped only if every root that contains it ignores it.
            covering = [g for g in groups if under(child, g.root)]
            if not covering or not all(g.prunes(child) for g in covering):
                kept.append(entry)
        return iter(kept)
