"""Subscriptions on the socket (state changes, restarts with their reasons, app output, samples,
the progress of a client's long command) and the last hour of cpu and memory per process."""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import json
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pyvm2 import protocol

if TYPE_CHECKING:
    from pyvm2.daemon.daemon import Daemon
    from pyvm2.daemon.process import ManagedProcess

#: The cpu and memory history kept per process: an hour, at most this many points (a process
#: near its memory limit is read up to ten times a second: its last points are kept).
HISTORY_S = 3600.0
HISTORY_MAX = 3600
#: Messages held for one subscriber; past this, new ones are dropped and counted.
QUEUE_MAX = 4096
#: A partial output line longer than this is sent as it is.
MAX_PARTIAL = 65536
#: Commands this module answers on the socket (declared in protocol.COMMANDS).
COMMANDS = frozenset(n for n, c in protocol.COMMANDS.items() if c.events)
#: The pid of the client whose request is being served (from the socket's peer credentials);
#: a command's progress is streamed to subscriptions of that same client.
CLIENT: contextvars.ContextVar[int | None] = contextvars.ContextVar("client", default=None)


def claim(line: bytes) -> dict | None:
    """The request, with its arguments checked and defaults filled in, if it is one of this
    module's commands; otherwise None (the server's usual path answers it, errors included)."""
    if b'"subscribe"' not in line and b'"history"' not in line and b'"env"' not in line:
        return None
    try:
        rid, cmd, args = protocol.parse_request(json.loads(line))
    except (ValueError, RecursionError, protocol.BadRequest):
        return None
    if cmd not in COMMANDS:
        return None
    return {"id": rid, "cmd": cmd, "args": args}


class History:
    """Per-process series of (time, cpu, memory): one point each time the monitor reads the
    process (a stopped one gets a point at zero), the last `window_s` seconds, at most `size`
    points. Nothing is recorded between reads, so an idle daemon spends nothing on it."""

    def __init__(self, window_s: float = HISTORY_S, size: int = HISTORY_MAX) -> None:
        self.window_s = window_s
        self.size = size
        self._t: dict[int, array] = {}
        self._cpu: dict[int, array] = {}
        self._mem: dict[int, array] = {}

    def record(self, pm_id: int, now: float, cpu: float, memory: int) -> None:
        t = self._t.get(pm_id)
        if t is None:
            t = self._t[pm_id] = array("d")
            self._cpu[pm_id], self._mem[pm_id] = array("f"), array("d")
        t.append(now)
        self._cpu[pm_id].append(cpu)
        self._mem[pm_id].append(memory)
        # what fell out of the window or past the size goes a quarter of either at a time
        if len(t) > self.size + self.size // 4 or t[0] < now - self.window_s * 1.25:
            self._trim(pm_id, now)

    def _trim(self, pm_id: int, now: float) -> None:
        t = self._t[pm_id]
        cut = max(len(t) - self.size, bisect.bisect_left(t, now - self.window_s))
        if cut > 0:
            del t[:cut], self._cpu[pm_id][:cut], self._mem[pm_id][:cut]

    def retain(self, pm_ids: Container[int]) -> None:
        """Forget the processes that are not in pm_ids (deleted)."""
        for pm_id in [i for i in self._t if i not in pm_ids]:
            del self._t[pm_id], self._cpu[pm_id], self._mem[pm_id]

    def series(self, pm_id: int, now: float | None = None) -> dict[str, list]:
        t = self._t.get(pm_id)
        if t is None:
            return {"t": [], "cpu": [], "memory": []}
        now = time.time() if now is None else now
        start = max(len(t) - self.size, bisect.bisect_left(t, now - self.window_s))
        c, m = self._cpu[pm_id], self._mem[pm_id]
        return {"t": [round(x, 3) for x in t[start:]],
                "cpu": [round(x, 1) for x in c[start:]],
                "memory": [int(x) for x in m[start:]]}


class Subscriber:
    """One connection's bounded queue and what it asked for."""

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.dropped = 0
        self.states = True
        self.samples = False
        self.log_all = False
        self.log_ids: set[int] = set()
        self.log_names: set[str] = set()
        self.progress_of: int | None = None   # the client pid whose progress it follows
        self.progress_msg: bytes | None = None  # the latest, not yet sent: only the last counts
        self.update(args)

    def update(self, args: Mapping[str, Any]) -> None:
        if args.get("states") is not None:
            self.states = bool(args["states"])
        if args.get("samples") is not None:
            self.samples = bool(args["samples"])
        if args.get("logs") is not None:
            logs = args["logs"]
            if not isinstance(logs, list):
                logs = [logs]
            self.log_all = "all" in logs
            self.log_ids = {int(x) for x in logs if isinstance(x, int) or
                            (isinstance(x, str) and x.isdigit())}
            self.log_names = {x for x in logs if isinstance(x, str)}
        if args.get("progress"):
            self.progress_of = CLIENT.get()

    def wants_logs(self, p: ManagedProcess) -> bool:
        return self.log_all or p.pm_id in self.log_ids or p.name in self.log_names or \
            p.spec.namespace in self.log_names

    def push(self, msg: bytes) -> None:
        if len(self.queue) >= QUEUE_MAX:
            self.dropped += 1
            return
        self.queue.append(msg)
        self.wake.set()

    def set_progress(self, msg: bytes) -> None:
        self.progress_msg = msg
        self.wake.set()


