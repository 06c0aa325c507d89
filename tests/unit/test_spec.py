"""from_options: pm2 options (from a file or CLI flags) to a validated, resolved AppSpec."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import pytest

from pyvm2.errors import ConfigError
from pyvm2.launch import resolve_launch
from pyvm2.spec import (
    KNOWN_OPTIONS,
    LOG_FILE_DEFAULT,
    AppSpec,
    ConfigErrors,
    combine_errors,
    from_options,
)
from pyvm2.units import MIB


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH holding fake python3, php, bash and node, so no real interpreter is needed."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("python3", "php", "bash", "node", "sleep"):
        exe = d / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return d


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "app.py").write_text("print(1)\n")
    (d / "web.js").write_text("1\n")
    (d / "symfony").write_text("<?php\n")
    return d


class Build:
    """Calls from_options with a fake PATH and collects the warnings."""

    def __init__(self, proj: Path, bin_dir: Path) -> None:
        self.proj, self.bin_dir = proj, bin_dir
        self.warnings: list[str] = []

    def __call__(self, raw: dict[str, Any], **kw: Any) -> AppSpec:
        kw.setdefault("base_dir", str(self.proj))
        kw.setdefault("origin", "eco.json")
        kw.setdefault("base_env", {"PATH": str(self.bin_dir)})
        kw.setdefault("warn", self.warnings.append)
        return from_options(raw, **kw)

    def error(self, raw: dict[str, Any], **kw: Any) -> ConfigError:
        with pytest.raises(ConfigError) as e:
            self(raw, **kw)
        return e.value


@pytest.fixture
def build(proj: Path, bin_dir: Path) -> Build:
    return Build(proj, bin_dir)


# ---- the seed story ----------------------------------------------------------------------------

def test_the_seed_entry_runs_php_on_symfony_in_the_parent_directory(tmp_path: Path,
                                                                    bin_dir: Path) -> None:
    (tmp_path / "symfony").write_text("#!/usr/bin/env php\n<?php\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    raw = {
        "name": "up4",
        "args": "trade:UpdateCommentDgTags updateUserPublishment  --split=4",
        "script": "symfony",
        "exec_interpreter": "php",
        "max_memory_restart": "100M",
        "cwd": "../",
    }
    s = from_options(raw, base_dir=str(conf), origin="ecosystem.json",
                     base_env={"PATH": str(bin_dir)}, warn=pytest.fail)
    assert s.cwd == str(tmp_path)
    assert s.script == str(tmp_path / "symfony")
    assert s.args == ("trade:UpdateCommentDgTags", "updateUserPublishment", "--split=4")
    assert s.max_memory_restart == 100 * MIB
    launch = resolve_launch(s, str(bin_dir))
    assert launch.argv == (str(bin_dir / "php"), "symfony",
                           "trade:UpdateCommentDgTags", "updateUserPublishment", "--split=4")


# ---- defaults and names ------------------------------------------------------------------------

def test_defaults_are_pm2s(build: Build, proj: Path) -> None:
    s = build({"script": "app.py"})
    assert (s.name, s.namespace, s.cwd, s.script) == ("app", "default", str(proj), str(proj / "app.py"))
    assert (s.instances, s.exec_mode, s.merge_logs, s.autorestart, s.autostart) == (1, "fork", True, True, True)
    assert (s.min_uptime, s.max_restarts, s.kill_timeout, s.kill_signal) == (1000, 16, 1600, "SIGINT")
    assert (s.restart_delay, s.exp_backoff_restart_delay, s.watch, s.treekill) == (0, 0, False, True)
    assert (s.out_file, s.error_file, s.log_file, s.pid_file, s.interpreter) == (None,) * 5
    assert s.instance_var == "NODE_APP_INSTANCE" and s.log_type == "raw" and s.env == {}
    assert build.warnings == []


def test_the_default_name_drops_only_the_last_extension(build: Build, proj: Path) -> None:
    (proj / "my.worker.py").write_text("")
    (proj / ".hidden").write_text("#!/bin/sh\n")
    (proj / ".hidden").chmod(0o755)
    assert build({"script": "my.worker.py"}).name == "my.worker"
    assert build({"script": ".hidden"}).name == ".hidden"


@pytest.mark.parametrize(("name", "message"), [
    ("", "name is empty"),
    ("  ", "name is empty"),
    ("123", 'name "123" is only digits'),
    ("all", 'name "all" is reserved'),
    ("a\nb", "control character"),
])
def test_ambiguous_or_empty_names_are_errors(build: Build, name: str, message: str) -> None:
    e = build.error({"script": "app.py", "name": name}, index=2)
    assert message in e.message and e.path == "apps[2].name" and e.hint


def test_name_prefix_and_append_env_to_name_follow_pm2(build: Build) -> None:
    s = build({"script": "app.py", "name": "api", "name_prefix": "shop",
               "append_env_to_name": True, "env_production": {}}, env_name="production")
    assert s.name == "shop:api-production"


# ---- option names ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["script", "exec", "cmd", "command"])
def test_script_has_pm2s_aliases(build: Build, proj: Path, key: str) -> None:
    assert build({key: "app.py"}).script == str(proj / "app.py")


@pytest.mark.parametrize(("key", "field"), [
    ("exec_interpreter", "interpreter"), ("interpreter", "interpreter"),
    ("execInterpreter", "interpreter"),
])
def test_interpreter_aliases(build: Build, key: str, field: str) -> None:
    assert getattr(build({"script": "app.py", key: "php"}), field) == "php"


@pytest.mark.parametrize("key", ["node_args", "interpreter_args", "interpreterArgs", "nodeArgs"])
def test_interpreter_args_aliases_split_strings_like_a_shell(build: Build, key: str) -> None:
    assert build({"script": "app.py", key: "-X dev -W 'ignore::x y'"}).interpreter_args == (
        "-X", "dev", "-W", "ignore::x y")


@pytest.mark.parametrize(("key", "field"), [
    ("out_file", "out_file"), ("out", "out_file"), ("output", "out_file"), ("out_log", "out_file"),
    ("outFile", "out_file"), ("error_file", "error_file"), ("error", "error_file"),
    ("err", "error_file"), ("err_file", "error_file"), ("err_log", "error_file"),
    ("errorFile", "error_file"), ("log_file", "log_file"), ("log", "log_file"),
    ("pid_file", "pid_file"), ("pid", "pid_file"),
])
def test_log_file_aliases_resolve_against_the_app_cwd(build: Build, proj: Path, key: str,
                                                      field: str) -> None:
    assert getattr(build({"script": "app.py", key: "logs/x.log"}), field) == str(proj / "logs/x.log")


def test_camel_case_spellings_are_accepted(build: Build) -> None:
    s = build({"script": "app.py", "maxMemoryRestart": "200M", "minUptime": "5s",
               "killTimeout": 3000, "expBackoffRestartDelay": 100, "cronRestart": "0 3 * * *",
               "combineLogs": True})
    assert (s.max_memory_restart, s.min_uptime, s.kill_timeout) == (200 * MIB, 5000, 3000)
    assert (s.exp_backoff_restart_delay, s.cron_restart, s.merge_logs) == (100, "0 3 * * *", True)
    assert build.warnings == []


def test_the_canonical_key_wins_over_an_alias_with_a_warning(build: Build) -> None:
    s = build({"script": "app.py", "interpreter": "php", "exec_interpreter": "python3"}, index=0)
    assert s.interpreter == "python3"
    assert build.warnings == ['eco.json: apps[0].exec_interpreter: both "interpreter" and '
                              '"exec_interpreter" are set; using "exec_interpreter", ignoring '
                              '"interpreter"']


def test_an_unknown_option_warns_with_a_suggestion(build: Build) -> None:
    s = build({"script": "app.py", "intepreter": "php"}, index=0)
    assert s.interpreter is None
    assert build.warnings == ['eco.json: apps[0]: unknown option "intepreter" '
                              '(did you mean "interpreter"?)']


def test_an_unknown_option_without_a_close_match_still_warns(build: Build) -> None:
    build({"script": "app.py", "zzz": 1})
    assert build.warnings == ['eco.json: unknown option "zzz"']


def test_warnings_carry_the_position_when_known(build: Build) -> None:
    positions = {("apps", 3, "intepreter"): (7, 5)}
    build({"script": "app.py", "intepreter": "php"}, index=3, where=positions.get)
    assert build.warnings[0].startswith("eco.json:7:5: apps[3]: unknown option")


def test_node_only_and_pm2_plus_options_are_accepted_silently(build: Build) -> None:
    build({"script": "app.py", "vizion": False, "pmx": True, "source_map_support": True,
           "listen_timeout": 3000, "force": True, "kill_retry_time": 100, "windowsHide": True,
           "watch_options": {"usePolling": True}, "env_production": {"A": 1}})
    assert build.warnings == []


def test_wait_ready_listen_timeout_and_listen(build: Build) -> None:
    spec = build({"script": "app.py", "wait_ready": True, "listenTimeout": "5s",
                  "listen": ["127.0.0.1:8000", ":8001", " [::1]:8002", "unix:/run/a.sock"]})
    assert build.warnings == []
    assert spec.wait_ready is True and spec.listen_timeout == 5000
    assert spec.listen == ("127.0.0.1:8000", ":8001", "[::1]:8002", "unix:/run/a.sock")
    assert build({"script": "app.py", "listen": "localhost:80"}).listen == ("localhost:80",)
    assert AppSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(("listen", "expected"), [
    ("8000", "is not an address"), ("127.0.0.1:0", "outside 1-65535"),
    ("::1:8000", "goes in brackets"), ("[127.0.0.1]:80", "brackets are for IPv6"),
    ("unix:run/a.sock", "absolute path"), (["a:1", "a:1"], "listed twice"), ({"a": 1}, "expected"),
    ([8000], "expected an address string"), ("unix:/" + "x" * 120, "longer than"),
])
def test_bad_listen_addresses_are_errors(build: Build, listen: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        build({"script": "app.py", "listen": listen})
    assert expected in str(e.value) and e.value.path == "listen"


def test_every_appspec_field_is_a_known_option() -> None:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(AppSpec)} - {"source"}
    assert fields <= KNOWN_OPTIONS


def test_null_values_mean_not_set(build: Build) -> None:
    s = build({"script": "app.py", "cwd": None, "max_memory_restart": None, "name": None})
    assert s.name == "app" and s.max_memory_restart is None


# ---- values ------------------------------------------------------------------------------------

def test_string_args_split_like_a_posix_shell(build: Build) -> None:
    s = build({"script": "app.py", "args": "a 'b c' --topic=\"My Favorite\"  d"})
    assert s.args == ("a", "b c", "--topic=My Favorite", "d")


def test_list_args_are_kept_verbatim_as_strings(build: Build) -> None:
    assert build({"script": "app.py", "args": ["a b", 1, True, 2.5]}).args == ("a b", "1", "true", "2.5")


def test_unbalanced_quotes_in_args_are_an_error(build: Build) -> None:
    e = build.error({"script": "app.py", "args": "a 'b"}, index=0)
    assert e.path == "apps[0].args" and "unbalanced quotes" in e.message


def test_env_values_become_strings_like_pm2s(build: Build) -> None:
    s = build({"script": "app.py", "env": {"N": 1, "F": 1.5, "I": 2.0, "T": True, "O": {"k": 1},
                                           "L": [1, "a"], "S": "x"}})
    assert s.env == {"N": "1", "F": "1.5", "I": "2", "T": "true", "O": '{"k":1}',
                     "L": '[1,"a"]', "S": "x"}


def test_env_name_merges_env_over_deploy_and_env_name_over_env(build: Build) -> None:
    s = build({"script": "app.py", "env": {"A": "env", "B": "env"},
               "env_production": {"B": "prod", "C": "prod"}},
              env_name="production", deploy_env={"A": "deploy", "D": "deploy"})
    assert s.env == {"A": "env", "B": "prod", "C": "prod", "D": "deploy"}


def test_a_missing_env_block_for_env_name_warns(build: Build) -> None:
    s = build({"script": "app.py", "env": {"A": "1"}}, env_name="staging", index=0)
    assert s.env == {"A": "1"}
    assert build.warnings == ['eco.json: apps[0]: no "env_staging" for --env staging; using "env" alone']


def test_env_must_be_an_object(build: Build) -> None:
    e = build.error({"script": "app.py", "env": "A=1"}, index=0)
    assert e.path == "apps[0].env" and "expected an object" in e.message


def test_an_env_name_with_an_equals_sign_is_an_error(build: Build) -> None:
    e = build.error({"script": "app.py", "env": {"A=B": "1"}}, index=0)
    assert e.path == "apps[0].env.A=B"


def test_port_sets_the_port_variable(build: Build) -> None:
    assert build({"script": "app.py", "port": "8080", "env": {"PORT": "1"}}).env == {"PORT": "8080"}


@pytest.mark.parametrize(("value", "count"), [
    (None, 1), (1, 1), (3, 3), ("4", 4), (2.0, 2), ("max", os.cpu_count()), (0, os.cpu_count()),
    (-1, max(1, (os.cpu_count() or 1) - 1)), (-1000, 1),
])
def test_instances_follow_pm2s_rules(build: Build, value: Any, count: int) -> None:
    assert build({"script": "app.py", "instances": value}).instances == count


@pytest.mark.parametrize("value", [-3.5, "abc", True, [2], "2.5", float("inf"), 100_000])
def test_instances_that_are_not_whole_numbers_are_errors(build: Build, value: Any) -> None:
    e = build.error({"script": "app.py", "instances": value}, index=1)
    assert e.path == "apps[1].instances"
    if value == -3.5:
        assert e.detail == 'expected a whole number of instances or "max", got -3.5'


@pytest.mark.parametrize(("extra", "merged"), [
    ({}, True), ({"instances": "max"}, True), ({"instances": 0}, True),
    ({"instances": 1}, False), ({"instances": 2}, False), ({"instances": -1}, False),
    ({"exec_mode": "cluster"}, False), ({"instances": 2, "merge_logs": True}, True),
    ({"exec_mode": "fork"}, True),
])
def test_merge_logs_defaults_like_pm2(build: Build, extra: dict[str, Any], merged: bool) -> None:
    assert build({"script": "app.py", **extra}).merge_logs is merged


@pytest.mark.parametrize(("value", "mode"), [
    ("fork", "fork"), ("fork_mode", "fork"), ("cluster", "cluster"), ("cluster_mode", "cluster"),
    ("Cluster", "cluster"),
])
def test_exec_mode_accepts_pm2s_spellings(build: Build, value: str, mode: str) -> None:
    assert build({"script": "web.js", "exec_mode": value}).exec_mode == mode


def test_an_unknown_exec_mode_is_an_error(build: Build) -> None:
    assert "expected \"fork\" or \"cluster\"" in build.error({"script": "app.py", "exec_mode": "spawn"}).message


def test_cluster_for_a_python_app_runs_fork_copies_with_a_warning(build: Build) -> None:
    s = build({"script": "app.py", "exec_mode": "cluster", "instances": 2})
    assert s.exec_mode == "cluster" and s.instances == 2
    assert len(build.warnings) == 1 and "cluster mode is for Node apps" in build.warnings[0]
    assert "app runs with python3, so its 2 instance(s) run as separate processes" in \
        build.warnings[0], build.warnings


def test_node_with_instances_defaults_to_cluster_like_pm2(build: Build) -> None:
    assert build({"script": "web.js", "instances": 2}).exec_mode == "cluster"
    assert build({"script": "web.js"}).exec_mode == "fork"
    assert build({"script": "app.py", "instances": 2}).exec_mode == "fork"


def test_time_true_overrides_log_date_format(build: Build) -> None:
    s = build({"script": "app.py", "log_date_format": "HH:mm", "time": True})
    assert s.log_date_format == "YYYY-MM-DDTHH:mm:ss"
    assert build({"script": "app.py", "log_date_format": "HH:mm", "time": False}).log_date_format == "HH:mm"


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ([], True), ("src", ("src",)),
    (["src", "/abs/lib"], ("src", "/abs/lib")),
])
def test_watch_is_a_flag_or_paths_under_cwd(build: Build, proj: Path, value: Any,
                                            expected: Any) -> None:
    result = build({"script": "app.py", "watch": value}).watch
    if isinstance(expected, tuple):
        expected = tuple(str(proj / p) if not p.startswith("/") else p for p in expected)
    assert result == expected


def test_ignore_watch_and_watch_delay(build: Build) -> None:
    s = build({"script": "app.py", "ignore_watch": "node_modules '*.log'", "watch_delay": "1.5s"})
    assert s.ignore_watch == ("node_modules", "*.log") and s.watch_delay == 1500


def test_durations_sizes_and_signals_are_converted(build: Build) -> None:
    s = build({"script": "app.py", "max_memory_restart": "1.5G", "min_uptime": "5s",
               "restart_delay": "2s", "exp_backoff_restart_delay": 100, "kill_timeout": "2500",
               "kill_signal": "term", "max_restarts": "3", "autorestart": "false"})
    assert s.max_memory_restart == int(1.5 * 1024 * MIB) and s.min_uptime == 5000
    assert (s.restart_delay, s.exp_backoff_restart_delay, s.kill_timeout) == (2000, 100, 2500)
    assert (s.kill_signal, s.max_restarts, s.autorestart) == ("SIGTERM", 3, False)


def test_a_bad_size_names_the_value_path_and_position(build: Build) -> None:
    positions = {("apps", 1, "max_memory_restart"): (12, 29)}
    e = build.error({"script": "app.py", "max_memory_restart": "100 megs"}, index=1,
                    where=positions.get)
    assert e.message == 'eco.json:12:29: apps[1].max_memory_restart: expected a size like "100M", got "100 megs"'
    assert (e.file, e.line, e.col, e.path) == ("eco.json", 12, 29, "apps[1].max_memory_restart")
    assert e.hint and e.code == 2


def test_min_uptime_below_pm2s_minimum_is_an_error(build: Build) -> None:
    assert "minimum of 100 ms" in build.error({"script": "app.py", "min_uptime": 50}).message


def test_a_negative_max_restarts_is_an_error(build: Build) -> None:
    assert "cannot be negative" in build.error({"script": "app.py", "max_restarts": -1}).message


@pytest.mark.parametrize(("value", "codes"), [(0, (0,)), ([0, 2], (0, 2)), ("3", (3,)), ([], ())])
def test_stop_exit_codes_take_one_code_or_a_list(build: Build, value: Any, codes: tuple) -> None:
    assert build({"script": "app.py", "stop_exit_codes": value}).stop_exit_codes == codes


@pytest.mark.parametrize("value", [[-1], [256], ["x"], [True]])
def test_bad_stop_exit_codes_are_errors(build: Build, value: Any) -> None:
    build.error({"script": "app.py", "stop_exit_codes": value})


@pytest.mark.parametrize(("value", "expected"), [
    ("0 3 * * *", "0 3 * * *"), ("*/10  * * * * *", "*/10 * * * * *"), (0, None), ("0", None),
    ("@daily", "@daily"),
])
def test_cron_restart_takes_five_or_six_fields_and_zero_disables(build: Build, value: Any,
                                                                 expected: str | None) -> None:
    assert build({"script": "app.py", "cron_restart": value}).cron_restart == expected


@pytest.mark.parametrize("value", ["61 * * * *", "* * *", "0 0 * * * * *", "every day", 5])
def test_invalid_cron_patterns_are_errors(build: Build, value: Any) -> None:
    e = build.error({"script": "app.py", "cron": value}, index=0)
    assert e.path == "apps[0].cron" and e.hint and "0 3 * * *" in e.hint + e.message


def test_log_paths_expand_home_and_null(build: Build, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = build({"script": "app.py", "out_file": "~/out.log", "error_file": "NULL",
               "pid_file": "/dev/null"})
    assert (s.out_file, s.error_file, s.pid_file) == (str(tmp_path / "out.log"), "/dev/null", "/dev/null")


def test_log_file_true_means_the_default_combined_file(build: Build) -> None:
    assert build({"script": "app.py", "log_file": True}).log_file == LOG_FILE_DEFAULT
    assert build({"script": "app.py", "log": False}).log_file is None
    assert not os.path.isabs(LOG_FILE_DEFAULT)


def test_filter_env_is_a_flag_or_names(build: Build) -> None:
    assert build({"script": "app.py", "filter_env": True}).filter_env is True
    assert build({"script": "app.py", "filter_env": "SECRET"}).filter_env == ("SECRET",)
    assert build({"script": "app.py", "filter_env": ["A", "B"]}).filter_env == ("A", "B")


def test_running_as_the_current_user_is_a_no_op_and_unknown_users_are_named(build: Build) -> None:
    assert build({"script": "app.py", "uid": os.getuid(), "user": getpass.getuser()}).user is None
    e = build.error({"script": "app.py", "uid": "nobody-at-all"}, index=0)
    assert e.detail == 'no such user "nobody-at-all" on this machine' and e.path == "apps[0].uid"
    e = build.error({"script": "app.py", "gid": "no-such-group-here"}, index=0)
    assert e.detail == 'no such group "no-such-group-here" on this machine'


def test_another_user_is_read_by_anyone_and_checked_by_the_daemon(build: Build) -> None:
    # `convert` and the CLI read the file whoever runs them; whether the daemon can switch to the
    # user is decided at its door (daemon.definition_problem), before anything starts.
    assert build({"script": "app.py", "user": "nobody"}).user == "nobody"


def test_autorestart_unexpected_defaults_to_exit_code_0(build: Build) -> None:
    s = build({"script": "app.py", "autorestart": "unexpected"})
    assert (s.autorestart, s.stop_exit_codes) == ("unexpected", (0,))
    s = build({"script": "app.py", "autorestart": "Unexpected", "stop_exit_codes": [0, 2]})
    assert s.stop_exit_codes == (0, 2)
    s = build({"script": "app.py", "autorestart": "unexpected", "stop_exit_codes": []})
    assert s.stop_exit_codes == ()
    assert build({"script": "app.py", "autorestart": True}).autorestart is True


# ---- paths -------------------------------------------------------------------------------------

def test_cwd_is_relative_to_base_dir_and_script_to_cwd(build: Build, proj: Path) -> None:
    (proj / "sub").mkdir()
    (proj / "sub" / "w.py").write_text("")
    s = build({"script": "w.py", "cwd": "sub"})
    assert s.cwd == str(proj / "sub") and s.script == str(proj / "sub" / "w.py")


def test_a_missing_cwd_is_an_error(build: Build, proj: Path) -> None:
    e = build.error({"script": "app.py", "cwd": "nope"}, index=0)
    assert e.detail == f"cwd does not exist: {proj / 'nope'}" and e.path == "apps[0].cwd"


def test_a_missing_script_is_an_error_with_its_absolute_path(build: Build, proj: Path) -> None:
    e = build.error({"script": "missing.py"}, index=0)
    assert e.detail == f"script not found: {proj / 'missing.py'}" and e.path == "apps[0].script"
    assert e.hint is not None and str(proj) in e.hint


def test_a_directory_as_script_is_an_error(build: Build, proj: Path) -> None:
    (proj / "pkg").mkdir()
    assert "script is a directory" in build.error({"script": "pkg"}).message


def test_a_script_that_is_not_a_file_is_found_on_path(build: Build, bin_dir: Path) -> None:
    s = build({"script": "sleep", "args": ["10"]})
    assert s.script == str(bin_dir / "sleep") and s.name == "sleep"


def test_a_command_string_runs_through_bash(build: Build, bin_dir: Path) -> None:
    s = build({"script": "php artisan queue:work", "args": ["--tries=3"]})
    assert s.script == str(bin_dir / "bash") and s.interpreter == "none"
    assert s.args == ("-c", "php artisan queue:work --tries=3")
    assert s.name == "php artisan queue:work"


def test_a_command_string_with_a_path_is_named_after_its_program(build: Build) -> None:
    assert build({"script": "php /srv/a.php"}).name == "php"


def test_the_home_directory_expands_in_script_and_cwd(build: Build, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "proj"))
    s = build({"script": "~/app.py", "cwd": "~"})
    assert s.script == str(tmp_path / "proj" / "app.py") and s.cwd == str(tmp_path / "proj")


def test_a_cli_script_hint_speaks_of_the_current_directory(build: Build) -> None:
    e = build.error({"script": "nope.py"}, origin="command line", cli_script=True)
    assert e.message.startswith("command line: script: script not found")
    assert e.hint is not None and "current directory" in e.hint


# ---- interpreter availability ------------------------------------------------------------------

def test_an_interpreter_not_on_path_is_a_config_error_at_its_key(build: Build) -> None:
    positions = {("apps", 0, "exec_interpreter"): (4, 27)}
    e = build.error({"script": "app.py", "exec_interpreter": "python3.99"}, index=0,
                    where=positions.get)
    assert e.message == 'eco.json:4:27: apps[0].exec_interpreter: interpreter "python3.99" is not on PATH'


def test_missing_php_is_found_through_the_given_path(build: Build, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    e = build.error({"script": "symfony", "interpreter": "php"}, base_env={"PATH": str(empty)})
    assert 'interpreter "php" is not on PATH' in e.message
    assert e.hint is not None and "apt-get install php-cli" in e.hint


def test_the_apps_own_path_is_used_for_interpreters(build: Build, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "php").write_text("#!/bin/sh\n")
    (venv / "php").chmod(0o755)
    s = build({"script": "symfony", "interpreter": "php", "env": {"PATH": str(venv)}},
              base_env={"PATH": "/nonexistent"})
    assert resolve_launch(s, s.env["PATH"]).argv[0] == str(venv / "php")


def test_an_extensionless_text_script_runs_with_node_or_needs_an_interpreter(
        build: Build, proj: Path, tmp_path: Path) -> None:
    (proj / "job").write_text("do things\n")
    assert build({"script": "job"}).script.endswith("job")  # node, found on the app's PATH
    empty = tmp_path / "empty"
    empty.mkdir()
    e = build.error({"script": "job"}, index=0, base_env={"PATH": str(empty)})
    assert e.path == "apps[0].script" and "cannot tell how to run" in e.message
    assert "node" in e.message


# ---- several errors ----------------------------------------------------------------------------

def test_all_problems_of_an_app_are_collected_first_in_file_order(build: Build) -> None:
    positions = {("apps", 0, "instances"): (3, 5), ("apps", 0, "max_memory_restart"): (2, 5)}
    with pytest.raises(ConfigErrors) as e:
        build({"script": "app.py", "instances": -3.5, "max_memory_restart": "100 megs",
               "kill_signal": "SIGNOPE"}, index=0, where=positions.get)
    err = e.value
    assert len(err.errors) == 3
    assert err.line == 2 and err.path == "apps[0].max_memory_restart"
    assert err.hint is not None and err.hint.endswith("(and 2 more errors)")


def test_combine_errors_returns_a_lone_error_unchanged() -> None:
    one = ConfigError("x", "y", file="f")
    assert combine_errors([one]) is one


def test_an_app_that_is_not_an_object_is_an_error(build: Build) -> None:
    assert "expected an app object" in build.error(["app.py"], index=0).message  # type: ignore[arg-type]


def test_no_script_is_an_error(build: Build) -> None:
    e = build.error({"name": "x"}, index=4)
    assert e.message == 'eco.json: apps[4]: no "script"'


# ---- round trip --------------------------------------------------------------------------------

def test_a_spec_rebuilt_from_its_dict_is_the_same(build: Build, proj: Path) -> None:
    s = build({"script": "app.py", "log_file": True, "out_file": "NULL", "watch": ["src"],
               "instances": 2, "env": {"A": {"b": 1}}, "kill_signal": "TERM",
               "cron_restart": "0 3 * * *", "stop_exit_codes": [0, 2], "time": True,
               "filter_env": ["SECRET"], "args": "a 'b c'", "max_memory_restart": "1G"})
    d = s.to_dict()
    d.pop("source")
    assert build(d, base_dir=s.cwd) == s


def test_a_command_string_spec_survives_the_round_trip(build: Build) -> None:
    s = build({"script": "sleep 10"})
    d = s.to_dict()
    d.pop("source")
    assert build(d) == s


# ---- names from other tools -------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "option", "note"), [
    ("startsecs", 1, "min_uptime", "startsecs counts seconds, min_uptime milliseconds"),
    ("startretries", 3, "max_restarts", "max_restarts = startretries + 1"),
    ("stopsignal", "TERM", "kill_signal", "supervisor's default is TERM"),
    ("stopwaitsecs", 10, "kill_timeout", "stopwaitsecs counts seconds"),
    ("directory", "/srv", "cwd", "pyvm2 the file's"),
    ("environment", "A=1", "env", "write it as"),
    ("numprocs", 2, "instances", ""),
    ("stdout_logfile", "AUTO", "out_file", "AUTO: leave it out"),
    ("stderr_logfile", "NONE", "error_file", "NONE: /dev/null"),
    ("exitcodes", "0,2", "stop_exit_codes", "only with autorestart=unexpected"),
])
def test_a_supervisor_key_warns_with_the_option_it_maps_to(build: Build, key: str, value: Any,
                                                          option: str, note: str) -> None:
    build({"script": "app.py", key: value}, index=0)
    (warning,) = build.warnings
    assert warning.startswith(f'eco.json: apps[0]: unknown option "{key}": did you mean {option}? '
                              f"(supervisor's {key})")
    assert note in warning


def test_supervisor_names_that_are_pm2_names_keep_working(build: Build) -> None:
    s = build({"command": "app.py", "autorestart": False})
    assert s.script.endswith("app.py") and s.autorestart is False and build.warnings == []
    e = build.error({"script": "app.py", "user": "someone-else-entirely"})
    assert 'no such user "someone-else-entirely"' in e.message


# ---- what real ecosystem files write -----------------------------------------------------------

@pytest.mark.parametrize("value", [False, None, "", 0])
def test_a_falsy_optional_option_is_unset_as_in_pm2(build: Build, value: Any) -> None:
    s = build({"script": "app.py", "log_date_format": value, "error_file": value,
               "out_file": value, "log_file": value, "pid_file": value,
               "max_memory_restart": value, "cron_restart": value, "increment_var": value})
    assert (s.log_date_format, s.error_file, s.out_file, s.log_file, s.pid_file,
            s.max_memory_restart, s.cron_restart, s.increment_var) == (None,) * 8
    assert build.warnings == []


def test_false_still_means_false_for_a_switch(build: Build) -> None:
    s = build({"script": "app.py", "autorestart": False, "watch": False, "max_restarts": 0})
    assert (s.autorestart, s.watch, s.max_restarts) == (False, False, 0)


def test_env_keys_holding_a_string_are_accepted_unless_selected(build: Build) -> None:
    s = build({"script": "app.py", "env_note": "staging box", "env_list": [1, 2]})
    assert s.env == {} and build.warnings == []
    e = build.error({"script": "app.py", "env_production": "NODE_ENV=production"},
                    env_name="production", index=0)
    assert e.path == "apps[0].env_production" and "expected an object" in e.message


def test_env_file_loads_a_dotenv_file_under_env(build: Build, proj: Path) -> None:
    (proj / "srv").mkdir()
    (proj / "srv" / ".env").write_text(
        "# settings\nA=from-file\nexport B='two words'\nC=${A}-x\nBARE\n")
    s = build({"script": "../app.py", "cwd": "srv", "env_file": ".env", "env": {"A": "env"}})
    assert s.env == {"A": "env", "B": "two words", "C": "from-file-x"}
    s = build({"script": "app.py", "env_file": "srv/.env", "env_production": {"B": "prod"}},
              env_name="production")
    assert s.env["B"] == "prod" and s.env["A"] == "from-file"


def test_env_file_problems_are_errors_at_the_key(build: Build, proj: Path) -> None:
    e = build.error({"script": "app.py", "env_file": "missing.env"}, index=0)
    assert e.path == "apps[0].env_file" and f"env_file not found: {proj}/missing.env" in e.message
    assert str(proj) in (e.hint or "")
    (proj / "bad.env").write_text("A=1\n  this is not a line\n")
    e = build.error({"script": "app.py", "env_file": "bad.env"}, index=0)
    assert f"{proj}/bad.env:2: cannot read" in e.message and "NAME=value" in (e.hint or "")
    assert build({"script": "app.py", "env_file": False}).env == {}


@pytest.mark.parametrize("name", ["backend/api-gateway", "a/b/c"])
def test_names_with_a_slash_are_accepted(build: Build, name: str) -> None:
    assert build({"script": "app.py", "name": name}).name == name


def test_log_and_pid_file_names_of_such_apps_are_safe() -> None:
    from pyvm2.paths import sanitize

    assert sanitize("backend/api-gateway") == "backend-api-gateway"
    assert "/" not in sanitize("../../etc/passwd")
