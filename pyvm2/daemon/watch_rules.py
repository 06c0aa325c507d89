"""Which changed paths watch mode ignores: the always-ignored names, the daemon's own files and
`ignore_watch` globs, compiled once per app into a cheap matcher.

Ignore rules, applied to each changed path (a rule that matches a directory covers everything below
it; the watcher does not descend into directories ignored by rule at all, to save inotify watches
and polling CPU):

* always, whatever `ignore_watch` says: the daemon's own files (`extra_ignore`: PYVM2_HOME, the
  app's log and pid files, plus their rotated/temp siblings like `out.log.1`); and, below each
  watched path, any component named one of ALWAYS_IGNORED_DIRS (`.git`, `__pycache__`, `.venv`,
  `venv`, `node_modules`, `vendor`, tool caches) or matching ALWAYS_IGNORED_NAMES (`*.pyc`,
  `*.log`, SQLite `*-wal`/`*-shm`/`*-journal`, editor swap, backup and temp files);
* `ignore_watch` entries without a `/` (`tmp`, `*.csv`, `cache*`) match any path component at any
  depth: `tmp` ignores every `tmp/` directory and every file named `tmp`;
* entries with a `/` (`logs/*`, `data/**`, `src/gen`), or starting with `./`, are globs anchored
  at the app's cwd: `*` and `?` stay within one component, `**` spans directories, `[abc]` is a
  class; a trailing `/` or `/**` means the directory and all below;
* absolute entries (or `../x`, `~/x`) are the same globs anchored at `/`.

Standard library only: the rules are tested, and used, without watchdog.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Always ignored below each watched path, whatever ignore_watch says: version control, caches and
# environments that tools rewrite all the time, and the files apps, databases and editors write
# next to the code (USER-NEEDS §1.1: these are what make pm2 restart in a loop).
ALWAYS_IGNORED_DIRS = frozenset({
    ".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules", "vendor",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".idea",
})
ALWAYS_IGNORED_NAMES = (
    "*.pyc", "*.pyo", "*.log", "*-wal", "*-shm", "*-journal",       # bytecode, logs, SQLite
    "*.sw[a-px]", "4913", "*~", ".#*", "#*#",                      # vim swap/probe, backups, emacs locks
    "*.tmp", "*___jb_tmp___", "*___jb_old___", ".goutputstream-*",  # atomic-save temps (the rename counts)
    "*.kate-swp", ".DS_Store",
)

# A daemon-owned file (extra_ignore) also covers its rotated and temporary siblings:
# out.log.1, out.log.2024-05-01, out.log.1.gz, app.pid.4242.tmp.
_SIBLING = re.compile(r"\.(?:\d[^/]*|gz|old|bak)")


def _segment_re(glob: str) -> str:
    """One path segment of a glob as a regex: `*` and `?` never cross a `/`; `[...]` classes."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1:end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _anchored_re(glob: str) -> str:
    """A path glob as a regex: `**` as a whole segment spans any number of directories."""
    segs = [s for s in glob.split("/") if s not in ("", ".")]
    out = ""
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "**":
            out += ".*" if last else "(?:[^/]+/)*"
        else:
            out += _segment_re(seg) + ("" if last else "/")
    return out


def _alternation(parts: Iterable[str], tail: str = "") -> re.Pattern[str] | None:
    parts = list(parts)
    return re.compile("(?:" + "|".join(f"(?:{p})" for p in parts) + ")" + tail, re.S) if parts else None


_ALWAYS_NAMES_RE = re.compile("|".join(f"(?:{_segment_re(g)})" for g in ALWAYS_IGNORED_NAMES), re.S)


def under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


