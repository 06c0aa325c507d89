"""The wire: encoding, every command's shape on both sides, and bad requests named as such."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from pyvm2 import protocol
from pyvm2.daemon.commands import Commands
from pyvm2.protocol import COMMANDS, REQUIRED, BadRequest

#: A value of each argument kind, as a client would send it.
SAMPLE: dict[str, Any] = {
    "str": "1.0", "int": 1, "bool": True, "strs": ["api", "0"], "env": {"PATH": "/bin"},
    "objects": [{"name": "api"}], "list": ["api", 0],
}
#: A value of the wrong type for each kind.
WRONG: dict[str, Any] = {
    "str": 5, "int": True, "bool": "yes", "strs": ["api", 5], "env": {"X": 1},
    "objects": ["api"], "list": "api",
}


def test_encode_is_one_compact_line_and_decodes_back() -> None:
    obj = {"id": 1, "cmd": "start", "args": {"apps": [{"name": "é\nx"}]}}
    line = protocol.encode(obj)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b", " not in line
    assert protocol.decode(line) == obj
    assert "é".encode() in line   # not escaped


def test_replies_carry_the_id_and_either_data_or_an_error() -> None:
    assert protocol.decode(protocol.ok(3, [1])) == {"id": 3, "ok": True, "data": [1]}
    err = protocol.decode(protocol.error("x", protocol.E_NOT_FOUND, "no app", "see list", 1))
    assert err == {"id": "x", "ok": False, "error": {"code": "not_found", "message": "no app",
                                                     "hint": "see list", "exit_code": 1}}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_round_trips_with_defaults_filled_in(name: str) -> None:
    cmd = COMMANDS[name]
    given = {a: SAMPLE[arg.kind] for a, arg in cmd.args.items()}
    rid, got_name, got = protocol.parse_request(protocol.decode(protocol.request(9, name, given)))
    assert (rid, got_name, got) == (9, name, given)
    required = {a: SAMPLE[arg.kind] for a, arg in cmd.args.items() if arg.default is REQUIRED}
    _, _, filled = protocol.parse_request(protocol.decode(protocol.request(1, name, required)))
    assert set(filled) == set(cmd.args)
    for a, arg in cmd.args.items():
        if arg.default is not REQUIRED:
            assert filled[a] == (list(arg.default) if isinstance(arg.default, tuple)
                                 else arg.default)


def test_defaults_are_fresh_for_each_request() -> None:
    _, _, first = protocol.parse_request({"cmd": "start", "args": {}})
    first["targets"].append("x")
    first["base_env"]["X"] = "1"
    _, _, second = protocol.parse_request({"cmd": "start", "args": {}})
    assert second["targets"] == [] and second["base_env"] == {}


HANDLED = sorted(n for n, c in COMMANDS.items() if not c.events)


@pytest.mark.parametrize("name", HANDLED)
def test_each_daemon_handler_takes_exactly_the_declared_arguments(name: str) -> None:
    handler = getattr(Commands, f"cmd_{name}")
    params = list(inspect.signature(handler).parameters)[1:]   # without self
    assert params == list(COMMANDS[name].args), name


def test_every_handler_of_the_daemon_is_a_declared_command() -> None:
    handlers = {n[len("cmd_"):] for n in dir(Commands) if n.startswith("cmd_")}
    assert handlers == set(HANDLED)


@pytest.mark.parametrize(("req", "code", "says"), [
    ([1, 2], protocol.E_BAD_REQUEST, "must be a JSON object"),
    ({"id": 1, "cmd": "format_disk"}, protocol.E_UNKNOWN_COMMAND, "unknown command 'format_disk'"),
    ({"id": 1, "cmd": 5}, protocol.E_UNKNOWN_COMMAND, "unknown command '5'"),
    ({"id": 1}, protocol.E_UNKNOWN_COMMAND, "the request names no command"),
    ({"id": 1, "cmd": "stop", "args": [1]}, protocol.E_BAD_REQUEST,
     "stop: the arguments must be a JSON object, got a list"),
    ({"id": 1, "cmd": "stop", "args": {}}, protocol.E_BAD_REQUEST,
     "stop: argument 'targets' is missing"),
    ({"id": 1, "cmd": "stop", "args": {"targets": 5}}, protocol.E_BAD_REQUEST,
     "stop: argument 'targets' must be a list of strings, got an integer"),
    ({"id": 1, "cmd": "ping", "args": {"x": "y"}}, protocol.E_BAD_REQUEST,
     "ping: unknown argument 'x' (it takes: none)"),
    ({"id": 1, "cmd": "save", "args": {"forse": True}}, protocol.E_BAD_REQUEST,
     "save: unknown argument 'forse' (it takes: force)"),
    ({"id": 1, "cmd": "save", "args": {"force": 1}}, protocol.E_BAD_REQUEST,
     "save: argument 'force' must be true or false, got an integer"),
    ({"id": 1, "cmd": "hello", "args": {"protocol": True}}, protocol.E_BAD_REQUEST,
     "hello: argument 'protocol' must be an integer, got a boolean"),
    ({"id": 1, "cmd": "start", "args": {"base_env": {"A": 1}}}, protocol.E_BAD_REQUEST,
     "start: argument 'base_env' must be an object of string values"),
    ({"id": 1, "cmd": "start", "args": {"apps": ["a.py"]}}, protocol.E_BAD_REQUEST,
     "start: argument 'apps' must be a list of objects"),
])
def test_bad_requests_are_refused_with_what_is_wrong(req: Any, code: str, says: str) -> None:
    with pytest.raises(BadRequest) as info:
        protocol.parse_request(req)
    assert info.value.wire_code == code
    assert says in info.value.message
    assert info.value.code == 2   # the exit code a CLI shows


def test_a_refused_request_keeps_its_id_for_the_reply() -> None:
    with pytest.raises(BadRequest) as info:
        protocol.parse_request({"id": "abc", "cmd": "stop", "args": {"targets": 5}})
    assert info.value.req_id == "abc"
    with pytest.raises(BadRequest) as info:
        protocol.parse_request({"id": [1], "cmd": "nope"})
    assert info.value.req_id is None


def test_null_args_and_a_null_optional_value_are_accepted() -> None:
    assert protocol.parse_request({"cmd": "ping", "args": None})[2] == {}
    assert protocol.parse_request({"cmd": "list", "args": None})[2] == {"table": False, "env": False}
    _, _, args = protocol.parse_request({"cmd": "resurrect", "args": {"entries": None}})
    assert args == {"entries": None, "if_saved": False}


def test_the_client_side_checks_its_request_before_sending() -> None:
    with pytest.raises(BadRequest, match="unknown argument 'target'"):
        protocol.request(1, "stop", {"target": ["a"]})
    with pytest.raises(BadRequest, match="unknown command"):
        protocol.request(1, "frobnicate")


@pytest.mark.parametrize(("name", "data", "problem"), [
    ("list", [], None),
    ("list", {}, "expected a list, got an object"),
    ("stop", {"ids": [], "list": []}, None),
    ("stop", {"ids": []}, "missing list"),
    ("ping", [], "expected an object, got a list"),
])
def test_replies_are_checked_against_their_declared_shape(name: str, data: Any,
                                                          problem: str | None) -> None:
    assert COMMANDS[name].reply_problem(data) == problem


def test_the_command_table_is_json_friendly() -> None:
    for cmd in COMMANDS.values():
        assert cmd.doc
        for arg in cmd.args.values():
            if arg.default is not REQUIRED:
                json.dumps(arg.fresh_default())


class FakeDaemon:
    """What the server needs of a daemon: dispatch, log, home; dispatch runs `behaviour`."""

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.logged: list[str] = []
        self.home = type("H", (), {"log": "/var/pyvm2/pyvm2.log", "socket": "/nonexistent"})()
        self.calls: list[tuple[str, dict]] = []

    async def dispatch(self, cmd: str, args: dict) -> Any:
        self.calls.append((cmd, args))
        return self.behaviour()

    def log(self, msg: str) -> None:
        self.logged.append(msg)


def answer(behaviour: Any, line: bytes) -> tuple[dict, FakeDaemon]:
    import asyncio

    from pyvm2.daemon.server import Server

    daemon = FakeDaemon(behaviour)
    reply = asyncio.run(Server(daemon)._reply(line))  # type: ignore[arg-type]
    return json.loads(reply), daemon


def test_a_handler_bug_is_an_internal_error_logged_with_its_traceback() -> None:
    def buggy() -> Any:
        return {}["missing"]

    reply, daemon = answer(buggy, b'{"id": 4, "cmd": "stop", "args": {"targets": ["a"]}}\n')
    assert reply["id"] == 4 and reply["ok"] is False
    err = reply["error"]
    assert err["code"] == protocol.E_INTERNAL
    assert err["message"].startswith("internal error in the daemon: KeyError('missing')")
    assert err["message"].endswith("; see /var/pyvm2/pyvm2.log")
    assert "bug" in err["hint"] and "bad" not in err["message"]
    assert len(daemon.logged) == 1 and "Traceback" in daemon.logged[0]
    assert 'return {}["missing"]' in daemon.logged[0]


def test_a_bad_request_never_reaches_the_handler_and_is_not_logged() -> None:
    reply, daemon = answer(lambda: None, b'{"id": 5, "cmd": "stop", "args": {"targets": 5}}\n')
    assert reply["id"] == 5 and reply["error"]["code"] == protocol.E_BAD_REQUEST
    assert reply["error"]["exit_code"] == 2
    assert daemon.calls == [] and daemon.logged == []


def test_the_handler_gets_the_checked_arguments_and_its_errors_keep_their_kind() -> None:
    from pyvm2.errors import NotFound

    def missing() -> Any:
        raise NotFound("process 'x' not found", "see pyvm2 list")

    reply, daemon = answer(missing, b'{"id": 6, "cmd": "stop", "args": {"targets": ["x"]}}\n')
    assert daemon.calls == [("stop", {"targets": ["x"], "unwatch": False})]
    assert reply["error"] == {"code": protocol.E_NOT_FOUND, "message": "process 'x' not found",
                              "hint": "see pyvm2 list", "exit_code": 1}
    reply, _ = answer(lambda: (_ for _ in ()).throw(BadRequest("apps[0] (x): no")),
                      b'{"id": 7, "cmd": "start", "args": {}}\n')
    assert reply["error"]["code"] == protocol.E_BAD_REQUEST and reply["error"]["exit_code"] == 2


def test_an_encoded_list_is_sent_as_its_texts_alone_or_inside_a_reply() -> None:
    items = [{"name": "a", "n": 1}, {"name": "é", "n": [2]}]
    enc = protocol.Encoded([json.dumps(i, separators=(",", ":"), ensure_ascii=False)
                            for i in items])
    assert enc.decoded() == items and len(enc) == 2
    assert protocol.COMMANDS["list"].reply_problem(enc) is None
    for data in (enc, {"ids": [1], "list": enc}):
        line = protocol.ok(7, data)
        plain = {"ids": [1], "list": items} if isinstance(data, dict) else items
        assert line == protocol.ok(7, plain) and json.loads(line)["data"] == plain
