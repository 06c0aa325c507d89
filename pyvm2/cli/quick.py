"""The commands typed a thousand times a day (list, jlist, ping), without typer's import cost."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from pyvm2 import cli

if TYPE_CHECKING:
    from pyvm2.client import Client

#: argv (exactly) -> function: `pyvm2 list` and friends take this path, skipping typer.
FAST = {}


def _client() -> Client:
    from pyvm2.client import Client

    return show_progress(Client().connect())


def show_progress(client: Client) -> Client:
    """Let a slow command of `client` show its progress line, if stderr is a terminal."""
    if cli.PROGRESS and sys.stderr.isatty():
        client.on_slow = _progress
    return client


def _progress(client: Client, cmd: str, timeout: float | None) -> None:
    """A reply is slow: show the command's progress on the terminal until it comes."""
    from pyvm2.cli.progress import follow

    follow(client, cmd, timeout)


def _width() -> int:
    if sys.stdout.isatty():
        import shutil

        return shutil.get_terminal_size((120, 24)).columns
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        return 300  # pm2 prints the full table through a pipe


def print_table(procs: list[dict], keep_order: bool = False) -> None:
    from pyvm2.cli.render import render_list

    print(render_list(procs, width=_width(), color=cli.use_color(), keep_order=keep_order))
    hints = []
    for p in procs:
        env = p.get("pm2_env", {})
        if env.get("status") in ("errored", "waiting restart") and env.get("status_reason"):
            hints.append(f"{p.get('name')} ({p.get('pm_id')}): {env['status']}: {env['status_reason']}")
    for h in hints:
        cli.warn(h)



def list_apps() -> None:
    print_table(_client().call("list", {"table": True}))


def jlist() -> None:
    # the daemon's JSON text, compact as pm2's JSON.stringify, printed without decoding it
    sys.stdout.flush()
    sys.stdout.buffer.write(_client().call_json("list", {"env": True}))
    sys.stdout.buffer.flush()


def ping() -> None:
    res = _client().call("ping")
    print(f"{{ msg: '{res['msg']}' }}")


FAST.update({"list": list_apps, "ls": list_apps, "status": list_apps, "l": list_apps,
             "ps": list_apps, "jlist": jlist, "ping": ping})
