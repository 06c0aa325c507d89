"""What apps tell the daemon about themselves: the notify protocol (`READY=1`, `STATUS=`,
`STOPPING=1`, `MAINPID=` datagrams on `NOTIFY_SOCKET`, any language) and Node's IPC channel
(`process.send('ready')`: one JSON value per line on `NODE_CHANNEL_FD`).

One datagram socket serves the whole daemon. The kernel stamps each datagram with its sender's
pid (SO_PASSCRED), and a message counts only when that pid belongs to the process tree of a run
that registered: the run's session (every run is a session leader), else its ancestry. Anything
else is dropped, and a flood costs a bounded number of reads per turn of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable

#: Datagrams read per wake-up; the rest wait for the next turn of the loop.
MAX_PER_TICK = 64
#: A datagram is cut at this size (systemd's own limit is about the same).
MAX_DATAGRAM = 4096
#: An IPC line longer than this is dropped (the channel is meant for short messages).
MAX_IPC_LINE = 64 * 1024
#: Dropped messages are logged at most this often.
DROP_LOG_S = 10.0
#: How far up its ancestry a sender is looked for (a process that left the run's session).
MAX_ANCESTRY = 32

_UCRED = struct.Struct("3i")

#: Called with the message's fields, e.g. {"READY": "1", "STATUS": "warming up"}.
Handler = Callable[[dict[str, str]], None]


def parse(data: bytes) -> dict[str, str]:
    """`KEY=value` lines, as sd_notify sends them; lines without `=` are ignored."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Notifier:
    """The daemon's NOTIFY_SOCKET, and which run each sender belongs to."""

    def __init__(self, path: str, log: Callable[[str], None]) -> None:
        self.path = path
        self.log = log
        self._handlers: dict[int, Handler] = {}      # a run's leader pid -> its handler
        self._sock: socket.socket | None = None
        self._dropped = 0
        self._drop_logged = 0.0

    @property
    def active(self) -> bool:
        return self._sock is not None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the socket; if that fails the daemon runs on, and apps get no NOTIFY_SOCKET."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
        except OSError as e:
            sock.close()
            self.log(f"no notify socket at {self.path} ({e.strerror or e}): wait_ready apps "
                     "are ready after listen_timeout, or by Node's process.send('ready')")
            return
        sock.setblocking(False)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._readable)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def register(self, leader: int, handler: Handler) -> None:
        self._handlers[leader] = handler

    def unregister(self, leader: int, handler: Handler) -> None:
        if self._handlers.get(leader) is handler:
            del self._handlers[leader]

    def owner(self, pid: int) -> Handler | None:
        """The handler of the run `pid` belongs to, or None."""
        handlers = self._handlers
        if pid in handlers:
            return handlers[pid]
        with contextlib.suppress(OSError):
            sid = os.getsid(pid)
            if sid in handlers:
                return handlers[sid]
        p: int | None = pid
        for _ in range(MAX_ANCESTRY):
            p = _ppid(p) if p else None
            if not p or p == 1:
                return None
            if p in handlers:
                return handlers[p]
        return None

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(MAX_PER_TICK):
            try:
                data, anc, _flags, _addr = sock.recvmsg(MAX_DATAGRAM,
                                                        socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log(f"notify socket: {e}")
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS \
                        and len(payload) >= _UCRED.size:
                    pid = _UCRED.unpack_from(payload)[0]
            handler = self.owner(pid) if pid else None
            if handler is None:
                self._drop(pid)
                continue
            try:
                handler(parse(data))
            except Exception as e:  # an app's message never takes the daemon down
                self.log(f"notify message from pid {pid} not handled: {e!r}")

    def _drop(self, pid: int | None) -> None:
        self._dropped += 1
        now = time.monotonic()
        if now - self._drop_logged >= DROP_LOG_S:
            self.log(f"notify socket: dropped {self._dropped} message(s) from processes that "
                     f"are not part of an app (last from pid {pid})")
            self._dropped = 0
            self._drop_logged = now


class IpcReader:
    """The daemon's end of a run's Node IPC channel: JSON values, one per line. A message
    `"ready"` (pm2's readiness) becomes {"READY": "1"}; others are ignored."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, handler: Handler) -> None:
        self.fd = fd
        self.loop = loop
        self.handler = handler
        self._buf = b""
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        buf = self._buf + data
        *lines, rest = buf.split(b"\n")
        self._buf = rest if len(rest) <= MAX_IPC_LINE else b""
        for line in lines:
            try:
                msg = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if msg == "ready":
                self.handler({"READY": "1"})
