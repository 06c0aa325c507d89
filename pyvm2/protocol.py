"""The wire between the CLI and the daemon: one JSON object per line, and every command's shape
(its arguments with their types and defaults, and the keys of its reply), defined once here.

The CLI builds its requests with `request`, which checks them against `COMMANDS`; the daemon's
server reads them with `parse_request`, which refuses what does not fit as a bad request and hands
the handler `cmd_<name>(**args)` exactly the declared arguments, defaults filled in. Stdlib only
and cheap to import: `pyvm2 list` loads this module.
"""

from __future__ import annotations

import json
from typing import Any

from pyvm2.errors import Pyvm2Error

PROTOCOL_VERSION = 1
#: A request line longer than this is refused (the connection is closed after the error reply).
#: A `start` carries every app's whole definition (about 1.1 kB each plus its env): room for the
#: 10,000 apps of the largest ecosystem file.
MAX_LINE = 32 * 1024 * 1024

# error codes on the wire
E_BAD_REQUEST = "bad_request"
E_UNKNOWN_COMMAND = "unknown_command"
E_NOT_FOUND = "not_found"
E_FORBIDDEN = "forbidden"
E_INTERNAL = "internal"
E_FAILED = "failed"



class BadRequest(Pyvm2Error):
    """A request refused as it stands: not a known command, or arguments that do not fit."""

    code = 2

    def __init__(self, message: str, hint: str | None = None, *,
                 wire_code: str = E_BAD_REQUEST) -> None:
        super().__init__(message, hint)
        self.wire_code = wire_code
        self.req_id: Any = None


#: Marks an argument every request must give.
REQUIRED = object()

# Argument kinds: what each accepts, and how it is named in an error.
_KINDS: dict[str, tuple[str, Any]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "strs": ("a list of strings", lambda v: isinstance(v, list)
             and all(isinstance(x, str) for x in v)),
    "env": ("an object of string values", lambda v: isinstance(v, dict)
            and all(isinstance(x, str) for x in v.values())),
    "objects": ("a list of objects", lambda v: isinstance(v, list)
                and all(isinstance(x, dict) for x in v)),
    "list": ("a list", lambda v: isinstance(v, list)),
}


class Arg:
    """One argument: its name, kind (a key of `_KINDS`) and default (`REQUIRED` if none).

    A default of None means "not given" and is the only value allowed besides the kind's.
    """

    __slots__ = ("name", "kind", "default", "doc")

    def __init__(self, name: str, kind: str, default: Any = REQUIRED, doc: str = "") -> None:
        assert kind in _KINDS, kind
        self.name, self.kind, self.default, self.doc = name, kind, default, doc

    def fresh_default(self) -> Any:
        d = self.default
        return list(d) if isinstance(d, tuple) else dict(d) if isinstance(d, dict) else d

    def check(self, cmd: str, value: Any) -> Any:
        if value is None and self.default is None:
            return None
        what, ok = _KINDS[self.kind]
        if not ok(value):
            raise BadRequest(f"{cmd}: argument {self.name!r} must be {what}, "
                             f"got {_type_name(value)}")
        return value


class Command:
    """One command: its arguments, and the reply: `list` (a JSON array) or the keys of an object.

    `events`: answered by the daemon's events module on the connection itself (a subscription
    keeps the connection for its stream), not by a `Commands.cmd_<name>` handler."""

    __slots__ = ("name", "args", "reply", "doc", "events")

    def __init__(self, name: str, doc: str, args: tuple[Arg, ...] = (),
                 reply: tuple[str, ...] | str = (), *, events: bool = False) -> None:
        self.name, self.doc, self.args, self.reply = name, doc, {a.name: a for a in args}, reply
        self.events = events

    def check_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments with defaults filled in; BadRequest names what does not fit."""
        unknown = [k for k in args if k not in self.args]
        if unknown:
            known = ", ".join(self.args) or "none"
            raise BadRequest(f"{self.name}: unknown argument {str(unknown[0])[:60]!r} "
                             f"(it takes: {known})")
        out: dict[str, Any] = {}
        for name, arg in self.args.items():
            if name in args:
                out[name] = arg.check(self.name, args[name])
            elif arg.default is REQUIRED:
                raise BadRequest(f"{self.name}: argument {name!r} is missing")
            else:
                out[name] = arg.fresh_default()
        return out

    def reply_problem(self, data: Any) -> str | None:
        """None if `data` has this command's reply shape, else what is wrong with it."""
        if self.reply == "list":
            return None if isinstance(data, (list, Encoded)) \
                else f"expected a list, got {_type_name(data)}"
        if not isinstance(data, dict):
            return f"expected an object, got {_type_name(data)}"
        missing = [k for k in self.reply if k not in data]
        return f"missing {', '.join(missing)}" if missing else None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), "a value")


