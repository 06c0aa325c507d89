"""resolve_launch: which interpreter runs a script, and the exact argv, without starting anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyvm2.errors import ConfigError
from pyvm2.launch import HEAD_BYTES, Launch, resolve_launch
from pyvm2.spec import AppSpec


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    return d


def tool(bin_dir: Path, name: str) -> str:
    """A fake interpreter: an executable file named `name` in `bin_dir`."""
    path = bin_dir / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def script(tmp_path: Path, name: str, content: str | bytes = "", mode: int = 0o644) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(mode)
    return str(path)


def spec(path: str, **kw: object) -> AppSpec:
    """A spec whose cwd is not the script's folder, so argv names the script by its full path."""
    kw.setdefault("cwd", os.path.join(os.path.dirname(path), "elsewhere"))
    return AppSpec(name="app", script=path, **kw)  # type: ignore[arg-type]


def test_py_runs_with_python3_from_the_given_path(tmp_path: Path, bin_dir: Path) -> None:
    py = tool(bin_dir, "python3")
    s = script(tmp_path, "w.py", "print(1)\n")
    launch = resolve_launch(spec(s, args=("a", "b c")), str(bin_dir))
    assert launch == Launch((py, s, "a", "b c"), "python3", True)


def test_py_falls_back_to_python_when_python3_is_missing(tmp_path: Path, bin_dir: Path) -> None:
    py = tool(bin_dir, "python")
    s = script(tmp_path, "w.py")
    launch = resolve_launch(spec(s), str(bin_dir))
    assert launch.argv == (py, s) and launch.interpreter == "python" and launch.is_python


def test_py_without_any_python_names_python3(tmp_path: Path, bin_dir: Path) -> None:
    s = script(tmp_path, "w.py")
    with pytest.raises(ConfigError) as e:
        resolve_launch(spec(s), str(bin_dir))
    assert e.value.message == 'interpreter "python3" is not on PATH'


@pytest.mark.parametrize(("ext", "interp"), [
    (".php", "php"), (".sh", "bash"), (".rb", "ruby"), (".pl", "perl"), (".js", "node"),
    (".cjs", "node"), (".mjs", "node"), (".ts", "bun"),
])
def test_extensions_choose_pm2s_interpreters(tmp_path: Path, bin_dir: Path, ext: str,
                                             interp: str) -> None:
    path = tool(bin_dir, interp)
    s = script(tmp_path, "app" + ext)
    launch = resolve_launch(spec(s), str(bin_dir))
    assert launch.argv == (path, s) and launch.interpreter == interp and not launch.is_python


def test_interpreter_args_go_between_interpreter_and_script(tmp_path: Path, bin_dir: Path) -> None:
    php = tool(bin_dir, "php")
    s = script(tmp_path, "w.php")
    launch = resolve_launch(spec(s, interpreter_args=("-d", "memory_limit=1G"), args=("local",)),
                            str(bin_dir))
    assert launch.argv == (php, "-d", "memory_limit=1G", s, "local")


def test_explicit_interpreter_wins_over_the_extension(tmp_path: Path, bin_dir: Path) -> None:
    php = tool(bin_dir, "php")
    tool(bin_dir, "python3")
    s = script(tmp_path, "looks.py")
    launch = resolve_launch(spec(s, interpreter="php"), str(bin_dir))
    assert launch.argv == (php, s) and launch.interpreter == "php"


def test_explicit_interpreter_path_is_relative_to_the_app_cwd(tmp_path: Path) -> None:
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    py = tool(venv, "python")
    s = script(tmp_path, "w.py")
    launch = resolve_launch(spec(s, interpreter="./.venv/bin/python", cwd=str(tmp_path)), "")
    assert launch.argv == (py, "w.py")
    assert launch.interpreter == "./.venv/bin/python" and launch.is_python


def test_explicit_interpreter_path_expands_the_home_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    py = tool(tmp_path, "mypython")
    s = script(tmp_path, "w.py")
    assert resolve_launch(spec(s, interpreter="~/mypython"), "").argv == (py, s)


