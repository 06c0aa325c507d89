"""Helpers for the web tests: `pyvm2 web` on a free loopback port, raw HTTP requests with
exactly the headers a test gives, and a reader of server-sent events."""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest

from pyvm2.web.gate import missing

needs_web = pytest.mark.skipif(bool(missing()), reason=f"the web extra is not installed "
                               f"({', '.join(missing())} missing): pip install -e '.[web]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.status} {self.headers}\n{self.body[:2000]!r}"


@dataclass
class Web:
    host: str
    port: int
    token: str
    url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, timeout: float = 60) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if body is not None and "Content-Length" not in (headers or {}):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, {**self.auth, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, {**self.auth, **kw.pop("headers", {})}, **kw)

    def apps(self) -> list[dict]:
        r = self.get("/api/apps")
        assert r.status == 200, str(r)
        return r.json()

    def app(self, name: str) -> dict:
        found = [a for a in self.apps() if a["name"] == name]
        assert len(found) == 1, found
        return found[0]


def start_web(pv, *extra: str) -> Web:
    port = free_port()
    r = pv.ok("web", "--port", str(port), *extra)
    url = r.out.strip().splitlines()[-1]
    token = (pv.home / "web.token").read_text().strip()
    assert url == f"http://localhost:{port}/?token={token}", str(r)
    return Web("127.0.0.1", port, token, url)


class Events:
    """A server-sent event stream, read event by event."""

    def __init__(self, web: Web, path: str = "/api/events", headers: dict[str, str] | None = None):
        self.conn = http.client.HTTPConnection(web.host, web.port, timeout=30)
        self.conn.request("GET", path, headers=headers if headers is not None else web.auth)
        self.resp = self.conn.getresponse()
        self.seen: list[tuple[str, Any]] = []

    def next(self) -> tuple[str, Any]:
        kind, data = "message", []
        while True:
            line = self.resp.fp.readline()
            if not line:
                raise EOFError("the event stream ended")
            line = line.decode().rstrip("\n")
            if not line:
                if data:
                    event = (kind, json.loads("\n".join(data)))
                    self.seen.append(event)
                    return event
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)

    def wait(self, check, timeout: float = 20, what: str = "an event") -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next()
            if check(*event):
                return event
        pytest.fail(f"timed out waiting for {what}; saw {[k for k, _ in self.seen[-30:]]}",
                    pytrace=False)

    def close(self) -> None:
        self.conn.close()
