"""An inotify observer for watch mode that skips ignored directories and reports the watch limit."""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watchdog.observers.api import BaseObserver

#: inotify's answers when its limits are reached: the caller falls back to polling.
LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)

#: For one watched root: which directories to skip, and what to do when the limit is hit later.
Hooks = Callable[[str], tuple[Callable[[bytes], bool], Callable[[OSError], None]]]


@functools.cache
def pruning_inotify_observer() -> Callable[[Hooks], BaseObserver] | None:
    """An inotify observer that does not put watches on ignored directories, and that reports the
    watch limit instead of swallowing it.

    watchdog's own recursive inotify watch descends everywhere (node_modules, .venv, .git: tens of
    thousands of watches) and, since 7.x, ignores errors below the root, ENOSPC included, leaving a
    tree half watched without a word. This subclasses watchdog's InotifyWatchGroup internals, so it
    is used only when they look as expected; otherwise plain watchdog is used and ignored
    directories are filtered per event.
    """
    try:
        from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT
        from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
        from watchdog.observers.inotify_c import InotifyFD
    except Exception:  # not Linux, or a libc without inotify
        return None
    fields = getattr(InotifyWatchGroup, "__dataclass_fields__", {})
    if not (all(hasattr(InotifyWatchGroup, m) for m in ("_add_all_callbacks", "_add_callback",
                                                       "_remove_callbacks", "is_active"))
            and {"_inotify_fd", "_id", "_active_callbacks_by_watch", "_active_callbacks_by_path"} <= set(fields)
            and {"_inotify_fd", "_inotify"} <= set(InotifyEmitter.__init__.__code__.co_names)):
        return None

    @dataclass
    class PrunedWatchGroup(InotifyWatchGroup):
        prune: Callable[[bytes], bool] | None = None
        on_limit: Callable[[OSError], None] | None = None

        def _add_all_callbacks(self, path: bytes) -> None:
            if path != self.path and self.prune is not None and self.prune(path):
                return
            is_dir = os.path.isdir(path)
            self._add_callback(path)
            if not (is_dir and self.is_recursive):
                return
            for top, dirnames, _ in os.walk(path, followlinks=self.follow_symlink):
                kept = []
                for name in dirnames:
                    full = os.path.join(top, name)
                    if self.prune is not None and self.prune(full):
                        continue
                    kept.append(name)
                    if self.follow_symlink or not os.path.islink(full):
                        self._add_callback(full)
                dirnames[:] = kept

        def _add_callback(self, path: bytes) -> None:
            try:
                wd = self._inotify_fd.add_callback(path, self.event_mask, self._callback, self._id)
            except OSError as e:
                if e.errno in LIMIT_ERRNOS:
                    if not self.is_active:
                        # Still inside schedule(): undo the part already watched (it would hold
                        # watches forever) and let the caller fall back to polling.
                        self._remove_callbacks(list(self._active_callbacks_by_watch))
                        raise
                    if self.on_limit is not None:
                        self.on_limit(e)
                    return
                if path == self.path:
                    raise
                return  # a directory that vanished or is unreadable: as watchdog does
            self._active_callbacks_by_path[path] = wd
            self._active_callbacks_by_watch[wd] = path

    class PrunedEmitter(InotifyEmitter):
        def __init__(self, *args: Any, hooks: Hooks, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._hooks = hooks

        def on_thread_start(self) -> None:
            prune, on_limit = self._hooks(self.watch.path)
            self._inotify = PrunedWatchGroup(
                self._inotify_fd, os.fsencode(self.watch.path), is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(), follow_symlink=self.watch.follow_symlink,
                prune=prune, on_limit=on_limit)

    class PrunedInotifyObserver(BaseObserver):
        def __init__(self, hooks: Hooks) -> None:
            self._inotify_fd = InotifyFD()
            self._inotify_fd.start()
            super().__init__(PrunedEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT,
                             inotify_fd=self._inotify_fd, hooks=hooks)

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self._inotify_fd.stop()
            self._inotify_fd.join()

    return PrunedInotifyObserver
