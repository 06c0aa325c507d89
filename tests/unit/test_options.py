"""The option table: the README, the CLI flags and AppSpec all agree with its rows."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pyvm2.options import BY_NAME, FOREIGN, KNOWN_OPTIONS, LOOKUP, OPTIONS, cli_flags, readme_table
from pyvm2.spec import AppSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_rows() -> None:
    text = README.read_text()
    start = text.index("| option (aliases) |")
    written = text[start:text.index("\n\n", start) + 1]
    assert written == readme_table(), (
        "README.md's option table differs from pyvm2/options.py; regenerate it with "
        "`python -m pyvm2.options --readme-table`")


def test_names_are_unique_and_every_spelling_has_one_option() -> None:
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    spellings = [s for o in OPTIONS for s in (o.name, *o.aliases)]
    assert len(spellings) == len(set(spellings))
    assert all(LOOKUP[s] in BY_NAME for s in spellings)
    assert {"maxMemoryRestart", "errFile", "execInterpreter"} <= KNOWN_OPTIONS


def test_every_converted_row_sets_an_appspec_field() -> None:
    fields = {f.name for f in dataclasses.fields(AppSpec)}
    for option in OPTIONS:
        if option.convert is not None:
            assert option.target in fields, option.name


def test_the_start_command_has_exactly_the_rows_flags() -> None:
    import typer.main

    from pyvm2.cli.commands import app

    start = typer.main.get_command(app).commands["start"]  # type: ignore[attr-defined]
    declared = {d for p in start.params for d in (*p.opts, *p.secondary_opts)}
    from_rows = set()
    for option in cli_flags():
        assert option.flag is not None
        for decl in option.flag.decls:
            from_rows.update(decl.split("/"))
    assert from_rows <= declared
    # --force is how `start` treats a running script, --wait when it returns: not app options
    assert declared - from_rows == {"targets", "--env", "--only", "--force", "-f", "--wait"}


@pytest.mark.parametrize("foreign", ["startsecs", "startretries", "stopsignal", "stopwaitsecs",
                                     "directory", "environment", "numprocs", "stdout_logfile",
                                     "stderr_logfile", "exitcodes"])
def test_supervisor_names_point_at_their_option(foreign: str) -> None:
    option, name = FOREIGN[foreign]
    assert name.tool == "supervisor" and option.name in BY_NAME and foreign not in KNOWN_OPTIONS


@pytest.mark.parametrize("same", ["user", "redirect_stderr", "priority", "umask", "autostart"])
def test_supervisor_names_pyvm2_shares_are_options(same: str) -> None:
    assert same in BY_NAME and same not in FOREIGN


def test_the_module_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    from pyvm2.options import main

    assert main(["--readme-table"]) == 0
    out = capsys.readouterr().out
    assert out == readme_table() and re.search(r"^\| `min_uptime` \| `--min-uptime` \|", out, re.M)
    assert main([]) == 2
