"""Descendants that escape their app's tree (a new session and an emptied environment, as
`sudo` and daemonising libraries do) re-parent to the daemon, a child subreaper: they are
stopped with their app, and reaped when they end on their own."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from conftest import Pyvm2, alive, wait_for

#: $1: where the escapee writes its pid; $2: "quiet" sends its output to /dev/null; $3: "leave"
#: ends the leader once the escapee runs. The subshell exits at once, so the escapee loses its
#: parent without delay.
ESCAPER = r"""#!/usr/bin/env bash
if [ "$2" = quiet ]; then
  (setsid env -i /bin/sh -c 'echo $$ > "$1"; exec sleep 1000' sh "$1" >/dev/null 2>&1 &)
else
  (setsid env -i /bin/sh -c 'echo $$ > "$1"; exec sleep 1000' sh "$1" &)
fi
while [ ! -s "$1" ]; do sleep 0.05; done
echo "escaped: $(cat "$1")"
[ "$3" = leave ] && exit 0
while :; do sleep 0.2; done
"""


def escaper(pv: Pyvm2) -> str:
    path = pv.workdir / "escaper.sh"
    path.write_text(ESCAPER)
    path.chmod(0o755)
    return str(path)


def escapee(pidfile: Path) -> int:
    text = wait_for(lambda: pidfile.read_text().strip() if pidfile.exists() else "",
                    what="the escapee's pid")
    return int(text)


@pytest.mark.parametrize("output", ["inherited", "quiet"])
def test_stop_ends_a_descendant_that_escaped_with_setsid_env_i(pv: Pyvm2, output: str) -> None:
    pidfile = pv.workdir / "escapee.pid"
    apps = [pv.app("esc", escaper(pv), args=[str(pidfile), output], interpreter="none")]
    if output == "inherited":   # another app runs meanwhile and is left alone
        apps.append(pv.app("other", "ticker.py", env={"TICK_S": "1"}))
    pv.ok("start", str(pv.write_eco(apps)))
    pid = escapee(pidfile)
    assert "PYVM2_RUN_TOKEN" not in " ".join(psutil.Process(pid).environ())
    daemon = pv.daemon_pid()
    wait_for(lambda: psutil.Process(pid).ppid(), lambda pp: pp == daemon,
             what="the escapee to re-parent to the daemon")
    other = pv.proc("other")["pid"] if output == "inherited" else None

    pv.ok("stop", "esc")
    assert not alive(pid), "the escaped descendant outlived its app's stop"
    assert pv.status("esc") == ["stopped"]
    if other:
        assert alive(other) and pv.proc("other")["pid"] == other


def test_an_escapee_left_by_a_leader_that_exits_is_stopped_with_the_run(pv: Pyvm2) -> None:
    pidfile = pv.workdir / "escapee.pid"
    pv.ok("start", str(pv.write_eco([pv.app("esc", escaper(pv), interpreter="none",
                                             args=[str(pidfile), "inherited", "leave"],
                                             autorestart=False)])))
    pid = escapee(pidfile)
    pv.wait_status("esc", "stopped")
    wait_for(lambda: alive(pid), lambda a: not a, what="the escapee to be stopped with its run")


def test_an_escapee_that_ends_on_its_own_is_reaped(pv: Pyvm2) -> None:
    script = pv.workdir / "short.sh"
    script.write_text("#!/usr/bin/env bash\n(setsid env -i sleep 3 &)\n"
                      "while :; do sleep 0.2; done\n")
    script.chmod(0o755)
    pv.ok("start", str(script), "--name", "short", "--interpreter", "none")
    daemon = psutil.Process(pv.daemon_pid())

    def zombies() -> list[int]:
        return [c.pid for c in daemon.children() if c.status() == psutil.STATUS_ZOMBIE]

    wait_for(lambda: [c.pid for c in daemon.children()], lambda kids: len(kids) >= 2,
             what="the escapee to re-parent to the daemon", interval=0.01)
    wait_for(lambda: (len(daemon.children()), zombies()), lambda v: v == (1, []),
             what="the escapee to end and be reaped")
