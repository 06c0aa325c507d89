"""AppSpecs back to ecosystem options: what `pyvm2 convert` prints, in JSON or YAML."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from pyvm2.options import OPTIONS
from pyvm2.spec import LOG_FILE_DEFAULT, AppSpec
from pyvm2.units import size_text


def _option_names() -> dict[str, str]:
    """AppSpec field -> the option that sets it (the first row naming that field)."""
    names: dict[str, str] = {}
    for option in OPTIONS:
        names.setdefault(option.target, option.name)
    return names


_OPTION_NAME = _option_names()


def to_options(spec: AppSpec) -> dict[str, Any]:
    """The ecosystem options that build this same AppSpec again (defaults left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(AppSpec):
        if f.name == "source":
            continue
        value = getattr(spec, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if f.name in ("name", "script", "cwd"):
            pass
        elif f.name == "merge_logs":
            if value == default and spec.instances == 1:
                continue
        elif f.name == "exec_mode":
            if value == default and spec.instances == 1:
                continue
        elif f.name == "stop_exit_codes" and spec.autorestart == "unexpected":
            pass  # left out, "unexpected" would mean [0]
        elif value == default or (f.name == "env" and not value):
            continue
        if f.name in ("max_memory_restart", "log_max_size") and isinstance(value, int):
            value = size_text(value)
        elif f.name == "umask" and isinstance(value, int):
            value = f"{value:03o}"
        elif f.name == "log_file" and value == LOG_FILE_DEFAULT:
            value = True
        elif isinstance(value, tuple):
            value = list(value)
        elif f.name == "env":
            value = dict(value)
        out[_OPTION_NAME.get(f.name, f.name)] = value
    return out


def render(specs: Sequence[AppSpec], fmt: str = "json") -> str:
    """`{"apps": [...]}` as JSON (the default) or YAML."""
    doc = {"apps": [to_options(s) for s in specs]}
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100))
    return _json(doc, "") + "\n"


def _json(value: Any, indent: str) -> str:
    """Indented JSON with short lists of strings and numbers kept on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_json(v, inner)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and value:
        flat = json.dumps(value, ensure_ascii=False)
        if len(flat) + len(indent) <= 96 and not any(isinstance(v, (dict, list)) for v in value):
            return flat
        return "[\n" + ",\n".join(f"{inner}{_json(v, inner)}" for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)
