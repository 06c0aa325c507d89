"""Ecosystem files: every format and shape pm2 accepts, and an exact file:line:col for every mistake."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pyvm2 import ecosystem
from pyvm2.errors import ConfigError
from pyvm2.launch import resolve_launch
from pyvm2.spec import ConfigErrors

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ecosystems"
HAS_NODE = shutil.which("node") is not None


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """Fake interpreters, so the tests need neither php nor a particular python."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("python3", "php", "bash"):
        exe = d / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return d


@pytest.fixture
def env(bin_dir: Path) -> dict[str, str]:
    return {"PATH": str(bin_dir)}


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "app.py").write_text("print(1)\n")
    (d / "worker.php").write_text("<?php\n")
    return d


def write(folder: Path, name: str, text: str | bytes) -> str:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def copy(fixture: str, folder: Path, name: str | None = None) -> str:
    target = folder / (name or fixture)
    shutil.copyfile(FIXTURES / fixture, target)
    return str(target)


def load_error(path: str, **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        ecosystem.load(path, **kw)
    return e.value


def position_of(path: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the n-th `needle` in the file, columns counted in characters."""
    text = Path(path).read_text(encoding="utf-8")
    offset = -1
    for _ in range(occurrence):
        offset = text.index(needle, offset + 1)
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


# ---- which files -------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("ecosystem.json", True), ("ecosystem.json5", True), ("apps.yml", True), ("apps.yaml", True),
    ("ecosystem.config.js", True), ("ecosystem.config.cjs", True), ("ecosystem.config.mjs", True),
    ("dir/x.json.bak", True), ("app.js", False), ("ecosystem.js", False), ("app.py", False),
    ("server", False),
])
def test_ecosystem_files_are_recognised_by_name_like_pm2(name: str, expected: bool) -> None:
    assert ecosystem.is_ecosystem_file(name) is expected


# ---- the seed story ----------------------------------------------------------------------------

def test_fullwidth_colon_is_named_with_line_and_column(tmp_path: Path, env: dict[str, str]) -> None:
    path = copy("seed-fullwidth.json", tmp_path, "ecosystem.json")
    e = load_error(path, base_env=env)
    assert (e.line, e.col) == (9, 8) == position_of(path, "：")
    assert e.message == f'{path}:9:8: fullwidth colon "：" (U+FF1A) where ":" was expected'
    assert e.hint == 'typed with a Chinese keyboard layout? replace it with ":"'
    assert e.code == 2


def test_the_fixed_seed_entry_runs_php_symfony_from_the_parent_directory(
        tmp_path: Path, bin_dir: Path, env: dict[str, str]) -> None:
    (tmp_path / "symfony").write_text("<?php\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    path = copy("seed-fixed.json", conf, "ecosystem.json")
    loaded = ecosystem.load(path, base_env=env)
    assert loaded.warnings == [] and loaded.path == path
    (app,) = loaded.apps
    assert (app.name, app.cwd, app.interpreter, app.source) == ("up4", str(tmp_path), "php", path)
    assert app.max_memory_restart == 100 * 1024 * 1024
    launch = resolve_launch(app, env["PATH"])
    # exactly what the seed's author typed: php symfony trade:... --split=4, run in the parent dir
    assert launch.argv == (str(bin_dir / "php"), "symfony",
                           "trade:UpdateCommentDgTags", "updateUserPublishment", "--split=4")


def test_the_seed_entry_names_php_when_it_is_missing(tmp_path: Path) -> None:
    (tmp_path / "symfony").write_text("<?php\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    path = copy("seed-fixed.json", conf, "ecosystem.json")
    e = load_error(path, base_env={"PATH": str(empty)})
    assert e.message == f'{path}:5:23: apps[0].exec_interpreter: interpreter "php" is not on PATH'
    assert e.hint is not None and "apt-get install php-cli" in e.hint


# ---- formats and shapes ------------------------------------------------------------------------

def test_json5_comments_trailing_commas_quotes_and_bare_keys_load(proj: Path,
                                                                  env: dict[str, str]) -> None:
    loaded = ecosystem.load(copy("json5-features.json5", proj), base_env=env)
    api, worker = loaded.apps
    assert api.args == ("--port", "8000")
    assert api.env == {"DEBUG": "true", "RATIO": "0.5", "COUNT": "16"}
    assert (worker.name, worker.instances, worker.merge_logs) == ("worker", 2, False)
    assert loaded.warnings == []


def test_yaml_loads_with_the_same_options(proj: Path, env: dict[str, str]) -> None:
    api, worker = ecosystem.load(copy("apps.yaml", proj), base_env=env).apps
    assert api.args == ("--port", "8000") and api.max_memory_restart == 200 * 1024 * 1024
    assert api.env == {"DEBUG": "true"} and worker.instances == 2


def test_a_bare_list_of_apps_loads(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '[{"script": "app.py"}, {"script": "worker.php"}]')
    assert [a.name for a in ecosystem.load(path, base_env=env).apps] == ["app", "worker"]


def test_a_single_app_object_loads(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"name": "one", "script": "app.py"}')
    assert [a.name for a in ecosystem.load(path, base_env=env).apps] == ["one"]


def test_apps_as_a_single_object_is_wrapped_like_pm2(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": {"name": "one", "script": "app.py"}}')
    assert [a.name for a in ecosystem.load(path, base_env=env).apps] == ["one"]


def test_a_utf8_bom_is_fine(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", b'\xef\xbb\xbf{"apps": [{"script": "app.py", "oops" 1}]}')
    e = load_error(path, base_env=env)
    assert (e.line, e.col) == (1, 39)  # the BOM is not a column
    path = write(proj, "ok.json", b'\xef\xbb\xbf{"apps": [{"script": "app.py"}]}')
    assert len(ecosystem.load(path, base_env=env).apps) == 1


def test_utf16_with_a_bom_is_read(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py"}]}'.encode("utf-16"))
    assert len(ecosystem.load(path, base_env=env).apps) == 1


def test_relative_cwd_counts_from_the_files_directory_not_the_shell(
        tmp_path: Path, proj: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    conf = proj / "conf"
    conf.mkdir()
    path = write(conf, "eco.json", '{"apps": [{"script": "app.py", "cwd": ".."}]}')
    monkeypatch.chdir(tmp_path)
    (app,) = ecosystem.load(path, base_env=env).apps
    assert app.cwd == str(proj) and app.script == str(proj / "app.py")


def test_a_relative_path_is_reported_as_given(proj: Path, env: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(proj)
    write(proj, "eco.json", '{"apps": [{"script": "nope.py"}]}')
    e = load_error("eco.json", base_env=env)
    assert e.message.startswith("eco.json:1:22: apps[0].script: script not found")


# ---- syntax errors -----------------------------------------------------------------------------

def test_a_missing_comma_points_at_the_next_key(proj: Path, env: dict[str, str]) -> None:
    path = copy("missing-comma.json", proj)
    e = load_error(path, base_env=env)
    assert (e.line, e.col) == (4, 5)
    assert e.detail == 'missing "," before "script"'
    assert e.hint == "add a comma after the value that ends on line 3"


@pytest.mark.parametrize(("text", "line", "col", "detail"), [
    ('{"apps": [{"script": "app.py",, }]}', 1, 31, 'unexpected ","'),
    ('{"apps": [{"script": "app.py"}]}}', 1, 33, 'unexpected "}" after the end of the data'),
    ('{"apps": [{"script": "app.py"]}', 1, 30, '"]" does not match the "{" at line 1, column 11'),
    ('{"apps": [{"script" "app.py"}]}', 1, 21, 'expected ":" after the key "script", found \'"app.py"\''),
    ('{"apps": [{"script": app.py}]}', 1, 22, "unquoted text \"app.py\""),
    ('{"apps": [{"script": "app.py}]}', 1, 22, "this string is never closed"),
    ('{"apps": [{"script": "app.py"}]', 1, 1, 'this "{" is never closed'),
    ('{"apps": [\n  {"script": "app.py"}\n', 1, 10, 'this "[" is never closed'),
    ('{"apps": [{"script": "a\npp.py"}]}', 1, 22, "this string is not closed before the end of the line"),
    ('/* no end', 1, 1, "this /* comment is never closed"),
    ('{"apps": [{"script": "app.py", "instances": 1e}]}', 1, 45, '"1e" is not a number'),
    ('{"apps": [{"script": "app.py", "kill_timeout": 100;}]}', 1, 51, '";" where "," was expected'),
])
def test_syntax_errors_have_exact_positions_and_say_what_is_wrong(
        proj: Path, env: dict[str, str], text: str, line: int, col: int, detail: str) -> None:
    e = load_error(write(proj, "eco.json", text), base_env=env)
    assert (e.detail, e.line, e.col) == (detail, line, col)
    assert e.hint


def test_columns_count_characters_not_bytes(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"name": "统计报表", "script": "app.py" "x": 1}]}')
    e = load_error(path, base_env=env)
    assert (e.line, e.col) == position_of(path, '"x"') == (1, 47)


@pytest.mark.parametrize(("text", "char", "name", "ascii_"), [
    ('{"apps"： []}', "：", "fullwidth colon", ":"),
    ('{"apps": [{"script": "app.py"，"name": "a"}]}', "，", "fullwidth comma", ","),
    ('{"apps": [{“script”: "app.py"}]}', "“", "curly quote", '"'),
    ('{"apps": ［{"script": "app.py"}］}', "［", "fullwidth bracket", "["),
    ('｛"apps": []}', "｛", "fullwidth brace", "{"),
    ("{'apps': [{‘script’: 'app.py'}]}", "‘", "curly quote", "'"),
])
def test_fullwidth_punctuation_is_named(proj: Path, env: dict[str, str], text: str, char: str,
                                        name: str, ascii_: str) -> None:
    path = write(proj, "eco.json", text)
    e = load_error(path, base_env=env)
    assert (e.line, e.col) == position_of(path, char)
    assert e.detail.startswith(f"{name} ") and f"(U+{ord(char):04X})" in e.detail
    assert e.hint is not None and e.hint.startswith("typed with a Chinese keyboard layout?")


def test_fullwidth_punctuation_inside_strings_is_just_text(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py", "env": {"NOTE": "注意：，“”"}}]}')
    assert ecosystem.load(path, base_env=env).apps[0].env == {"NOTE": "注意：，“”"}


def test_the_hint_counts_the_other_fullwidth_characters(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps"： [{"script"： "app.py"， "name"： "x"}]}')
    e = load_error(path, base_env=env)
    assert e.col == 8 and e.hint is not None and e.hint.endswith("(the file has 3 more)")


def test_a_js_expression_in_json_suggests_a_config_js(proj: Path, env: dict[str, str]) -> None:
    path = copy("js-expression.json", proj)
    e = load_error(path, base_env=env)
    assert (e.line, e.col) == position_of(path, "process.env.HOME") == (6, 19)
    assert e.detail == "JavaScript in a .json file: process.env.HOME"
    assert e.hint == ("a .json ecosystem file cannot run JavaScript; rename it to "
                      "ecosystem.config.js (needs node) or write the value out")


@pytest.mark.parametrize(("text", "needle"), [
    ('{"apps": [{"name": "x-" + 1, "script": "app.py"}]}', "+"),
    ('{"apps": [{"cwd": __dirname, "script": "app.py"}]}', "__dirname"),
    ('{"apps": [{"cwd": require("path").join("a"), "script": "app.py"}]}', "require"),
    ('module.exports = {"apps": []}', "module"),
    ('{"apps": [{"cwd": path.join(__dirname, "x"), "script": "app.py"}]}', "path.join"),
])
def test_javascript_in_json_is_recognised(proj: Path, env: dict[str, str], text: str,
                                          needle: str) -> None:
    path = write(proj, "eco.json", text)
    e = load_error(path, base_env=env)
    assert e.detail.startswith("JavaScript in a .json file")
    assert (e.line, e.col) == position_of(path, needle)


# ---- file problems -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_an_empty_file_is_an_error(proj: Path, text: str) -> None:
    e = load_error(write(proj, "eco.json", text))
    assert e.detail == "the file is empty" and e.hint and '"apps"' in e.hint


def test_a_yaml_file_with_only_comments_is_an_error(proj: Path) -> None:
    assert "no content" in load_error(write(proj, "eco.yaml", "# nothing\n")).detail


def test_invalid_utf8_is_reported_with_its_line(proj: Path) -> None:
    path = write(proj, "eco.json", b'{\n  "apps": [{"name": "caf\xe9", "script": "app.py"}]\n}')
    e = load_error(path)
    assert (e.line, e.col) == (2, 25)
    assert e.detail == "not valid UTF-8: byte 0xe9 at offset 26"
    assert e.hint is not None and "UTF-8" in e.hint


def test_a_binary_file_is_refused(proj: Path) -> None:
    e = load_error(write(proj, "eco.json", b"\x7fELF\x02\x01\x01\x00\x00\x00"))
    assert "binary file" in e.detail and e.hint


def test_a_10_mb_file_is_refused_before_reading(proj: Path) -> None:
    path = proj / "eco.json"
    with open(path, "wb") as f:
        f.truncate(10 * 1000 * 1000)
    e = load_error(str(path))
    assert e.detail == "the file is 10 MB; an ecosystem file is at most 1 MiB"
    assert e.hint == "is this the right file?"


def test_a_directory_is_refused_with_the_file_inside_suggested(proj: Path) -> None:
    write(proj, "ecosystem.json", "{}")
    e = load_error(str(proj))
    assert e.detail == "this is a directory, not an ecosystem file"
    assert e.hint == f"pass the file inside it, for example {proj / 'ecosystem.json'}"


def test_a_missing_file_suggests_a_close_name(proj: Path) -> None:
    write(proj, "ecosystem.json", "{}")
    e = load_error(str(proj / "ecosystm.json"))
    assert e.detail == "file not found" and e.hint == 'did you mean "ecosystem.json"?'
    assert e.code == 2


def test_an_unreadable_file_says_permission_denied(proj: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(proj, "eco.json", "{}")
    real_open = open

    def deny(file: Any, *args: Any, **kw: Any) -> Any:
        # Root reads any file, so the refusal is simulated rather than made with chmod.
        if str(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return real_open(file, *args, **kw)

    monkeypatch.setattr("builtins.open", deny)
    e = load_error(path)
    assert e.detail == "permission denied" and e.hint and e.code == 2


# ---- structure errors --------------------------------------------------------------------------

def test_apps_not_a_list_is_an_error_at_its_position(proj: Path) -> None:
    path = write(proj, "eco.json", '{\n  "apps": "app.py"\n}')
    e = load_error(path)
    assert e.message == f'{path}:2:11: apps: "apps" must be a list of apps, got "app.py"'


def test_an_empty_apps_list_is_an_error(proj: Path) -> None:
    e = load_error(write(proj, "eco.json", '{"apps": []}'))
    assert "no apps" in e.detail and (e.line, e.col) == (1, 10)


@pytest.mark.parametrize("text", ['"app.py"', "42", "null", "true"])
def test_a_document_that_is_not_apps_is_an_error(proj: Path, text: str) -> None:
    assert "expected {\"apps\": [...]}" in load_error(write(proj, "eco.json", text)).detail


def test_an_object_with_neither_apps_nor_script_is_an_error(proj: Path) -> None:
    e = load_error(write(proj, "eco.json", '{"app": [{"script": "app.py"}]}'))
    assert e.detail == 'no "apps" list and no "script"'


def test_an_app_without_script_is_an_error_at_the_app(proj: Path) -> None:
    path = write(proj, "eco.json", '{"apps": [\n  {"name": "a"}\n]}')
    assert load_error(path).message == f'{path}:2:3: apps[0]: no "script"'


def test_a_missing_script_is_an_error_at_its_value(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "nope.py"}]}')
    e = load_error(path, base_env=env)
    assert e.message == f"{path}:1:22: apps[0].script: script not found: {proj / 'nope.py'}"


def test_an_interpreter_not_on_path_is_an_error_at_its_value(proj: Path,
                                                             env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py",\n "exec_interpreter": "python3.99"}]}')
    e = load_error(path, base_env=env)
    assert e.message == f'{path}:2:22: apps[0].exec_interpreter: interpreter "python3.99" is not on PATH'
    assert e.hint == "install it, or set exec_interpreter to its full path"


def test_php_missing_from_the_given_path_is_an_error(proj: Path, tmp_path: Path) -> None:
    no_php = tmp_path / "nophp"
    no_php.mkdir()
    path = write(proj, "eco.json", '{"apps": [{"script": "worker.php"}]}')
    e = load_error(path, base_env={"PATH": str(no_php)})
    assert e.detail == 'interpreter "php" is not on PATH' and e.path == "apps[0].script"
    assert e.hint is not None and "apt-get install php-cli" in e.hint


def test_bad_values_are_reported_with_position_and_all_of_them_counted(
        proj: Path, env: dict[str, str]) -> None:
    path = copy("bad-values.json", proj)
    with pytest.raises(ConfigErrors) as info:
        ecosystem.load(path, base_env=env)
    e = info.value
    assert e.message == (f'{path}:10:29: apps[1].max_memory_restart: expected a size like "100M", '
                         'got "100 megs"')
    assert e.hint is not None and e.hint.endswith("(and 1 more error)")
    second = e.errors[1]
    assert (second.line, second.col, second.path) == (11, 20, "apps[1].instances")
    assert second.detail == 'expected a whole number of instances or "max", got -3.5'


def test_errors_in_several_apps_are_all_counted_and_nothing_loads(proj: Path,
                                                                  env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '[{"script": "a.py"}, {"script": "app.py"}, {"script": "b.py"}]')
    with pytest.raises(ConfigErrors) as info:
        ecosystem.load(path, base_env=env)
    assert [x.path for x in info.value.errors] == ["apps[0].script", "apps[2].script"]


def test_a_duplicate_name_is_an_error_at_the_second_naming_the_first(proj: Path,
                                                                     env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [\n {"name": "api", "script": "app.py"},\n'
                                   ' {"name": "web", "script": "app.py"},\n'
                                   ' {"name": "api", "script": "worker.php"}\n]}')
    e = load_error(path, base_env=env)
    assert e.message == f'{path}:4:11: apps[2].name: duplicate name "api": apps[0] has it too'
    assert e.hint


def test_default_names_clash_too(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '[{"script": "app.py"}, {"script": "app.py", "cwd": "."}]')
    assert "duplicate name \"app\"" in load_error(path, base_env=env).detail


@pytest.mark.parametrize(("name", "fragment"), [
    ("", "name is empty"), ("42", "only digits"), ("all", "reserved"),
])
def test_unusable_names_are_errors(proj: Path, env: dict[str, str], name: str,
                                   fragment: str) -> None:
    path = write(proj, "eco.json", f'{{"apps": [{{"name": "{name}", "script": "app.py"}}]}}')
    e = load_error(path, base_env=env)
    assert fragment in e.detail and e.path == "apps[0].name" and (e.line, e.col) == (1, 20)


# ---- warnings ----------------------------------------------------------------------------------

def test_an_unknown_key_warns_with_did_you_mean_and_position(proj: Path,
                                                             env: dict[str, str]) -> None:
    path = copy("typo-key.json", proj)
    loaded = ecosystem.load(path, base_env=env)
    assert loaded.apps[0].interpreter is None
    assert loaded.warnings == [f'{path}:5:19: apps[0]: unknown option "intepreter" '
                               '(did you mean "interpreter"?)']


def test_a_key_given_twice_warns(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"name": "a", "script": "app.py",\n "name": "b"}]}')
    loaded = ecosystem.load(path, base_env=env)
    assert loaded.apps[0].name == "b"
    assert loaded.warnings == [f'{path}:2:2: apps[0].name: "name" is given twice; the last one is used']


def test_an_unknown_top_level_key_warns(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py"}], "aps": 1}')
    loaded = ecosystem.load(path, base_env=env)
    assert loaded.warnings == [f'{path}:1:41: unknown top-level key "aps" (did you mean "apps"?); '
                               "it is ignored"]


def test_pm2_static_servers_are_ignored_with_a_warning(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py"}], "static": [{"path": "."}]}')
    loaded = ecosystem.load(path, base_env=env)
    assert len(loaded.warnings) == 1 and '"static"' in loaded.warnings[0]


def test_a_yaml_key_given_twice_warns(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.yaml", "apps:\n  - script: app.py\n    name: a\n    name: b\n")
    loaded = ecosystem.load(path, base_env=env)
    assert loaded.apps[0].name == "b"
    assert loaded.warnings == [f'{path}:4:5: apps[0].name: "name" is given twice; the last one is used']


def test_a_huge_value_is_clipped_in_the_message(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py", "kill_signal": "%s"}]}' % ("X" * 5000))
    assert len(load_error(path, base_env=env).message) < 400


# ---- YAML errors -------------------------------------------------------------------------------

def test_yaml_syntax_errors_carry_the_marks_position(proj: Path) -> None:
    e = load_error(write(proj, "eco.yaml", "apps:\n  - name: api\n   script: [app.py\n"))
    assert e.line is not None and e.col is not None and e.hint


@pytest.mark.parametrize(("text", "where", "says"), [
    ("apps:\n  - name: a\n   script: x.py\n", (3, 4), "bad indentation of a mapping entry"),
    ("apps:\n  - name: a\n - name: b\n", (3, 2), "bad indentation of a sequence entry"),
    ("apps:\n  - name: a: b\n", (2, 12), 'unexpected ":" here'),
    ("apps:\n  - name: 'abc\n", (3, 1), "a quoted value is not closed"),
    ("apps:\n  - args: [a, b\n", (3, 1), 'a list in "[...]" is not closed'),
    ("apps:\n  - name: *x\n", (2, 11), "an alias (*name) names no anchor"),
    ("apps:\n  - name: @x\n", (2, 11), "a value cannot start with '@'"),
    ("apps: []\n---\n- a\n", (2, 1), 'a second document ("---")'),
])
def test_yaml_syntax_errors_are_in_plain_words(proj: Path, text: str, where: tuple[int, int],
                                               says: str) -> None:
    e = load_error(write(proj, "eco.yaml", text))
    assert (e.line, e.col) == where and e.detail.startswith(says), e.message
    assert "<block" not in e.message and "while " not in e.message and e.hint


def test_yaml_tabs_get_a_hint(proj: Path) -> None:
    e = load_error(write(proj, "eco.yaml", "apps:\n\t- script: app.py\n"))
    assert (e.line, e.col) == (2, 1) and e.hint == "YAML indents with spaces, not tabs"


def test_yaml_fullwidth_colon_is_named(proj: Path) -> None:
    path = write(proj, "eco.yaml", "apps:\n  - name: api\n    cwd： ..\n    script: app.py\n")
    e = load_error(path)
    assert (e.line, e.col) == (3, 8) and e.detail.startswith("fullwidth colon")


def test_yaml_value_errors_point_at_the_value(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.yaml", "apps:\n  - script: app.py\n    max_memory_restart: 100 megs\n")
    e = load_error(path, base_env=env)
    assert e.message == (f'{path}:3:25: apps[0].max_memory_restart: expected a size like "100M", '
                         'got "100 megs"')


def test_yaml_merge_keys_and_anchors_work(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.yaml", "base: &base\n  script: app.py\n  instances: 2\n"
                                   "apps:\n  - <<: *base\n    name: a\n  - <<: *base\n    name: b\n")
    loaded = ecosystem.load(path, base_env=env)
    assert [(a.name, a.instances) for a in loaded.apps] == [("a", 2), ("b", 2)]


# ---- .config.js --------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_NODE, reason="node is not installed")
def test_a_config_js_is_evaluated_by_node(proj: Path, env: dict[str, str]) -> None:
    path = copy("ecosystem.config.js", proj)
    node_env = {**env, "PATH": env["PATH"] + os.pathsep + os.path.dirname(shutil.which("node") or "")}
    (app,) = ecosystem.load(path, base_env=node_env).apps
    assert (app.name, app.cwd, app.env) == ("api", str(proj), {"FROM_JS": "ecosystem.config.js"})


@pytest.mark.skipif(not HAS_NODE, reason="node is not installed")
def test_a_config_mjs_export_default_is_unwrapped(proj: Path) -> None:
    path = copy("ecosystem.config.mjs", proj)
    (app,) = ecosystem.load(path).apps
    assert app.name == "api"


@pytest.mark.skipif(not HAS_NODE, reason="node is not installed")
def test_a_config_js_syntax_error_reports_nodes_line(proj: Path) -> None:
    path = write(proj, "ecosystem.config.js", "module.exports = {\n  apps: [{ name: 'a' script: 'x' }],\n};\n")
    e = load_error(path)
    assert e.line == 2 and "SyntaxError" in e.detail and e.hint


def test_a_config_js_without_node_says_what_to_do(proj: Path, tmp_path: Path) -> None:
    empty = tmp_path / "nonode"
    empty.mkdir()
    path = copy("ecosystem.config.js", proj)
    e = load_error(path, base_env={"PATH": str(empty)})
    assert "node" in e.detail and e.hint == "convert it to ecosystem.json, or install Node.js"


# ---- --env, --only, --cwd ----------------------------------------------------------------------

def test_env_name_merges_deploy_env_then_env_then_env_name(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", """{
      "apps": [
        {"name": "a", "script": "app.py", "env": {"X": "env", "Y": "env"},
         "env_production": {"Y": "prod"}},
        {"name": "b", "script": "app.py", "env": {"X": "env"}}
      ],
      "deploy": {"production": {"user": "u", "env": {"X": "deploy", "Z": "deploy"}}}
    }""")
    a, b = ecosystem.load(path, env_name="production", base_env=env).apps
    assert a.env == {"X": "env", "Y": "prod", "Z": "deploy"}
    assert b.env == {"X": "env", "Z": "deploy"}


def test_without_env_name_only_env_is_used(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py", "env": {"A": 1}, '
                                   '"env_production": {"A": 2}}]}')
    assert ecosystem.load(path, base_env=env).apps[0].env == {"A": "1"}


def test_only_keeps_the_named_apps(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '[{"name": "a", "script": "app.py"}, '
                                   '{"name": "b", "script": "nope.py"}, {"script": "worker.php"}]')
    loaded = ecosystem.load(path, only=["a", "worker"], base_env=env)
    assert [x.name for x in loaded.apps] == ["a", "worker"]


def test_errors_of_apps_picked_by_only_keep_their_index_in_the_file(proj: Path,
                                                                    env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '[{"name": "a", "script": "app.py"},\n'
                                   ' {"name": "b", "script": "app.py", "instances": "many"}]')
    e = load_error(path, only=["b"], base_env=env)
    assert (e.path, e.line, e.col) == ("apps[1].instances", 2, 49)


def test_only_with_an_unknown_name_lists_the_known_ones(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '[{"name": "api", "script": "app.py"}, {"script": "worker.php"}]')
    e = load_error(path, only=["apx"], base_env=env)
    assert e.detail == '--only "apx" matches no app in this file'
    assert e.hint == "apps in this file: api, worker"


def test_cwd_override_replaces_every_apps_cwd(proj: Path, tmp_path: Path,
                                              env: dict[str, str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "app.py").write_text("")
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py", "cwd": "/nonexistent"}]}')
    (app,) = ecosystem.load(path, cwd_override=str(other), base_env=env).apps
    assert app.cwd == str(other) and app.script == str(other / "app.py")


def test_a_missing_cwd_override_is_an_error(proj: Path, env: dict[str, str]) -> None:
    path = write(proj, "eco.json", '{"apps": [{"script": "app.py"}]}')
    assert "--cwd" in load_error(path, cwd_override="/nonexistent/x", base_env=env).detail


# ---- positions ---------------------------------------------------------------------------------

def test_value_positions_follow_keys_arrays_comments_and_strings(proj: Path,
                                                                 env: dict[str, str]) -> None:
    text = """// leading comment with "quotes" and {braces}
{
  apps: [
    {script: 'app.py', name: "x", /* "name": "decoy" */ env: {"K": "a,b}"}},
    {
      'script': "app.py",
      name: 'y',
      "kill_signal": "SIGNOPE"
    },
  ],
}
"""
    path = write(proj, "eco.json5", text)
    e = load_error(path, base_env=env)
    assert (e.line, e.col, e.path) == (8, 22, "apps[1].kill_signal")