#: What `list` with `table` keeps of each jlist entry: these top-level keys, and of pm2_env
#: the keys below (what the list table and its hints show), so that thousands of apps are a
#: short reply.
TABLE_KEYS = ("pid", "name", "pm_id", "monit")
TABLE_ENV_KEYS = ("name", "namespace", "version", "status", "status_reason", "exec_mode",
                  "pm_uptime", "restart_time", "watch", "watching", "username")

_TARGETS = Arg("targets", "strs", (), "names, ids, namespaces or `all`")
_TARGETS_REQUIRED = Arg("targets", "strs", doc="names, ids, namespaces or `all`")
_APPS = Arg("apps", "objects", (), "AppSpec.to_dict() of each app")
_BASE_ENV = Arg("base_env", "env", {}, "the CLI's environment, under each app's env")
_IDS_LIST = ("ids", "list")
_WAIT = Arg("wait", "bool", False, "answer once each instance's outcome is known (online for "
            "min(min_uptime, 1 s), or settled), not as soon as it runs")

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("hello", "handshake: each side's version",
            (Arg("version", "str", ""), Arg("protocol", "int", 0)),
            ("version", "protocol", "pid", "home")),
    Command("ping", "is the daemon answering", (), ("msg", "pid", "uptime_ms")),
    Command("list", "every process, pm2's jlist shape",
            (Arg("table", "bool", False, "only the keys the list table shows (TABLE_KEYS)"),
             Arg("env", "bool", False, "pm2_env also carries each app's environment, flattened "
                 "and as `env`, as in pm2's jlist")),
            "list"),
    Command("describe", "the given processes, jlist shape", (_TARGETS_REQUIRED,), "list"),
    Command("targets", "the given processes, or none when nothing is managed",
            (Arg("targets", "strs", ("all",)),), "list"),
    Command("start", "start apps from specs, or known processes by target",
            (_TARGETS, _APPS, _BASE_ENV,
             Arg("from_file", "bool", False, "apps come from a file: update, do not refuse"),
             _WAIT),
            ("actions", "list")),
    Command("restart", "restart processes by target, or apply specs (starting new ones)",
            (_TARGETS, _APPS, _BASE_ENV, Arg("toggle_watch", "bool", False),
             Arg("update_env", "bool", False, "targets take base_env as their new environment"),
             _WAIT),
            _IDS_LIST),
    Command("reload", "replace running processes one at a time with no gap (start, wait until "
            "ready, stop the old); apply specs, starting new apps",
            (_TARGETS, _APPS, _BASE_ENV,
             Arg("update_env", "bool", False, "targets take base_env as their new environment")),
            _IDS_LIST),
    Command("scale", "grow or shrink an app to `count` instances (by `count` when relative): "
            "new ones copy the app's definition and environment, the highest instances go",
            (Arg("name", "str", doc="the app's name, or the id of one of its processes"),
             Arg("count", "int", doc="the number of instances wanted, or the change when relative"),
             Arg("relative", "bool", False, "count is added to the current number (+N / -N)")),
            ("actions", "list")),
    Command("stop", "stop processes",
            (_TARGETS_REQUIRED,
             Arg("unwatch", "bool", False, "turn watching off for good, not only while stopped")),
            _IDS_LIST),
    Command("delete", "stop and forget processes", (_TARGETS_REQUIRED,), _IDS_LIST),
    Command("reset", "reset restart counters", (_TARGETS_REQUIRED,), _IDS_LIST),
    Command("flush", "empty log files (every app's and the daemon's when no target)",
            (_TARGETS,), ("ids",)),
    Command("kill", "stop every app, then the daemon", (), ("stopped", "pid")),
    Command("save", "write the apps to the dump file",
            (Arg("force", "bool", False, "also write an empty list"),), ("path", "count")),
    Command("resurrect", "bring back saved apps (from the dump file, or the given entries)",
            (Arg("entries", "objects", None, "dump entries; none = read the dump file"),
             Arg("if_saved", "bool", False, "no dump file is not an error")),
            ("actions", "list")),
    Command("handover", "leave, apps running, for a new daemon to adopt", (), ("pid", "kept")),
    Command("reload_logs", "reopen every log file", (), ("reopened",)),
    Command("subscribe", "turn the connection into a stream of events: state changes, restarts "
            "with their reasons, samples, and the output of the apps named in `logs`; a later "
            "request line on it changes what it receives",
            (Arg("states", "bool", None, "stream state changes and restarts (on when the "
                 "subscription opens); none: unchanged"),
             Arg("samples", "bool", None, "also stream cpu and memory samples; none: unchanged"),
             Arg("logs", "list", None, "names, ids or `all` whose output to stream; none: "
                 "unchanged"),
             Arg("progress", "bool", None, "also stream the progress of the long commands of "
                 "the same client process (type `progress`: verb, done, total, waiting)")),
            ("subscribed", "queue_max"), events=True),
    Command("history", "the last hour of cpu and memory of the given processes (all by default)",
            (_TARGETS,), ("window_s", "size", "apps"), events=True),
    Command("env", "the environment of the given processes (all by default), by pm_id",
            (_TARGETS,), (), events=True),
)}


