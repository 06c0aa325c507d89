"""The daemon's file descriptors: a start that would leave too few for stopping apps is refused,
and a small reserve, given back when the limit is hit anyway, lets clients connect and apps stop."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

#: Descriptors opened on /dev/null at start and closed when the limit is hit, so that `stop`,
#: `delete` and `kill` can still connect, scan /proc and write the state file.
RESERVE = 8
#: What starting one app may take at once in the daemon: two named pipes while they are set up
#: (three descriptors each), the exec error pipe; afterwards it keeps about five (two pipes, the
#: pidfd, its log files).
PER_START = 8
#: Left free after any start, besides the reserve: for clients, stops, /proc scans, the journal.
MARGIN = 16
#: The count of open descriptors is taken again after this long, or when it comes near the limit.
RECOUNT_S = 1.0

EXHAUSTED = (errno.EMFILE, errno.ENFILE)
#: How to give the daemon more descriptors, in one clause.
HOW = "raise the limit (ulimit -n, or LimitNOFILE= in the systemd unit), then run pyvm2 update"


def soft_limit() -> int | None:
    """RLIMIT_NOFILE's soft limit; None when there is none."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def open_count() -> int | None:
    """Descriptors open in this process; None if they cannot be counted (no /proc, or none left
    to list them with)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1   # less the one listdir used
    except OSError:
        return None


class TooFew(Exception):
    """Starting one more app would leave too few descriptors."""

    def __init__(self, used: int | None, limit: int) -> None:
        self.used, self.limit = used, limit
        held = "all" if used is None else f"{used}"
        super().__init__(f"not started: the daemon holds {held} of its {limit} file "
                         f"descriptors and keeps the rest to stop apps; {HOW}")


class Budget:
    """Counts what starts may take and keeps the reserve. Lives on the daemon's event loop."""

    def __init__(self) -> None:
        self._reserve: list[int] = []
        self.log: Callable[[str], None] | None = None
        self.limit = soft_limit()
        self._guess = 0
        self._counted_at: float | None = None

    def hold(self) -> None:
        """Open the reserve (again, after it was given back, once there is room)."""
        while len(self._reserve) < RESERVE:
            try:
                self._reserve.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return

    def release(self) -> bool:
        """Give the reserve back (the limit was hit); True if there was one."""
        had = bool(self._reserve)
        while self._reserve:
            try:
                os.close(self._reserve.pop())
            except OSError:
                pass
        if had and self.log is not None:
            self.log(f"out of file descriptors (limit {self.limit}): reserve released, so "
                      "apps can still be stopped; no app is started until some are free")
        return had

    @property
    def short(self) -> bool:
        """The reserve was given back and is not yet taken again."""
        return self.limit is not None and len(self._reserve) < RESERVE

    def refill(self) -> None:
        """Take the reserve again once there is room for it and the margin."""
        if len(self._reserve) >= RESERVE or self.limit is None:
            return
        count = open_count()
        if count is not None and self.limit - count > RESERVE + MARGIN:
            self.hold()

    def check_start(self) -> None:
        """Raise TooFew if starting one more app would leave fewer than MARGIN descriptors
        besides the reserve. Counts /proc/self/fd when near the limit or after RECOUNT_S."""
        limit = self.limit
        if limit is None:
            return
        now = time.monotonic()
        need = PER_START + MARGIN + RESERVE - len(self._reserve)
        if self._counted_at is None or now - self._counted_at > RECOUNT_S \
                or self._guess + need * 4 > limit:
            count = open_count()
            if count is None:
                raise TooFew(None, limit)
            self._guess, self._counted_at = count, now
        if self._guess + need > limit:
            raise TooFew(self._guess, limit)
        self._guess += PER_START


#: The daemon's budget; every spawner of the process shares it.
BUDGET = Budget()


def exhausted(e: object) -> bool:
    """True for the errors that mean no descriptor is left (per process or system-wide)."""
    return isinstance(e, OSError) and e.errno in EXHAUSTED


def hint() -> str:
    return ("raise the limit, e.g. `ulimit -n 65536` in the shell that starts pyvm2 or "
            "LimitNOFILE=65536 in its systemd unit, then run `pyvm2 update` (the daemon takes "
            "the hard limit, `ulimit -Hn`)")
