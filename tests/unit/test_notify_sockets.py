"""The notify socket (who may say what), Node's IPC lines, and the sockets held for apps, on real
sockets and processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyvm2.daemon import notify
from pyvm2.daemon.notify import IpcReader, Notifier
from pyvm2.daemon.sockets import Listeners
from pyvm2.errors import SpawnError


def test_parse_reads_key_value_lines() -> None:
    assert notify.parse(b"READY=1\nSTATUS=warming up: 3/4\n\nnoise\nMAINPID=42") == {
        "READY": "1", "STATUS": "warming up: 3/4", "MAINPID": "42"}
    assert notify.parse(b"\xff\xfe=\n") == {"\ufffd\ufffd": ""}


def _send(path: str, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(data, path)


def test_messages_count_only_from_a_registered_tree(tmp_path: Path) -> None:
    async def main() -> tuple[list[dict[str, str]], list[str]]:
        loop = asyncio.get_running_loop()
        logs: list[str] = []
        n = Notifier(str(tmp_path / "notify.sock"), logs.append)
        n.open(loop)
        got: list[dict[str, str]] = []
        try:
            _send(n.path, b"READY=1")          # nobody registered: dropped
            await asyncio.sleep(0.1)
            n.register(os.getpid(), got.append)
            # a child of a registered process counts (it must still run when the message is read)
            child = subprocess.Popen([sys.executable, "-c",
                                      "import socket,sys; s=socket.socket(socket.AF_UNIX,"
                                      "socket.SOCK_DGRAM); s.sendto(b'STATUS=from a child', "
                                      "sys.argv[1]); sys.stdin.read()", n.path],
                                     stdin=subprocess.PIPE)
            _send(n.path, b"READY=1")
            for _ in range(250):
                if len(got) >= 2:
                    break
                await asyncio.sleep(0.02)
            assert child.stdin is not None
            child.stdin.close()
            child.wait(10)
        finally:
            n.close(loop)
        return got, logs

    got, logs = asyncio.run(main())
    assert {"STATUS": "from a child"} in got and {"READY": "1"} in got
    assert any("dropped 1 message" in m for m in logs), logs


def test_a_flood_is_read_a_bounded_number_at_a_time(tmp_path: Path) -> None:
    """The kernel bounds the queue (the sender gets EAGAIN); the daemon reads at most
    MAX_PER_TICK per turn of its loop, and every message it was sent is handled."""
    async def main() -> tuple[int, list[int]]:
        loop = asyncio.get_running_loop()
        n = Notifier(str(tmp_path / "notify.sock"), lambda _m: None)
        n.open(loop)
        got: list[dict[str, str]] = []
        n.register(os.getpid(), got.append)
        per_turn: list[int] = []
        sent = 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setblocking(False)
            while sent < 2000:
                try:
                    s.sendto(f"STATUS={sent}".encode(), n.path)
                    sent += 1
                except BlockingIOError:
                    before = len(got)
                    await asyncio.sleep(0)
                    per_turn.append(len(got) - before)
        for _ in range(100):
            if len(got) == sent:
                break
            await asyncio.sleep(0.01)
        n.close(loop)
        assert got[-1] == {"STATUS": str(sent - 1)}
        return len(got), per_turn

    count, per_turn = asyncio.run(main())
    assert count == 2000 and max(per_turn) <= notify.MAX_PER_TICK


def test_ipc_reader_takes_json_lines_in_pieces() -> None:
    async def main() -> list[dict[str, str]]:
        loop = asyncio.get_running_loop()
        mine, theirs = socket.socketpair()
        got: list[dict[str, str]] = []
        reader = IpcReader(mine.detach(), loop, got.append)
        theirs.sendall(b'{"type":"other"}\n"rea')
        await asyncio.sleep(0.05)
        theirs.sendall(b'dy"\nnot json\n')
        await asyncio.sleep(0.05)
        theirs.close()
        await asyncio.sleep(0.05)
        assert reader.fd == -1   # closed at EOF
        return got

    assert asyncio.run(main()) == [{"READY": "1"}]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_held_sockets_are_bound_once_and_kept(tmp_path: Path) -> None:
    port = _port()
    path = str(tmp_path / "app.sock")
    held = Listeners()
    try:
        first = held.get("app", (f"127.0.0.1:{port}", f"unix:{path}"))
        assert held.get("app", (f"127.0.0.1:{port}", f"unix:{path}")) is first
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert os.path.exists(path)
    finally:
        held.release("app")
    assert not os.path.exists(path)


def test_an_address_in_use_is_refused_with_a_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SpawnError, match="already in use"):
            Listeners().get("app", (f"127.0.0.1:{port}",))
    path = str(tmp_path / "busy.sock")
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(path)
        other.listen()
        with pytest.raises(SpawnError, match="another process is listening"):
            Listeners().get("app", (f"unix:{path}",))
        held = Listeners()
        held.get("app", (f"unix:{path}",), takeover=True)   # its own instances hold it
        held.close_all(unlink=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(SpawnError, match="not a socket"):
        Listeners().get("app", (f"unix:{tmp_path / 'file'}",))


def test_a_stale_unix_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()                        # the file stays, nobody listens
    held = Listeners()
    held.get("app", (f"unix:{path}",))
    held.close_all(unlink=True)
