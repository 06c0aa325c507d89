"""Ecosystem files (JSON5, YAML, .config.js through node) to AppSpecs, with file:line:col errors."""

from __future__ import annotations

import bisect
import difflib
import functools
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pyvm2.errors import ConfigError
from pyvm2.spec import AppSpec, ConfigErrors, combine_errors, command_name, from_options
from pyvm2.units import show

MAX_BYTES = 1024 * 1024
NODE_TIMEOUT = 10.0

Path = tuple[Any, ...]
Where = Callable[[Path], tuple[int, int] | None]
Duplicates = list[tuple[Path, tuple[int, int]]]

# Punctuation a Chinese (or Japanese) input method types in place of the ASCII one.
FULLWIDTH: dict[str, tuple[str, str]] = {
    "：": ("fullwidth colon", ":"),
    "，": ("fullwidth comma", ","),
    "；": ("fullwidth semicolon", ","),
    "“": ("curly quote", '"'),
    "”": ("curly quote", '"'),
    "‘": ("curly quote", "'"),
    "’": ("curly quote", "'"),
    "＂": ("fullwidth quote", '"'),
    "｛": ("fullwidth brace", "{"),
    "｝": ("fullwidth brace", "}"),
    "［": ("fullwidth bracket", "["),
    "］": ("fullwidth bracket", "]"),
}

_JS_HINT = ("a .json ecosystem file cannot run JavaScript; rename it to ecosystem.config.js "
            "(needs node) or write the value out")
_SHAPE_HINT = 'an ecosystem file looks like {"apps": [{"name": "api", "script": "app.py"}]}'
_TOP_LEVEL_KEYS = frozenset({"apps", "deploy", "static"})

# Run by `node`: load the config (require, or import for ES modules) and print it as JSON.
_NODE_LOADER = r"""
const file = process.argv[1];
(async () => {
  let conf;
  if (file.endsWith('.mjs')) {
    conf = await import(require('url').pathToFileURL(file).href);
  } else {
    conf = require(file);
  }
  if (conf && typeof conf === 'object' && 'default' in conf && !('apps' in conf)) conf = conf.default;
  const text = JSON.stringify(conf === undefined ? null : conf);
  process.stdout.write(text === undefined ? 'null' : text);
})().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + '\n');
  process.exit(1);
});
"""


@dataclass
class Loaded:
    """The apps of one ecosystem file, and the warnings to show before starting them."""

    apps: list[AppSpec]
    warnings: list[str] = field(default_factory=list)
    path: str = ""


def is_ecosystem_file(path: str) -> bool:
    """pm2's rule: the name contains .json/.yml/.yaml, or ends with .config.js/.cjs/.mjs."""
    name = os.path.basename(path)
    return (".json" in name or ".yml" in name or ".yaml" in name
            or name.endswith((".config.js", ".config.cjs", ".config.mjs")))


def _kind(path: str) -> str:
    name = os.path.basename(path)
    if ".json" in name:
        return "json"
    if ".yml" in name or ".yaml" in name:
        return "yaml"
    if name.endswith((".js", ".cjs", ".mjs")):
        return "js"
    return "json"


def load(path: str, *, env_name: str | None = None, only: Sequence[str] | None = None,
         cwd_override: str | None = None, base_env: Mapping[str, str] | None = None) -> Loaded:
    """Read, validate and resolve every app of an ecosystem file; all of them or a ConfigError.

    Relative `cwd` values count from the file's directory; `cwd_override` (--cwd, relative to the
    shell) replaces them all. `env_name` selects `env_<name>` and `deploy.<name>.env`. `only`
    keeps the apps with those names. Raises ConfigError (ConfigErrors when there are several).
    """
    display = path
    abspath = os.path.abspath(os.path.expanduser(path))
    kind = _kind(abspath)
    where: Where | None = None
    duplicates: Duplicates = []
    if kind == "js":
        data = _load_js(abspath, display, base_env)
    else:
        text = _read_text(abspath, display)
        if kind == "yaml":
            data, where, duplicates = _parse_yaml(text, display)
        else:
            data, where, duplicates = _parse_json5(text, display)
    warnings: list[str] = []
    for dup_path, (line, col) in duplicates:
        warnings.append(f"{display}:{line}:{col}: {_label(dup_path)}: {show(str(dup_path[-1]))} "
                        "is given twice; the last one is used")
    apps = _build(data, display=display, abspath=abspath, where=where, env_name=env_name,
                  only=only, cwd_override=cwd_override, base_env=base_env, warnings=warnings)
    return Loaded(apps=apps, warnings=warnings, path=abspath)


