"""YAML: data with positions, duplicate keys, and errors with a hint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyvm2.errors import ConfigError
from pyvm2.formats.json5 import fullwidth_error
from pyvm2.formats.text import FULLWIDTH, SHAPE_HINT, Duplicates, Lines, Parsed, Path, Where, decode


def read(data: bytes, path: str, display: str, base_env: Mapping[str, str] | None) -> Parsed:
    """Parse a YAML file's bytes; `path` and `base_env` are unused (every reader takes them)."""
    return Parsed(*parse(decode(data, display), display))


def parse(text: str, display: str) -> tuple[Any, Where, Duplicates]:
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
        raise ConfigError("the file has no content (only comments?)", SHAPE_HINT, file=display)
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
                    return fullwidth_error(text, Lines(text).offset(row + 1, i + 1), display,
                                            Lines(text))
    message, hint = plain_words(problem, getattr(e, "context", None) or "")
    return ConfigError(message, hint, file=display, line=line, col=col)


#: PyYAML's problems, in the words a user needs: (start of its problem, part of its context,
#: what is wrong, what to do). The first row that matches wins.
_PLAIN: tuple[tuple[str, str, str, str], ...] = (
    ("found character '\\t'", "", "a tab character in the indentation",
     "YAML indents with spaces, not tabs"),
    ("expected <block end>, but found '<block sequence start>'", "",
     "bad indentation of a sequence entry",
     'every "- " item of a list starts in the same column as the others'),
    ("expected <block end>, but found '-'", "", "bad indentation of a sequence entry",
     'every "- " item of a list starts in the same column as the others'),
    ("expected <block end>", "", "bad indentation of a mapping entry",
     'every "key: value" of an app starts in the same column as the app\'s first key'),
    ("mapping values are not allowed", "", 'unexpected ":" here: bad indentation, or a value '
     'that contains ": "', 'put quotes around a value containing ": "; or line this key up with '
     "the keys above it"),
    ("could not find expected ':'", "", 'a key without ":"',
     'every "key: value" needs a colon and a space after the key'),
    ("did not find expected key", "", "bad indentation of a mapping entry",
     'every "key: value" of an app starts in the same column as the app\'s first key'),
    ("did not find expected '-'", "", "bad indentation of a sequence entry",
     'every "- " item of a list starts in the same column as the others'),
    ("found unexpected end of stream", "quoted", "a quoted value is not closed",
     "add the closing quote"),
    ("expected ',' or ']'", "", 'a list in "[...]" is not closed, or misses a comma',
     'close it with "]" and separate its items with ", "'),
    ("expected ',' or '}'", "", 'a mapping in "{...}" is not closed, or misses a comma',
     'close it with "}" and separate its entries with ", "'),
    ("found undefined alias", "", "an alias (*name) names no anchor (&name) above it",
     'put quotes around a value that starts with "*"'),
    ("expected alphabetic or numeric character", "alias", 'a value that starts with "*"',
     'put quotes around a value that starts with "*"'),
    ("expected alphabetic or numeric character", "anchor", 'a value that starts with "&"',
     'put quotes around a value that starts with "&"'),
    ("found character", "", "a value cannot start with {char}", "put quotes around the value"),
    ("but found another document", "", 'a second document ("---") in the file',
     "an ecosystem file holds one document: remove the second one or the \"---\" line"),
    ("found unexpected end of stream", "", "the file ends in the middle of a value",
     "a quote or bracket is not closed"),
)


def plain_words(problem: str, context: str) -> tuple[str, str]:
    """What is wrong and a hint, for one of PyYAML's problems and its context."""
    for start, part, message, hint in _PLAIN:
        if problem.startswith(start) and part in context:
            return message.replace("{char}", problem[len(start):].split(" that")[0].strip()), hint
    return f"not valid YAML: {problem}", "check the indentation and quoting near here"
