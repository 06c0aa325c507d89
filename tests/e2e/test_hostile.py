"""Nobody else gets in, and no client can block the daemon: malformed, huge, deeply nested and
half-sent requests get an error reply or a closed connection while other clients are served
promptly; another user cannot talk to the daemon; a home others could tamper with is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import Pyvm2, alive
from helpers_more import connect, read_reply, run_as

#: "Promptly": a CLI answers within this while a hostile client is connected. Generous, since
#: a CLI alone takes ~0.4 s on a small machine.
PROMPT_S = 5.0

BAD_REQUESTS = {
    "malformed": b'{"id": 1, "cmd": "list", "args": {\x00\xff}\n',
    "8 MB line": b'{"id": 2, "cmd": "ping", "args": {"x": "' + b"a" * (8 * 1024 * 1024) + b'"}}\n',
    "100k deep nesting": b'{"id": 3, "cmd": "ping", "args": {"x": ' + b"[" * 100_000
                         + b"]" * 100_000 + b"}}\n",
    "100k deep objects": b'{"id": 4, "cmd": "list", "args": ' + b'{"a":' * 100_000
                         + b"1" + b"}" * 100_000 + b"}\n",
}


def assert_prompt(pv: Pyvm2, *args: str) -> float:
    t0 = time.monotonic()
    r = pv.run(*args, timeout=30)
    took = time.monotonic() - t0
    assert r.code == 0 and "Traceback" not in r.out + r.err, str(r)
    assert took < PROMPT_S, f"`pyvm2 {' '.join(args)}` took {took:.1f}s while a client misbehaved"
    return took


def assert_error_or_closed(answer: bytes) -> None:
    if not answer:
        return   # the daemon hung up: allowed
    reply = json.loads(answer.split(b"\n")[0])
    assert reply["ok"] is False and reply["error"]["message"], reply


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", list(BAD_REQUESTS))
def test_a_bad_request_gets_an_error_while_other_clients_are_answered(
        pv: Pyvm2, what: str) -> None:
    eco = pv.write_eco([pv.app("calm", "ticker.py", env={"TICK_S": "1"})])
    pv.ok("start", str(eco))
    daemon = pv.daemon_pid()
    payload = BAD_REQUESTS[what]
    answers: list[bytes] = []
    errors: list[BaseException] = []
    almost_sent = threading.Event()
    finish = threading.Event()

    def send() -> None:
        s = connect(pv, timeout=60)
        try:
            try:
                # in pieces, so the daemon sees a long request arrive slowly ...
                view = memoryview(payload[:-1])
                while view:
                    s.sendall(view[:256 * 1024])
                    view = view[256 * 1024:]
                    time.sleep(0.002)
                almost_sent.set()
                # ... then holds all of it but the newline while other clients come
                finish.wait(30)
                s.sendall(payload[-1:])
            except (BrokenPipeError, ConnectionResetError):
                pass   # the daemon gave up on it early: allowed
            finally:
                almost_sent.set()
            answers.append(read_reply(s))
        except BaseException as e:  # shown in the failure below
            errors.append(e)
        finally:
            s.close()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert almost_sent.wait(30), "could not send the request"
    took = [assert_prompt(pv, "ping"), assert_prompt(pv, "list")]
    finish.set()          # the daemon now decodes (or refuses) it, and others still get answers
    took += [assert_prompt(pv, "ping"), assert_prompt(pv, "list")]
    sender.join(60)
    assert not sender.is_alive(), "the bad request got neither a reply nor a hang-up in 60s"
    assert not errors, errors
    assert_error_or_closed(answers[0])
    print(f"{what}: answer {answers[0][:120]!r}; ping/list took "
          f"{', '.join(f'{t:.2f}s' for t in took)} during it")
    assert pv.daemon_pid() == daemon and alive(daemon)
    assert pv.status("calm") == ["online"]


@pytest.mark.timeout(60)
def test_half_sent_requests_left_open_do_not_block_other_clients(pv: Pyvm2) -> None:
    pv.ok("ping")
    stuck = []
    try:
        for i in range(20):
            s = connect(pv, timeout=10)
            s.sendall(b'{"id": %d, "cmd": "li' % i)   # half a line, and the connection stays open
            stuck.append(s)
        assert_prompt(pv, "ping")
        assert_prompt(pv, "list")
        # a half-sent request that is finished later is simply answered
        stuck[0].sendall(b'st", "args": {}}\n')
        reply = json.loads(read_reply(stuck[0]))
        assert reply["ok"] is True and reply["id"] == 0 and reply["data"] == [], reply
    finally:
        for s in stuck:
            s.close()
    assert "pong" in pv.ok("ping").out


@pytest.fixture
def other_user():
    """A throwaway user (root only), removed afterwards."""
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("needs root with useradd and runuser to act as a second user")
    name = f"pv2t{os.getpid() % 100000}"
    r = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", name],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create a second user: {r.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("refused", type(e).__name__, e)
    sys.exit(0)
try:
    s.sendall(b'{"id": 1, "cmd": "stop", "args": {"targets": ["all"]}}\\n')
except OSError:
    pass  # the daemon may hang up before the request is even sent
data = b""
try:
    while b"\\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError as e:
    print("reset", e)
    sys.exit(0)
print("reply", data.decode(errors="replace").strip())
"""


