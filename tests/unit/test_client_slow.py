"""The client's slow-reply hook: nothing happens for a reply within SLOW_AFTER_S; a slower one
calls `on_slow`, and the reply is read whole afterwards."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from pyvm2 import client as client_mod
from pyvm2.client import Client
from pyvm2.paths import Home


def _serve(path: str, delay: float) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        with conn, srv:
            f = conn.makefile("rb")
            req = json.loads(f.readline())
            time.sleep(delay)
            conn.sendall(json.dumps({"id": req["id"], "ok": True,
                                     "data": {"msg": "pong", "pid": 1, "uptime_ms": 1}}).encode()
                         + b"\n")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


#: (the reply's delay, the peek, whether on_slow runs): a generous peek where the reply is
#: prompt, so that a busy machine cannot make it look slow
@pytest.mark.parametrize("delay, after, slow", [(0.0, 2.0, False), (0.5, 0.2, True)])
def test_on_slow_is_called_only_for_a_slow_reply(tmp_path: Path, monkeypatch, delay, after, slow):
    monkeypatch.setattr(client_mod, "SLOW_AFTER_S", after)
    home = Home(tmp_path)
    t = _serve(str(home.socket), delay)
    c = Client(home)
    assert c._try_connect()
    calls = []
    c.on_slow = lambda cl, cmd, timeout: calls.append((cmd, timeout))
    try:
        assert c.call("ping", timeout=5)["msg"] == "pong"
    finally:
        c.close()
    t.join(5)
    assert calls == ([("ping", pytest.approx(5 - after))] if slow else [])
