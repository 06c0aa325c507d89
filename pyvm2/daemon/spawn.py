"""AppSpec -> a running OS process: argv, env, cwd, its own session, pipes, and an exit watch."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pyvm2.daemon import fds
from pyvm2.errors import Pyvm2Error, SpawnError
from pyvm2.launch import Launch, resolve_launch
from pyvm2.spec import AppSpec

#: Environment variable that marks every process an app starts, so descendants that left the
#: process group (setsid, double fork) can still be found and stopped.
TOKEN_VAR = "PYVM2_RUN_TOKEN"
#: The home whose daemon started the run; with the token, it lets a new daemon find every live
#: process of its home, known to its journal or not.
HOME_VAR = "PYVM2_HOME"

HAS_PIDFD = hasattr(os, "pidfd_open")
#: Room for output while no daemon reads (between a daemon's death and its successor).
PIPE_SIZE = 1024 * 1024


@dataclass
class Run:
    """One spawned OS process of an instance."""

    pid: int
    token: str
    create_time: float
    started_at: float          # time.time()
    started_mono: float        # time.monotonic()
    launch: Launch
    popen: subprocess.Popen | None
    out_fd: int | None
    err_fd: int | None
    exited: asyncio.Future = field(repr=False)
    exit_code: int | None = None
    exit_signal: str | None = None
    ipc_fd: int | None = None  # the daemon's end of the run's Node IPC channel

    @property
    def alive(self) -> bool:
        return not self.exited.done()


@dataclass(frozen=True)
class Handover:
    """Descriptors a run gets from the daemon: the app's held listening sockets (from fd 3,
    with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID) and, with `ipc`, a Node IPC channel on the
    next descriptor (NODE_CHANNEL_FD)."""

    listen_fds: tuple[int, ...] = ()
    fd_names: tuple[str, ...] = ()
    ipc: bool = False

    def __bool__(self) -> bool:
        return bool(self.listen_fds) or self.ipc


#: Runs in the child, between the fork and the app: moves the handed-over descriptors to 3, 4...
#: and sets LISTEN_PID to its own pid, which the app keeps since exec does not change it.
_PLACE_FDS = """
import os, sys, fcntl
a = sys.argv[1:]
n = int(a[0]); src = [int(x) for x in a[1:1 + n]]; argv = a[1 + n:]
tmp = [fcntl.fcntl(f, fcntl.F_DUPFD_CLOEXEC, 100) for f in src]
for f in src:
    os.close(f)
for t in range(3, 3 + n):
    try:
        fcntl.fcntl(t, fcntl.F_DUPFD, 100 + n)
        os.close(t)
    except OSError:
        pass
for i, f in enumerate(tmp):
    os.dup2(f, 3 + i)
    os.close(f)
if "LISTEN_FDS" in os.environ:
    os.environ["LISTEN_PID"] = str(os.getpid())
try:
    os.execvp(argv[0], argv)
except OSError as e:
    sys.stderr.write(f"cannot run {argv[0]}: {e.strerror}\\n")
    os._exit(127)
"""


def _wrapped(argv: list[str], fds: list[int], env: dict[str, str]) -> list[str]:
    """argv behind the descriptor-placing wrapper; the program is looked up first, so that a
    missing one is still an error of the start and not an exit of the run."""
    program = argv[0]
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise OSError(2, "No such file or directory", program)
        program = found
    elif not os.access(program, os.X_OK):
        raise OSError(13, "Permission denied" if os.path.exists(program)
                      else "No such file or directory", program)
    return [sys.executable, "-I", "-S", "-c", _PLACE_FDS, str(len(fds)), *map(str, fds),
            program, *argv[1:]]


def build_env(spec: AppSpec, base_env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: the CLI's env (filtered) < app env < pm2's per-process vars."""
    env = dict(base_env)
    if spec.filter_env is True:
        env = {k: v for k, v in env.items() if k in ("PATH", "HOME", "USER", "LOGNAME", "LANG",
                                                     "LC_ALL", "TERM", "SHELL", "TZ")}
    elif spec.filter_env:
        env = {k: v for k, v in env.items() if not any(s in k for s in spec.filter_env)}
    if spec.user is not None:
        try:
            env.update(login_env(spec.user))
        except KeyError:
            pass  # start() reports the missing user
    env.update(spec.env)
    env.update(extra)
    return env


def login_env(user: str) -> dict[str, str]:
    """What login sets for a user: HOME, USER, LOGNAME and SHELL from the password database."""
    import pwd

    pw = pwd.getpwnam(user)
    return {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name,
            "SHELL": pw.pw_shell or "/bin/sh"}


