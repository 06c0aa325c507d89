"""JSON5 (and so JSON): data with positions, and errors that say what is wrong in plain words."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from pyvm2.errors import ConfigError
from pyvm2.formats.text import FULLWIDTH, SHAPE_HINT, Duplicates, Lines, Parsed, Path, Where, decode
from pyvm2.units import show

_JS_HINT = ("a .json ecosystem file cannot run JavaScript; rename it to ecosystem.config.js "
            "(needs node) or write the value out")


def read(data: bytes, path: str, display: str, base_env: Mapping[str, str] | None) -> Parsed:
    """Parse a JSON5 file's bytes; `path` and `base_env` are unused (every reader takes them)."""
    return Parsed(*parse(decode(data, display), display))


_TOKEN_PATTERN = r"""
    (?P<ws>[\s\ufeff]+)
  | (?P<comment>//[^\n]*|/\*(?:.*?\*/|.*\Z))
  | (?P<string>"(?:[^"\\\n]|\\\r\n|\\.|\\\Z)*(?:"|(?=\n)|\Z)|'(?:[^'\\\n]|\\\r\n|\\.|\\\Z)*(?:'|(?=\n)|\Z))
  | (?P<punct>[{}\[\]:,])
  | (?P<word>(?:[^\s\ufeff{}\[\]:,"'/]|/(?![/*]))+)
  | (?P<other>.)
"""


@functools.cache
def _token_re() -> re.Pattern[str]:
    # Compiled on first use: most CLI commands never read an ecosystem file.
    return re.compile(_TOKEN_PATTERN, re.X | re.S)


class _Tok(NamedTuple):
    kind: str
    start: int
    end: int
    text: str

    @property
    def closed(self) -> bool:
        if self.kind == "string":
            return len(self.text) >= 2 and self.text[-1] == self.text[0]
        if self.kind == "comment" and self.text.startswith("/*"):
            return len(self.text) >= 4 and self.text.endswith("*/")
        return True


def _tokens(text: str) -> Iterator[_Tok]:
    for m in _token_re().finditer(text):
        kind = m.lastgroup or "other"
        if kind != "ws":
            yield _Tok(kind, m.start(), m.end(), m.group())


def _key_text(tok: _Tok) -> str:
    if "\\" not in tok.text:
        return tok.text[1:-1] if tok.kind == "string" else tok.text
    import json5

    # json5 already accepted the whole text, so this cannot fail; if it somehow does, the raw
    # token is still a fine name for a position lookup that will simply not match.
    try:
        if tok.kind == "string":
            return str(json5.loads(tok.text))
        return str(next(iter(json5.loads("{" + tok.text + ":0}"))))
    except Exception:
        return tok.text


class _Frame:
    __slots__ = ("kind", "path", "start", "key", "index")

    def __init__(self, kind: str, path: Path, start: int) -> None:
        self.kind, self.path, self.start = kind, path, start
        self.key: str | None = None
        self.index = 0

    def child(self) -> Path:
        return (*self.path, self.key if self.kind == "{" else self.index)