def loads(text: str, *, display: str = "<stdin>", base_dir: str | None = None,
          env_name: str | None = None, only: Sequence[str] | None = None,
          cwd_override: str | None = None, base_env: Mapping[str, str] | None = None) -> Loaded:
    """An ecosystem given as text (JSON5 or YAML; `pyvm2 start -` reads it from standard input).
    Relative paths count from base_dir (default: the current directory)."""
    abspath = os.path.join(os.path.abspath(base_dir or os.getcwd()), display)
    stripped = text.lstrip()
    if stripped.startswith(("{", "[", "//", "/*")):
        data, where, duplicates = _parse_json5(text, display)
    else:
        data, where, duplicates = _parse_yaml(text, display)
    warnings: list[str] = []
    for dup_path, (line, col) in duplicates:
        warnings.append(f"{display}:{line}:{col}: {_label(dup_path)}: {show(str(dup_path[-1]))} "
                        "is given twice; the last one is used")
    apps = _build(data, display=display, abspath=abspath, where=where, env_name=env_name,
                  only=only, cwd_override=cwd_override, base_env=base_env, warnings=warnings)
    return Loaded(apps=apps, warnings=warnings, path=abspath)


# ---- reading ------------------------------------------------------------------------------------

def _size_text(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"


def _read_bytes(path: str, display: str) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("file not found", _missing_hint(path), file=display) from None
    except PermissionError:
        raise ConfigError("permission denied", "check the permissions of the file and its folders",
                          file=display) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror or e}", None, file=display) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("this is a directory, not an ecosystem file", _dir_hint(path),
                          file=display)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("not a regular file", "pass the path of an ecosystem file", file=display)
    if st.st_size > MAX_BYTES:
        raise ConfigError(f"the file is {_size_text(st.st_size)}; an ecosystem file is at most 1 MiB",
                          "is this the right file?", file=display)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except PermissionError:
        raise ConfigError("permission denied", "check the permissions of the file (ls -l)",
                          file=display) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror or e}", None, file=display) from None
    if len(data) > MAX_BYTES:
        raise ConfigError("the file is larger than 1 MiB", "is this the right file?", file=display)
    return data


