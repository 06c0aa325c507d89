"""Whatever bytes an ecosystem file holds, loading it gives apps or a ConfigError, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyvm2 import ecosystem
from pyvm2.errors import ConfigError
from pyvm2.spec import KNOWN_OPTIONS, AppSpec

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

VALID = """// two apps
{
  "apps": [
    {
      "name": "api",
      "script": "app.py",
      "args": "--port 8000 --name 'a b'",
      "max_memory_restart": "100M",
      "instances": 2,
      "env": {"A": 1, "B": {"c": true}},
      "env_production": {"A": 2},
    },
    {name: 'worker', script: 'worker.php', cwd: '.', cron_restart: '0 3 * * *', watch: ['src']},
  ],
  deploy: {production: {env: {Z: 'z'}}},
}
"""

VALID_YAML = """apps:
  - name: api
    script: app.py
    args: --port 8000
    max_memory_restart: 100M
    env:
      A: 1
  - name: worker
    script: worker.php
    instances: max
"""

# Characters that matter to the parsers, plus the fullwidth ones people type by accident.
ALPHABET = st.sampled_from(list('{}[]:,"\'/*\\ \n\t#-+.0123456789abcdefxyz_$：，“”‘’｛｝［］\ufeff\0é统'))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "app.py").write_text("print(1)\n")
    (d / "worker.php").write_text("<?php\n")
    (d / "src").mkdir()
    bin_dir = d / "bin"
    bin_dir.mkdir()
    for name in ("python3", "php", "bash"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    return d


def check(folder: Path, name: str, data: str | bytes, env_name: str | None = None) -> None:
    path = folder / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(data)
    try:
        loaded = ecosystem.load(str(path), env_name=env_name,
                                base_env={"PATH": str(folder / "bin")})
    except ConfigError as e:
        assert e.message and e.code == 2
        assert e.file == str(path) or e.message.startswith(str(path))
        return
    assert all(isinstance(a, AppSpec) for a in loaded.apps)
    assert all(isinstance(w, str) for w in loaded.warnings)


def test_the_fuzz_seed_files_are_valid(folder: Path) -> None:
    base_env = {"PATH": str(folder / "bin")}
    (folder / "valid.json5").write_text(VALID)
    assert len(ecosystem.load(str(folder / "valid.json5"), base_env=base_env).apps) == 2
    (folder / "valid.yaml").write_text(VALID_YAML)
    assert len(ecosystem.load(str(folder / "valid.yaml"), base_env=base_env).apps) == 2


@FUZZ
@given(st.text(ALPHABET, max_size=200))
def test_random_json_text_loads_or_is_a_config_error(folder: Path, text: str) -> None:
    check(folder, "random.json", text)


@FUZZ
@given(st.text(max_size=200))
def test_random_unicode_text_loads_or_is_a_config_error(folder: Path, text: str) -> None:
    check(folder, "unicode.json5", text)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_load_or_are_a_config_error(folder: Path, data: bytes) -> None:
    check(folder, "bytes.json", data)


@FUZZ
@given(st.text(ALPHABET, max_size=200))
def test_random_yaml_text_loads_or_is_a_config_error(folder: Path, text: str) -> None:
    check(folder, "random.yaml", text)


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    text = base
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        piece = draw(st.text(ALPHABET, min_size=1, max_size=4))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "replace":
            text = text[:i] + piece + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@FUZZ
@given(mutated(VALID), st.sampled_from([None, "production", "staging"]))
def test_mutations_of_a_valid_json5_file_load_or_are_config_errors(folder: Path, text: str,
                                                                   env_name: str | None) -> None:
    check(folder, "mutated.json5", text, env_name)


@FUZZ
@given(mutated(VALID_YAML))
def test_mutations_of_a_valid_yaml_file_load_or_are_config_errors(folder: Path, text: str) -> None:
    check(folder, "mutated.yaml", text)


SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(["app.py", "worker.php", "max", "100M", "2s", "SIGTERM", ".", "..",
                              "src", "NULL", "0", "-1", "", " ", "~", "a b", "0 3 * * *", "none",
                              "python3", "php", "true", "/", "/dev/null", "fork", "cluster"])
           | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
KEYS = st.sampled_from(sorted(KNOWN_OPTIONS) + ["env_production", "intepreter", "foo"])


@FUZZ
@given(st.lists(st.dictionaries(KEYS, VALUES, max_size=8), min_size=1, max_size=3))
def test_any_option_values_load_or_are_config_errors(folder: Path, apps: list[dict[str, Any]]) -> None:
    for app in apps:
        app.setdefault("script", "app.py")
    check(folder, "values.json", json.dumps({"apps": apps}), "production")
