"""`pyvm2 web` end to end: a real daemon, the real web server process on loopback, real apps;
access control, the API, events, metrics, hostile requests and a daemon killed underneath."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys

import pytest
from conftest import PYTHON, wait_for
from web_helpers import Events, free_port, needs_web, start_web

pytestmark = [needs_web, pytest.mark.timeout(180)]

HTML_NAME = "<img src=x onerror=alert(1)>&amp;"


def start_tick(pv, name: str = "tick", **env: str) -> None:
    eco = pv.write_eco([pv.app(name, "ticker.py", env={"TICK_S": "0.2", **env})],
                       name=f"{abs(hash(name))}.json")
    pv.ok("start", str(eco))
    pv.wait_status(name, "online")


def test_every_request_but_healthz_needs_the_token(pv):
    start_tick(pv)
    web = start_web(pv)
    mode = stat.S_IMODE(os.stat(pv.home / "web.token").st_mode)
    assert mode == 0o600, oct(mode)
    r = web.request("GET", "/healthz")
    assert r.status == 200 and r.body == b"ok"
    for path in ("/api/apps", "/api/apps/tick", "/api/apps/tick/logs", "/api/events", "/metrics",
                 "/static/app.js", "/api/apps/tick/history"):
        r = web.request("GET", path)
        assert r.status == 401, (path, str(r))
        assert b"tick" not in r.body
        r = web.request("GET", path, {"Authorization": "Bearer wrong"})
        assert r.status == 401, (path, str(r))
    r = web.request("POST", "/api/apps/tick/stop")
    assert r.status == 401
    r = web.request("GET", "/")
    assert r.status == 401 and b"token" in r.body and b"tick" not in r.body
    # the token works, and every answer carries the security headers
    r = web.get("/api/apps")
    assert r.status == 200, str(r)
    assert [a["name"] for a in r.json()] == ["tick", "pyvm2-web"] or \
        {a["name"] for a in r.json()} == {"tick", "pyvm2-web"}
    for reply in (r, web.request("GET", "/healthz"), web.request("GET", "/api/apps")):
        h = reply.headers
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert "script-src 'self'" in h["content-security-policy"]
        assert "unsafe-inline" not in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        assert "server" not in h


def test_session_cookie_and_csrf(pv):
    start_tick(pv)
    web = start_web(pv)
    r = web.request("GET", f"/?token={web.token}")
    assert r.status == 303 and r.headers["location"] == "/", str(r)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    session = cookie.split(";")[0]
    page = web.request("GET", "/", {"Cookie": session})
    assert page.status == 200 and b"/static/app.js" in page.body
    assert b"<script>" not in page.body  # no inline script: the CSP holds
    csrf = page.body.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()
    assert len(csrf) == 64
    assert web.request("GET", "/api/apps", {"Cookie": session}).status == 200
    # a write with the cookie but without the CSRF token is refused and changes nothing
    before = web.app("tick")["pm2_env"]["restart_time"]
    r = web.request("POST", "/api/apps/tick/restart", {"Cookie": session})
    assert r.status == 403, str(r)
    r = web.request("POST", "/api/apps/tick/restart", {"Cookie": session, "X-CSRF-Token": "0" * 64})
    assert r.status == 403, str(r)
    assert web.app("tick")["pm2_env"]["restart_time"] == before
    r = web.request("POST", "/api/apps/tick/restart", {"Cookie": session, "X-CSRF-Token": csrf})
    assert r.status == 200, str(r)
    assert r.json()["apps"][0]["pm2_env"]["restart_time"] == before + 1
    # a forged or foreign cookie is no session
    nonce = session.split("=", 1)[1].split(".")[0]
    name = session.split("=", 1)[0]
    assert name == f"pyvm2_session_{web.port}"
    for bad in (f"{name}={nonce}.{'0' * 64}", f"{name}=x", f"{name}="):
        assert web.request("GET", "/api/apps", {"Cookie": bad}).status == 401, bad


def test_wrong_tokens_are_rate_limited(pv):
    web = start_web(pv)
    codes = [web.request("GET", "/api/apps", {"Authorization": f"Bearer nope{i}"}).status
             for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    # while blocked even the right token waits; /healthz still answers
    r = web.get("/api/apps")
    assert r.status == 429 and int(r.headers["retry-after"]) > 0
    assert web.request("GET", f"/?token={web.token}").status == 429
    assert web.request("GET", "/healthz").status == 200


def test_api_actions_logs_history_and_errors(pv):
    start_tick(pv)
    web = start_web(pv)
    tick = web.app("tick")
    r = web.get("/api/apps/tick")
    assert r.status == 200 and [a["pm_id"] for a in r.json()] == [tick["pm_id"]]
    assert web.get(f"/api/apps/{tick['pm_id']}").json()[0]["name"] == "tick"
    r = web.post("/api/apps/tick/stop")
    assert r.status == 200, str(r)
    assert [a["pm2_env"]["status"] for a in r.json()["apps"]] == ["stopped"]
    assert pv.status("tick") == ["stopped"]
    r = web.post("/api/apps/tick/start")
    assert r.json()["apps"][0]["pm2_env"]["status"] == "online"
    r = web.post("/api/apps/tick/reload")
    assert r.status == 200 and r.json()["apps"][0]["pm2_env"]["restart_time"] == 1
    r = web.post("/api/apps/tick/reset")
    assert r.json()["apps"][0]["pm2_env"]["restart_time"] == 0
    # "all" leaves the web server itself alone
    r = web.post("/api/apps/all/restart")
    assert r.status == 200 and [a["name"] for a in r.json()["apps"]] == ["tick"]
    assert web.app("pyvm2-web")["pm2_env"]["restart_time"] == 0
    # `restart` answers once the new run is spawned: the last lines are the new run's once it
    # has printed three of each (the stopped run left its SIGINT traceback on stderr)
    entry = wait_for(lambda: web.get("/api/apps/tick/logs?lines=3").json()["apps"][0],
                     lambda e: len(e["err"]) == 3 and e["err"][0].startswith("tock ")
                     and len(e["out"]) == 3, what="three lines of each stream of the new run")
    assert len(entry["out"]) == 3 and all(x.startswith("tick ") for x in entry["out"]), entry
    assert len(entry["err"]) == 3 and all(x.startswith("tock ") for x in entry["err"]), entry
    h = wait_for(lambda: web.get("/api/apps/tick/history").json()["apps"][str(tick["pm_id"])],
                 lambda s: len(s["t"]) >= 2, what="two samples in the history")
    assert len(h["t"]) == len(h["cpu"]) == len(h["memory"]) and max(h["memory"]) > 0
    # errors are JSON with a message
    for method, path, code in (("GET", "/api/apps/nope", 404), ("POST", "/api/apps/nope/stop", 404),
                               ("POST", "/api/apps/tick/explode", 404),
                               ("GET", "/api/apps/tick/stop", 405),
                               ("GET", "/api/apps/tick/logs?lines=many", 400),
                               ("DELETE", "/api/apps", 405), ("GET", "/nothing/here", 404)):
        r = web.request(method, path, web.auth)
        assert r.status == code, (method, path, str(r))
        assert r.json()["error"]["message"], str(r)
    r = web.post("/api/apps/tick/delete")
    assert r.status == 200 and r.json()["ids"] == [tick["pm_id"]] and r.json()["apps"] == []
    assert [a["name"] for a in web.apps()] == ["pyvm2-web"]


def test_environments_only_with_the_token(pv):
    start_tick(pv, SECRET_VALUE="hunter2-secret")
    web = start_web(pv)
    r = web.get("/api/apps")
    assert b"hunter2-secret" not in r.body and "env" not in r.json()[0]["pm2_env"]
    assert b"hunter2-secret" not in web.get("/api/apps/tick").body
    r = web.get("/api/apps?env=1")
    tick = next(a for a in r.json() if a["name"] == "tick")
    assert tick["pm2_env"]["env"]["SECRET_VALUE"] == "hunter2-secret"
    # a browser session never gets them
    session = web.request("GET", f"/?token={web.token}").headers["set-cookie"].split(";")[0]
    r = web.request("GET", "/api/apps?env=1", {"Cookie": session})
    assert r.status == 403 and b"hunter2-secret" not in r.body


def test_metrics_in_prometheus_format(pv):
    start_tick(pv)
    web = start_web(pv)
    web.post("/api/apps/tick/restart")
    r = web.get("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    lines = {ln.split(" ")[0]: ln.rsplit(" ", 1)[1] for ln in text.splitlines()
             if ln and not ln.startswith("#")}
    tick = web.app("tick")
    lab = f'id="{tick["pm_id"]}",instance="0",name="tick",namespace="default"'
    assert lines[f"pyvm2_up{{{lab}}}"] == "1.0"
    assert lines[f"pyvm2_restarts_total{{{lab}}}"] == "1.0"
    assert "# TYPE pyvm2_restarts_total counter" in text
    assert float(lines[f"pyvm2_memory_bytes{{{lab}}}"]) >= 0
    pm2 = f'id="{tick["pm_id"]}",instance="0",interpreter="python3",name="tick",node_version="N/A"'
    for name in ("pm2_up", "pm2_cpu", "pm2_memory", "pm2_uptime", "pm2_restarts",
                 "pm2_instances", "pm2_prev_restart_delay"):
        assert f"{name}{{{pm2}}}" in lines, name
        assert f"# TYPE {name} gauge" in text
    assert lines[f"pm2_restarts{{{pm2}}}"] == "1.0"
    assert lines["pyvm2_daemon_up"] == "1.0"
    assert float(lines["pyvm2_daemon_uptime_seconds"]) > 0
    assert float(lines["pyvm2_daemon_memory_bytes"]) > 0


def test_events_stream_states_restarts_and_logs(pv):
    start_tick(pv)
    web = start_web(pv)
    tick = web.app("tick")
    ev = Events(web, f"/api/events?logs={tick['pm_id']}")
    try:
        assert ev.resp.status == 200
        assert ev.resp.getheader("content-type").startswith("text/event-stream")
        ev.wait(lambda k, d: k == "daemon" and d["up"], what="daemon up")
        ev.wait(lambda k, d: k == "log" and d["stream"] == "out" and
                any(x.startswith("tick ") for x in d["lines"]), what="a stdout line")
        ev.wait(lambda k, d: k == "log" and d["stream"] == "err", what="a stderr line")
        web.post("/api/apps/tick/restart")
        _, restart = ev.wait(lambda k, d: k == "restart" and d["name"] == "tick", what="restart")
        assert restart["reason"] == "restarted by user" and restart["restart_time"] == 1
        ev.wait(lambda k, d: k == "state" and d["app"]["name"] == "tick" and
                d["app"]["pm2_env"]["status"] == "online", what="tick online again")
        ev.wait(lambda k, d: k == "samples" and str(tick["pm_id"]) in d["apps"], what="samples")
    finally:
        ev.close()
    # a stream that asks for no logs gets none
    ev = Events(web)
    try:
        ev.wait(lambda k, d: k == "samples", what="samples")
        assert not [k for k, _ in ev.seen if k == "log"]
    finally:
        ev.close()


def test_hostile_requests(pv):
    start_tick(pv)
    web = start_web(pv)
    for path in ("/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
                 "/static/%2e%2e/pyvm2.sock", "/static/index.html", "/static/",
                 "/api/apps/..%2F..%2F..%2Fetc%2Fpasswd/logs", "/api/apps/%00/logs",
                 "/%2e%2e/%2e%2e/etc/passwd"):
        r = web.request("GET", path, web.auth)
        assert r.status in (400, 404), (path, str(r))
        assert b"root:" not in r.body, path
    # a huge header, a huge body, a chunked body: refused, and the server goes on
    r = web.request("GET", "/api/apps", {**web.auth, "X-Junk": "a" * 100_000})
    assert r.status in (400, 431), str(r)
    r = web.post("/api/apps/tick/restart", body=b"x" * 2_000_000)
    assert r.status == 413, str(r)
    r = web.post("/api/apps/tick/restart", headers={"Content-Length": "99999999999999999999"})
    assert r.status in (400, 413), str(r)
    r = web.post("/api/apps/tick/restart", headers={"Transfer-Encoding": "chunked"}, body=b"0\r\n\r\n")
    assert r.status == 413, str(r)
    assert web.app("tick")["pm2_env"]["restart_time"] == 0
    # an app whose name is HTML is data in JSON and text on the page
    eco = pv.write_eco([pv.app(HTML_NAME, "ticker.py")], name="html.json")
    pv.ok("start", str(eco))
    r = web.get("/api/apps")
    assert r.headers["content-type"] == "application/json"
    assert HTML_NAME in [a["name"] for a in r.json()]
    session = web.request("GET", f"/?token={web.token}").headers["set-cookie"].split(";")[0]
    page = web.request("GET", "/", {"Cookie": session})
    assert b"<img" not in page.body
    assert web.request("GET", "/healthz").status == 200


def test_the_daemon_killed_under_the_web_server(pv):
    start_tick(pv)
    web = start_web(pv)
    web_pid = web.app("pyvm2-web")["pid"]
    ev = Events(web)
    try:
        ev.wait(lambda k, d: k == "daemon" and d["up"], what="daemon up")
        os.kill(pv.daemon_pid(), signal.SIGKILL)
        ev.wait(lambda k, d: k == "daemon" and not d["up"], what="daemon down")
        r = web.get("/api/apps")
        assert r.status == 503, str(r)
        assert "daemon is not running" in r.json()["error"]["message"]
        assert web.get("/metrics").body.count(b"pyvm2_daemon_up 0.0") == 1
        assert web.request("GET", "/healthz").status == 200
        pv.ok("ping")  # a new daemon, which adopts the running apps, the web server among them
        ev.wait(lambda k, d: k == "daemon" and d["up"], what="daemon back")
        wait_for(lambda: web.get("/api/apps").status, lambda s: s == 200, what="the API back")
    finally:
        ev.close()
    assert {a["name"] for a in web.apps()} == {"tick", "pyvm2-web"}
    assert web.app("pyvm2-web")["pid"] == web_pid


def test_web_command_options_stop_and_rotation(pv):
    r = pv.run("web", "--host", "0.0.0.0")
    assert r.code != 0 and "--allow-remote" in r.err and "Traceback" not in r.err, str(r)
    r = pv.run("web", "--tls-cert", "/nonexistent.pem")
    assert r.code != 0 and "--tls-key" in r.err, str(r)
    web = start_web(pv)
    old = web.token
    assert web.get("/api/apps").status == 200
    # a second `pyvm2 web` with the same options leaves the running server as it is
    pid = web.app("pyvm2-web")["pid"]
    assert pv.ok("web", "--port", str(web.port)).out.strip().endswith(old)
    assert web.app("pyvm2-web")["pid"] == pid
    r = pv.ok("web", "--port", str(web.port), "--rotate-token")
    new = (pv.home / "web.token").read_text().strip()
    assert new != old and r.out.strip().endswith(new)
    web.token = new
    wait_for(lambda: web.get("/api/apps").status, lambda s: s == 200, what="the new token to work")
    web.token = old
    assert web.get("/api/apps").status == 401
    r = pv.ok("web", "--stop")
    assert "pyvm2-web" not in [p["name"] for p in pv.jlist()]
    assert pv.ok("web", "--stop").code == 0


def test_without_the_web_extra_it_says_how_to_install(pv):
    code = ("import sys; sys.modules['uvicorn'] = None; from pyvm2.cli import main; "
            "main(['web'])")
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=pv.env,
                       timeout=60)
    assert r.returncode != 0
    assert "pip install 'pyvm2[web]'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (pv.home / "web.token").exists()
    assert sys.executable  # the daemon was not needed for this answer
    assert json.loads(pv.run("jlist").out or "[]") == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_https_with_a_certificate(pv, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    r = pv.ok("web", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key))
    token = (pv.home / "web.token").read_text().strip()
    assert r.out.strip().splitlines()[-1] == f"https://localhost:{port}/?token={token}", str(r)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        conn.request("GET", f"/?token={token}")
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 303
        assert "Secure" in reply.getheader("set-cookie")
        conn.request("GET", "/api/apps", headers={"Authorization": f"Bearer {token}"})
        reply = conn.getresponse()
        assert reply.status == 200 and json.loads(reply.read())[0]["name"] == "pyvm2-web"
    finally:
        conn.close()


def test_a_thousand_event_streams_that_never_read(pv):
    start_tick(pv)
    web = start_web(pv)
    head = (f"GET /api/events HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer {web.token}\r\n\r\n").encode()
    socks: list[socket.socket] = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", web.port), timeout=60)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(head)
            socks.append(s)
        for s in socks[::50]:
            assert s.recv(64).startswith(b"HTTP/1.1 200"), "an event stream was refused"
        # none of them reads any more; the server and the daemon go on for everyone else
        ev = Events(web)
        try:
            ev.wait(lambda k, d: k == "daemon" and d["up"], what="a new stream")
            assert web.post("/api/apps/tick/restart").status == 200
            ev.wait(lambda k, d: k == "restart" and d["name"] == "tick", what="the restart event")
        finally:
            ev.close()
        streams = web.get("/metrics").body.split(b"\npyvm2_web_event_streams ")[1].split(b"\n")[0]
        assert float(streams) == 1000, streams
        assert pv.status("tick") == ["online"]
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: web.get("/metrics").body, lambda b: b"pyvm2_web_event_streams 0.0" in b,
             what="the closed streams to be gone")