def _missing_hint(path: str) -> str:
    folder = os.path.dirname(path) or "."
    try:
        names = os.listdir(folder)
    except OSError:
        return f"{folder} does not exist" if not os.path.isdir(folder) else "check the path"
    close = difflib.get_close_matches(os.path.basename(path), names, n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    return f"relative paths count from the current directory ({os.getcwd()})"


def _dir_hint(path: str) -> str:
    try:
        found = sorted(n for n in os.listdir(path) if is_ecosystem_file(n))
    except OSError:
        found = []
    if found:
        return "pass the file inside it, for example " + os.path.join(path, found[0])
    return "pass the ecosystem file itself, for example ecosystem.json"


def _read_text(path: str, display: str) -> str:
    data = _read_bytes(path, display)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Windows editors save "Unicode" as UTF-16 with a BOM; its NUL bytes are not binary.
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise ConfigError("the file starts like UTF-16 but is not valid UTF-16",
                              "save it as UTF-8", file=display) from None
    else:
        nul = data.find(b"\0")
        if nul >= 0:
            line, col = _byte_position(data, nul)
            raise ConfigError("this is a binary file (it contains NUL bytes), not an ecosystem file",
                              "is this the right file?", file=display, line=line, col=col)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line, col = _byte_position(data, e.start)
            raise ConfigError(f"not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}",
                              "save the file as UTF-8 (it may be in GBK or Latin-1)",
                              file=display, line=line, col=col) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ConfigError("the file is empty", _SHAPE_HINT, file=display)
    return text


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, col


class _Lines:
    """Offsets to 1-based (line, column), columns counted in characters."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1

    def offset(self, line: int, col: int) -> int:
        return self.starts[min(max(line, 1), len(self.starts)) - 1] + col - 1


# ---- JSON5 --------------------------------------------------------------------------------------

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
                frame = self.stack[-1]
                frame.key = _key_text(tok)
                if frame.key in self.seen_keys[-1]:
                    self.duplicates.append((frame.child(), tok.start))
                self.seen_keys[-1].add(frame.key)
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


def _parse_json5(text: str, display: str) -> tuple[Any, Where, Duplicates]:
    lines = _Lines(text)
    try:
        # Most files are plain JSON: the C parser reads them in microseconds, json5 in seconds.
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = _parse_json5_slow(text, display, lines)
    walk = _Walk(text).run()

    def where(path: Path) -> tuple[int, int] | None:
        offset = walk.positions.get(path)
        return lines.at(offset) if offset is not None else None

    return data, where, [(path, lines.at(offset)) for path, offset in walk.duplicates]


def _parse_json5_slow(text: str, display: str, lines: _Lines) -> Any:
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


def _fullwidth_error(text: str, offset: int, display: str, lines: _Lines) -> ConfigError:
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


def _json5_error(text: str, message: str, display: str, lines: _Lines) -> ConfigError:
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
        return ConfigError(f"cannot parse the file: {message}", _SHAPE_HINT, file=display)
    offset = lines.offset(int(m.group(1)), int(m.group(3)))
    if m.group(2) == "end of input" or offset >= len(text):
        return _eof_error(text, display, lines)
    return _syntax_error(text, offset, display, lines)


def _eof_error(text: str, display: str, lines: _Lines) -> ConfigError:
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
    return ConfigError("the file ends too early", _SHAPE_HINT, file=display, line=line, col=col)


def _quoted(text: str) -> str:
    return f"'{text}'" if '"' in text else f'"{text}"'


def _syntax_error(text: str, offset: int, display: str, lines: _Lines) -> ConfigError:
    def err(message: str, hint: str | None, at: int) -> ConfigError:
        line, col = lines.at(at)
        return ConfigError(message, hint, file=display, line=line, col=col)

    if text[offset] in FULLWIDTH:
        return _fullwidth_error(text, offset, display, lines)
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
        return _fullwidth_error(text, wide, display, lines)

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
    return err(f"unexpected {_quoted(t[:40])}", _SHAPE_HINT, at)


# ---- YAML ---------------------------------------------------------------------------------------

def _parse_yaml(text: str, display: str) -> tuple[Any, Where, Duplicates]:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        raise _yaml_error(text, e, display) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse the YAML: {e}", None, file=display) from None
    except RecursionError:
        raise ConfigError("the data is nested too deeply", "is this the right file?",
                          file=display) from None
    finally:
        loader.dispose()
    if data is None:
        raise ConfigError("the file has no content (only comments?)", _SHAPE_HINT, file=display)
    positions: dict[Path, tuple[int, int]] = {}
    duplicates: Duplicates = []
    if node is not None:
        _yaml_positions(node, positions, duplicates)
    return data, positions.get, duplicates


def _yaml_positions(root: Any, out: dict[Path, tuple[int, int]], duplicates: Duplicates) -> None:
    import yaml

    # Aliases can make the node graph cyclic or huge; depth and budget keep the walk finite.
    budget = 200_000
    todo: list[tuple[Any, Path]] = [(root, ())]
    walked: set[int] = set()
    while todo and budget > 0:
        node, path = todo.pop()
        budget -= 1
        out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if len(path) >= 8:
            continue
        if isinstance(node, yaml.MappingNode):
            first_visit = id(node) not in walked
            walked.add(id(node))
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                    for m in merged:
                        if isinstance(m, yaml.MappingNode):
                            todo.append((m, path))
                    continue
                if isinstance(key_node, yaml.ScalarNode):
                    key = (*path, key_node.value)
                    if key_node.value in seen and first_visit:
                        mark = key_node.start_mark
                        duplicates.append((key, (mark.line + 1, mark.column + 1)))
                    seen.add(key_node.value)
                    out[key] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
                    todo.append((value_node, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                todo.append((item, (*path, i)))


def _yaml_error(text: str, e: Any, display: str) -> ConfigError:
    mark = e.problem_mark or e.context_mark
    problem = (e.problem or "invalid YAML").strip()
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    if line is not None:
        # The scanner stops after a fullwidth colon has swallowed a key into a plain string.
        rows = text.split("\n")
        first_row = max(0, line - 3) if e.context_mark is None else min(e.context_mark.line, line - 1)
        for row in range(first_row, min(line, len(rows))):
            content = rows[row].split(" #", 1)[0]
            for i, ch in enumerate(content):
                if ch in FULLWIDTH:
                    return _fullwidth_error(text, _Lines(text).offset(row + 1, i + 1), display,
                                            _Lines(text))
    hint = None
    if "\\t" in problem or "'\\t'" in problem:
        hint = "YAML indents with spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        hint = 'a value containing ": " needs quotes; or check the indentation of the line above'
    elif "could not find expected ':'" in problem:
        hint = 'every "key: value" needs a colon and a space after the key'
    elif "found unexpected end of stream" in problem or "end of the stream" in problem:
        hint = "a quote or bracket is not closed"
    else:
        hint = "check the indentation and quoting near here"
    context = f" ({e.context})" if getattr(e, "context", None) else ""
    return ConfigError(f"{problem}{context}", hint, file=display, line=line, col=col)


# ---- .config.js ---------------------------------------------------------------------------------

def _load_js(path: str, display: str, base_env: Mapping[str, str] | None) -> Any:
    import subprocess

    _read_bytes(path, display)  # the same checks as any file: exists, regular, not huge
    env = dict(base_env) if base_env is not None else dict(os.environ)
    node = shutil.which("node", path=env.get("PATH") or os.defpath)
    if node is None:
        raise ConfigError(f"node is needed to read {os.path.basename(path)} and it is not on PATH",
                          "convert it to ecosystem.json, or install Node.js", file=display)
    try:
        proc = subprocess.run([node, "-e", _NODE_LOADER, path], capture_output=True, env=env,
                              timeout=NODE_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"node did not finish loading the file within {NODE_TIMEOUT:.0f} s",
                          "an ecosystem file should only export the config (does it start "
                          "something or wait for input?)", file=display) from None
    except OSError as e:
        raise ConfigError(f"cannot run node: {e.strerror or e}", None, file=display) from None
    if proc.returncode != 0:
        raise _node_error(proc.stderr.decode("utf-8", "replace"), path, display)
    try:
        return json.loads(proc.stdout.decode("utf-8", "replace") or "null")
    except ValueError:
        raise ConfigError("node printed something that is not the config", None,
                          file=display) from None


def _node_error(stderr: str, path: str, display: str) -> ConfigError:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    message = next((ln.strip() for ln in lines if re.match(r"^\s*\w*(Error|Exception)\b", ln)),
                   lines[0].strip() if lines else "node failed")
    line = col = None
    for ln in lines:
        m = re.search(re.escape(path) + r":(\d+)(?::(\d+))?", ln)
        if m:
            line = int(m.group(1))
            col = int(m.group(2)) if m.group(2) else None
            break
    return ConfigError(message, f"node could not load it; run `node {path}` to see the whole error",
                       file=display, line=line, col=col)


# ---- apps ---------------------------------------------------------------------------------------

def _label(path: Path) -> str:
    text = ""
    for k in path:
        text += f"[{k}]" if isinstance(k, int) else (f".{k}" if text else str(k))
    return text


def _at(where: Where | None, path: Path) -> tuple[int | None, int | None]:
    pos = where(path) if where is not None else None
    return pos if pos is not None else (None, None)


def _apps_of(data: Any, display: str, where: Where | None,
             warn: Callable[[str], None]) -> list[tuple[Any, Path]]:
    """The app objects, each with its path in the document (pm2's three shapes)."""
    def fail(path: Path, message: str, hint: str | None = _SHAPE_HINT) -> ConfigError:
        line, col = _at(where, path)
        return ConfigError(message, hint, file=display, line=line, col=col, path=_label(path) or None)

    if isinstance(data, list):
        if not data:
            raise fail((), "no apps: the list is empty")
        return [(app, (i,)) for i, app in enumerate(data)]
    if not isinstance(data, dict):
        raise fail((), f'expected {{"apps": [...]}}, a list of apps or one app, got {show(data)}')
    if "apps" not in data:
        if not any(k in data for k in ("script", "exec", "cmd", "command")):
            raise fail((), 'no "apps" list and no "script"')
        return [(data, ())]
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            line, col = _at(where, (key,))
            pos = f":{line}:{col}" if line is not None else ""
            close = difflib.get_close_matches(str(key), sorted(_TOP_LEVEL_KEYS), n=1, cutoff=0.75)
            guess = f' (did you mean "{close[0]}"?)' if close else ""
            warn(f"{display}{pos}: unknown top-level key {show(str(key))}{guess}; it is ignored")
    if "static" in data:
        line, col = _at(where, ("static",))
        pos = f":{line}:{col}" if line is not None else ""
        warn(f'{display}{pos}: "static" (pm2\'s built-in file server) is not supported; it is ignored')
    apps = data["apps"]
    if isinstance(apps, dict):
        return [(apps, ("apps",))]  # pm2 wraps a single app object
    if not isinstance(apps, list):
        raise fail(("apps",), f'"apps" must be a list of apps, got {show(apps)}')
    if not apps:
        raise fail(("apps",), "no apps: \"apps\" is empty")
    return [(app, ("apps", i)) for i, app in enumerate(apps)]


def _deploy_env(data: Any, env_name: str | None, display: str,
                where: Where | None) -> Mapping[str, Any] | None:
    if env_name is None or not isinstance(data, dict):
        return None
    deploy = data.get("deploy")
    target = deploy.get(env_name) if isinstance(deploy, dict) else None
    env = target.get("env") if isinstance(target, dict) else None
    if env is None:
        return None
    if not isinstance(env, dict):
        path = ("deploy", env_name, "env")
        line, col = _at(where, path)
        raise ConfigError(f"expected an object of variables, got {show(env)}",
                          'write it as {"NAME": "value"}', file=display, line=line, col=col,
                          path=_label(path))
    return env


def _raw_names(app: Any, env_name: str | None) -> set[str]:
    """The names an app may end up with, for --only, before it is validated."""
    if not isinstance(app, dict):
        return set()
    name = app.get("name")
    if not isinstance(name, str):
        script = next((app[k] for k in ("script", "exec", "cmd", "command")
                       if isinstance(app.get(k), str)), None)
        if script is None:
            return set()
        base = os.path.basename(script.strip().rstrip("/"))
        candidates = {os.path.splitext(base)[0] or base, command_name(script), script.strip()}
    else:
        candidates = {name}
    prefix = app.get("name_prefix")
    out = set(candidates)
    for c in candidates:
        if isinstance(prefix, str):
            out.add(f"{prefix}:{c}")
        if env_name:
            out.add(f"{c}-{env_name}")
            if isinstance(prefix, str):
                out.add(f"{prefix}:{c}-{env_name}")
    return out


def _build(data: Any, *, display: str, abspath: str, where: Where | None, env_name: str | None,
           only: Sequence[str] | None, cwd_override: str | None,
           base_env: Mapping[str, str] | None, warnings: list[str]) -> list[AppSpec]:
    entries = [(i, app, doc_path)
               for i, (app, doc_path) in enumerate(_apps_of(data, display, where, warnings.append))]
    deploy_env = _deploy_env(data, env_name, display, where)
    if only:
        wanted = [n for n in only if n]
        names_by_entry = [_raw_names(app, env_name) for _, app, _ in entries]
        unknown = [n for n in wanted if not any(n in names for names in names_by_entry)]
        if unknown:
            known = sorted({sorted(names)[0] for names in names_by_entry if names})
            raise ConfigError(f"--only {show(unknown[0])} matches no app in this file",
                              "apps in this file: " + (", ".join(known) or "(none with a name)"),
                              file=display)
        entries = [e for e, names in zip(entries, names_by_entry, strict=True) if names & set(wanted)]
    if cwd_override is not None:
        cwd_override = os.path.abspath(os.path.expanduser(cwd_override))
        if not os.path.isdir(cwd_override):
            raise ConfigError(f"--cwd {cwd_override} is not a directory", "check the path")

    base_dir = os.path.dirname(abspath)
    errors: list[ConfigError] = []
    apps: list[AppSpec] = []
    first_index: dict[str, int] = {}
    for index, raw, doc_path in entries:
        if cwd_override is not None and isinstance(raw, dict):
            raw = {**raw, "cwd": cwd_override}
        app_where = _app_where(where, doc_path)
        try:
            spec = from_options(raw, base_dir=base_dir, origin=display, env_name=env_name,
                                base_env=base_env, warn=warnings.append, where=app_where,
                                index=index, deploy_env=deploy_env, source=abspath)
        except ConfigErrors as e:
            errors.extend(e.errors)
            continue
        except ConfigError as e:
            errors.append(e)
            continue
        if spec.name in first_index:
            key = "name" if isinstance(raw, dict) and "name" in raw else "script"
            line, col = _at(app_where, ("apps", index, key))
            errors.append(ConfigError(
                f"duplicate name {show(spec.name)}: apps[{first_index[spec.name]}] has it too",
                "names must be unique within a file; use instances to run copies",
                file=display, line=line, col=col, path=f"apps[{index}].{key}"))
            continue
        first_index[spec.name] = index
        apps.append(spec)
    if errors:
        raise combine_errors(errors)
    return apps


def _app_where(where: Where | None, doc_path: Path) -> Where | None:
    """Translate from_options' ("apps", index, key...) to where the app sits in this document."""
    if where is None:
        return None

    def app_where(path: Path) -> tuple[int, int] | None:
        return where((*doc_path, *path[2:]))

    return app_where
