"""Blocking client for the CLI: connect to the daemon (starting it if needed), handshake, ask."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from pyvm2 import __version__, protocol
from pyvm2.errors import DaemonError, DaemonNotRunning, NotFound, Pyvm2Error
from pyvm2.paths import Home
from pyvm2.tail import tail_lines

#: How long a CLI waits for a daemon it started to accept connections.
START_DEADLINE_S = 15.0
#: A reply that takes longer than this calls `Client.on_slow` (the CLI's progress line).
SLOW_AFTER_S = 1.0


class Client:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or Home.from_env()
        self.sock: socket.socket | None = None
        self._file: IO[bytes] | None = None
        self._next_id = 1
        self.spawned = False
        self.daemon_version: str | None = None
        #: Called when a reply takes longer than SLOW_AFTER_S, with the client, the command and
        #: the seconds left of its timeout (None: no limit); returns once the reply is readable
        #: (or the time is up). Nothing is done before that second has passed.
        self.on_slow: Callable[[Client, str, float | None], None] | None = None

    # ---- connection ----------------------------------------------------------------------
    def _try_connect(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(self.home.socket))
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            return False
        except PermissionError:
            s.close()
            raise DaemonError(f"permission denied on {self.home.socket}",
                              "the daemon belongs to another user; set PYVM2_HOME to a folder of yours") from None
        except OSError as e:
            s.close()
            raise DaemonError(f"cannot connect to {self.home.socket}: {e.strerror or e}") from None
        self.sock = s
        self._file = s.makefile("rb")
        return True

    def connect(self, autostart: bool = True, check_version: bool = True) -> Client:
        if self.sock is not None:
            return self
        self.home.ensure()
        if not self._try_connect():
            if not autostart:
                raise DaemonNotRunning("the pyvm2 daemon is not running", "any command that needs it starts it, e.g. pyvm2 list")
            self._spawn_daemon()
        hello = self.call("hello", {"version": __version__, "protocol": protocol.PROTOCOL_VERSION},
                          timeout=10)
        self.daemon_version = hello.get("version")
        if check_version and self.daemon_version != __version__:
            raise DaemonError(
                f"the running pyvm2 daemon is version {self.daemon_version}, this command is {__version__}",
                "run `pyvm2 update` to replace it by this version (the apps keep running)")
        return self

    def _spawn_daemon(self) -> None:
        import subprocess

        home = self.home
        log = os.open(home.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        env = dict(os.environ, PYVM2_HOME=str(home.root))
        # a CLI run by an app carries that app's run token: the daemon must not
        env.pop("PYVM2_RUN_TOKEN", None)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pyvm2.daemon", "--home", str(home.root)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", env=env,
                start_new_session=True, close_fds=True)
        finally:
            os.close(log)
        self.spawned = True
        deadline = time.monotonic() + START_DEADLINE_S
        delay = 0.005
        while time.monotonic() < deadline:
            if self._try_connect():
                return
            code = proc.poll()
            if code is not None and code != 0:
                raise DaemonError(f"the pyvm2 daemon failed to start (exit code {code})",
                                  f"its log says:\n{_tail(home.log)}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        raise DaemonError(f"the pyvm2 daemon did not answer within {START_DEADLINE_S:.0f}s",
                          f"see {home.log}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # ---- requests ------------------------------------------------------------------------
    def _reply_within(self, seconds: float, timeout: float | None) -> bool:
        """Whether the reply (or the end of the connection) arrives within `seconds`; the reply
        stays unread, and the socket's timeout is `timeout` again afterwards."""
        assert self.sock is not None
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(timeout)

    def call(self, cmd: str, args: dict[str, Any] | None = None,
             timeout: float | None = 60.0) -> Any:
        """Send `cmd` (its arguments checked against `protocol.COMMANDS`), return the reply's data."""
        return self._parse(self._exchange(cmd, args, timeout)[1])

    def call_json(self, cmd: str, args: dict[str, Any] | None = None,
                  timeout: float | None = 60.0) -> bytes:
        """Like `call`, but the reply's data as the JSON text the daemon sent (`jlist` prints it
        as it is, without decoding thousands of apps to encode them again)."""
        rid, line = self._exchange(cmd, args, timeout)
        head = b'{"id":%d,"ok":true,"data":' % rid
        if line.startswith(head) and line.endswith(b"}\n"):
            return line[len(head):-2]
        return protocol.encode(self._parse(line)).rstrip(b"\n")

    def _exchange(self, cmd: str, args: dict[str, Any] | None,
                  timeout: float | None) -> tuple[int, bytes]:
        """Send one request; (its id, the reply line)."""
        protocol.command(cmd).check_args(args or {})   # a CLI bug shows before any connection
        if self.sock is None:
            self.connect()
        assert self.sock is not None and self._file is not None
        rid = self._next_id
        request = protocol.request(rid, cmd, args)
        self._next_id += 1
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(request)
            if self.on_slow is not None and (timeout is None or timeout > SLOW_AFTER_S) \
                    and not self._reply_within(SLOW_AFTER_S, timeout):
                started = time.monotonic()
                self.on_slow(self, cmd, None if timeout is None else timeout - SLOW_AFTER_S)
                # what is left of the timeout after the first peek and the progress line
                self.sock.settimeout(None if timeout is None else max(
                    0.001, timeout - SLOW_AFTER_S - (time.monotonic() - started)))
            line = self._file.readline()
        except TimeoutError:
            raise DaemonError(f"the daemon did not answer `{cmd}` within {timeout:.0f}s",
                              f"it may be overloaded; see {self.home.log}") from None
        except OSError as e:
            raise DaemonError(f"lost the connection to the daemon: {e.strerror or e}",
                              f"see {self.home.log}") from None
        if not line:
            raise DaemonError("the daemon closed the connection before answering",
                              f"it may have crashed; see {self.home.log}")
        return rid, line

    def _parse(self, line: bytes) -> Any:
        try:
            reply = json.loads(line)
        except ValueError:
            raise DaemonError("the daemon sent a reply that is not JSON") from None
        if reply.get("ok"):
            return reply.get("data")
        err = reply.get("error") or {}
        cls = NotFound if err.get("code") == protocol.E_NOT_FOUND else Pyvm2Error
        raise cls(err.get("message") or "the daemon reported an error", err.get("hint"),
                  code=int(err.get("exit_code") or 1))


def _tail(path: os.PathLike[str] | str, n: int = 10) -> str:
    lines = tail_lines(path, n, max_bytes=64 * 1024)
    return "\n".join(ln.decode(errors="replace").rstrip("\r") for ln in lines) or "(no log)"


def daemon_pid(home: Home) -> int | None:
    try:
        return int(home.pid.read_text().strip())
    except (OSError, ValueError):
        return None
