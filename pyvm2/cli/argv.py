"""pm2's command-line habits that a typer parser cannot express: global flags taken anywhere,
Node-only flags accepted and ignored, and options whose value may be left out."""

from __future__ import annotations

import re
from collections.abc import Callable

VERSION_FLAGS = frozenset({"-v", "-V", "--version"})

#: pm2 flags that only mean something to Node or to pm2.io; accepted anywhere and ignored.
IGNORED = frozenset({
    "--no-vizion", "--no-pmx", "--no-automation", "--source-map-support",
    "--disable-source-map-support", "-x", "--execute-command", "--trace", "--disable-trace",
    "--no-autorestart-on-fail", "--vizion", "--pmx", "--automation",
})
#: Ignored flags that take a value (the value goes too).
IGNORED_WITH_VALUE = frozenset({"--deep-monitoring", "--instance-var"})

_DATE_FORMAT = re.compile(r"YY|MM|DD|HH|hh|mm|ss|SSS|^[Xx]$")
_SCRIPT = (".py", ".js", ".cjs", ".mjs", ".php", ".sh", ".rb", ".pl", ".json", ".json5", ".yml",
           ".yaml", ".ts")


def _any(word: str) -> bool:
    return True


def _date_format(word: str) -> bool:
    return bool(_DATE_FORMAT.search(word))


def _not_a_script(word: str) -> bool:
    return not word.endswith(_SCRIPT) and word != "-"


#: command -> option -> (the value it gets when written without one, whether the next word is its
#: value). As commander's `[value]`, with one refinement: a word that is plainly something else (a
#: script after -l, a target after --timestamp) is not swallowed.
OPTIONAL_VALUE: dict[str, dict[str, tuple[str, Callable[[str], bool]]]] = {
    "start": {"-l": ("", _not_a_script), "--log": ("", _not_a_script),
              "--filter-env": ("", _not_a_script), "--watch": ("true", _not_a_script)},
    "logs": {"--timestamp": ("YYYY-MM-DD-HH:mm:ss", _date_format), "--highlight": ("", _any)},
}
#: Commands pm2 spells differently, rewritten before parsing.
RENAMED = {"log": "logs"}


class Parsed:
    """argv for the parser, and what the global flags asked for."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.silent = False
        self.no_color = False
        self.version = False
        self.ignored: list[str] = []


def rewrite(argv: list[str]) -> Parsed:
    """Apply pm2's conventions to argv (script arguments after `--` already removed)."""
    out = Parsed(list(argv))
    if out.argv[:1] and out.argv[0] in VERSION_FLAGS:
        out.version = True
        return out
    if out.argv[:1] and out.argv[0] in RENAMED:
        out.argv[0] = RENAMED[out.argv[0]]
    kept: list[str] = []
    skip = False
    for i, a in enumerate(out.argv):
        if skip:
            skip = False
            continue
        if a in ("-s", "--silent"):
            out.silent = True
        elif a == "--no-color":
            out.no_color = True
        elif a in IGNORED:
            out.ignored.append(a)
        elif a in IGNORED_WITH_VALUE:
            out.ignored.append(a)
            skip = i + 1 < len(out.argv)
        elif a.split("=", 1)[0] in IGNORED_WITH_VALUE:
            out.ignored.append(a)
        else:
            kept.append(a)
    command = next((a for a in kept if not a.startswith("-")), None)
    optional = OPTIONAL_VALUE.get(command or "", {})
    if optional:
        rewritten: list[str] = []
        for i, a in enumerate(kept):
            if a in optional:
                default, takes = optional[a]
                nxt = kept[i + 1] if i + 1 < len(kept) else None
                if nxt is None or nxt.startswith("-") or not takes(nxt):
                    a = f"{_long_of(command or '', a)}={default}"
            rewritten.append(a)
        kept = rewritten
    out.argv = kept
    return out


def _long_of(command: str, short: str) -> str:
    """The long spelling of an option in OPTIONAL_VALUE (`-l` -> `--log`)."""
    if short.startswith("--"):
        return short
    longs = [o for o in OPTIONAL_VALUE.get(command, {}) if o.startswith("--")]
    return next((o for o in longs if o[2] == short[1]), short)
