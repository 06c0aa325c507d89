"""The pyvm2 command line: parse arguments, ask the daemon, print. One error boundary."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from pyvm2.errors import Pyvm2Error

#: Everything after `--` on the command line: the script's own arguments.
SCRIPT_ARGS: list[str] | None = None
#: `--no-color` was given (kept here, not in NO_COLOR, so that apps started now do not inherit it).
NO_COLOR = False


def use_color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if NO_COLOR or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _paint(text: str, code: str, stream: Any) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if use_color(stream) else text


def info(msg: str) -> None:
    print(f"{_paint('[PYVM2]', '32', sys.stdout)} {msg}")


def warn(msg: str) -> None:
    print(f"{_paint('[PYVM2][WARN]', '33', sys.stderr)} {msg}", file=sys.stderr)


def fail(err: Pyvm2Error) -> NoReturn:
    lines = str(err.message).splitlines() or [""]
    print(f"{_paint('[PYVM2][ERROR]', '31', sys.stderr)} {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)
    if err.hint:
        for line in str(err.hint).splitlines():
            print(f"  {_paint('hint:', '36', sys.stderr)} {line}", file=sys.stderr)
    sys.exit(err.code)


def main(argv: list[str] | None = None) -> None:
    global SCRIPT_ARGS, NO_COLOR
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        SCRIPT_ARGS = argv[cut + 1:]
        argv = argv[:cut]
    try:
        if len(argv) == 1 and SCRIPT_ARGS is None:
            from pyvm2.cli.quick import FAST

            if argv[0] in FAST:
                FAST[argv[0]]()
                return
        from pyvm2.cli.argv import rewrite

        parsed = rewrite(argv)
        if parsed.version:
            from pyvm2 import __version__

            print(__version__)
            return
        NO_COLOR = parsed.no_color
        if parsed.silent:
            sys.stdout = open(os.devnull, "w")
        from pyvm2.cli.dispatch import run

        run(parsed.argv)
    except Pyvm2Error as e:
        fail(e)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `pyvm2 logs | head`: the reader went away, which is not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(0)
