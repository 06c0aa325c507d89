"""supervisord.conf files: supervisor's parsing quirks, its expansions, and every option's mapping."""

from __future__ import annotations

import os
import platform
import signal
import sys
from pathlib import Path

import pytest

from pyvm2 import ecosystem
from pyvm2.daemon.policy import RestartState, decide
from pyvm2.errors import ConfigError
from pyvm2.formats import supervisor
from pyvm2.spec import AppSpec, ConfigErrors
from pyvm2.status import Status

SH = "/bin/sh"


class Conf:
    """Write supervisor files into a temporary folder and load them as pyvm2 does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        for name in ("php", "celery", "gunicorn"):
            exe = self.bin / name
            exe.write_text("#!/bin/sh\nexit 0\n")
            exe.chmod(0o755)
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": "/home/someone", "DB": "mysql"}
        self.warnings: list[str] = []

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def load(self, text: str, rel: str = "supervisord.conf") -> list[AppSpec]:
        self.write(rel, text)
        loaded = ecosystem.load(rel, base_env=self.env)
        self.warnings = loaded.warnings
        return loaded.apps

    def one(self, text: str) -> AppSpec:
        apps = self.load(text)
        assert len(apps) == 1, apps
        return apps[0]

    def error(self, text: str, rel: str = "supervisord.conf") -> ConfigError:
        with pytest.raises(ConfigError) as info:
            self.load(text, rel)
        return info.value

    def errors(self, text: str) -> list[ConfigError]:
        e = self.error(text)
        return list(e.errors) if isinstance(e, ConfigErrors) else [e]


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Conf:
    monkeypatch.chdir(tmp_path)
    return Conf(tmp_path)


def prog(body: str, name: str = "w") -> str:
    return f"[program:{name}]\n{body}\n"


# ---- recognising the format -----------------------------------------------------------------------

def test_conf_and_ini_files_with_supervisor_sections_are_ecosystem_files(conf: Conf) -> None:
    a = conf.write("a.conf", "[program:x]\ncommand=/bin/true\n")
    b = conf.write("b.ini", "; comment\n[supervisord]\n")
    c = conf.write("c.conf", "[mysqld]\nport=3306\n")
    assert ecosystem.is_ecosystem_file(str(a)) and ecosystem.is_ecosystem_file(str(b))
    assert not ecosystem.is_ecosystem_file(str(c))


# ---- the ini syntax -------------------------------------------------------------------------------

def test_inline_comments_only_after_whitespace(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH} a;b x#y z ;cut\nstopsignal=QUIT #cut"))
    assert s.args == ("a;b", "x#y", "z") and s.kill_signal == "SIGQUIT"


def test_quotes_do_not_protect_an_inline_comment_and_the_error_says_so(conf: Conf) -> None:
    e = conf.error(prog(f"command={SH} -c 'foo ; bar'"))
    assert str(e).startswith("supervisord.conf:2:9: [program:w] command: No closing quotation")
    assert "inline comment" in (e.hint or "")


def test_percent_must_be_doubled(conf: Conf) -> None:
    assert conf.one(prog(f"command={SH} 100%%")).args == ("100%",)
    e = conf.error(prog(f"command={SH} 100%"))
    assert str(e).startswith("supervisord.conf:2:9: [program:w] command: badly formatted")
    assert "%%" in (e.hint or "")


def test_keys_are_case_insensitive_and_colon_is_a_delimiter(conf: Conf) -> None:
    s = conf.one(prog(f"Command: {SH} -x\nSTOPSIGNAL = hup"))
    assert s.args == ("-x",) and s.kill_signal == "SIGHUP"


def test_section_names_are_case_sensitive(conf: Conf) -> None:
    apps = conf.load(f"[Program:x]\ncommand={SH}\n" + prog(f"command={SH}"))
    assert [a.name for a in apps] == ["w"]
    assert any("[Program:x] is ignored" in w and "[program:x]" in w for w in conf.warnings)


def test_continuation_lines_and_comment_lines_inside_them(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH}\n    -c\n    ; a comment line\n  'echo hi'\nautostart=false"))
    assert s.args == ("-c", "echo hi") and s.autostart is False


def test_a_repeated_key_and_a_repeated_section_last_wins_and_merge(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH} a\ncommand={SH} b") + "[program:w]\nstopsignal=HUP\n")
    assert s.args == ("b",) and s.kill_signal == "SIGHUP"


def test_a_line_that_is_not_key_value_is_an_error_at_its_line(conf: Conf) -> None:
    e = conf.error(prog(f"command={SH}\nthis is not an option"))
    assert str(e).startswith("supervisord.conf:3:1: expected key=value")


def test_text_before_any_section(conf: Conf) -> None:
    e = conf.error("command=/bin/true\n" + prog(f"command={SH}"))
    assert str(e).startswith("supervisord.conf:1:1: this line comes before any [section]")


def test_default_section_applies_to_every_program(conf: Conf) -> None:
    apps = conf.load("[DEFAULT]\nstopsignal=QUIT\n" + prog(f"command={SH}", "a")
                     + prog(f"command={SH}\nstopsignal=HUP", "b"))
    assert [(a.name, a.kill_signal) for a in apps] == [("a", "SIGQUIT"), ("b", "SIGHUP")]


# ---- %(...)s expansions ---------------------------------------------------------------------------

def test_expansions_in_a_program(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH} %(here)s %(program_name)s %(group_name)s %(host_node_name)s "
                      "%(ENV_DB)s %(ENV_LOCAL)s\nenvironment=LOCAL=x"))
    assert s.args == (str(conf.root), "w", "w", platform.node(), "mysql", "x")


def test_unknown_expansion_names_what_is_available(conf: Conf) -> None:
    e = conf.error(prog(f"command={SH} %(progam_name)s"))
    assert "%(progam_name)s cannot be expanded" in str(e)
    assert "did you mean %(program_name)s" in (e.hint or "")
    e = conf.error(prog(f"command={SH} %(ENV_NOPE)s"))
    assert "NOPE is not set" in (e.hint or "")


def test_process_num_is_only_for_per_process_options(conf: Conf) -> None:
    e = conf.error(prog(f"command={SH}\npriority=%(process_num)d"))
    assert "[program:w] priority: %(process_num)s cannot be expanded" in str(e)


def test_supervisord_environment_is_merged_under_and_expandable(conf: Conf) -> None:
    s = conf.one('[supervisord]\nenvironment=A="1",B="2"\n'
                 + prog(f"command={SH} %(ENV_A)s\nenvironment=B=3"))
    assert s.args == ("1",) and dict(s.env) == {"A": "1", "B": "3"}


def test_supervisord_directory_is_the_default_cwd(conf: Conf) -> None:
    (conf.root / "app").mkdir()
    s = conf.one("[supervisord]\ndirectory=%(here)s/app\nlogfile=/tmp/x.log\n" + prog(f"command={SH}"))
    assert s.cwd == str(conf.root / "app")
    assert any("[supervisord] logfile: not used" in w for w in conf.warnings)


# ---- environment= ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ('A="1",B="2"', {"A": "1", "B": "2"}),
    ("PATH=/usr/bin:/bin,HOME=/root", {"PATH": "/usr/bin:/bin", "HOME": "/root"}),
    ("A=\"a b, c\",B='q'", {"A": "a b, c", "B": "q"}),
    ("URL=http://h/?q=1", {"URL": "http://h/", "q": "1"}),
    ("A=x#y,B=1", {"A": "x"}),
    ("A=1;B=2", {"A": "1", "B": "2"}),
])
def test_environment_is_parsed_as_supervisor_parses_it(text: str, expected: dict) -> None:
    assert supervisor.environment(text) == expected


def test_environment_errors_point_at_the_line(conf: Conf) -> None:
    e = conf.error(prog(f"command={SH}\nenvironment=A=1 B=2"))
    assert str(e).startswith("supervisord.conf:3:13: [program:w] environment: unexpected end")


def test_environment_values_cut_by_supervisor_are_shown(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH}\nenvironment=URL=http://h/?q=1,SAFE=\"a?b\""))
    assert dict(s.env) == {"URL": "http://h/", "q": "1", "SAFE": "a?b"}
    assert any("unquoted ? or #" in w and "URL='http://h/'" in w for w in conf.warnings)
    conf.one(prog(f'command={SH}\nenvironment=SAFE="a?b#c"'))
    assert not any("unquoted" in w for w in conf.warnings)


def test_environment_percent_and_quotes_in_a_file(conf: Conf) -> None:
    s = conf.one(prog(f'command={SH}\nenvironment=URI="/first%%20name",Q="a, b"'))
    assert dict(s.env) == {"URI": "/first%20name", "Q": "a, b"}


# ---- [include] -------------------------------------------------------------------------------------

def test_include_globs_relative_to_the_including_file_in_sorted_order(conf: Conf) -> None:
    conf.write("etc/conf.d/b.conf", prog(f"command={SH} %(here)s", "b"))
    conf.write("etc/conf.d/a.conf", prog(f"command={SH} %(here)s", "a"))
    conf.write("etc/conf.d/readme.txt", "not included")
    apps = conf.load("[supervisord]\n[include]\nfiles = conf.d/*.conf missing/*.conf\n",
                     "etc/supervisord.conf")
    assert [(a.name, a.args) for a in apps] == [("a", (str(conf.root / "etc/conf.d"),)),
                                                ("b", (str(conf.root / "etc/conf.d"),))]
    assert any("no file matches" in w and "missing/*.conf" in w for w in conf.warnings)


def test_include_loops_are_read_once(conf: Conf) -> None:
    conf.write("conf.d/a.conf", prog(f"command={SH}", "a") + "[include]\nfiles=../*.conf\n")
    apps = conf.load("[include]\nfiles = conf.d/*.conf %(here)s/*.conf\n" + prog(f"command={SH}"))
    assert sorted(a.name for a in apps) == ["a", "w"]
    assert any("already read" in w for w in conf.warnings)
    assert any("its [include] is not followed" in w for w in conf.warnings)


def test_errors_in_an_included_file_name_that_file(conf: Conf) -> None:
    conf.write("conf.d/bad.conf", prog("command=/bin/true\nstartsecs=soon", "bad"))
    e = conf.error("[include]\nfiles=conf.d/*.conf\n")
    assert str(e).startswith("conf.d/bad.conf:3:11: [program:bad] startsecs: expected a whole")


def test_include_without_files_is_an_error(conf: Conf) -> None:
    assert "[include] has no files=" in str(conf.error("[include]\n" + prog(f"command={SH}")))


# ---- [program:x] options, row by row ---------------------------------------------------------------

def test_command_is_split_like_supervisor_and_run_without_an_interpreter(conf: Conf) -> None:
    s = conf.one(prog("command=php artisan queue:work --tries=3 'a b' && x"))
    assert s.script == str(conf.bin / "php") and s.interpreter == "none"
    assert s.args == ("artisan", "queue:work", "--tries=3", "a b", "&&", "x")


def test_command_is_looked_up_on_the_programs_own_path(conf: Conf) -> None:
    other = conf.root / "venv"
    other.mkdir()
    (other / "celery").write_text("#!/bin/sh\n")
    (other / "celery").chmod(0o755)
    s = conf.one(prog(f"command=celery worker\nenvironment=PATH=\"{other}:/bin\""))
    assert s.script == str(other / "celery")


def test_a_missing_command_is_an_error_before_anything_starts(conf: Conf) -> None:
    e = conf.error(prog("command=no-such-program --x"))
    assert "'no-such-program' is not found on PATH" in str(e)
    assert "[program:w] has no command=" in str(conf.error(prog("autostart=true")))


def test_defaults_are_supervisors(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH}"))
    assert s.name == "w" and s.cwd == str(conf.root)
    assert (s.autorestart, s.stop_exit_codes) == ("unexpected", (0,))
    assert (s.kill_signal, s.kill_timeout, s.min_uptime, s.max_restarts) == ("SIGTERM", 10000, 1000, 4)
    assert (s.log_max_size, s.log_retain, s.treekill, s.autostart) == (50 * 1024**2, 10, True, True)
    assert (s.priority, s.user, s.redirect_stderr, s.instances) == (999, None, False, 1)


@pytest.mark.parametrize(("value", "restart"), [
    ("true", True), ("YES", True), ("on", True), ("1", True),
    ("false", False), ("off", False), ("Unexpected", "unexpected"),
])
def test_autorestart_values(conf: Conf, value: str, restart: bool | str) -> None:
    s = conf.one(prog(f"command={SH}\nautorestart={value}\nexitcodes=0,2"))
    assert s.autorestart == restart
    assert s.stop_exit_codes == ((0, 2) if restart == "unexpected" else ())


def test_bad_values_are_errors_with_the_supervisor_name(conf: Conf) -> None:
    errors = conf.errors(prog(f"command={SH}\nautorestart=sometimes", "a")
                         + prog(f"command={SH}\nexitcodes=0,300", "b")
                         + prog(f"command={SH}\nstopsignal=NOPE", "c")
                         + prog(f"command={SH}\nautostart=maybe", "d")
                         + prog(f"command={SH}\nstdout_logfile_maxbytes=50M", "e"))
    text = [str(e) for e in errors]
    assert text[0].startswith("supervisord.conf:3:13: [program:a] autorestart: invalid")
    assert text[1].startswith("supervisord.conf:6:11: [program:b] exitcodes: invalid exit code")
    assert text[2].startswith("supervisord.conf:9:12: [program:c] stopsignal:")
    assert text[3].startswith("supervisord.conf:12:11: [program:d] autostart: not a valid boolean")
    assert "expected a size such as 50MB" in text[4]


def test_autorestart_unexpected_restarts_unless_the_code_is_expected() -> None:
    spec = AppSpec(name="w", script=SH, cwd="/", autorestart="unexpected", stop_exit_codes=(0,))
    state = RestartState()
    assert decide(spec, state, code=0, signal_name=None, uptime_ms=5000).status == Status.STOPPED
    assert decide(spec, state, code=1, signal_name=None,
                  uptime_ms=5000).status == Status.WAITING_RESTART
    # a signal death is unexpected for supervisor (pm2 would count it as code 0)
    assert decide(spec, state, code=None, signal_name="SIGKILL",
                  uptime_ms=5000).status == Status.WAITING_RESTART
    pm2 = AppSpec(name="w", script=SH, cwd="/", stop_exit_codes=(0,))
    assert decide(pm2, state, code=None, signal_name="SIGKILL",
                  uptime_ms=5000).status == Status.STOPPED


def test_startsecs_startretries_stopwaitsecs(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH}\nstartsecs=5\nstartretries=0\nstopwaitsecs=30"))
    assert (s.min_uptime, s.max_restarts, s.kill_timeout) == (5000, 1, 30000)
    assert conf.one(prog(f"command={SH}\nstartsecs=0")).min_uptime == 100


@pytest.mark.parametrize("value", ["TERM", "SIGTERM", "term", str(int(signal.SIGTERM))])
def test_stopsignal_forms(conf: Conf, value: str) -> None:
    assert conf.one(prog(f"command={SH}\nstopsignal={value}")).kill_signal == "SIGTERM"


@pytest.mark.parametrize(("body", "treekill"), [
    ("stopasgroup=true", True), ("stopasgroup=true\nkillasgroup=true", True),
    ("killasgroup=true", False), ("", True),
])
def test_stopasgroup_and_killasgroup(conf: Conf, body: str, treekill: bool) -> None:
    assert conf.one(prog(f"command={SH}\n{body}")).treekill is treekill


def test_stopasgroup_without_killasgroup_is_an_error(conf: Conf) -> None:
    e = conf.error(prog(f"command={SH}\nstopasgroup=true\nkillasgroup=false"))
    assert "cannot set stopasgroup=true and killasgroup=false" in str(e)


def test_user(conf: Conf) -> None:
    if os.geteuid() == 0:
        assert conf.one(prog(f"command={SH}\nuser=nobody")).user == "nobody"
        assert conf.one(prog(f"command={SH}\nuser=root")).user is None
    e = conf.error(prog(f"command={SH}\nuser=no-such-user-x"))
    assert str(e).startswith('supervisord.conf:3:6: [program:w] user: no such user "no-such-user-x"')


def test_log_files(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH}\nstdout_logfile=logs/%(program_name)s.out\n"
                      "stderr_logfile=NONE\nstdout_logfile_maxbytes=1MB\nstdout_logfile_backups=2\n"
                      "stderr_logfile_maxbytes=1MB"))
    assert s.out_file == str(conf.root / "logs/w.out") and s.error_file == "/dev/null"
    assert (s.log_max_size, s.log_retain) == (1024**2, 2)  # stderr writes no file
    s = conf.one(prog(f"command={SH}\nstdout_logfile=AUTO\nstderr_logfile=off"))
    assert (s.out_file, s.error_file) == (None, "/dev/null")


def test_umask(conf: Conf) -> None:
    assert conf.one(prog(f"command={SH}\numask=002")).umask == 0o002
    assert "not an octal umask" in str(conf.error(prog(f"command={SH}\numask=999")))


def test_redirect_stderr(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH}\nredirect_stderr=true\nstderr_logfile=/tmp/ignored.log"))
    assert s.redirect_stderr is True and s.error_file is None


def test_directory_and_a_relative_command_path(conf: Conf) -> None:
    (conf.root / "app").mkdir()
    (conf.root / "app" / "run.sh").write_text("#!/bin/sh\n")
    (conf.root / "app" / "run.sh").chmod(0o755)
    s = conf.one(prog("command=app/run.sh\ndirectory=app"))
    assert s.cwd == str(conf.root / "app") and s.script == str(conf.root / "app/run.sh")
    assert any("relative app/run.sh" in w for w in conf.warnings)


def test_numprocs_without_per_process_differences_is_instances(conf: Conf) -> None:
    s = conf.one(prog(f"command={SH} work\nnumprocs=4\nprocess_name=%(program_name)s_%(process_num)02d"))
    assert (s.name, s.instances, s.namespace) == ("w", 4, "default")


def test_numprocs_with_per_process_commands_is_separate_apps(conf: Conf) -> None:
    apps = conf.load(prog(f"command={SH} --port=80%(process_num)02d\nnumprocs=3\nnumprocs_start=1\n"
                          "process_name=%(program_name)s_%(process_num)02d\n"
                          'environment=N="%(process_num)d"'))
    assert [(a.name, a.args, a.env["N"], a.namespace) for a in apps] == [
        ("w_01", ("--port=8001",), "1", "w"), ("w_02", ("--port=8002",), "2", "w"),
        ("w_03", ("--port=8003",), "3", "w")]


def test_numprocs_needs_process_num_in_process_name(conf: Conf) -> None:
    e = conf.error(prog(f"command={SH}\nnumprocs=2"))
    assert "%(process_num) must be present within process_name" in str(e)


def test_invalid_names(conf: Conf) -> None:
    assert "because of the character ' '" in str(conf.error(f"[program:a b]\ncommand={SH}\n"))


def test_unsupported_and_unknown_options_warn(conf: Conf) -> None:
    conf.one(prog(f"command={SH}\nstdout_events_enabled=true\nstartsec=3"))
    text = "\n".join(conf.warnings)
    assert "stdout_events_enabled is not supported" in text
    assert "unknown option 'startsec' (did you mean startsecs?)" in text


# ---- groups, priority, other sections --------------------------------------------------------------

def test_groups_are_namespaces_and_priority_orders_the_apps(conf: Conf) -> None:
    apps = conf.load("[group:workers]\nprograms=mail,queue\npriority=100\n"
                     + prog(f"command={SH}\nnumprocs=2\nprocess_name=%(program_name)s_%(process_num)d"
                            "\nenvironment=G=%(group_name)s", "queue")
                     + prog(f"command={SH}\npriority=1", "mail")
                     + prog(f"command={SH}\npriority=50", "web")
                     + prog(f"command={SH}", "cron"))
    assert [(a.name, a.namespace) for a in apps] == [
        ("web", "default"), ("mail", "workers"), ("queue", "workers"), ("cron", "default")]
    assert apps[2].env["G"] == "workers"


def test_a_group_naming_an_unknown_program(conf: Conf) -> None:
    e = conf.error("[group:g]\nprograms=a,nope\n" + prog(f"command={SH}", "a"))
    assert str(e).startswith("supervisord.conf:2:") and "unknown program 'nope'" in str(e)


def test_other_sections_are_read_never_fatal(conf: Conf) -> None:
    conf.load("[unix_http_server]\nfile=/tmp/supervisor.sock\n[supervisorctl]\nserverurl=unix:///x\n"
              "[inet_http_server]\nport=*:9001\n[rpcinterface:supervisor]\n"
              "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
              "[eventlistener:memmon]\ncommand=memmon -a 200MB\nevents=TICK_60\n"
              "[fcgi-program:php]\ncommand=php-cgi\nsocket=tcp://localhost:9000\n"
              + prog(f"command={SH}"))
    text = "\n".join(conf.warnings)
    assert "pyvm2.sock" in text and "without a password" in text
    assert "event listeners are not supported" in text and "max_memory_restart" in text
    assert "FastCGI programs are not supported" in text and "rpcinterface" not in text


def test_a_file_without_programs(conf: Conf) -> None:
    assert "no [program:x] section" in str(conf.error("[supervisord]\nlogfile=/tmp/x\n"))


def test_only_selects_programs_and_groups(conf: Conf) -> None:
    path = conf.write("s.conf", "[group:g]\nprograms=a\n" + prog(f"command={SH}", "a")
                      + prog(f"command={SH}", "b"))
    assert [a.name for a in ecosystem.load(str(path), only=["g"], base_env=conf.env).apps] == ["a"]
    assert [a.name for a in ecosystem.load(str(path), only=["b"], base_env=conf.env).apps] == ["b"]


def test_errors_are_all_or_nothing_and_in_file_order(conf: Conf) -> None:
    errors = conf.errors(prog(f"command={SH}\ndirectory=/no/such/dir", "a")
                         + prog(f"command={SH}\nuser=no-such-user-y", "b"))
    assert [e.line for e in errors] == [3, 6]
    assert str(errors[0]).startswith("supervisord.conf:3:11: [program:a] directory: cwd does not")


def test_the_real_python_runs_as_given(conf: Conf) -> None:
    s = conf.one(prog(f"command={sys.executable} -u -c 'print(1)'"))
    assert s.script == sys.executable and s.args == ("-u", "-c", "print(1)")


@pytest.mark.parametrize(("text", "message"), [
    ("[program:]\ncommand=/bin/true\n", "supervisord.conf:1: [program:]: the name is empty"),
    ("[program:x\ncommand=/bin/true\n", "supervisord.conf:1:1: a section header needs a closing ]"),
    ("[program:x]\n=value\n", "supervisord.conf:2:1: expected key=value"),
    ("[program:x]\ncommand=\n", "supervisord.conf:2:9: [program:x] command is empty"),
    ("[program:x]\ncommand=/bin/true\nnumprocs=0\n", "numprocs must be 1 to 1024, got 0"),
    ("[program:all]\ncommand=/bin/true\n", 'name "all" is reserved'),
    ('[program:x]\ncommand=/bin/true\nenvironment=A="open\n',
     "supervisord.conf:3:13: [program:x] environment: No closing quotation"),
])
def test_malformed_files_get_one_clear_error(conf: Conf, text: str, message: str) -> None:
    assert message in str(conf.error(text))


def test_stopsignal_kill_is_allowed_as_in_supervisor(conf: Conf) -> None:
    assert conf.one(prog(f"command={SH}\nstopsignal=KILL")).kill_signal == "SIGKILL"
