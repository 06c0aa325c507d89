"""How the CLI shows an error: one red first line, the hint below, the exit code, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyvm2 import cli
from pyvm2.cli import quick
from pyvm2.errors import ConfigError, DaemonError, Pyvm2Error

RED_TAG = "\x1b[31m[PYVM2][ERROR]\x1b[0m"


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_an_error_is_a_red_first_line_then_its_hint(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    with pytest.raises(SystemExit) as info:
        cli.fail(DaemonError("the daemon closed the connection\nwhile answering", "see the log"))
    assert info.value.code == 3
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{RED_TAG} the daemon closed the connection"
    assert lines[1] == "  while answering"
    assert lines[2] == "  \x1b[36mhint:\x1b[0m see the log"


def test_without_colour_the_same_lines_are_plain(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as info:
        cli.fail(Pyvm2Error("app 'x' is errored", "see its output with: pyvm2 logs x"))
    assert info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "[PYVM2][ERROR] app 'x' is errored", "  hint: see its output with: pyvm2 logs x"]


def test_main_turns_every_pyvm2_error_into_that_output(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")

    def boom() -> None:
        raise ConfigError("expected a number", "for example 3", file="eco.json", line=4, col=9)

    monkeypatch.setitem(quick.FAST, "ping", boom)
    code, out, err = run_main(["ping"], capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == ["[PYVM2][ERROR] eco.json:4:9: expected a number",
                                "  hint: for example 3"]
    assert "Traceback" not in err


def test_a_cron_pattern_that_never_matches_exits_2_before_any_daemon_is_asked(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("PYVM2_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.py").write_text("print('hi')\n")
    code, out, err = run_main(["start", "a.py", "--cron", "0 0 31 2 *"], capsys)
    assert code == 2
    first, *rest = err.splitlines()
    assert first.startswith("[PYVM2][ERROR] ") and "never matches" in first, err
    assert any(line.startswith("  hint: ") for line in rest), err
    assert "Traceback" not in err
    assert not (tmp_path / "home" / "pyvm2.sock").exists()   # no daemon was started