def python_for(user: str) -> str:
    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and run_as(user, [candidate, "-c", "pass"]).returncode == 0:
            return candidate
    pytest.skip(f"no python that user {user} may run")


@pytest.mark.timeout(60)
def test_another_user_cannot_connect_even_when_the_files_let_it(other_user: str) -> None:
    # a home of our own under /tmp, so the other user can reach it once we open it up
    root = Path(tempfile.mkdtemp(prefix="pv2h", dir="/tmp"))
    work = root / "w"
    pv = Pyvm2(home=root / "h", workdir=work)
    work.mkdir()
    os.chmod(root, 0o755)
    try:
        eco = pv.write_eco([pv.app("calm", "ticker.py", env={"TICK_S": "1"})])
        pv.ok("start", str(eco))
        sock = str(pv.home / "pyvm2.sock")
        python = python_for(other_user)

        # as pyvm2 sets things up: the 0700 home keeps the other user out
        r = run_as(other_user, [python, "-c", CONNECT, sock])
        assert r.stdout.startswith("refused"), r

        # even with the folder and the socket opened up, the daemon checks the peer's uid
        os.chmod(pv.home, 0o711)
        os.chmod(sock, 0o666)
        try:
            r = run_as(other_user, [python, "-c", CONNECT, sock])
        finally:
            os.chmod(sock, 0o600)
            os.chmod(pv.home, 0o700)
        out = r.stdout.strip()
        print(f"another user, socket opened up: {out!r}")
        assert out.startswith(("refused", "reset", "reply")), r
        if out.startswith("reply") and out != "reply":
            reply = json.loads(out[len("reply "):])
            assert reply["ok"] is False, reply
            assert "permission" in reply["error"]["message"], reply
        assert pv.status("calm") == ["online"], "another user's stop must not be obeyed"
    finally:
        problems = pv.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    assert not problems, problems


def fresh_home(tmp_path: Path) -> Pyvm2:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Pyvm2(home=home, workdir=work)


@pytest.mark.parametrize("command", [("ping",), ("list",), ("start", "x.py")])
def test_a_world_writable_home_is_refused_with_a_clear_message(tmp_path: Path,
                                                               command: tuple[str, ...]) -> None:
    pv = fresh_home(tmp_path)
    (pv.workdir / "x.py").write_text("print(1)\n")
    os.chmod(pv.home, 0o777)
    try:
        r = pv.run(*command, timeout=30)
        assert r.code != 0, r
        assert "Traceback" not in r.out + r.err, r
        assert "writable by other users" in r.err and str(pv.home) in r.err, r
        assert "chmod 700" in r.err, r
        assert not (pv.home / "pyvm2.sock").exists(), "no daemon may start in such a home"
        assert pv.daemon_pid() is None
    finally:
        os.chmod(pv.home, 0o700)
        pv.cleanup()


def test_a_home_owned_by_another_user_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user")
    pv = fresh_home(tmp_path)
    os.chown(pv.home, 65534, 65534)
    try:
        r = pv.run("ping", timeout=30)
        assert r.code != 0, r
        assert "Traceback" not in r.out + r.err, r
        assert "belongs to another user" in r.err and str(pv.home) in r.err, r
        assert not (pv.home / "pyvm2.sock").exists()
    finally:
        os.chown(pv.home, 0, 0)
        pv.cleanup()
