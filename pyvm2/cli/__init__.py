"""The pyvm2 command line: parse arguments, ask the daemon, print. One error boundary."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from pyvm2.cli.term import paint, use_color
from pyvm2.errors import Pyvm2Error

#: Everything after `--` on the command line: the script's own arguments.
SCRIPT_ARGS: list[str] | None = None
#: A slow command may show its progress line on a terminal's stderr (not with -s/--silent).
PROGRESS = True


def _paint(text: str, style: str, stream: Any) -> str:
    return paint(text, style, use_color(stream))


def info(msg: str) -> None:
    print(f"{_paint('[PYVM2]', 'green', sys.stdout)} {msg}")


def warn(msg: str) -> None:
    print(f"{_paint('[PYVM2][WARN]', 'yellow', sys.stderr)} {msg}", file=sys.stderr)


#: A file with many bad apps shows this many of its errors, then the count.
MAX_ERRORS_SHOWN = 20


def _show(err: Pyvm2Error) -> None:
    lines = str(err.message).splitlines() or [""]
    print(f"{_paint('[PYVM2][ERROR]', 'red', sys.stderr)} {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)
    if err.hint:
        for line in str(err.hint).splitlines():
            print(f"  {_paint('hint:', 'cyan', sys.stderr)} {line}", file=sys.stderr)


def fail(err: Pyvm2Error) -> NoReturn:
    from pyvm2.errors import ConfigErrors

    if isinstance(err, ConfigErrors):
        for one in err.errors[:MAX_ERRORS_SHOWN]:
            _show(one)
        left = len(err.errors) - MAX_ERRORS_SHOWN
        more = f" ({left} more not shown)" if left > 0 else ""
        print(f"{_paint('[PYVM2][ERROR]', 'red', sys.stderr)} {len(err.errors)} errors{more}; "
              "nothing was started or changed", file=sys.stderr)
    else:
        _show(err)
    sys.exit(err.code)


def main(argv: list[str] | None = None) -> None:
    global SCRIPT_ARGS, PROGRESS
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
        if parsed.no_color:
            from pyvm2.cli import term

            term.NO_COLOR = True
        if parsed.silent:
            PROGRESS = False
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