def test_a_missing_interpreter_path_is_reported_absolute(tmp_path: Path) -> None:
    s = script(tmp_path, "w.py")
    with pytest.raises(ConfigError) as e:
        resolve_launch(spec(s, interpreter="./.venv/bin/python", cwd=str(tmp_path)), "")
    assert e.value.message == f"interpreter \"./.venv/bin/python\" not found: {tmp_path}/.venv/bin/python"


def test_a_non_executable_interpreter_suggests_chmod(tmp_path: Path) -> None:
    s = script(tmp_path, "w.py")
    script(tmp_path, "notexec", "#!/bin/sh\n")
    with pytest.raises(ConfigError) as e:
        resolve_launch(spec(s, interpreter="./notexec", cwd=str(tmp_path)), "")
    assert "not executable" in e.value.message and e.value.hint and "chmod +x" in e.value.hint


def test_an_interpreter_not_on_path_is_named_with_a_hint(tmp_path: Path, bin_dir: Path) -> None:
    s = script(tmp_path, "w.py")
    with pytest.raises(ConfigError) as e:
        resolve_launch(spec(s, interpreter="python3.99"), str(bin_dir))
    assert e.value.message == 'interpreter "python3.99" is not on PATH'
    assert e.value.hint == "install it, or set exec_interpreter to its full path"
    assert e.value.code == 2


def test_a_missing_php_says_how_to_install_it(tmp_path: Path, bin_dir: Path) -> None:
    s = script(tmp_path, "w.php")
    with pytest.raises(ConfigError) as e:
        resolve_launch(spec(s), str(bin_dir))
    assert e.value.message == 'interpreter "php" is not on PATH'
    assert e.value.hint is not None and "apt-get install php-cli" in e.value.hint


def test_an_interpreter_with_arguments_in_it_is_split(tmp_path: Path, bin_dir: Path) -> None:
    py = tool(bin_dir, "python3")
    s = script(tmp_path, "w.py")
    launch = resolve_launch(spec(s, interpreter="python3 -u"), str(bin_dir))
    assert launch.argv == (py, "-u", s) and launch.is_python


def test_interpreter_none_execs_the_script_and_drops_interpreter_args(tmp_path: Path) -> None:
    s = script(tmp_path, "run", "#!/bin/sh\n", mode=0o755)
    launch = resolve_launch(spec(s, interpreter="none", interpreter_args=("-x",), args=("1",)), "")
    assert launch == Launch((s, "1"), "none", False)


def test_interpreter_none_needs_an_executable_script(tmp_path: Path) -> None:
    s = script(tmp_path, "run", "#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not executable"):
        resolve_launch(spec(s, interpreter="none"), "")


def test_a_binary_without_extension_is_executed_directly(tmp_path: Path) -> None:
    s = script(tmp_path, "server", b"\x7fELF\x02\x01\x01\x00\x00\x00", mode=0o755)
    assert resolve_launch(spec(s, args=("-p", "80")), "") == Launch((s, "-p", "80"), "none", False)


def test_a_non_executable_binary_suggests_chmod(tmp_path: Path) -> None:
    s = script(tmp_path, "server", b"\x7fELF\x00")
    with pytest.raises(ConfigError) as e:
        resolve_launch(spec(s), "")
    assert e.value.hint is not None and e.value.hint.startswith("chmod +x")


def test_an_executable_script_with_a_shebang_runs_by_itself(tmp_path: Path) -> None:
    s = script(tmp_path, "tool", "#!/usr/bin/env python3\nprint(1)\n", mode=0o755)
    assert resolve_launch(spec(s), "") == Launch((s,), "none", True)


def test_a_non_executable_env_shebang_is_resolved_on_the_path(tmp_path: Path,
                                                              bin_dir: Path) -> None:
    py = tool(bin_dir, "python3")
    s = script(tmp_path, "tool", "#!/usr/bin/env python3\nprint(1)\n")
    launch = resolve_launch(spec(s, args=("x",)), str(bin_dir))
    assert launch == Launch((py, s, "x"), "python3", True)


