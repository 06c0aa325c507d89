"""The web server's side of the daemon socket: one-shot requests, and one subscription whose
events are fanned out to the browsers' event streams (a bounded queue each)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from pyvm2 import protocol
from pyvm2.errors import DaemonError, NotFound, Pyvm2Error

#: Events held for one browser stream; past this, new ones are dropped and counted.
CLIENT_QUEUE_MAX = 1000
#: How often a lost daemon is looked for again.
RECONNECT_S = 0.5
#: A one-shot request that takes longer than this fails (start and restart wait for settling).
CALL_TIMEOUT_S = 90.0


class Stream:
    """One browser's event stream."""

    def __init__(self, logs: set[str]) -> None:
        self.logs = logs
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(CLIENT_QUEUE_MAX)
        self.dropped = 0

    def push(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1


def _request(req_id: int, cmd: str, args: dict | None = None) -> bytes:
    return protocol.request(req_id, cmd, args)


def sse(kind: str, data: Any) -> bytes:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {body}\n\n".encode()


class Link:
    def __init__(self, socket_path: str) -> None:
        self.path = socket_path
        self.up = False
        self.streams: set[Stream] = set()
        self.dropped_total = 0
        self.daemon_pid: int | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._subscribed_logs: list[str] = []
        self._listing: asyncio.Task | None = None

    # ---- one-shot requests ----------------------------------------------------------------
    async def call(self, cmd: str, args: dict | None = None,
                   timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path, limit=protocol.MAX_LINE * 16), 5)
        except (OSError, asyncio.TimeoutError):
            raise DaemonError("the pyvm2 daemon is not running",
                              "start it with any pyvm2 command, e.g. pyvm2 list") from None
        try:
            writer.write(_request(1, cmd, args))
            line = await asyncio.wait_for(reader.readline(), timeout)
        except asyncio.TimeoutError:
            raise DaemonError(f"the daemon did not answer {cmd} within {timeout:.0f}s") from None
        except (OSError, ValueError) as e:
            raise DaemonError(f"lost the connection to the daemon: {e}") from None
        finally:
            writer.close()
        if not line:
            raise DaemonError("the daemon closed the connection before answering")
        reply = json.loads(line)
        if reply.get("ok"):
            return reply.get("data")
        err = reply.get("error") or {}
        cls = NotFound if err.get("code") == protocol.E_NOT_FOUND else Pyvm2Error
        raise cls(err.get("message") or "the daemon reported an error", err.get("hint"))

    async def shared_list(self) -> list[dict]:
        """The app list; requests made while one is on its way share it (a thousand pages
        reloading their list when the daemon is back cost one request). Callers must not
        change it."""
        if self._listing is None or self._listing.done():
            self._listing = asyncio.get_running_loop().create_task(self.call("list", timeout=30))
        return await asyncio.shield(self._listing)

    # ---- the subscription -----------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def wanted_logs(self) -> list[str]:
        return sorted({t for s in self.streams for t in s.logs})

    def streams_changed(self) -> None:
        if self.wanted_logs() != self._subscribed_logs and self._writer is not None:
            self._subscribed_logs = self.wanted_logs()
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(_request(2, "subscribe", {"logs": self._subscribed_logs}))

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except (OSError, ValueError, Pyvm2Error, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError):
                pass
            except Exception as e:  # the server outlives whatever the daemon sends
                print(f"pyvm2 web: daemon subscription failed: {e!r}", file=sys.stderr, flush=True)
            self._writer = None
            if self.up:
                self.up = False
                self.broadcast(sse("daemon", {"up": False, "t": time.time()}))
            await asyncio.sleep(RECONNECT_S)

    async def _follow(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.path, limit=protocol.MAX_LINE * 16)
        try:
            self._subscribed_logs = self.wanted_logs()
            writer.write(_request(1, "subscribe", {"samples": True,
                                                           "logs": self._subscribed_logs}))
            first = json.loads(await reader.readline() or b"{}")
            if not first.get("ok"):
                return
            self._writer = writer
            ping = await self.call("ping", timeout=10)
            self.daemon_pid = ping.get("pid")
            self.up = True
            self.broadcast(sse("daemon", {"up": True, "t": time.time(), "pid": self.daemon_pid}))
            while True:
                line = await reader.readline()
                if not line:
                    return
                self._dispatch(line)
        finally:
            self._writer = None
            writer.close()

    def _dispatch(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        kind = event.get("type")
        if kind == "log":
            keys = {str(event.get("pm_id")), str(event.get("name"))}
            data = sse("log", event)
            for s in self.streams:
                if s.logs & keys:
                    s.push(data)
            return
        if kind in ("state", "restart", "samples", "dropped"):
            self.broadcast(sse(kind, event))

    def broadcast(self, data: bytes) -> None:
        for s in self.streams:
            s.push(data)

    async def events(self, logs: set[str]) -> AsyncIterator[bytes]:
        """A browser's stream: whether the daemon is up first (a client then fetches the list),
        then events as they come."""
        stream = Stream(logs)
        self.streams.add(stream)
        self.streams_changed()
        try:
            yield b"retry: 1000\n\n"
            yield sse("daemon", {"up": self.up, "t": time.time(), "pid": self.daemon_pid})
            while True:
                try:
                    data = await asyncio.wait_for(stream.queue.get(), 15)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if stream.dropped:
                    self.dropped_total += stream.dropped
                    yield sse("dropped", {"count": stream.dropped})
                    stream.dropped = 0
                yield data
        finally:
            self.streams.discard(stream)
            self.streams_changed()
