"""Watch mode on real directories: what counts as a change, what is ignored, debounce, limits."""

from __future__ import annotations

import asyncio
import errno
import functools
import glob
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers.api import BaseObserver, EventEmitter
from watchdog.observers.polling import PollingObserver

from pyvm2.daemon import watch
from pyvm2.daemon.watch import Watcher
from pyvm2.daemon.watch_rules import is_ignored

# Longer than the quiet period plus scheduling slack: a second callback for the same burst
# would have arrived by then. Only used to assert that nothing more happens.
NOTHING_MORE_S = 0.8
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))
    return wrapper


class Harness:
    """A Watcher on the running loop, recording callbacks (with their loop time) and warnings."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.calls: list[tuple[int, list[str], float]] = []
        self.warnings: list[str] = []
        self.watcher = Watcher(self.loop, self.warnings.append, **kwargs)

    async def add(self, cwd: Path, key: int = 1, *, wait: bool = True, **kwargs: Any) -> None:
        options: dict[str, Any] = dict(paths=True, ignore=(), extra_ignore=(), delay_ms=0)
        options.update(kwargs)
        self.watcher.add(key, cwd=str(cwd), on_change=functools.partial(self._record, key), **options)
        if wait:
            await self.until(lambda: self.watcher.is_watching(key), f"app {key} being watched")

    def _record(self, key: int, paths: list[str]) -> None:
        self.calls.append((key, paths, self.loop.time()))

    def paths(self, key: int = 1) -> list[list[str]]:
        return [p for k, p, _ in self.calls if k == key]

    async def until(self, cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        deadline = self.loop.time() + timeout
        while not cond():
            if self.loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; calls={self.calls} "
                                     f"warnings={self.warnings}")
            await asyncio.sleep(0.02)

    async def calls_for(self, key: int = 1, n: int = 1, timeout: float = 5.0) -> list[list[str]]:
        await self.until(lambda: len(self.paths(key)) >= n, f"{n} callback(s) for app {key}", timeout)
        return self.paths(key)

    def close(self) -> None:
        self.watcher.close()


def write(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def inotify_watch_count() -> int:
    """Inotify watches held by this process, from /proc (one "inotify wd:" line per watch)."""
    total = 0
    for info in glob.glob("/proc/self/fdinfo/*"):
        try:
            with open(info) as f:
                total += sum(line.startswith("inotify wd:") for line in f)
        except OSError:
            continue
    return total


class LimitReached(BaseObserver):
    """An inotify observer at the kernel's limit: every schedule fails with `err`."""

    def __init__(self, err: int) -> None:
        super().__init__(EventEmitter)
        self.err = err

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(self.err, os.strerror(self.err))


class SlowToSchedule(PollingObserver):
    """Scheduling that takes a second, as inotify does on a 100,000-file tree."""

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return super().schedule(*args, **kwargs)


# ---- the ignore rules, as a table ----------------------------------------------------------------