class Progress:
    """How far one client's command is: its instances, in order, and those not done yet. The
    command marks each instance done when it reached the command's goal; a subscription of the
    same client (`subscribe` with `progress`) receives each change."""

    def __init__(self, events: Events, client: int | None, verb: str,
                 procs: Iterable[ManagedProcess]) -> None:
        self.events = events
        self.client = client
        self.verb = verb
        self.pending: dict[int, str] = {p.pm_id: p.label for p in procs}
        self.total = len(self.pending)

    def __enter__(self) -> Progress:
        if self.client is not None:
            self.events.progress_opened(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.events.progress_closed(self)

    def done(self, p: ManagedProcess) -> None:
        if self.pending.pop(p.pm_id, None) is not None and self.client is not None:
            self.events.progressed(self)

    async def track(self, p: ManagedProcess, op: Awaitable[Any],
                    goal: Callable[[ManagedProcess], bool] | None = None) -> None:
        """Run `op`; `p` is done after it if `goal` holds (or there is none)."""
        await op
        if goal is None or goal(p):
            self.done(p)

    def message(self) -> bytes:
        waiting = next(iter(self.pending.values()), None)
        return protocol.encode({"type": "progress", "verb": self.verb,
                                "done": self.total - len(self.pending), "total": self.total,
                                "waiting": waiting})


class Events:
    """The daemon's publisher: process hooks call state() and output(), the sampler calls
    sampled(); the socket server hands over connections whose request claim() accepted."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.history = History()
        self.subscribers: set[Subscriber] = set()
        self.dropped_total = 0
        self._restarts: dict[int, int] = {}
        self._partial: dict[tuple[int, str], bytes] = {}
        self._progress: dict[int, list[Progress]] = {}   # client pid -> its open records

    # ---- progress ------------------------------------------------------------------------
    def progress(self, verb: str, procs: Iterable[ManagedProcess]) -> Progress:
        """A record of the current client's command (a context manager: open while it runs)."""
        return Progress(self, CLIENT.get(), verb, procs)

    def progress_opened(self, prog: Progress) -> None:
        assert prog.client is not None
        self._progress.setdefault(prog.client, []).append(prog)
        self.progressed(prog)

    def progress_closed(self, prog: Progress) -> None:
        assert prog.client is not None
        stack = self._progress.get(prog.client, [])
        if prog in stack:
            stack.remove(prog)
        if not stack:
            self._progress.pop(prog.client, None)
        elif stack[-1] is not prog:
            self.progressed(stack[-1])

    def progressed(self, prog: Progress) -> None:
        """Hand the record's state to the subscriptions that follow its client (only the
        innermost open record of a client is shown)."""
        stack = self._progress.get(prog.client) if prog.client is not None else None
        if not stack or stack[-1] is not prog:
            return
        msg: bytes | None = None
        for s in self.subscribers:
            if s.progress_of == prog.client:
                msg = msg or prog.message()
                s.set_progress(msg)

    # ---- hooks ---------------------------------------------------------------------------
    def state(self, p: ManagedProcess) -> None:
        before = self._restarts.get(p.pm_id)
        self._restarts[p.pm_id] = p.restart_time
        targets = [s for s in self.subscribers if s.states]
        if not targets:   # a progress line's subscription costs no snapshot per change
            return
        now = time.time()
        snap = self.daemon.snapshot([p]).decoded()[0]
        self._publish({"type": "state", "t": now, "app": snap}, targets)
        if before is not None and p.restart_time > before:
            self._publish({"type": "restart", "t": now, "pm_id": p.pm_id, "name": p.name,
                           "restart_time": p.restart_time, "reason": p.last_restart_reason},
                          targets)

    def output(self, p: ManagedProcess, stream: str, data: bytes) -> None:
        if not self.subscribers:
            return
        targets = [s for s in self.subscribers if s.wants_logs(p)]
        key = (p.pm_id, stream)
        if not targets:
            self._partial.pop(key, None)
            return
        buf = self._partial.pop(key, b"") + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) <= MAX_PARTIAL:
                self._partial[key] = buf
                return
            cut = len(buf)
        rest = buf[cut + 1:]
        if rest:
            self._partial[key] = rest
        lines = buf[:cut].decode("utf-8", errors="replace").split("\n")
        msg = protocol.encode({"type": "log", "t": time.time(), "pm_id": p.pm_id, "name": p.name,
                               "stream": stream, "lines": lines})
        for s in targets:
            s.push(msg)

    @property
    def wants_samples(self) -> bool:
        return any(s.samples for s in self.subscribers)

    def sampled(self, procs: Mapping[int, ManagedProcess]) -> None:
        """Every second while a subscription asked for them: the figures as they are now."""
        wanting = [s for s in self.subscribers if s.samples]
        if wanting:
            msg = self._samples(procs)
            for s in wanting:
                s.push(msg)

    @staticmethod
    def _samples(procs: Mapping[int, ManagedProcess]) -> bytes:
        return protocol.encode({"type": "samples", "t": time.time(), "apps": {
            str(i): [round(p.cpu, 1), p.memory] for i, p in procs.items()}})

    def forget_gone(self, procs: Container[int]) -> None:
        """Drop what is kept of deleted processes."""
        self.history.retain(procs)
        for gone in [i for i in self._restarts if i not in procs]:
            del self._restarts[gone]

    def _publish(self, event: dict[str, Any], to: list[Subscriber] | None = None) -> None:
        msg = protocol.encode(event)
        for s in self.subscribers if to is None else to:
            s.push(msg)

    # ---- socket side ---------------------------------------------------------------------
    async def serve(self, req: dict, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        """Answer a claimed request; True if the connection goes on taking requests."""
        rid, cmd, args = req.get("id"), req["cmd"], req.get("args") or {}
        if cmd == "subscribe":
            await self._stream(rid, args, reader, writer)
            return False
        try:
            procs = self.daemon.resolve(args.get("targets") or ["all"]) if self.daemon.procs else []
        except Exception as e:  # NotFound and friends: reported, connection kept
            writer.write(protocol.error(rid, protocol.E_NOT_FOUND, str(getattr(e, "message", e))))
            await writer.drain()
            return True
        if cmd == "history":
            data: Any = {"window_s": self.history.window_s, "size": self.history.size,
                         "apps": {str(p.pm_id): self.history.series(p.pm_id) for p in procs}}
        else:
            data = {str(p.pm_id): self._env(p) for p in procs}
        writer.write(protocol.ok(rid, data))
        await writer.drain()
        return True

    @staticmethod
    def _env(p: ManagedProcess) -> dict[str, str]:
        from pyvm2.daemon.spawn import build_env

        return build_env(p.spec, p.base_env, {})

    async def _stream(self, rid: Any, args: Mapping[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        sub = Subscriber(args)
        self.subscribers.add(sub)
        stack = self._progress.get(sub.progress_of) if sub.progress_of is not None else None
        if stack:
            sub.set_progress(stack[-1].message())
        listener = asyncio.get_running_loop().create_task(self._listen(sub, reader))
        try:
            writer.write(protocol.ok(rid, {"subscribed": True, "queue_max": QUEUE_MAX}))
            await writer.drain()
            if sub.samples:   # the figures at once; then each second
                sub.push(self._samples(self.daemon.procs))
            while True:
                await sub.wake.wait()
                sub.wake.clear()
                if sub.closed:
                    return
                batch = list(sub.queue)
                sub.queue.clear()
                if sub.progress_msg is not None:
                    batch.append(sub.progress_msg)
                    sub.progress_msg = None
                if sub.dropped:
                    self.dropped_total += sub.dropped
                    batch.append(protocol.encode({"type": "dropped", "count": sub.dropped}))
                    sub.dropped = 0
                writer.write(b"".join(batch))
                await writer.drain()
        finally:
            self.subscribers.discard(sub)
            listener.cancel()
            if not any(s.log_all or s.log_ids or s.log_names for s in self.subscribers):
                self._partial.clear()

    async def _listen(self, sub: Subscriber, reader: asyncio.StreamReader) -> None:
        """Further lines on a subscription change what it receives; EOF ends it."""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    req = claim(line)
                    if req is not None and req["cmd"] == "subscribe":
                        sub.update(req["args"])
                        stack = self._progress.get(sub.progress_of) \
                            if sub.progress_of is not None else None
                        if stack:
                            sub.set_progress(stack[-1].message())
                except (ValueError, TypeError):
                    break
        except (ConnectionError, OSError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            sub.closed = True
            sub.wake.set()
