"""Node's `util.inspect(value, false, null, false)` for JSON values: the text `pm2 prettylist`
prints and that scripts grep (`status: 'online'`, `restart_time: 1`)."""

from __future__ import annotations

import math
import re
from typing import Any

BREAK_LENGTH = 80      # util.inspect's default breakLength
COMPACT = 3            # util.inspect's default compact
MAX_ARRAY_LENGTH = 100
MIN_LINE_WIDTH = 16
_IDENT = re.compile(r"[a-zA-Z_][a-zA-Z_0-9]*\Z")
_INDEX = re.compile(r"(0|[1-9][0-9]*)\Z")
_META = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def _escape(s: str) -> str:
    """Node's strEscape: single quotes unless the text holds one (then double, then backtick)."""
    quote = "'"
    if "'" in s:
        if '"' not in s:
            quote = '"'
        elif "`" not in s and "${" not in s:
            quote = "`"
    out = []
    for ch in s:
        o = ord(ch)
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif o < 0x20 or o == 0x7F:
            out.append(_META.get(o) or f"\\x{o:02X}")
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def _number(n: float) -> str:
    if isinstance(n, bool):
        return "true" if n else "false"
    if isinstance(n, int):
        return str(n)
    if math.isnan(n):
        return "NaN"
    if math.isinf(n):
        return "Infinity" if n > 0 else "-Infinity"
    if n == 0:
        return "-0" if math.copysign(1, n) < 0 else "0"
    if n.is_integer() and abs(n) < 1e21:
        return str(int(n))
    return _js_float(n)


def _js_float(n: float) -> str:
    """Number.prototype.toString for a finite, non-integer float (same shortest digits as repr)."""
    sign = "-" if n < 0 else ""
    mant, _, exp = repr(abs(n)).partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp or 0) - (len(whole + frac) - len((whole + frac).lstrip("0")))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * (-point) + digits
    e = point - 1
    body = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{body}e{'+' if e >= 0 else '-'}{abs(e)}"


def _keys(obj: dict) -> list[str]:
    """JavaScript's own-key order: array-index keys first, ascending, then insertion order."""
    keys = [str(k) for k in obj]
    index = sorted((k for k in keys if _INDEX.match(k) and int(k) < 2**32 - 1), key=int)
    return index + [k for k in keys if k not in set(index)]


class _Ctx:
    def __init__(self) -> None:
        self.indentation = 0
        self.current_depth = 0


def inspect(value: Any) -> str:
    """The text util.inspect gives for a JSON-like value, without colours and without depth limit."""
    return _format(_Ctx(), value, 0)


def _format(ctx: _Ctx, value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return _string(ctx, value)
    if isinstance(value, (list, tuple)):
        return _array(ctx, list(value), depth)
    if isinstance(value, dict):
        return _object(ctx, value, depth)
    return _string(ctx, str(value))


def _string(ctx: _Ctx, s: str) -> str:
    if len(s) > MIN_LINE_WIDTH and len(s) > BREAK_LENGTH - ctx.indentation - 4:
        parts = re.split(r"(?<=\n)", s)
        parts = [p for p in parts if p != ""] or [""]
        return f" +\n{' ' * (ctx.indentation + 2)}".join(_escape(p) for p in parts)
    return _escape(s)


def _array(ctx: _Ctx, items: list, depth: int) -> str:
    if not items:
        return "[]"
    depth += 1
    ctx.current_depth = depth
    shown = items[:MAX_ARRAY_LENGTH]
    output = []
    for item in shown:
        ctx.indentation += 2
        output.append(_format(ctx, item, depth))
        ctx.indentation -= 2
    if len(items) > len(shown):
        rest = len(items) - len(shown)
        output.append(f"... {rest} more item{'s' if rest > 1 else ''}")
    return _reduce(ctx, output, ("[", "]"), depth, items, is_array=True)


def _object(ctx: _Ctx, obj: dict, depth: int) -> str:
    keys = _keys(obj)
    if not keys:
        return "{}"
    depth += 1
    ctx.current_depth = depth
    output = []
    for key in keys:
        ctx.indentation += 2
        text = _format(ctx, obj[key] if key in obj else obj[int(key)], depth)
        ctx.indentation -= 2
        name = key if _IDENT.match(key) else _escape(key)
        output.append(f"{name}: {text}")
    return _reduce(ctx, output, ("{", "}"), depth, None, is_array=False)


def _below_break_length(output: list[str], start: int) -> bool:
    total = len(output) + start
    if total + len(output) > BREAK_LENGTH:
        return False
    for entry in output:
        total += len(entry)
        if total > BREAK_LENGTH:
            return False
    return True


def _reduce(ctx: _Ctx, output: list[str], braces: tuple[str, str], depth: int,
            items: list | None, *, is_array: bool) -> str:
    entries = len(output)
    if is_array and entries > 6:
        output = _group(ctx, output, items)
    if ctx.current_depth - depth < COMPACT and entries == len(output):
        start = len(output) + ctx.indentation + len(braces[0]) + 10
        if _below_break_length(output, start):
            joined = ", ".join(output)
            if "\n" not in joined:
                return f"{braces[0]} {joined} {braces[1]}"
    ind = "\n" + " " * ctx.indentation
    return f"{braces[0]}{ind}  " + f",{ind}  ".join(output) + f"{ind}{braces[1]}"


def _group(ctx: _Ctx, output: list[str], items: list | None) -> list[str]:
    """Node's groupArrayElements: many short entries are laid out in aligned columns."""
    total = 0
    max_len = 0
    out_len = len(output) - 1 if items is not None and len(items) > MAX_ARRAY_LENGTH else len(output)
    separator = 2
    data_len = []
    for i in range(out_len):
        n = len(output[i])
        data_len.append(n)
        total += n + separator
        max_len = max(max_len, n)
    actual_max = max_len + separator
    if actual_max * 3 + ctx.indentation < BREAK_LENGTH and \
            (total / actual_max > 5 or max_len <= 6):
        average_bias = math.sqrt(actual_max - total / len(output))
        biased_max = max(actual_max - 3 - average_bias, 1)
        columns = min(
            _js_round(math.sqrt(2.5 * biased_max * out_len) / biased_max),
            (BREAK_LENGTH - ctx.indentation) // actual_max,
            COMPACT * 4,
            15,
        )
        if columns <= 1:
            return output
        max_line = []
        for i in range(columns):
            width = 0
            for j in range(i, len(output), columns):
                if j < out_len and data_len[j] > width:
                    width = data_len[j]
            max_line.append(width + separator)
        numbers = items is not None and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in items[:out_len])
        grouped = []
        for i in range(0, out_len, columns):
            end = min(i + columns, out_len)
            line = ""
            j = i
            while j < end - 1:
                cell = f"{output[j]}, "
                pad = max_line[j - i]
                line += cell.rjust(pad) if numbers else cell.ljust(pad)
                j += 1
            if numbers:
                line += output[j].rjust(max_line[j - i] - separator)
            else:
                line += output[j]
            grouped.append(line)
        if out_len < len(output):
            grouped.append(output[out_len])
        return grouped
    return output


def _js_round(x: float) -> int:
    """Math.round: halves go up."""
    return math.floor(x + 0.5)