class _Walk:
    """A JSON5 structure walk: value positions by path, and the parser state at any point."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.positions: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, int]] = []
        self.stack: list[_Frame] = []
        self.state = "value"          # value | key | colon | after | done | broken
        self.prev: _Tok | None = None
        self.broke: tuple[str, _Tok] | None = None   # (state, token) where the structure broke
        self.seen_keys: list[set[str]] = []

    def run(self, stop: int | None = None) -> _Walk:
        for tok in _tokens(self.text):
            if stop is not None and tok.start >= stop:
                break
            if tok.kind == "comment":
                continue
            before = self.state
            self.feed(tok)
            if self.state == "broken":
                self.broke = (before, tok)
                break
            self.prev = tok
        return self

    def _path(self) -> Path:
        return self.stack[-1].child() if self.stack else ()

    def feed(self, tok: _Tok) -> None:
        t, state = tok.text, self.state
        if state == "value":
            if tok.kind == "punct" and t in "{[":
                self.positions[self._path()] = tok.start
                self.stack.append(_Frame(t, self._path(), tok.start))
                self.seen_keys.append(set())
                self.state = "key" if t == "{" else "value"
            elif tok.kind in ("string", "word"):
                self.positions[self._path()] = tok.start
                self.state = "after"
            elif t == "]" and self.stack and self.stack[-1].kind == "[":
                self._close()
            else:
                self.state = "broken"
        elif state == "key":
            if tok.kind in ("string", "word"):
                top = self.stack[-1]
                top.key = _key_text(tok)
                if top.key in self.seen_keys[-1]:
                    self.duplicates.append((top.child(), tok.start))
                self.seen_keys[-1].add(top.key)
                self.state = "colon"
            elif t == "}":
                self._close()
            else:
                self.state = "broken"
        elif state == "colon":
            self.state = "value" if t == ":" else "broken"
        elif state == "after":
            frame = self.stack[-1] if self.stack else None
            if frame is None:
                self.state = "broken"
            elif t == ",":
                if frame.kind == "[":
                    frame.index += 1
                    self.state = "value"
                else:
                    self.state = "key"
            elif (t == "}" and frame.kind == "{") or (t == "]" and frame.kind == "["):
                self._close()
            else:
                self.state = "broken"
        else:
            self.state = "broken"

    def _close(self) -> None:
        self.stack.pop()
        self.seen_keys.pop()
        self.state = "after" if self.stack else "done"


def parse(text: str, display: str) -> tuple[Any, Where, Duplicates]:
    lines = Lines(text)
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        out = dict(items)
        if len(out) != len(items):
            repeated = True
        return out

    try:
        # Most files are plain JSON: the C parser reads them in microseconds, json5 in seconds.
        data = json.loads(text, object_pairs_hook=pairs)
        plain = True
    except (ValueError, RecursionError):
        data = _parse_json5_slow(text, display, lines)
        plain = False
    # Positions are walked for when a message needs one: at once when keys repeat (reported
    # with their line) or the file is JSON5; for plain JSON, only when first asked for, so that
    # a file of thousands of valid apps is read at the C parser's speed.
    walks: list[_Walk] = [] if plain and not repeated else [_Walk(text).run()]

    def where(path: Path) -> tuple[int, int] | None:
        if not walks:
            walks.append(_Walk(text).run())
        offset = walks[0].positions.get(path)
        return lines.at(offset) if offset is not None else None

    duplicates = walks[0].duplicates if walks else []
    return data, where, [(path, lines.at(offset)) for path, offset in duplicates]


def _parse_json5_slow(text: str, display: str, lines: Lines) -> Any:
    import json5

    try:
        return json5.loads(text)
    except RecursionError:
        raise ConfigError("the data is nested too deeply", "is this the right file?",
                          file=display) from None
    except Exception as e:
        # json5 reports problems as ValueError; anything else from it is still this file's fault.
        raise _json5_error(text, str(e), display, lines) from None


_JSON5_ERR = re.compile(r"^<string>:(\d+) Unexpected (.*) at column (\d+)$", re.S)
_JS_WORDS = frozenset({"__dirname", "__filename", "require", "module", "exports", "process",
                       "function", "const", "let", "var", "undefined", "new", "path", "os",
                       "Math", "JSON", "Date", "Object", "Number", "String", "Array", "Boolean",
                       "console", "global", "globalThis", "this", "Buffer"})


def _looks_like_js(tok: _Tok, state: str) -> bool:
    t = tok.text
    if t.startswith("`") or t.startswith("${") or "=>" in t:
        return True
    if tok.kind == "word":
        # `app.py` unquoted is a forgotten quote; `process.env.X` or `f(...)` is code.
        head = re.split(r"[.(\[]", t, maxsplit=1)[0]
        if head in _JS_WORDS or re.match(r"^[A-Za-z_$][\w$.]*\(", t):
            return True
        # `"x-" + 1`: an operator right after a complete value.
        if state == "after" and t[:1] in ("+", "-", "*", "/", "?", "|", "&"):
            return True
    return False


def _snippet(text: str, start: int) -> str:
    line = text[start:].split("\n", 1)[0]
    m = re.match(r"[^,}\]]*", line)
    snippet = (m.group() if m else line).strip() or line.strip()
    return snippet[:40] + ("…" if len(snippet) > 40 else "")


def fullwidth_error(text: str, offset: int, display: str, lines: Lines) -> ConfigError:
    ch = text[offset]
    what, ascii_ = FULLWIDTH[ch]
    others = sum(1 for t in _tokens(text) if t.kind in ("word", "other") and t.start > offset
                 for c in t.text if c in FULLWIDTH)
    more = f" (the file has {others} more)" if others else ""
    line, col = lines.at(offset)
    return ConfigError(
        f"{what} {_quoted(ch)} (U+{ord(ch):04X}) where {_quoted(ascii_)} was expected",
        f"typed with a Chinese keyboard layout? replace it with {_quoted(ascii_)}{more}",
        file=display, line=line, col=col)


def _json5_error(text: str, message: str, display: str, lines: Lines) -> ConfigError:
    m = _JSON5_ERR.match(message)
    if not m:
        bad = re.search(r"could not convert string to float: '(.*)'", message)
        if bad:
            for tok in _tokens(text):
                if tok.kind == "word" and tok.text == bad.group(1):
                    line, col = lines.at(tok.start)
                    return ConfigError(f"{show(tok.text)} is not a number", "write a number such as "
                                       "1600 or 1.5, or put text in quotes", file=display,
                                       line=line, col=col)
        return ConfigError(f"cannot parse the file: {message}", SHAPE_HINT, file=display)
    offset = lines.offset(int(m.group(1)), int(m.group(3)))
    if m.group(2) == "end of input" or offset >= len(text):
        return _eof_error(text, display, lines)
    return _syntax_error(text, offset, display, lines)


def _eof_error(text: str, display: str, lines: Lines) -> ConfigError:
    last: _Tok | None = None
    for tok in _tokens(text):
        last = tok
    if last is not None and not last.closed:
        line, col = lines.at(last.start)
        if last.kind == "string":
            return ConfigError("this string is never closed", f"add the closing {last.text[0]}",
                               file=display, line=line, col=col)
        return ConfigError("this /* comment is never closed", "add */ where it ends",
                           file=display, line=line, col=col)
    walk = _Walk(text).run()
    if walk.stack:
        frame = walk.stack[-1]
        line, col = lines.at(frame.start)
        closer = "}" if frame.kind == "{" else "]"
        return ConfigError(f'this "{frame.kind}" is never closed',
                           f'add "{closer}" where it ends (or look for a missing comma or quote '
                           'before the end of the file)', file=display, line=line, col=col)
    line, col = lines.at(len(text))
    return ConfigError("the file ends too early", SHAPE_HINT, file=display, line=line, col=col)


def _quoted(text: str) -> str:
    return f"'{text}'" if '"' in text else f'"{text}"'


def _syntax_error(text: str, offset: int, display: str, lines: Lines) -> ConfigError:
    def err(message: str, hint: str | None, at: int) -> ConfigError:
        line, col = lines.at(at)
        return ConfigError(message, hint, file=display, line=line, col=col)

    if text[offset] in FULLWIDTH:
        return fullwidth_error(text, offset, display, lines)
    tokens = list(_tokens(text))
    i = next((k for k, t in enumerate(tokens) if t.end > offset
              or (t.end == offset and t.kind == "string" and not t.closed)), len(tokens) - 1)
    tok = tokens[i]
    if tok.kind == "string" and tok.start < offset:
        if text[offset] in "\r\n" or not tok.closed:
            return err("this string is not closed before the end of the line",
                       f"add the closing {tok.text[0]}; a string cannot span lines "
                       "(write \\n for a newline)", tok.start)
        return err(f"bad escape sequence in {tok.text[:40]}",
                   "write a backslash as \\\\, or use / in paths", tok.start)
    wide = next((tok.start + k for k, c in enumerate(tok.text) if c in FULLWIDTH), None)
    if wide is not None:
        return fullwidth_error(text, wide, display, lines)

    walk = _Walk(text).run(stop=tok.start)
    if tok.kind == "word" and tok.start < offset < tok.end and walk.state != "broken":
        # json5 read the front of this word (`100` of `100;`); the rest is what it choked on.
        walk.feed(tok._replace(end=offset, text=text[tok.start:offset]))
        walk.prev = tok
        tok = _Tok("word", offset, tok.end, text[offset:tok.end])
    state = walk.state
    if state == "broken" and walk.broke is not None:
        # The structure went wrong before the point json5 noticed; report where it went wrong.
        state, tok = walk.broke
    at = tok.start
    t = tok.text
    if _looks_like_js(tok, state):
        return err(f"JavaScript in a .json file: {_snippet(text, at)}", _JS_HINT, at)
    frame = walk.stack[-1] if walk.stack else None
    prev = walk.prev
    if state == "after" and (tok.kind in ("string", "word") or t in ("{", "[")):
        prev_line = lines.at(prev.start)[0] if prev is not None else lines.at(at)[0]
        shown = t if tok.kind == "string" else _quoted(_snippet(text, at))
        if tok.kind == "word" and prev is not None and prev.kind == "string":
            return err(f"unexpected {_quoted(t[:40])} after a string",
                       f"is a comma missing after the string on line {prev_line}, or a quote "
                       "inside it?", at)
        return err(f'missing "," before {shown[:42]}',
                   f"add a comma after the value that ends on line {prev_line}", at)
    if state == "after" and t == ";":
        return err('";" where "," was expected', 'separate entries with ","', at)
    if state == "after" and t in ("}", "]") and frame is not None:
        if prev is not None and prev.kind == "word" and t == {"{": "}", "[": "]"}[frame.kind]:
            # The bracket is fine: json5 rejected the bare word before it.
            semi = prev.text.find(";")
            if semi >= 0:
                return err('";" where "," was expected', 'separate entries with ","',
                           prev.start + semi)
            return err(f"{_quoted(prev.text[:40])} is not a valid value",
                       "numbers look like 1600 or 1.5; text needs quotes", prev.start)
        fl, fc = lines.at(frame.start)
        return err(f'"{t}" does not match the "{frame.kind}" at line {fl}, column {fc}',
                   "check that every { has its } and every [ its ]", at)
    if state == "done":
        return err(f"unexpected {_quoted(_snippet(text, at))} after the end of the data",
                   "is there an extra closing bracket, or two objects without [ ] around them?",
                   at)
    if state == "colon":
        key = frame.key if frame is not None and frame.key is not None else ""
        return err(f'expected ":" after the key {_quoted(key)}, found {_quoted(t[:40])}',
                   'write "key": value', at)
    if t == ",":
        return err('unexpected ","',
                   "remove it: two commas in a row, or a comma with nothing before it", at)
    if state == "value" and t in ("}", "]"):
        return err(f'missing value before "{t}"', "give the key a value, or remove the key", at)
    if state == "value" and tok.kind == "word":
        return err(f"unquoted text {_quoted(t[:40])}",
                   f'strings need quotes: "{t[:40]}" (values without quotes are numbers, '
                   "true, false or null)", at)
    if state == "key":
        return err(f"expected a key, found {_quoted(_snippet(text, at))}",
                   'write "key": value, with the key in quotes', at)
    return err(f"unexpected {_quoted(t[:40])}", SHAPE_HINT, at)