@pytest.mark.parametrize(("path", "ignore", "extra", "ignored"), [
    ("app.py", (), (), False),
    ("src/pkg/mod.py", (), (), False),
    ("logs/app.log", (), (), True),
    ("app.sqlite-wal", (), (), True),
    ("db.sqlite3-journal", (), (), True),
    ("__pycache__/x.cpython-311.pyc", (), (), True),
    (".git/HEAD", (), (), True),
    ("src/node_modules/a.js", (), (), True),
    (".venv/lib/site.py", (), (), True),
    (".x.py.swp", (), (), True),
    ("x.py.tmp", (), (), True),
    ("x.py~", (), (), True),
    ("4913", (), (), True),
    ("out.txt", (), ("/p/out.txt",), True),
    ("out.txt.1", (), ("/p/out.txt",), True),          # rotated
    ("out.txt.2024-05-01.gz", (), ("/p/out.txt",), True),
    ("out.txt.py", (), ("/p/out.txt",), False),        # a real sibling, not a rotation
    ("home/dump.json", (), ("/p/home",), True),        # PYVM2_HOME inside cwd
    ("logs/a.txt", ("logs/*",), (), True),
    ("logs/deep/a.txt", ("logs/*",), (), True),        # logs/deep matches, so all below it
    ("sub/logs/a.txt", ("logs/*",), (), False),        # a "/" anchors the glob at cwd
    ("x/y/z.csv", ("*.csv",), (), True),               # no "/": any depth
    ("data/deep/z.py", ("data/**",), (), True),
    ("a/tmp/q.py", ("tmp",), (), True),                # a plain name: any component
    ("tmpfile.py", ("tmp",), (), False),
    ("src/gen/a.py", ("src/gen/",), (), True),
    ("lib/src/a.py", ("./src",), (), False),           # "./" anchors too
    ("a/b/c.py", ("a/**/c.py",), (), True),
    ("/elsewhere/cache/x", ("/elsewhere/cache",), (), True),
])
def test_ignore_rules(path: str, ignore: tuple[str, ...], extra: tuple[str, ...], ignored: bool) -> None:
    assert is_ignored(path, cwd="/p", ignore=ignore, extra_ignore=extra) is ignored


def test_always_ignored_names_apply_below_the_watched_path_only() -> None:
    # Watching vendor/mylib on purpose must work even though "vendor" is always ignored.
    assert is_ignored("vendor/mylib/a.php", cwd="/p", root="vendor/mylib") is False
    assert is_ignored("vendor/mylib/a.php", cwd="/p") is True


# ---- changes that count, once --------------------------------------------------------------------

@run_async
async def test_a_file_write_gives_one_callback_naming_it(tmp_path: Path) -> None:
    h = Harness()
    try:
        await h.add(tmp_path)
        write(tmp_path / "src" / "app.py")
        assert await h.calls_for() == [["src/app.py"]]
        await asyncio.sleep(NOTHING_MORE_S)
        assert h.paths() == [["src/app.py"]]
        assert h.watcher.mode(1) == "inotify" or not sys.platform.startswith("linux")
    finally:
        h.close()


@run_async
async def test_thirty_files_written_at_once_give_one_callback(tmp_path: Path) -> None:
    h = Harness()
    try:
        await h.add(tmp_path)
        for i in range(30):
            write(tmp_path / f"m{i:02d}.py")
        (paths,) = await h.calls_for()
        assert len(paths) == watch.MAX_PATHS and paths == sorted(paths)
        assert set(paths) <= {f"m{i:02d}.py" for i in range(30)}
        await asyncio.sleep(NOTHING_MORE_S)
        assert len(h.calls) == 1
    finally:
        h.close()


@run_async
async def test_files_written_by_apps_databases_tools_and_the_daemon_never_count(tmp_path: Path) -> None:
    for d in (".git", "node_modules", "__pycache__", "logs"):
        (tmp_path / d).mkdir()
    home = tmp_path / "pyvm2-home"
    home.mkdir()
    h = Harness()
    try:
        await h.add(tmp_path, extra_ignore=[str(home), str(tmp_path / "out.txt")])
        write(tmp_path / "logs" / "app.log")
        write(tmp_path / "app.sqlite")  # counts: it is the database file itself...
        await h.calls_for()
        h.calls.clear()
        write(tmp_path / "app.sqlite-wal")  # ...but not its write-ahead log
        write(tmp_path / "app.sqlite-shm")
        write(tmp_path / "__pycache__" / "x.cpython-311.pyc")
        write(tmp_path / ".git" / "HEAD")
        write(tmp_path / ".git" / "refs" / "heads" / "main")
        write(tmp_path / "node_modules" / "a.js")
        write(tmp_path / "src" / "node_modules" / "dep" / "b.js")  # created after the watch began
        write(tmp_path / "out.txt")
        write(tmp_path / "out.txt.1")
        write(tmp_path / "pyvm2-home" / "dump.pm2")
        # The sentinel is written last, in the same burst: if any write above counted, it would
        # be named next to it.
        write(tmp_path / "sentinel.py")
        assert await h.calls_for() == [["sentinel.py"]]
    finally:
        h.close()