class Encoded:
    """A JSON array given as the text of each item (the daemon's snapshots, each kept encoded
    until its instance changes): `encode` joins the texts, nothing is decoded or built again.
    A reply whose shape is `list` may be one."""

    __slots__ = ("texts",)

    def __init__(self, texts: list[str] | None = None) -> None:
        self.texts: list[str] = [] if texts is None else texts

    def __len__(self) -> int:
        return len(self.texts)

    def decoded(self) -> list[Any]:
        return [json.loads(t) for t in self.texts]


def _dumps(obj: Any) -> str:
    if isinstance(obj, Encoded):
        return "[" + ",".join(obj.texts) + "]"
    if isinstance(obj, dict) and any(isinstance(v, Encoded) or (
            isinstance(v, dict) and any(isinstance(w, Encoded) for w in v.values()))
            for v in obj.values()):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_dumps(v)}"
                              for k, v in obj.items()) + "}"
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode(obj: Any) -> bytes:
    """One line of JSON. A reply's data may be, or hold at its top level, an `Encoded` list."""
    if isinstance(obj, dict) and isinstance(obj.get("data"), (dict, Encoded)):
        return _dumps(obj).encode() + b"\n"
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> Any:
    return json.loads(line)


def command(name: Any) -> Command:
    c = COMMANDS.get(name) if isinstance(name, str) else None
    if c is None and name is None:
        raise BadRequest("the request names no command (its \"cmd\" key)",
                         wire_code=E_UNKNOWN_COMMAND)
    if c is None:
        raise BadRequest(f"unknown command {str(name)[:60]!r}", wire_code=E_UNKNOWN_COMMAND)
    return c


def request(req_id: int, cmd: str, args: dict[str, Any] | None = None) -> bytes:
    """A request line; the arguments are checked against the command's shape first."""
    command(cmd).check_args(args or {})
    return encode({"id": req_id, "cmd": cmd, "args": args or {}})


def parse_request(req: Any) -> tuple[Any, str, dict[str, Any]]:
    """(id, command, arguments with defaults) from a decoded request; BadRequest if it does not fit.

    The id is returned even when the rest is refused, via `BadRequest.req_id`.
    """
    if not isinstance(req, dict):
        raise BadRequest("a request must be a JSON object")
    rid = req.get("id")
    if not isinstance(rid, (int, str, type(None))) or isinstance(rid, bool):
        rid = None
    try:
        c = command(req.get("cmd"))
        args = req.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise BadRequest(f"{c.name}: the arguments must be a JSON object, "
                             f"got {_type_name(args)}")
        return rid, c.name, c.check_args(args)
    except BadRequest as e:
        e.req_id = rid
        raise


def ok(req_id: Any, data: Any = None) -> bytes:
    return encode({"id": req_id, "ok": True, "data": data})


def error(req_id: Any, code: str, message: str, hint: str | None = None,
          exit_code: int = 1) -> bytes:
    return encode({"id": req_id, "ok": False,
                   "error": {"code": code, "message": message, "hint": hint,
                             "exit_code": exit_code}})