class Credentials(NamedTuple):
    """Popen's user, group and extra_groups; None keeps the daemon's."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


def credentials(spec: AppSpec) -> Credentials:
    """Who an app that runs as another user (or group) is spawned as; SpawnError if it cannot be."""
    if spec.user is None and spec.group is None:
        return Credentials()
    import grp
    import pwd

    try:
        if spec.user is not None:
            pw = pwd.getpwnam(spec.user)
            gid = grp.getgrnam(spec.group).gr_gid if spec.group is not None else pw.pw_gid
            if pw.pw_uid == os.geteuid() and gid == os.getegid():
                return Credentials()
            creds = Credentials(pw.pw_uid, gid, os.getgrouplist(pw.pw_name, gid))
        else:
            gid = grp.getgrnam(str(spec.group)).gr_gid
            if gid == os.getegid():
                return Credentials()
            creds = Credentials(group=gid)
    except KeyError as e:
        raise SpawnError(f"no such user or group {e.args[0] if e.args else ''} on this machine",
                         "create it, or change the app's user") from None
    if os.geteuid() != 0:
        who = spec.user if spec.user is not None else f"group {spec.group}"
        raise SpawnError(f"cannot run as {who}: the pyvm2 daemon is not root",
                         "start pyvm2 as root, or remove the app's user")
    return creds


def _fifo_pair(run_dir: str, token: str, stream: str) -> tuple[str, int, int, int]:
    """A named pipe for one output stream: (path, daemon's read end, child's write end, spare read
    end for the child). The spare reader keeps writes from failing while no daemon reads, so an
    app survives its daemon's death and a new daemon reopens the path and reads on."""
    path = os.path.join(run_dir, f"{token}.{stream}")
    os.mkfifo(path, 0o600)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    w = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    spare = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
    return path, r, w, spare


def fifo_paths(run_dir: str, token: str) -> tuple[str, str]:
    return os.path.join(run_dir, f"{token}.out"), os.path.join(run_dir, f"{token}.err")


def remove_fifos(run_dir: str, token: str) -> None:
    for path in fifo_paths(run_dir, token):
        try:
            os.unlink(path)
        except OSError:
            pass


def start(spec: AppSpec, env: dict[str, str], token: str, loop: asyncio.AbstractEventLoop,
          run_dir: str, capture: bool = True, handover: Handover | None = None) -> Run:
    """Spawn the app in its own session; raise SpawnError with a sentence on failure."""
    if not os.path.isdir(spec.cwd):
        raise SpawnError(f"cwd {spec.cwd} does not exist", "create it or fix `cwd`")
    try:
        launch = resolve_launch(spec, env.get("PATH"))
    except Pyvm2Error as e:
        raise SpawnError(e.message, e.hint) from None
    try:
        fds.BUDGET.check_start()
    except fds.TooFew as e:
        raise SpawnError(str(e), fds.hint()) from None
    env[TOKEN_VAR] = token
    if launch.is_python:
        env.setdefault("PYTHONUNBUFFERED", "1")
    creds = credentials(spec)
    opened: list[int] = []
    out_r = err_r = None
    child_out: int = subprocess.DEVNULL
    child_err: int = subprocess.DEVNULL
    spares: tuple[int, ...] = ()
    ipc_parent: int | None = None
    given: list[int] = []
    argv = list(launch.argv)
    try:
        if handover:
            given = list(handover.listen_fds)
            if given:
                env["LISTEN_FDS"] = str(len(given))
                env["LISTEN_FDNAMES"] = ":".join(handover.fd_names)
            if handover.ipc:
                parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                ipc_parent = parent.detach()
                ipc_child = child.detach()
                os.set_inheritable(ipc_parent, False)
                opened.append(ipc_child)
                given.append(ipc_child)
                env["NODE_CHANNEL_FD"] = str(3 + len(handover.listen_fds))
                env["NODE_CHANNEL_SERIALIZATION_MODE"] = "json"
            argv = _wrapped(argv, given, env)
        if capture:
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
            _, out_r, child_out, spare_out = _fifo_pair(run_dir, token, "out")
            opened += [out_r, child_out, spare_out]
            _, err_r, child_err, spare_err = _fifo_pair(run_dir, token, "err")
            opened += [err_r, child_err, spare_err]
            spares = (spare_out, spare_err)
        popen = subprocess.Popen(
            argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=child_out, stderr=child_out if spec.redirect_stderr else child_err,
            pass_fds=(*spares, *given),
            start_new_session=True, close_fds=True, restore_signals=True,
            user=creds.user, group=creds.group, extra_groups=creds.extra_groups,
            umask=-1 if spec.umask is None else spec.umask,
        )
    except OSError as e:
        for fd in opened:
            os.close(fd)
        if ipc_parent is not None:
            os.close(ipc_parent)
        remove_fifos(run_dir, token)
        if fds.exhausted(e):
            fds.BUDGET.release()
            raise SpawnError(f"not enough file descriptors to start it ({e.strerror}; the "
                             f"daemon's limit is {fds.BUDGET.limit}); {fds.HOW}",
                             fds.hint()) from None
        what = launch.argv[0] if e.filename in (None, launch.argv[0]) else e.filename
        raise SpawnError(f"cannot run {what}: {e.strerror or e}",
                         "check the script/interpreter path and its permissions") from None
    for fd in opened:
        if fd not in (out_r, err_r):
            os.close(fd)
    now = time.time()
    run = Run(pid=popen.pid, token=token, create_time=_create_time(popen.pid) or now,
              started_at=now, started_mono=time.monotonic(), launch=launch, popen=popen,
              out_fd=out_r, err_fd=err_r, exited=loop.create_future(), ipc_fd=ipc_parent)
    watch_exit(run, loop)
    return run


