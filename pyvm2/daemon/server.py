"""Unix socket server: one JSON request per line in, one reply per line out; whatever a client
sends, the daemon answers or hangs up, and stays up."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import traceback
from typing import TYPE_CHECKING

from pyvm2 import protocol
from pyvm2.daemon import events
from pyvm2.errors import NotFound, Pyvm2Error

if TYPE_CHECKING:
    from pyvm2.daemon.daemon import Daemon

#: A connection that sends nothing for this long is closed.
IDLE_TIMEOUT_S = 300.0


def peer(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process at the other end of a unix socket, where the system says."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        return pid, uid
    getpeereid = getattr(os, "getpeereid", None)
    return None, (getpeereid(sock.fileno()) if getpeereid else None)


class Server:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.path = str(daemon.home.socket)
        self._server: asyncio.AbstractServer | None = None
        self._uid = os.getuid()

    async def start(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=self.path,
                                                           limit=protocol.MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        try:
            # only our own socket: after a replacement it belongs to another daemon
            if os.stat(self.path).st_ino == self.daemon.socket_ino:
                os.unlink(self.path)
        except OSError:
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            pid, uid = peer(sock) if sock is not None else (None, None)
            if uid is not None and uid != self._uid and uid != 0:
                writer.write(protocol.error(None, protocol.E_FORBIDDEN, "permission denied"))
                await writer.drain()
                return
            events.CLIENT.set(pid)   # this connection's task: its commands' progress records
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(protocol.error(None, protocol.E_BAD_REQUEST,
                                                f"request longer than {protocol.MAX_LINE} bytes"))
                    await writer.drain()
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                claimed = events.claim(line)
                if claimed is not None:  # subscribe, history, env
                    if not await self.daemon.events.serve(claimed, reader, writer):
                        return
                    continue
                writer.write(await self._reply(line))
                await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # the daemon is exiting with this client still connected
        except Exception as e:  # the daemon outlives any client
            self.daemon.log(f"connection handler failed: {e!r}")
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _reply(self, line: bytes) -> bytes:
        try:
            req = protocol.decode(line)
        except RecursionError:
            return protocol.error(None, protocol.E_BAD_REQUEST, "request nested too deeply")
        except ValueError:
            return protocol.error(None, protocol.E_BAD_REQUEST, "request is not valid JSON")
        try:
            rid, cmd, args = protocol.parse_request(req)
        except protocol.BadRequest as e:
            return protocol.error(e.req_id, e.wire_code, e.message[:500], e.hint, e.code)
        try:
            data = await self.daemon.dispatch(cmd, args)
            return protocol.ok(rid, data)
        except protocol.BadRequest as e:
            return protocol.error(rid, e.wire_code, e.message[:2000], e.hint, e.code)
        except Pyvm2Error as e:
            code = protocol.E_NOT_FOUND if isinstance(e, NotFound) else protocol.E_FAILED
            return protocol.error(rid, code, e.message, e.hint, e.code)
        except Exception as e:  # a bug in the daemon: said so, logged in full, and survived
            self.daemon.log(f"command {cmd} failed:\n{traceback.format_exc().rstrip()}")
            return protocol.error(
                rid, protocol.E_INTERNAL,
                f"internal error in the daemon: {e!r}"[:500] + f"; see {self.daemon.home.log}",
                "this is a pyvm2 bug (the log has the traceback); the daemon keeps running")
