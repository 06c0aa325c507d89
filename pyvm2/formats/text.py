"""Shared by the format readers: a file's bytes to text, offsets to line:column, and the Where type."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from pyvm2.errors import ConfigError

Path = tuple[Any, ...]
Where = Callable[[Path], tuple[int, int] | None]
Duplicates = list[tuple[Path, tuple[int, int]]]

SHAPE_HINT = 'an ecosystem file looks like {"apps": [{"name": "api", "script": "app.py"}]}'

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


class Parsed(NamedTuple):
    """A file's data, where each value sits (by path), and the keys given twice."""

    data: Any
    where: Where | None
    duplicates: Duplicates


def decode(data: bytes, display: str) -> str:
    """A config file's text: UTF-8 (or UTF-16 with a BOM), without a BOM, not empty, not binary."""
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
            line, col = byte_position(data, nul)
            raise ConfigError("this is a binary file (it contains NUL bytes), not an ecosystem file",
                              "is this the right file?", file=display, line=line, col=col)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line, col = byte_position(data, e.start)
            raise ConfigError(f"not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}",
                              "save the file as UTF-8 (it may be in GBK or Latin-1)",
                              file=display, line=line, col=col) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ConfigError("the file is empty", SHAPE_HINT, file=display)
    return text



def byte_position(data: bytes, offset: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, col


class Lines:
    """Offsets to 1-based (line, column), columns counted in characters."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1

    def offset(self, line: int, col: int) -> int:
        return self.starts[min(max(line, 1), len(self.starts)) - 1] + col - 1

