"""The daemon's state on disk, replaced atomically as apps change, read back by the next daemon
after a crash so it can re-adopt live processes."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pyvm2.errors import Pyvm2Error

#: Changes within this window are written once.
DEBOUNCE_S = 0.1
#: After a failed write (a full disk), the next try comes this much later, until one lands.
RETRY_S = 1.0


class NotSaved(Pyvm2Error):
    """A change is in effect but the state file could not be written: a daemon that died now
    would come back to the state before it."""
FORMAT = 1


def atomic_write(path: str, data: bytes, *, keep_backup: bool = False, fsync: bool = True) -> None:
    """Write data to path so that a reader sees the old or the new content, never a mix."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    if keep_backup:
        # the old content becomes the backup by a second name: `path` itself is never missing
        bak_tmp = f"{path}.bak.{os.getpid()}.tmp"
        try:
            os.link(path, bak_tmp)
            os.replace(bak_tmp, path + ".bak")
        except FileNotFoundError:
            pass
        except OSError:
            try:
                os.unlink(bak_tmp)
            except OSError:
                pass
    os.replace(tmp, path)
    if fsync:
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)


#: One write of the state at a time: the temporary files are named after the process.
_WRITE_LOCK = threading.Lock()


def write_state(path: str, data: bytes) -> None:
    """The state file, then a second copy of it (`.bak`, another inode): if the first is ever
    damaged in place, the next daemon reads the copy and loses nothing. The copy is not synced:
    after a power loss the synced file is the one that counts. Hold _WRITE_LOCK."""
    atomic_write(path, data)
    try:
        atomic_write(path + ".bak", data, fsync=False)
    except OSError:
        pass


def _env_ref(env: dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]


def _document(next_id: int, envs: dict[str, dict[str, str]], procs: list[str]) -> bytes:
    head = json.dumps({"format": FORMAT, "next_id": next_id, "envs": envs},
                      separators=(",", ":"))
    return (head[:-1] + ',"procs":[' + ",".join(procs) + "]}").encode()


def pack(entries: list[dict[str, Any]], next_id: int) -> bytes:
    """Entries carry a `base_env` each; identical environments are stored once."""
    envs: dict[str, dict[str, str]] = {}
    out = []
    for e in entries:
        e = dict(e)
        env = e.pop("base_env", {}) or {}
        key = _env_ref(env)
        envs.setdefault(key, env)
        e["env_ref"] = key
        out.append(json.dumps(e, separators=(",", ":")))
    return _document(next_id, envs, out)


class Entries:
    """`pack` for the live registry, each instance's entry encoded once per change: the state
    file of thousands of apps is written after every change, and most of them did not change.
    An entry is encoded again when its key (everything its state holds, compared by value)
    differs from the one it was encoded with."""

    def __init__(self) -> None:
        #: pm_id -> (key, env_ref, base_env, the entry's JSON)
        self._done: dict[int, tuple[tuple[Any, ...], str, dict[str, str], str]] = {}

    def pack(self, items: Iterable[tuple[int, tuple[Any, ...], Callable[[], dict[str, Any]]]],
             next_id: int) -> bytes:
        """items: (pm_id, key, the entry) of every instance, in order."""
        envs: dict[str, dict[str, str]] = {}
        texts: list[str] = []
        done: dict[int, tuple[tuple[Any, ...], str, dict[str, str], str]] = {}
        for pm_id, key, state in items:
            entry = self._done.get(pm_id)
            if entry is None or entry[0] != key:
                e = state()
                env = e.pop("base_env", {}) or {}
                ref = _env_ref(env)
                e["env_ref"] = ref
                entry = (key, ref, env, json.dumps(e, separators=(",", ":")))
            done[pm_id] = entry
            envs.setdefault(entry[1], entry[2])
            texts.append(entry[3])
        self._done = done
        return _document(next_id, envs, texts)


def unpack(data: bytes) -> tuple[list[dict[str, Any]], int]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("unknown state format")
    envs = doc.get("envs") or {}
    procs = []
    for e in doc.get("procs") or []:
        e = dict(e)
        e["base_env"] = envs.get(e.pop("env_ref", None), {})
        procs.append(e)
    return procs, int(doc.get("next_id") or 0)


