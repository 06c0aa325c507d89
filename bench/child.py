"""The one child program every manager runs in the benchmark.

    child.py sleep  [--marker PATH] [--events PATH]   first line, marker file, then sleep
    child.py stable --events PATH --live S            first line, live S seconds, exit 1
    child.py exit   --events PATH                     exit 1 at once (a crash loop)
    child.py flood  --bytes N --events PATH           N bytes of 100-byte stdout lines, then sleep
    child.py grow   --limit BYTES --events PATH [--step-mb M] [--interval S] [--rate-mb R]
                    [--wait S]                        after S seconds idle, grow M MiB every S
                                                      seconds (or R MB/s, paced every S seconds);
                                                      note when RSS passes BYTES and when the
                                                      stop signal comes
    child.py prefork --workers N --mb M [--marker PATH]
                                                      allocate and touch M MiB, then fork N
                                                      workers that only read it (shared pages)

Events are appended to --events as lines `<kind> <pid> <unix time> [detail]`, one os.write each,
so several processes can share one file. SIGINT and SIGTERM are noted (`signal`) and end the
process with code 0. Only the standard library is imported, and little of it, so start-up is the
interpreter's own.
"""

import os
import signal
import sys
import time

T0 = time.time()
PID = os.getpid()
ARGS = sys.argv[1:]
MODE = ARGS[0] if ARGS else "sleep"


def opt(name, default=None):
    flag = "--" + name
    if flag in ARGS:
        i = ARGS.index(flag)
        if i + 1 < len(ARGS):
            return ARGS[i + 1]
    return default


EVENTS = opt("events")


def event(kind, detail="", t=None):
    if not EVENTS:
        return
    line = f"{kind} {PID} {time.time() if t is None else t:.6f} {detail}".rstrip() + "\n"
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def out(text):
    os.write(1, (text + "\n").encode())


def on_signal(signum, _frame):
    event("signal", signal.Signals(signum).name)
    os._exit(0)


signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)

out(f"up {MODE} pid={PID} t={T0:.6f}")
event("start", MODE, t=T0)
marker = opt("marker")
if marker:
    with open(marker + ".tmp", "w") as f:
        f.write(f"{PID} {T0:.6f}\n")
    os.replace(marker + ".tmp", marker)


def sleep_forever():
    while True:
        time.sleep(3600)


if MODE == "sleep":
    sleep_forever()

elif MODE == "stable":
    time.sleep(float(opt("live", "2.5")))
    event("exit")
    os._exit(1)

elif MODE == "exit":
    os._exit(1)

elif MODE == "flood":
    total = int(opt("bytes", str(1_000_000)))
    body = b"x" * (100 - len(b"flood 000000000 ") - 1)
    block = b"".join(b"flood %09d %s\n" % (i, body) for i in range(10_000))
    written = 0
    t_write = time.time()
    for _ in range(max(1, round(total / len(block)))):
        view = memoryview(block)
        while view:
            n = os.write(1, view)
            view = view[n:]
        written += len(block)
    os.write(1, b"FLOOD-END\n")
    event("flood_done", f"bytes={written} write_s={time.time() - t_write:.3f}")
    sleep_forever()

elif MODE == "grow":
    limit = int(opt("limit", str(100 * 1024 * 1024)))
    interval = float(opt("interval", "0.1"))
    rate = opt("rate-mb")
    step = int(float(rate) * 1_000_000 * interval) if rate else \
        int(float(opt("step-mb", "10")) * 1024 * 1024)
    time.sleep(float(opt("wait", "0")))
    event("grow")
    page = os.sysconf("SC_PAGE_SIZE")
    hold = []
    crossed = False

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    due = time.monotonic()
    while True:
        if rss() < limit + 64 * 1024 * 1024:
            hold.append(b"m" * step)
        r = rss()
        if not crossed and r > limit:
            crossed = True
            event("crossed", f"rss={r}")
            out(f"crossed {limit} rss={r} t={time.time():.6f}")
        due += interval   # paced on a fixed schedule, so the rate holds whatever each step costs
        time.sleep(max(0.0, due - time.monotonic()))

elif MODE == "prefork":
    data = bytearray(int(float(opt("mb", "20")) * 1024 * 1024))
    for i in range(0, len(data), 4096):
        data[i] = 1
    data = bytes(data)
    for _ in range(int(opt("workers", "10"))):
        if os.fork() == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            total = sum(data[::4096])       # read every page once: shared, never copied
            while True:
                time.sleep(3600)
    if marker:
        with open(marker + ".ready", "w") as f:
            f.write(f"{PID}\n")
    sleep_forever()

else:
    out(f"unknown mode {MODE!r}")
    sys.exit(2)
