"""Log sinks: an app's out/err (and combined) files, per-line date prefixes, reopen, and
write errors (full disk, read-only folder) that never stop the daemon or the app."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyvm2.daemon import fds
from pyvm2.daemon.safefs import open_append, open_new, truncate
from pyvm2.dayjs import format_dayjs

DEVNULL = "/dev/null"
#: Rotation when neither config.json nor the app says otherwise: at 10 MiB, keeping 5 files.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_RETAIN = 5
#: A log file nothing was written to for this long is closed by `close_idle`; the next write
#: opens it again. An idle app then holds no log descriptor in the daemon.
IDLE_CLOSE_S = 5.0
#: Output is prefixed or turned into JSON this many bytes at a time.
FORMAT_SLICE = 65536
#: The files holding a descriptor now, for `close_idle`.
_OPEN: set[LogFile] = set()
#: At most this many log files are open at once (None: an eighth of the descriptor limit, at
#: least 64): opening one more first closes the least recently written quarter of those at a
#: line boundary. Each app holds three descriptors of its own, so with a limit of 20,000, 5,000
#: apps starting at once (each opening its files) fit: 15,000 + 2,500.
MAX_OPEN: int | None = None


def _max_open() -> int:
    if MAX_OPEN is not None:
        return MAX_OPEN
    limit = fds.BUDGET.limit
    return 4096 if limit is None else max(64, limit // 8)


def _make_room(cap: int) -> None:
    """Close the least recently written files that end at a line boundary, down to 3/4 of cap."""
    closable = sorted((f for f in _OPEN if f.at_line_start and not f.trim),
                      key=lambda f: f.last_write)
    for f in closable[:len(_OPEN) - cap * 3 // 4]:
        f.close()


def close_idle(idle_s: float = IDLE_CLOSE_S, now: float | None = None) -> int:
    """Close every log file not written to for idle_s seconds that ends at a line boundary;
    return how many were closed."""
    now = time.monotonic() if now is None else now
    idle = [f for f in _OPEN if now - f.last_write >= idle_s and f.at_line_start and not f.trim]
    for f in idle:
        f.close()
    return len(idle)


class _Prefixer:
    """Caches the formatted prefix for the current millisecond-free second when possible."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.sub_second = "SSS" in fmt or "x" in fmt.replace("[", "")
        self._key: float = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = time.time()
        key = now if self.sub_second else int(now)
        if key != self._key:
            self._key = key
            self._value = (format_dayjs(self.fmt, now) + ": ").encode()
        return self._value


@dataclass(frozen=True)
class Rotation:
    """Size-based rotation: `name.log` -> `name.log.1` ... `name.log.<keep>`."""

    max_size: int = DEFAULT_MAX_SIZE
    keep: int = DEFAULT_RETAIN
    compress: bool = False

    @property
    def enabled(self) -> bool:
        return self.max_size > 0


def _compress(path: str) -> None:
    try:
        with open(path, "rb") as src, os.fdopen(open_new(path + ".gz.tmp"), "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.replace(path + ".gz.tmp", path + ".gz")
        os.unlink(path)
    except OSError:
        pass


class LogFile:
    """An append-only file that rotates at line boundaries and survives write errors (a full disk,
    a file-size limit, a folder gone): it warns once, drops output (memory stays bounded), tries
    again later and says how much was lost. A line is written whole or dropped whole: when a write
    fails mid-line, the line's head is cut from the file and its tail is skipped when writing
    resumes, so two lines are never glued together."""

    RETRY_S = 5.0

    def __init__(self, path: str | None, warn: Callable[[str], None],
                 rotation: Rotation | None = None,
                 background: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.path = path
        self.warn = warn
        self.rotation = rotation or Rotation(max_size=0)
        self.background = background
        self.fd: int | None = None
        self.size = 0
        self.line_end = 0          # the file's size up to its last complete line
        self.skip_line = False     # the rest of a dropped line is still to come: skip it
        self.trim = False          # the file ends with the head of a dropped line: cut it
        self.failed_at: float | None = None
        self.dropped = 0
        self.error: str | None = None
        self.last_write = 0.0      # monotonic time of the last write

    @property
    def at_line_start(self) -> bool:
        return self.size == self.line_end

    def _open(self) -> bool:
        if self.path is None or self.path == DEVNULL:
            return False
        if self.fd is not None:
            return True
        if self.failed_at is not None and time.monotonic() - self.failed_at < self.RETRY_S:
            return False
        cap = _max_open()
        if len(_OPEN) >= cap:
            _make_room(cap)
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.fd = open_append(self.path)
            _OPEN.add(self)
            size = os.fstat(self.fd).st_size
            if self.trim and size == self.size:
                os.ftruncate(self.fd, self.line_end)
                size = self.line_end
            self.trim = False
            self.size = self.line_end = size
            return True
        except OSError as e:
            self._failed(e)
            return False

    def _failed(self, e: OSError) -> None:
        if self.error is None:
            self.warn(f"cannot write {self.path}: {e.strerror or e}; output is dropped until it works again")
        self.error = e.strerror or str(e)
        self.failed_at = time.monotonic()
        self.close()

    def _drop(self, data: bytes | memoryview) -> None:
        """Count data that will never be written; what is left of its line goes too."""
        self.dropped += len(data)
        if len(data):
            self.skip_line = data[-1:] != b"\n"
        if not self.at_line_start:
            self.trim = True
            if self.fd is not None:
                try:
                    os.ftruncate(self.fd, self.line_end)
                    self.size, self.trim = self.line_end, False
                except OSError:
                    pass

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.path in (None, DEVNULL):
            return
        if self.skip_line:
            nl = data.find(b"\n")
            if nl < 0:
                self.dropped += len(data)
                return
            self.dropped += nl + 1
            self.skip_line = False
            data = data[nl + 1:]
            if not data:
                return
        self.last_write = time.monotonic()
        if not self._open():
            self._drop(data)
            return
        rot = self.rotation
        while rot.enabled and self.size + len(data) > rot.max_size:
            room = rot.max_size - self.size
            cut = data.rfind(b"\n", 0, max(room, 0))
            if cut >= 0:
                head, data = data[:cut + 1], data[cut + 1:]
                if not self._write(head):
                    return
            elif not self.at_line_start:
                # finish the line in this file: a line is never split across two files
                nl = data.find(b"\n")
                if nl < 0:
                    break
                head, data = data[:nl + 1], data[nl + 1:]
                if not self._write(head):
                    return
            elif self.size == 0:
                break  # one line longer than the limit: it gets a file of its own
            if not self._rotate():
                return
            if not data:
                return
        self._write(data)

    def _write(self, data: bytes) -> bool:
        view = memoryview(data)
        start = self.size
        try:
            while view:
                n = os.write(self.fd, view)  # type: ignore[arg-type]
                view = view[n:]
                self.size += n
        except OSError as e:
            if e.errno == errno.EINTR:
                self._mark_lines(data, start)
                return self._write(bytes(view))
            self._mark_lines(data, start)
            self._drop(view)
            self._failed(e)
            return False
        self._mark_lines(data, start)
        if self.error is not None:
            self.warn(f"writing {self.path} again ({self.dropped} bytes were dropped)")
            self.error, self.failed_at, self.dropped = None, None, 0
        return True

    def _mark_lines(self, data: bytes, start: int) -> None:
        """Move line_end past the complete lines of data that reached the file."""
        nl = data.rfind(b"\n", 0, self.size - start)
        if nl >= 0:
            self.line_end = start + nl + 1

    def _rotate(self) -> bool:
        assert self.path is not None
        self.close()
        keep = self.rotation.keep
        suffix = ".gz" if self.rotation.compress else ""
        try:
            for i in range(keep, 0, -1):
                for ext in ("", ".gz"):
                    src = f"{self.path}.{i}{ext}"
                    if not os.path.exists(src):
                        continue
                    if i == keep:
                        os.unlink(src)
                    else:
                        os.replace(src, f"{self.path}.{i + 1}{ext}")
            if keep > 0:
                os.replace(self.path, f"{self.path}.1")
                if suffix and self.background is not None:
                    first = f"{self.path}.1"
                    self.background(lambda: _compress(first))
            else:
                truncate(self.path)
        except OSError as e:
            self._failed(e)
            return False
        self.size = self.line_end = 0
        return self._open()

    def reopen(self) -> None:
        self.close()
        self.failed_at = None

    def close(self) -> None:
        if self.fd is not None:
            _OPEN.discard(self)
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


class LogSink:
    """Where one instance's stdout and stderr go: raw bytes as they come, or whole lines with a
    date prefix (log_date_format) or as JSON objects (log_type json)."""

    def __init__(self, out_path: str | None, err_path: str | None, combined_path: str | None,
                 date_format: str | None, warn: Callable[[str], None],
                 rotation: Rotation | None = None,
                 background: Callable[[Callable[[], None]], None] | None = None,
                 json_app: tuple[int, str] | None = None) -> None:
        def make(path: str | None) -> LogFile:
            return LogFile(path, warn, rotation, background)

        self.out = make(out_path)
        self.err = make(err_path) if err_path != out_path else self.out
        self.combined = make(combined_path) if combined_path else None
        self.prefix = _Prefixer(date_format) if date_format else None
        self.date_format = date_format
        self.json_app = json_app
        self.by_line = self.prefix is not None or json_app is not None
        self._partial = {"out": b"", "err": b""}

    def files(self) -> list[LogFile]:
        files = [self.out] + ([self.err] if self.err is not self.out else [])
        return files + ([self.combined] if self.combined else [])

    def feed(self, stream: str, data: bytes) -> None:
        if not self.by_line:
            self._write(stream, data)
            return
        # formatted a slice at a time: the copies stay small enough for the allocator's heap
        # and the cpu's cache (a MiB at once costs twice as much per byte)
        for at in range(0, len(data), FORMAT_SLICE):
            block = self._whole_lines(stream, data[at:at + FORMAT_SLICE] if len(data) >
                                      FORMAT_SLICE else data)
            if block is not None:
                self._write(stream, self._format(stream, block))

    def _write(self, stream: str, data: bytes) -> None:
        if not data:
            return
        (self.out if stream == "out" else self.err).write(data)
        if self.combined is not None:
            self.combined.write(data)

    def _whole_lines(self, stream: str, data: bytes) -> bytes | None:
        """The complete lines now at hand, without their last newline; None if there is none."""
        partial = self._partial[stream]
        buf = partial + data if partial else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            # a line longer than 64 KiB is written in pieces rather than held forever
            if len(buf) > 65536:
                self._partial[stream] = b""
                return buf
            self._partial[stream] = buf
            return None
        self._partial[stream] = buf[cut + 1:]
        return buf[:cut]

    def _format(self, stream: str, block: bytes) -> bytes:
        """Lines (joined by newlines, the last one without its own) as they go to the file."""
        if self.json_app is not None:
            lines = block.split(b"\n")
            pm_id, name = self.json_app
            now = time.time()
            stamp = format_dayjs(self.date_format, now) if self.date_format else \
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
            return b"".join(json.dumps({
                "message": line.decode("utf-8", errors="replace") + "\n", "timestamp": stamp,
                "type": stream, "process_id": pm_id, "app_name": name,
            }, ensure_ascii=False).encode() + b"\n" for line in lines)
        p = self.prefix()  # type: ignore[misc]
        # one pass in C over the block, rather than a list of its lines
        return p + block.replace(b"\n", b"\n" + p) + b"\n"

    def flush_partial(self, stream: str) -> None:
        """At EOF: a last line without a newline is still written (pm2 drops it)."""
        rest = self._partial.get(stream)
        if rest:
            self._partial[stream] = b""
            self._write(stream, self._format(stream, rest))

    def open(self) -> None:
        """Open the files now rather than at the first output, so the daemon's count of open
        descriptors is right as soon as a run starts (a failure is reported as on a write)."""
        for f in self.files():
            f._open()

    def reopen(self) -> None:
        for f in self.files():
            f.reopen()

    def close(self) -> None:
        for f in self.files():
            f.close()
