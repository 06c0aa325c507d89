"""Where pyvm2 keeps its files: PYVM2_HOME (default ~/.pyvm2) and what lives in it."""

from __future__ import annotations

import os
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^a-zA-Z0-9.\-]")


#: Longest stem of a file name derived from an app name. With `-error-<id>.log.<n>.gz` and a
#: temporary suffix it stays far below NAME_MAX (255 bytes on every common file system).
MAX_STEM = 100


def sanitize(name: str) -> str:
    """pm2's rule for file names derived from an app name (anything but ASCII letters, digits,
    `.` and `-` becomes `-`), cut to MAX_STEM characters: a longer name keeps its head and gets a
    short hash of the whole name, so two long names that start alike still get files of their own."""
    stem = _UNSAFE.sub("-", name)
    if len(stem) <= MAX_STEM:
        return stem
    import hashlib

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{stem[:MAX_STEM - 11]}-{digest}"


class Home:
    """A pyvm2 home folder. (A plain class: `pyvm2 jlist` should not pay for dataclasses.)"""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Home) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"

    @classmethod
    def from_env(cls) -> Home:
        raw = os.environ.get("PYVM2_HOME")
        root = Path(raw).expanduser() if raw else Path.home() / ".pyvm2"
        return cls(root.absolute())

    @property
    def socket(self) -> Path:
        return self.root / "pyvm2.sock"

    @property
    def lock(self) -> Path:
        return self.root / "pyvm2.lock"

    @property
    def pid(self) -> Path:
        return self.root / "pyvm2.pid"

    @property
    def log(self) -> Path:
        return self.root / "pyvm2.log"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def run(self) -> Path:
        """Named pipes between the apps and the daemon."""
        return self.root / "run"

    @property
    def config(self) -> Path:
        """Global settings (log rotation)."""
        return self.root / "config.json"

    @property
    def dump(self) -> Path:
        return self.root / "dump.json"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def ensure(self) -> None:
        """Create the home and its folders, private to the user (0700). A home that another user
        owns or could write into is refused: its socket and files would not be ours alone."""
        from pyvm2.errors import Pyvm2Error

        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.root.stat()
        uid = os.getuid()
        if st.st_uid != uid:
            raise Pyvm2Error(f"PYVM2_HOME {self.root} belongs to another user (uid {st.st_uid})",
                             "point PYVM2_HOME at a folder of your own", code=1)
        if st.st_mode & 0o022:
            raise Pyvm2Error(f"PYVM2_HOME {self.root} is writable by other users",
                             f"make it private with: chmod 700 {self.root}", code=1)
        if st.st_mode & 0o777 != 0o700:
            os.chmod(self.root, 0o700)
        for d in (self.logs, self.pids, self.run):
            d.mkdir(mode=0o700, exist_ok=True)