@run_async
async def test_an_editor_atomic_save_is_one_change_to_the_saved_file(tmp_path: Path) -> None:
    write(tmp_path / "x.py", "old")
    h = Harness()
    try:
        await h.add(tmp_path)
        write(tmp_path / ".x.py.swp", "swap")
        write(tmp_path / "x.py.tmp", "new")
        os.replace(tmp_path / "x.py.tmp", tmp_path / "x.py")
        (tmp_path / ".x.py.swp").unlink()
        assert await h.calls_for() == [["x.py"]]
        # vim with writebackup: rename to x.py~, write x.py, delete the backup.
        os.replace(tmp_path / "x.py", tmp_path / "x.py~")
        write(tmp_path / "x.py", "newer")
        (tmp_path / "x.py~").unlink()
        assert await h.calls_for(n=2) == [["x.py"], ["x.py"]]
        await asyncio.sleep(NOTHING_MORE_S)
        assert len(h.calls) == 2
    finally:
        h.close()


@run_async
async def test_ignore_watch_globs_and_names(tmp_path: Path) -> None:
    h = Harness()
    try:
        await h.add(tmp_path, ignore=["logs/*", "*.csv", "data/**", "tmp"])
        write(tmp_path / "logs" / "a.txt")
        write(tmp_path / "x" / "y.csv")
        write(tmp_path / "data" / "deep" / "z.py")
        write(tmp_path / "a" / "tmp" / "q.py")
        write(tmp_path / "tmp" / "r.py")
        write(tmp_path / "sentinel.py")
        assert await h.calls_for() == [["sentinel.py"]]
    finally:
        h.close()


@run_async
async def test_only_the_listed_paths_are_watched(tmp_path: Path) -> None:
    write(tmp_path / "app.py")
    (tmp_path / "src").mkdir()
    h = Harness()
    try:
        await h.add(tmp_path, paths=["src", "app.py"])
        write(tmp_path / "other" / "x.py")
        write(tmp_path / "notes.txt")
        write(tmp_path / "src" / "a.py")
        write(tmp_path / "app.py", "changed")
        assert await h.calls_for() == [["app.py", "src/a.py"]]
    finally:
        h.close()