def adopt(pid: int, token: str, create_time: float, started_at: float, launch: Launch,
          loop: asyncio.AbstractEventLoop, run_dir: str) -> Run | None:
    """Take over a process a previous daemon started, if pid still names that same process."""
    now_ct = _create_time(pid)
    if now_ct is None or abs(now_ct - create_time) > 0.05:
        return None
    ends: list[int | None] = []
    for path in fifo_paths(run_dir, token):
        try:
            ends.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:
            ends.append(None)
    run = Run(pid=pid, token=token, create_time=create_time, started_at=started_at,
              started_mono=time.monotonic() - max(0.0, time.time() - started_at), launch=launch,
              popen=None, out_fd=ends[0], err_fd=ends[1], exited=loop.create_future())
    watch_exit(run, loop)
    return run


def _create_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _set_status(run: Run, status: int | None) -> None:
    if status is None:
        run.exit_code, run.exit_signal = None, None
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        run.exit_code, run.exit_signal = None, name
    else:
        run.exit_code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
            else os.WEXITSTATUS(status)
    if run.popen is not None:
        # tell Popen the child is reaped so it never waits on a pid the kernel may reuse
        run.popen.returncode = run.exit_code if run.exit_code is not None else -1
    if not run.exited.done():
        run.exited.set_result((run.exit_code, run.exit_signal))


def watch_exit(run: Run, loop: asyncio.AbstractEventLoop) -> None:
    """Resolve run.exited when the child ends: a pidfd on Linux, a waiting thread elsewhere."""
    if HAS_PIDFD:
        try:
            pidfd = os.pidfd_open(run.pid)
        except OSError:
            pidfd = None
        if pidfd is not None:
            def on_ready() -> None:
                try:
                    pid, status = os.waitpid(run.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = run.pid, None   # adopted: not our child, its status is lost
                if pid == 0:
                    return
                loop.remove_reader(pidfd)
                os.close(pidfd)
                _set_status(run, status)

            loop.add_reader(pidfd, on_ready)
            return

    def wait() -> None:
        status: int | None
        try:
            _, status = os.waitpid(run.pid, 0)
        except ChildProcessError:
            status = None
            while _create_time(run.pid) == run.create_time:
                time.sleep(0.5)
        loop.call_soon_threadsafe(_set_status, run, status)

    threading.Thread(target=wait, name=f"wait-{run.pid}", daemon=True).start()


#: Output is read this much at a time, and after a read that filled it, as much as the pipe holds
#: (PIPE_SIZE where the kernel allowed): a fast writer then costs the daemon a wake-up, a read and
#: a write per MiB rather than per 64 KiB, while a quiet app's reads allocate little.
PIPE_READ = 65536


def pipe_reader(fd: int, loop: asyncio.AbstractEventLoop, on_data: Callable[[bytes], None],
                on_eof: Callable[[], None]) -> None:
    """Feed everything read from `fd` to on_data; close it at EOF. After a read that fills
    PIPE_READ, read as much as the pipe holds."""
    size, grown = PIPE_READ, False

    def ready() -> None:
        nonlocal size, grown
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if len(data) == size and not grown:
                grown, size = True, _capacity(fd)
            on_data(data)
            return
        loop.remove_reader(fd)
        os.close(fd)
        on_eof()

    loop.add_reader(fd, ready)


def _capacity(fd: int) -> int:
    """How much the pipe holds (PIPE_READ where that cannot be asked)."""
    try:
        return max(PIPE_READ, fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (OSError, AttributeError):   # not Linux
        return PIPE_READ
