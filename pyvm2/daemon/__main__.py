"""python -m pyvm2.daemon: take the home's lock, write the pid, serve until told to stop."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
from pathlib import Path

from pyvm2.paths import Home


def raise_fd_limit() -> None:
    """Each app holds a few descriptors in the daemon (pipes, pidfd, log files): a soft limit of
    1024 runs out near 250 apps, so take what the hard limit allows (node and supervisord do too)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def main() -> int:
    home = Home.from_env()
    if len(sys.argv) > 2 and sys.argv[1] == "--home":
        home = Home(Path(sys.argv[2]).absolute())
    home.ensure()
    lock_fd = os.open(home.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another daemon already serves this home
    tmp = f"{home.pid}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, home.pid)

    raise_fd_limit()
    from pyvm2.daemon.daemon import Daemon

    asyncio.run(Daemon(home).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
