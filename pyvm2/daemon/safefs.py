"""Files the daemon creates, appends to, truncates or removes where others may write too (log and
pid files can live in shared folders): never through a symbolic link, never into a file that is
not a regular file of the daemon's own user, and a pid file is replaced or removed only while it
holds a pid."""

from __future__ import annotations

import errno
import os
import stat

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _refuse(path: str, why: str, code: int = errno.EPERM) -> OSError:
    return OSError(code, f"{why}; pyvm2 does not write there", path)


def _checked(fd: int, path: str) -> int:
    """fd if it is a regular file of ours with one name, or a character device (/dev/null,
    /dev/console); otherwise close it and raise."""
    try:
        st = os.fstat(fd)
        if stat.S_ISCHR(st.st_mode):
            os.set_blocking(fd, True)
            return fd
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, "not a regular file", errno.EINVAL)
        if st.st_uid != os.geteuid():
            raise _refuse(path, f"owned by another user (uid {st.st_uid})")
        if st.st_nlink > 1:
            raise _refuse(path, f"a file with {st.st_nlink} hard links")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open(path: str, flags: int, mode: int = 0o640) -> int:
    try:
        fd = os.open(path, flags | _NOFOLLOW, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(path, "a symbolic link", errno.ELOOP) from None
        raise
    return _checked(fd, path)


def open_append(path: str, mode: int = 0o640) -> int:
    """A descriptor appending to path, created if missing."""
    return _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)


def open_new(path: str, mode: int = 0o640) -> int:
    """A descriptor on path, emptied or created."""
    return _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)


def truncate(path: str) -> None:
    """Empty path if it exists."""
    try:
        fd = _open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _read_pid(path: str) -> int | None:
    """The pid a pid file holds; None if there is no file; raises if it is not a pid file."""
    try:
        fd = _open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 64)
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise _refuse(path, "a file that does not hold a pid", errno.EEXIST)
    return int(text)


def write_pid(path: str, pid: int) -> None:
    """Write pid to path (a new file, or one that holds a pid), replacing it atomically."""
    _read_pid(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise


def remove_pid(path: str, pid: int) -> None:
    """Remove path if it still holds pid (another program may have written its own since)."""
    try:
        if _read_pid(path) == pid:
            os.unlink(path)
    except OSError:
        pass
