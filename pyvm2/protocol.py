"""The wire format shared by the CLI and the daemon: one JSON object per line."""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1
#: A request line longer than this is refused (the connection is closed after the error reply).
MAX_LINE = 4 * 1024 * 1024

COMMANDS = frozenset({
    "hello", "ping", "start", "stop", "restart", "delete", "reset", "list", "describe",
    "targets", "flush", "kill", "save", "resurrect", "handover", "reload_logs",
})

# error codes on the wire
E_BAD_REQUEST = "bad_request"
E_UNKNOWN_COMMAND = "unknown_command"
E_NOT_FOUND = "not_found"
E_VERSION = "version"
E_INTERNAL = "internal"
E_FAILED = "failed"


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> Any:
    return json.loads(line)


def request(req_id: int, cmd: str, args: dict | None = None) -> bytes:
    return encode({"id": req_id, "cmd": cmd, "args": args or {}})


def ok(req_id: Any, data: Any = None) -> bytes:
    return encode({"id": req_id, "ok": True, "data": data})


def error(req_id: Any, code: str, message: str, hint: str | None = None,
          exit_code: int = 1) -> bytes:
    return encode({"id": req_id, "ok": False,
                   "error": {"code": code, "message": message, "hint": hint,
                             "exit_code": exit_code}})
