"""Log files stay bounded and lose nothing: size rotation at line boundaries, a full disk that
never stops the daemon or the app and is written again once space returns, and reloadLogs for an
external logrotate."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import Pyvm2, wait_for
from helpers_more import env_of, numbers_in

MIB = 1024 * 1024


def rotated_files(log: Path) -> list[Path]:
    """`name.log.N` ... `name.log.1`, `name.log`: oldest first."""
    olds = []
    for p in log.parent.glob(log.name + ".*"):
        m = re.fullmatch(re.escape(log.name) + r"\.(\d+)", p.name)
        if m:
            olds.append((int(m.group(1)), p))
        else:
            olds.append((10 ** 9, p))   # a name we do not know: shown in the failure
    return [p for _, p in sorted(olds, reverse=True)] + [log]


@pytest.mark.timeout(120)
def test_30_mb_of_numbered_lines_rotate_at_1m_and_every_line_is_kept_in_order(
        pv: Pyvm2) -> None:
    total = 300_000   # 100-byte lines: about 30 MB
    eco = pv.write_eco([pv.app("big", "numbered.py", log_max_size="1M", log_retain=50,
                               env={"NUMBERED_TOTAL": str(total), "NUMBERED_WIDTH": "100"})])
    pv.ok("start", str(eco))
    log = pv.log_path("big")
    wait_for(lambda: log.read_bytes()[-100:] if log.exists() else b"",
             lambda tail: b"numbered done" in tail, timeout=90,
             what="the end of 30 MB of numbered lines in the current log file")

    files = rotated_files(log)
    sizes = {p.name: p.stat().st_size for p in files}
    too_big = {n: s for n, s in sizes.items() if s > MIB}
    assert not too_big, f"files above the 1M limit: {too_big}"
    assert len(files) >= 25, sizes
    numbers: list[int] = []
    for p in files:
        text = p.read_text()
        assert text.endswith("\n"), f"{p.name} ends inside a line"
        numbers += numbers_in(text, r"line (\d+) \.*")
    assert numbers == list(range(total)), \
        f"{len(numbers)} lines; first problem at index " \
        f"{next((i for i, n in enumerate(numbers) if n != i), None)}"


@pytest.mark.timeout(90)
def test_the_global_setting_in_config_json_rotates_every_app_and_retain_bounds_the_files(
        pv: Pyvm2) -> None:
    (pv.home / "config.json").write_text('{"log_max_size": "1M", "log_retain": 3}')
    total = 50_000   # 100-byte lines: about 5 MB, more than the 4 files kept
    eco = pv.write_eco([pv.app("mid", "numbered.py",
                               env={"NUMBERED_TOTAL": str(total), "NUMBERED_WIDTH": "100"})])
    pv.ok("start", str(eco))
    log = pv.log_path("mid")
    wait_for(lambda: log.read_bytes()[-100:] if log.exists() else b"",
             lambda tail: b"numbered done" in tail, timeout=60,
             what="the end of 5 MB of numbered lines in the current log file")
    files = rotated_files(log)
    assert [p.name for p in files] == [f"mid-out.log.{i}" for i in (3, 2, 1)] + ["mid-out.log"], \
        [p.name for p in files]
    assert all(p.stat().st_size <= MIB for p in files), {p.name: p.stat().st_size for p in files}
    numbers = [n for p in files for n in numbers_in(p.read_text(), r"line (\d+) \.*")]
    assert numbers == list(range(numbers[0], total)), "the kept files hold the newest lines, in order"


@pytest.fixture
def small_disk(tmp_path_factory: pytest.TempPathFactory):
    """A 2 MiB tmpfs (root only). Requested before `pv` so it is unmounted after pv's cleanup."""
    where = tmp_path_factory.mktemp("tmpfs")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield where
    finally:
        r = subprocess.run(["umount", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.timeout(90)
def test_a_full_disk_keeps_everything_running_warns_and_resumes_when_space_returns(
        small_disk: Path, pv: Pyvm2) -> None:
    out = small_disk / "steady-out.log"
    eco = pv.write_eco([pv.app("steady", "steady_writer.py", out_file=str(out),
                               error_file=str(small_disk / "steady-err.log"),
                               env={"STEADY_KBPS": "1024"})])
    pv.ok("start", str(eco))
    pid = pv.proc("steady")["pid"]
    daemon = pv.daemon_pid()

    env = wait_for(lambda: env_of(pv, "steady"), lambda e: bool(e.get("warnings")), timeout=20,
                   what="a warning about the full disk in jlist")
    assert any("No space left" in w or "cannot write" in w for w in env["warnings"]), env
    described = pv.ok("describe", "steady").out
    assert "No space left" in described or "cannot write" in described, described

    # fixed window: the disk stays full for a while; nobody stops, one warning only
    time.sleep(2)
    assert "pong" in pv.ok("ping").out
    p = pv.proc("steady")
    assert p["pid"] == pid and p["pm2_env"]["status"] == "online", p
    assert pv.daemon_pid() == daemon and psutil.pid_exists(daemon)
    daemon_log = (pv.home / "pyvm2.log").read_text()
    assert daemon_log.count("cannot write") == 1, daemon_log[-3000:]
    rss = psutil.Process(daemon).memory_info().rss
    assert rss < 200 * MIB, f"daemon memory grew to {rss / MIB:.0f} MiB while output was dropped"

    last_full = numbers_in(out.read_text(errors="replace"), r"steady (\d+) x*")
    out.unlink()   # space comes back

    def written_again() -> list[int]:
        return numbers_in(out.read_text(errors="replace"), r"steady (\d+) x*") \
            if out.exists() else []

    fresh = wait_for(written_again, bool, timeout=20,
                     what="the app's output to be written again after space returned")
    assert not last_full or fresh[0] > last_full[-1], (last_full[-1:], fresh[:1])
    assert fresh == list(range(fresh[0], fresh[0] + len(fresh))), "lines lost inside the new file"
    assert pv.proc("steady")["pid"] == pid


@pytest.mark.timeout(60)
def test_reload_logs_after_renaming_the_log_file_creates_and_writes_a_new_one(
        pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("tick", "ticker.py", env={"TICK_S": "0.1"})])
    pv.ok("start", str(eco))
    log = pv.log_path("tick")
    pv.wait_log("tick", "tick 3")
    rotated = log.with_name(log.name + ".old")
    log.rename(rotated)
    # until the reopen the app's lines go to the renamed file
    wait_for(lambda: rotated.read_text().count("tick "), lambda n: n >= 6,
             what="lines in the renamed file before reloadLogs")

    pv.ok("reloadLogs")
    text = wait_for(lambda: log.read_text() if log.exists() else "",
                    lambda s: s.count("tick ") >= 3, what="a new log file written after reloadLogs")
    old_numbers = numbers_in(rotated.read_text(), r"tick (\d+)")
    new_numbers = numbers_in(text, r"tick (\d+)")
    assert new_numbers[0] == old_numbers[-1] + 1, (old_numbers[-3:], new_numbers[:3])
    size = rotated.stat().st_size
    time.sleep(0.5)   # fixed window: the renamed file no longer grows
    assert rotated.stat().st_size == size
