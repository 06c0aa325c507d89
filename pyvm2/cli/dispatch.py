"""Run the typer app with pyvm2's error style: an unknown command or a usage mistake gets one
error line first, then a hint that leads somewhere, and exit code 2."""

from __future__ import annotations

import os
import sys
from typing import Any

from pyvm2.cli import hints
from pyvm2.errors import UsageError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as _cx  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as _cx  # type: ignore[no-redef]


class CommandLineError(UsageError):
    """The command line cannot be parsed: exit 2, as pm2's usage errors."""

    code = 2


def command_names(group: Any) -> list[str]:
    return list(group.commands)


def run(argv: list[str]) -> None:
    import typer

    from pyvm2.cli.commands import app

    group: Any = typer.main.get_command(app)
    if not argv and not os.environ.get("_PYVM2_COMPLETE"):
        group.main(args=["--help"], prog_name="pyvm2", standalone_mode=False)
        sys.exit(1)  # as pm2: a bare `pm2` is not a successful command
    if os.environ.get("_PYVM2_COMPLETE"):
        from pyvm2.cli.more import enable_target_completion

        enable_target_completion(group)
    word = argv[0] if argv and not argv[0].startswith("-") else None
    if word is not None and word not in group.commands:
        message, hint = hints.unknown_command(word, command_names(group))
        raise CommandLineError(message, hint)
    try:
        code = group.main(args=argv, prog_name="pyvm2", standalone_mode=False)
    except _cx.NoSuchOption as e:
        raise CommandLineError(*_no_such_option(e)) from None
    except _cx.UsageError as e:
        raise CommandLineError(*_usage(e)) from None
    except _cx.ClickException as e:
        raise CommandLineError(e.format_message()) from None
    except typer.Abort:
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)


def _command(e: Any) -> tuple[str, Any]:
    ctx = getattr(e, "ctx", None)
    if ctx is None or ctx.command is None:
        return "", None
    path = ctx.command_path.split(" ", 1)
    return (path[1] if len(path) > 1 else ""), ctx


def _no_such_option(e: Any) -> tuple[str, str]:
    name, ctx = _command(e)
    options: list[str] = []
    if ctx is not None:
        for p in ctx.command.params:
            options.extend(getattr(p, "opts", []))
            options.extend(getattr(p, "secondary_opts", []))
    if not name:
        return (f"unknown option {e.option_name}",
                "options go after the command, e.g. pyvm2 start app.py --name api; "
                "see pyvm2 --help")
    return hints.unknown_option(e.option_name, name, options)


def _usage(e: Any) -> tuple[str, str]:
    name, ctx = _command(e)
    message = e.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    if ctx is None:
        return message, "see pyvm2 --help"
    import re

    pieces = [p for p in ctx.command.collect_usage_pieces(ctx) if p != "[OPTIONS]"]
    usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), " ".join(pieces))
    where = f"pyvm2 {name}" if name else "pyvm2"
    return message, f"usage: {where} {usage} (see {where} --help)"
