"""The progress line of a slow command on a terminal: `stopping 340/500 (waiting for api:3)` on
stderr, rewritten in place while the daemon works and erased before the command's own output.

Loaded only once a reply has taken longer than `client.SLOW_AFTER_S`: a second connection
subscribes to the progress records the daemon keeps for this process's commands (the daemon
knows the client by its socket's peer pid), and the line shows the latest one.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from typing import IO

from pyvm2.client import Client


def follow(client: Client, cmd: str, timeout: float | None) -> None:
    """Show the progress of `cmd` until its reply can be read from `client` (or `timeout`
    seconds passed). Any trouble with the second connection only means no line."""
    assert client.sock is not None
    reply = client.sock
    deadline = None if timeout is None else time.monotonic() + timeout
    line = Line(sys.stderr)
    sub = _subscribe(client)
    buf = b""
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            watched = [reply] if sub is None else [reply, sub]
            ready, _, _ = select.select(watched, [], [], left)
            if reply in ready or not ready:
                return
            try:
                data = sub.recv(65536) if sub is not None else b""
            except OSError:
                data = b""
            if not data:
                if sub is not None:
                    sub.close()
                sub = None
                continue
            buf += data
            *lines, buf = buf.split(b"\n")
            latest = None
            for raw in lines:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("type") == "progress":
                    latest = event
            if latest is not None:
                line.show(describe(latest))
    finally:
        line.erase()
        if sub is not None:
            sub.close()


def _subscribe(client: Client) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(str(client.home.socket))
        s.sendall(json.dumps({"id": 1, "cmd": "subscribe", "args": {"progress": True, "states": False}}).encode()
                  + b"\n")
        s.setblocking(False)
    except OSError:
        s.close()
        return None
    return s


def describe(event: dict) -> str:
    """`stopping 340/500 (waiting for api:3)`."""
    text = f"{event.get('verb', 'working')} {event.get('done', 0)}/{event.get('total', 0)}"
    waiting = event.get("waiting")
    if waiting:
        text += f" (waiting for {waiting})"
    return text


class Line:
    """One line of text on a terminal, rewritten in place; erase() leaves no trace."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.shown = ""

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        return columns if columns > 0 else 80   # a terminal that does not say: 80

    def show(self, text: str) -> None:
        from pyvm2.cli.term import escape_controls

        text = escape_controls(text)[: max(1, self._width() - 1)]
        if text == self.shown:
            return
        self.shown = text
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()

    def erase(self) -> None:
        if self.shown:
            self.shown = ""
            self.stream.write("\r\x1b[K")
            self.stream.flush()