class Journal:
    """Marks the state dirty on every change and writes it soon after, off the event loop."""

    def __init__(self, path: str, collect: Callable[[], bytes], log: Callable[[str], None]) -> None:
        self.path = path
        self.collect = collect
        self.log = log
        self._handle: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task | None = None
        self._again = False
        #: states are numbered as they are collected; one older than the last written is dropped
        self._collected = 0
        self._landed = 0
        #: why the last write failed (its OSError), None once one lands
        self.error: OSError | None = None

    def changed(self, delay: float = DEBOUNCE_S) -> None:
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        if self._writing is not None and not self._writing.done():
            self._again = True
            return
        self._writing = asyncio.get_running_loop().create_task(self._write(*self._collect()))

    def _collect(self) -> tuple[int, bytes]:
        self._collected += 1
        return self._collected, self.collect()

    def _put(self, seq: int, data: bytes) -> None:
        """Write state number `seq`, unless a later one is on disk already (a shutdown's flush
        may overtake a write still waiting for its thread)."""
        with _WRITE_LOCK:
            if seq <= self._landed:
                return
            write_state(self.path, data)
            self._landed = seq

    async def _write(self, seq: int, data: bytes) -> None:
        """Write `data`; on failure keep the state in memory and try again every RETRY_S."""
        try:
            await asyncio.to_thread(self._put, seq, data)
            if self.error is not None:
                self.log(f"state file {self.path} written again")
            self.error = None
        except OSError as e:
            if self.error is None:
                self.log(f"cannot write state file {self.path}: {e.strerror or e}; "
                         f"retrying every {RETRY_S:.0f}s")
            self.error = e
        if self.error is not None:
            self._again = False
            self.changed(RETRY_S)
        elif self._again:
            self._again = False
            self.changed()

    async def persist(self, what: str = "the change") -> None:
        """Write now and wait for it, so that a command's reply means its effect is on disk (a
        kill -9 right after `pyvm2 stop` must not bring the app back). Raises NotSaved if the
        write failed; the journal keeps retrying."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # writes land in the order their states were collected: wait until none is in flight
        # (another command may start one while this one waits), then collect and write
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)
        self._writing = asyncio.get_running_loop().create_task(self._write(*self._collect()))
        await asyncio.shield(self._writing)
        if self.error is not None:
            raise self.not_saved(what)

    def not_saved(self, what: str) -> NotSaved:
        """The error for a command whose effect the last write failed to record."""
        e = self.error
        why = (e.strerror or str(e)) if e is not None else "unknown error"
        folder = os.path.dirname(self.path) or "."
        if e is not None and e.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = f"free space on the file system of {folder} (df -h {folder})"
        elif e is not None and e.errno in (errno.EMFILE, errno.ENFILE):
            fix = ("stop some apps, or raise the daemon's limit of open files (ulimit -n, or "
                   "LimitNOFILE= in the systemd unit) and run pyvm2 update")
        else:
            fix = f"make {folder} writable again"
        return NotSaved(
            f"{what} is in effect, but the state file {self.path} cannot be written ({why}): "
            "if the daemon stopped now, the next one would undo it",
            f"{fix}; the daemon keeps the new state in memory and writes it as soon as it can "
            f"(it retries every {RETRY_S:.0f}s)")

    def flush(self) -> OSError | None:
        """Write now, synchronously (at shutdown); the error if that failed."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        try:
            self._put(*self._collect())
        except OSError as e:
            self.log(f"cannot write state file {self.path}: {e.strerror or e}")
            self.error = e
            self.changed(RETRY_S)
            return e
        self.error = None
        return None

    def read(self) -> tuple[list[dict[str, Any]], int]:
        """The last state written. A damaged file is set aside (`state.json.damaged-<time>`,
        for whoever wants to look at it) and its copy, `state.json.bak`, is read."""
        for path in (self.path, self.path + ".bak"):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            except OSError as e:
                self.log(f"cannot read state file {path}: {e.strerror or e}")
                continue
            try:
                state = unpack(data)
            except (ValueError, TypeError, AttributeError, RecursionError) as e:
                self._set_aside(path, f"{e}"[:200])
                continue
            if path != self.path:
                self.log(f"using the previous state file {path}")
            return state
        return [], 0

    def _set_aside(self, path: str, why: str) -> None:
        aside = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(path, aside)
            self.log(f"state file {path} is damaged ({why}); moved to {aside}")
        except OSError as e:
            self.log(f"state file {path} is damaged ({why}) and cannot be moved: {e.strerror or e}")