def test_env_dash_s_shebang_keeps_the_extra_arguments(tmp_path: Path, bin_dir: Path) -> None:
    py = tool(bin_dir, "python3")
    s = script(tmp_path, "tool", "#!/usr/bin/env -S python3 -u\n")
    assert resolve_launch(spec(s), str(bin_dir)).argv == (py, "-u", s)


def test_a_shebang_is_split_like_the_kernel_does(tmp_path: Path) -> None:
    sh = tool(tmp_path, "mysh")
    s = script(tmp_path, "job", f"#!{sh} -e -x\r\necho hi\n")
    launch = resolve_launch(spec(s, args=("a",)), "")
    assert launch.argv == (sh, "-e -x", s, "a") and launch.interpreter == "mysh"


def test_a_shebang_interpreter_that_is_not_installed_is_an_error(tmp_path: Path) -> None:
    s = script(tmp_path, "job", "#!/nonexistent/bin/zsh\n")
    with pytest.raises(ConfigError, match="is not installed"):
        resolve_launch(spec(s), "")


def test_a_php_file_without_extension_runs_with_php(tmp_path: Path, bin_dir: Path) -> None:
    php = tool(bin_dir, "php")
    s = script(tmp_path, "symfony", "<?php\necho 1;\n")
    assert resolve_launch(spec(s, args=("a",)), str(bin_dir)) == Launch((php, s, "a"), "php", False)


def test_text_without_extension_or_shebang_asks_for_exec_interpreter(tmp_path: Path) -> None:
    s = script(tmp_path, "worker", "echo hi\n")
    with pytest.raises(ConfigError) as e:
        resolve_launch(spec(s), "")
    assert e.value.message == (f"cannot tell how to run {s}: no extension, no shebang, and node "
                               "(which pm2 would use) is not installed")
    assert e.value.hint == 'set exec_interpreter (for example "node", "php" or "python3")'


def test_text_without_extension_or_shebang_runs_with_node_as_in_pm2(tmp_path: Path,
                                                                     bin_dir: Path) -> None:
    node = tool(bin_dir, "node")
    s = script(tmp_path, "worker", "console.log(1)\n")
    assert resolve_launch(spec(s, args=("a",)), str(bin_dir)) == Launch((node, s, "a"), "node",
                                                                       False)
    t = script(tmp_path, "job.task", "console.log(1)\n")
    assert resolve_launch(spec(t), str(bin_dir)).interpreter == "node"


def test_an_unknown_extension_is_named(tmp_path: Path) -> None:
    s = script(tmp_path, "job.task", "do things\n")
    with pytest.raises(ConfigError, match=r'unknown extension "\.task", no shebang'):
        resolve_launch(spec(s), "")


def test_only_the_first_512_bytes_are_looked_at(tmp_path: Path) -> None:
    s = script(tmp_path, "big", b"x" * HEAD_BYTES + b"\0" * 10_000)
    with pytest.raises(ConfigError, match="cannot tell how to run"):
        resolve_launch(spec(s), "")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        resolve_launch(spec(str(fifo)), "")


def test_a_missing_script_is_reported(tmp_path: Path, bin_dir: Path) -> None:
    tool(bin_dir, "python3")
    with pytest.raises(ConfigError, match="script not found"):
        resolve_launch(spec(str(tmp_path / "gone.py")), str(bin_dir))


def test_the_extension_is_matched_case_insensitively(tmp_path: Path, bin_dir: Path) -> None:
    py = tool(bin_dir, "python3")
    s = script(tmp_path, "APP.PY")
    assert resolve_launch(spec(s), str(bin_dir)).argv == (py, s)


def test_a_script_inside_cwd_is_passed_as_the_user_would_type_it(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "symfony"
    script.parent.mkdir()
    script.write_text("<?php\n")
    fake = tmp_path / "fake"
    fake.mkdir()
    php = fake / "php"
    php.write_text("#!/bin/sh\n")
    php.chmod(0o755)
    launch = resolve_launch(spec(str(script), cwd=str(tmp_path), args=("--split=4",)), str(fake))
    assert launch.argv == (str(php), "bin/symfony", "--split=4")