@run_async
async def test_a_missing_watch_path_is_reported_and_the_rest_is_watched(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    h = Harness()
    try:
        await h.add(tmp_path, paths=["src", "nope"])
        assert h.warnings == [f"watching {tmp_path}: {tmp_path / 'nope'} does not exist, so it is not watched"]
        write(tmp_path / "src" / "a.py")
        assert await h.calls_for() == [["src/a.py"]]
    finally:
        h.close()


# ---- debounce ------------------------------------------------------------------------------------

@run_async
async def test_the_callback_waits_for_quiet_or_for_watch_delay(tmp_path: Path) -> None:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    slow.mkdir()
    h = Harness()
    try:
        await h.add(fast, key=1)
        await h.add(slow, key=2, delay_ms=800)
        t0 = h.loop.time()
        write(fast / "a.py")
        write(slow / "a.py")
        await h.calls_for(1)
        await h.calls_for(2)
        after = {k: t - t0 for k, _, t in h.calls}
        # lower bounds only: a loaded machine delays callbacks, it never brings them forward
        assert watch.QUIET_S - 0.01 <= after[1] < after[2], after
        assert after[2] >= 0.79, after
    finally:
        h.close()


@pytest.mark.timeout(60)
@run_async
async def test_a_tree_written_without_pause_still_fires_two_seconds_after_its_first_event(tmp_path: Path) -> None:
    h = Harness()
    try:
        await h.add(tmp_path)
        t0 = last_write = h.loop.time()
        gap = 0.0
        for i in range(87):  # a write every 0.03 s for 2.6 s: never QUIET_S of quiet
            now = h.loop.time()
            gap = max(gap, now - last_write)
            last_write = now
            write(tmp_path / f"gen{i}.py")
            await asyncio.sleep(0.03)
        await h.calls_for()
        if gap >= watch.QUIET_S:
            pytest.skip(f"the machine paused the writer for {gap:.2f} s, longer than the quiet "
                        "window: the writes were not continuous")
        first = h.calls[0][2]
        assert first - t0 >= watch.MAX_WAIT_S - 0.05, first - t0
        assert first < last_write, "the callback waited for the writes to stop"
    finally:
        h.close()


# ---- remove, sharing -----------------------------------------------------------------------------

@run_async
async def test_remove_stops_callbacks_even_for_a_burst_in_progress(tmp_path: Path) -> None:
    h = Harness()
    try:
        await h.add(tmp_path)
        write(tmp_path / "a.py")
        await h.calls_for()
        write(tmp_path / "b.py")
        await asyncio.sleep(watch.QUIET_S / 3)  # the burst has reached the loop; its timer runs
        h.watcher.remove(1)
        assert not h.watcher.is_watching(1)
        write(tmp_path / "c.py")
        await asyncio.sleep(NOTHING_MORE_S)
        assert h.paths() == [["a.py"]]
    finally:
        h.close()


@run_async
async def test_instances_sharing_a_directory_each_get_called_and_leave_independently(tmp_path: Path) -> None:
    h = Harness()
    try:
        await h.add(tmp_path, key=1)
        await h.add(tmp_path, key=2)
        write(tmp_path / "a.py")
        await h.calls_for(1)
        await h.calls_for(2)
        h.watcher.remove(1)
        write(tmp_path / "b.py")
        assert await h.calls_for(2, n=2) == [["a.py"], ["b.py"]]
        assert h.paths(1) == [["a.py"]]
    finally:
        h.close()


@run_async
async def test_apps_with_different_ignores_on_one_directory_each_see_their_own_changes(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "worker").mkdir()
    h = Harness()
    try:
        await h.add(tmp_path, key=1, ignore=["worker"])
        await h.add(tmp_path, key=2, ignore=["web"])
        write(tmp_path / "web" / "views.py")
        write(tmp_path / "worker" / "jobs.py")
        assert await h.calls_for(1) == [["web/views.py"]]
        assert await h.calls_for(2) == [["worker/jobs.py"]]
    finally:
        h.close()


# ---- inotify limits ------------------------------------------------------------------------------

@pytest.mark.parametrize(("err", "setting"), [(errno.ENOSPC, "max_user_watches=524288"),
                                              (errno.EMFILE, "max_user_instances=1024")])
@run_async
async def test_the_inotify_limit_falls_back_to_polling_and_warns_once(tmp_path: Path, err: int, setting: str) -> None:
    h = Harness(inotify_observer=functools.partial(LimitReached, err), poll_interval=0.2)
    try:
        await h.add(tmp_path, key=1)
        await h.add(tmp_path, key=2)  # a second instance of the app: no second warning
        assert h.watcher.mode(1) == h.watcher.mode(2) == "polling"
        assert len(h.warnings) == 1
        assert h.warnings[0].startswith(f"watching {tmp_path} with polling: inotify limit reached; "
                                        f"raise it with: sysctl fs.inotify.{setting}")
        write(tmp_path / "a.py")
        write(tmp_path / "node_modules" / "x.js")
        assert await h.calls_for(1) == [["a.py"]]
        assert await h.calls_for(2) == [["a.py"]]
    finally:
        h.close()


@linux_only
@run_async
async def test_the_limit_reached_deep_in_a_tree_is_not_silently_half_watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from watchdog.observers.inotify_c import InotifyFD

    real = InotifyFD.add_callback

    def add_callback(self: InotifyFD, path: bytes, *args: Any) -> Any:
        if path.endswith(b"/deep"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return real(self, path, *args)

    for d in ("a/b/deep", "a/c", "d"):
        (tmp_path / d).mkdir(parents=True)
    monkeypatch.setattr(InotifyFD, "add_callback", add_callback)
    h = Harness(poll_interval=0.2)
    try:
        before = inotify_watch_count()
        await h.add(tmp_path)
        assert h.watcher.mode(1) == "polling"
        assert len(h.warnings) == 1 and "max_user_watches" in h.warnings[0]
        assert inotify_watch_count() <= before, "the watches made before the failure must be released"
        write(tmp_path / "a" / "b" / "deep" / "x.py")
        assert await h.calls_for() == [["a/b/deep/x.py"]]
    finally:
        h.close()


@linux_only
@run_async
async def test_the_limit_reached_by_a_new_directory_moves_the_app_to_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from watchdog.observers.inotify_c import InotifyFD

    real = InotifyFD.add_callback

    def add_callback(self: InotifyFD, path: bytes, *args: Any) -> Any:
        if path.endswith(b"/later"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return real(self, path, *args)

    monkeypatch.setattr(InotifyFD, "add_callback", add_callback)
    h = Harness(poll_interval=0.2)
    try:
        await h.add(tmp_path)
        assert h.watcher.mode(1) == "inotify"
        (tmp_path / "later").mkdir()
        await h.until(lambda: h.watcher.mode(1) == "polling", "the switch to polling")
        assert len(h.warnings) == 1 and "max_user_watches" in h.warnings[0]
        h.calls.clear()
        write(tmp_path / "later" / "x.py")
        await h.until(lambda: ["later/x.py"] in h.paths(), "a change in the new directory")
    finally:
        h.close()


@linux_only
@run_async
async def test_ignored_directories_get_no_inotify_watches(tmp_path: Path) -> None:
    for i in range(100):
        (tmp_path / "node_modules" / f"pkg{i}" / "lib").mkdir(parents=True)
    for i in range(50):
        (tmp_path / ".venv" / "lib" / f"mod{i}").mkdir(parents=True)
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    h = Harness()
    try:
        before = inotify_watch_count()
        await h.add(tmp_path)
        added = inotify_watch_count() - before
        assert added < 10, f"{added} watches: the ignored trees were descended into"
        write(tmp_path / "src" / "pkg" / "m.py")
        assert await h.calls_for() == [["src/pkg/m.py"]]
    finally:
        h.close()


# ---- the loop never waits for a tree walk --------------------------------------------------------

@run_async
async def test_scheduling_runs_off_the_loop(tmp_path: Path) -> None:
    h = Harness(inotify_observer=SlowToSchedule)
    try:
        await h.add(tmp_path, wait=False)
        assert h.watcher.is_watching(1) is False  # add returned before the slow schedule() did
        fired = h.loop.create_future()
        h.loop.call_later(0.01, lambda: fired.set_result(h.watcher.is_watching(1)))
        assert await fired is False  # the timer ran while schedule() was still busy
        await h.until(lambda: h.watcher.is_watching(1), "the slow schedule to finish")
    finally:
        h.close()


@pytest.mark.timeout(60)
@run_async
async def test_add_on_a_20000_file_tree_returns_at_once_and_the_loop_stays_responsive(tmp_path: Path) -> None:
    # Hard links to one file: 20,000 names to walk and watch, without allocating 20,000 inodes
    # (which takes seconds on a busy disk).
    source = tmp_path / "source.py"
    source.touch()
    for d in range(2000):
        sub = tmp_path / f"d{d // 100}" / f"e{d}"
        sub.mkdir(parents=True)
        for f in range(10):
            os.link(source, sub / f"f{f}.py")
    h = Harness()
    try:
        await h.add(tmp_path, wait=False)
        assert h.watcher.is_watching(1) is False  # add returned before the tree walk did
        fired = h.loop.create_future()
        h.loop.call_soon(lambda: fired.set_result(h.watcher.is_watching(1)))
        assert await fired is False  # the loop ran a callback while the tree was being walked
        await h.until(lambda: h.watcher.is_watching(1), "the tree to be watched", timeout=30)
        write(tmp_path / "d7" / "e700" / "f3.py", "changed")
        assert await h.calls_for() == [["d7/e700/f3.py"]]
    finally:
        h.close()