@dataclass(frozen=True, eq=False)
class Rules:
    """The ignore rules of one app; `ignored` runs in the observer thread, so it must stay cheap."""

    cwd: str
    extra: tuple[str, ...]
    names: re.Pattern[str] | None      # ignore_watch entries without a "/": any path component
    anchored: re.Pattern[str] | None   # ignore_watch entries with a "/": from cwd (or absolute)
    signature: tuple[Any, ...]

    @classmethod
    def build(cls, cwd: str, ignore: Sequence[str], extra: Sequence[str], roots: Sequence[str]) -> Rules:
        names: list[str] = []
        anchored: list[str] = []
        for raw in ignore:
            entry = raw.strip()
            if entry.startswith("~"):
                entry = os.path.expanduser(entry)
            if entry.startswith(("/", "./", "../")):
                entry = os.path.normpath(os.path.join(cwd, entry))
                if under(entry, cwd) and entry != cwd:
                    entry = entry[len(cwd.rstrip("/")) + 1:]
                    explicit = True
                else:
                    anchored.append("/" + _anchored_re(_strip_tail(entry)))
                    continue
            else:
                explicit = False
            entry = _strip_tail(entry)
            if not entry:
                continue
            if "/" in entry or explicit:
                anchored.append(_anchored_re(entry))
            else:
                names.append(_segment_re(entry))
        extras: set[str] = set()
        for e in extra:
            if not e:
                continue
            path = os.path.normpath(os.path.join(cwd, e))
            extras.add(path)
            # Events carry paths as spelled by the watched root; the daemon may spell its own files
            # through another symlink (macOS /tmp -> /private/tmp, a symlinked project dir).
            real = os.path.realpath(path)
            for root in roots:
                real_root = os.path.realpath(root)
                if under(real, real_root):
                    extras.add(os.path.normpath(root + real[len(real_root):]))
        return cls(cwd=cwd, extra=tuple(sorted(extras)), names=_alternation(names),
                   # (?:/.*)? : a pattern that matches a directory covers everything below it.
                   anchored=_alternation(anchored, tail="(?:/.*)?"),
                   signature=(cwd, tuple(ignore), tuple(sorted(extras))))

    def is_extra(self, path: str) -> bool:
        for e in self.extra:
            if path.startswith(e) and (len(path) == len(e) or path[len(e)] == "/"
                                       or _SIBLING.fullmatch(path, len(e)) is not None):
                return True
        return False

    def ignored(self, path: str, root: str) -> bool:
        """Whether `path` (absolute, normalized, under the watched directory `root`) is ignored."""
        if self.is_extra(path):
            return True
        if path != root:
            for comp in path[len(root.rstrip("/")) + 1:].split("/"):
                if (comp in ALWAYS_IGNORED_DIRS or _ALWAYS_NAMES_RE.fullmatch(comp)
                        or (self.names is not None and self.names.fullmatch(comp))):
                    return True
        if self.anchored is not None:
            subject = self.relative(path)
            if subject != "." and self.anchored.fullmatch(subject):
                return True
        return False

    def relative(self, path: str) -> str:
        """How a changed path is reported: relative to cwd, or absolute when outside it."""
        if path == self.cwd:
            return "."
        return path[len(self.cwd.rstrip("/")) + 1:] if under(path, self.cwd) else path


def _strip_tail(entry: str) -> str:
    # "data/" and "data/**" both mean the directory and everything in it.
    while True:
        if entry.endswith("/**"):
            entry = entry[:-3]
        elif entry.endswith("/") and len(entry) > 1:
            entry = entry[:-1]
        else:
            return entry


def is_ignored(path: str, *, cwd: str, ignore: Sequence[str] = (), extra_ignore: Sequence[str] = (),
               root: str | None = None) -> bool:
    """Whether a change to `path` (relative to `cwd`, or absolute) is ignored."""
    cwd = os.path.normpath(os.path.abspath(cwd))
    root = os.path.normpath(os.path.join(cwd, root)) if root else cwd
    full = os.path.normpath(os.path.join(cwd, path))
    return Rules.build(cwd, ignore, extra_ignore, [root]).ignored(full, root)
