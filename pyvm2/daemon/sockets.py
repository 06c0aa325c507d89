"""Listening sockets the daemon holds for apps (`listen`): bound once, before an app's first
instance starts, kept across its restarts and reloads, and handed to every instance by the
socket-activation protocol (descriptors from 3, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES).

TCP sockets are bound with SO_REUSEADDR and SO_REUSEPORT: after a daemon was killed, the
instances it left running still hold its sockets, and the next daemon binds the same addresses
beside them (only a socket of the same user that also asked for SO_REUSEPORT can share a port,
so a port taken by any other program is still refused). A unix socket path left by a dead
daemon is taken over when nothing answers on it, or when the app's own instances hold it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass

from pyvm2.errors import SpawnError

BACKLOG = 1024


@dataclass
class Held:
    addresses: tuple[str, ...]
    socks: list[socket.socket]
    unix_paths: list[str]

    def fds(self) -> list[int]:
        return [s.fileno() for s in self.socks]

    def close(self, unlink: bool) -> None:
        for s in self.socks:
            s.close()
        self.socks = []
        if unlink:
            for path in self.unix_paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _tcp(address: str) -> socket.socket:
    host, _, port_text = address.rpartition(":")
    port = int(port_text)
    if host.startswith("["):
        family, host = socket.AF_INET6, host[1:-1]
    else:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise _bind_error(address, e, port) from None
    return sock


def _unix(address: str, takeover: bool) -> socket.socket:
    path = address[len("unix:"):]
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise SpawnError(f"cannot listen on {address}: the path exists and is not a socket",
                             "remove the file or choose another path")
        if not takeover and _answers(path):
            raise SpawnError(f"cannot listen on {address}: another process is listening there",
                             "stop it, or choose another path")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise _bind_error(address, e, None) from None
    return sock


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _bind_error(address: str, e: OSError, port: int | None) -> SpawnError:
    if e.errno == errno.EADDRINUSE:
        return SpawnError(f"cannot listen on {address}: the address is already in use",
                          "stop what listens there (ss -ltnp shows it), or choose another port")
    if e.errno == errno.EACCES and port is not None and port < 1024:
        return SpawnError(f"cannot listen on {address}: port {port} is privileged",
                          "use a port from 1024 up, or give the daemon CAP_NET_BIND_SERVICE")
    if e.errno == errno.EADDRNOTAVAIL:
        return SpawnError(f"cannot listen on {address}: no such address on this machine",
                          "use an address of this machine, 127.0.0.1, or :PORT for all")
    return SpawnError(f"cannot listen on {address}: {e.strerror or e}",
                      "check the address and its permissions")


class Listeners:
    """app name -> the sockets held for it."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}

    def get(self, name: str, addresses: tuple[str, ...], takeover: bool = False) -> Held:
        """The sockets for these addresses, bound now if not yet held (SpawnError if one cannot
        be). A changed list binds the new set first, then lets the old one go."""
        held = self._held.get(name)
        if held is not None and held.addresses == addresses:
            return held
        socks: list[socket.socket] = []
        paths: list[str] = []
        old_paths = set(held.unix_paths) if held is not None else set()
        try:
            for address in addresses:
                if address.startswith("unix:"):
                    path = address[len("unix:"):]
                    socks.append(_unix(address, takeover or path in old_paths))
                    paths.append(path)
                else:
                    socks.append(_tcp(address))
        except SpawnError:
            for s in socks:
                s.close()
            raise
        if held is not None:
            held.close(unlink=False)
            for path in old_paths - set(paths):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        new = Held(addresses, socks, paths)
        self._held[name] = new
        return new

    def release(self, name: str) -> None:
        """The app is gone: close its sockets and remove its unix socket files."""
        held = self._held.pop(name, None)
        if held is not None:
            held.close(unlink=True)

    def names(self) -> list[str]:
        return list(self._held)

    def close_all(self, unlink: bool) -> None:
        for held in self._held.values():
            held.close(unlink)
        self._held.clear()
