"""systemd units: a service per app (a template and a target for instances), timers for cron."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pyvm2.export.common import (
    Document,
    Export,
    Notes,
    Options,
    common_notes,
    env_items,
    header,
    host_argv,
    restart_notes,
    seconds_up,
    size,
)
from pyvm2.spec import AppSpec
from pyvm2.units import MIB

SYSTEMCTL = "/usr/bin/systemctl"
SEPARATOR = "\n"
#: systemd's own RestartSec= default, written out so the start limit below is computed from it.
RESTART_SEC_DEFAULT_MS = 100

_SAFE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_NICKNAMES = {
    "@yearly": "*-01-01 00:00:00", "@annually": "*-01-01 00:00:00",
    "@monthly": "*-*-01 00:00:00", "@weekly": "Sun *-*-* 00:00:00",
    "@daily": "*-*-* 00:00:00", "@midnight": "*-*-* 00:00:00", "@hourly": "*-*-* *:00:00",
}
_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def unit_stem(name: str) -> str:
    """`pyvm2-<name>`, with what a unit name cannot hold escaped as systemd-escape does (\\xNN)."""
    out = []
    for i, ch in enumerate(name):
        if ch.isascii() and (ch.isalnum() or ch in ":_-") or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "pyvm2-" + "".join(out)


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _quote(word: str, *, exec_line: bool, first: bool = True) -> str:
    """One word for ExecStart= or Environment=: specifiers and (in Exec lines) $ escaped."""
    text = _specifiers(word)
    if exec_line:
        text = text.replace("$", "$$")
    if _SAFE_WORD.fullmatch(word) and not (first and word.startswith(("@", "-", ":", "+", "!"))):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = "".join(f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return f'"{text}"'


def _memory(n: int) -> str:
    return size(n, ((1024 * MIB, "G"), (MIB, "M"), (1024, "K")))


def _ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


# ---- cron -> OnCalendar -----------------------------------------------------------------------

def _field(text: str, lo: int, names: Sequence[str] = (), day_names: bool = False) -> str | None:
    parts = []
    for part in text.split(","):
        step = None
        if "/" in part:
            part, step = part.split("/", 1)
            if not step.isdigit():
                return None
        if part in ("*", "?"):
            if day_names:
                return None if step else "*"
            base = "*" if step is None else f"{lo}"
            parts.append(base if step is None else f"{base}/{step}")
            continue
        ends = part.split("-")
        if len(ends) > 2:
            return None
        values = []
        for e in ends:
            e = e.lower()
            if e in names:
                values.append(names.index(e) + (1 if not day_names else 0))
            elif e.isdigit():
                values.append(int(e))
            else:
                return None
        if day_names:
            if step or any(v > 7 for v in values):
                return None
            parts.append("..".join(_DAYS[v] for v in values))
        else:
            text_part = "..".join(f"{v:02d}" if lo == 0 else str(v) for v in values)
            if step:
                if len(values) == 1:
                    text_part += f"/{step}"
                else:
                    return None
            parts.append(text_part)
    return ",".join(parts)


def on_calendar(pattern: str) -> tuple[str | None, str | None]:
    """(OnCalendar= value, a note) for a cron pattern; (None, why) when it cannot be expressed."""
    if pattern in _NICKNAMES:
        return _NICKNAMES[pattern], None
    fields = pattern.split()
    sec = "0"
    if len(fields) == 6:
        sec, fields = fields[0], fields[1:]
    minute, hour, dom, month, dow = fields
    day_names = [d.lower() for d in _DAYS[:7]]
    conv = (_field(sec, 0), _field(minute, 0), _field(hour, 0), _field(dom, 1),
            _field(month, 1, _MONTHS), _field(dow, 0, day_names, day_names=True))
    if any(c is None for c in conv):
        return None, f"cron_restart {pattern!r} has no OnCalendar= equivalent"
    s, mi, h, d, mo, w = conv
    note = None
    if dom not in ("*", "?") and dow not in ("*", "?"):
        note = (f"cron_restart {pattern!r}: cron runs when the day of month OR the weekday "
                "matches; OnCalendar= needs both")
    value = f"*-{mo}-{d} {h}:{mi}:{s}"
    return (f"{w} {value}" if w != "*" else value), note


# ---- units ----------------------------------------------------------------------------------

def _service(spec: AppSpec, stem: str, options: Options, notes: Notes, template: bool,
             group: str | None) -> str:
    program, args = host_argv(spec)
    restart_ms = spec.restart_delay or RESTART_SEC_DEFAULT_MS
    unit = [f"Description=pyvm2 app {_specifiers(spec.name)}"
            + (" (instance %i)" if template else ""),
            "After=network.target"]
    if group:
        unit.append(f"PartOf={group}")
    if spec.autorestart:
        burst = spec.max_restarts + 1
        interval = seconds_up(burst * (spec.min_uptime + restart_ms))
        unit += [f"StartLimitIntervalSec={interval}", f"StartLimitBurst={burst}"]
        notes.add(f"min_uptime/max_restarts: systemd gives up after {burst} starts within "
                  f"{interval}s (StartLimitBurst/StartLimitIntervalSec), close to but not pm2's "
                  "unstable-restart count")
    svc = ["Type=exec", f"WorkingDirectory={_specifiers(spec.cwd)}"]
    for key, value in env_items(spec):
        svc.append("Environment=" + _quote(f"{key}={value}", exec_line=False))
    svc.append(f"Environment={spec.instance_var}={'%i' if template else '0'}")
    if spec.increment_var:
        base = spec.env.get(spec.increment_var, "0")
        if template:
            notes.add(f"increment_var {spec.increment_var}: systemd cannot add the instance "
                      f"number to {base}; every instance gets {base}")
    words = [_quote(w, exec_line=True, first=i == 0) for i, w in enumerate((*program, *args))]
    svc.append("ExecStart=" + " ".join(words))
    if spec.autorestart:
        svc += ["Restart=always", f"RestartSec={_ms(restart_ms)}"]
        if spec.stop_exit_codes:
            codes = " ".join(str(c) for c in spec.stop_exit_codes)
            svc += [f"RestartPreventExitStatus={codes}", f"SuccessExitStatus={codes}"]
        restart_notes(spec, notes, "systemd restarts after RestartSec= each time",
                      cron=on_calendar(spec.cron_restart)[0] is not None
                      if spec.cron_restart else False)
        if spec.exp_backoff_restart_delay:
            notes.add("exp_backoff_restart_delay: RestartSteps=/RestartMaxDelaySec= need "
                      "systemd 254 or later; not written")
    else:
        svc.append("Restart=no")
    svc += [f"KillMode={'control-group' if spec.treekill else 'mixed'}",
            f"KillSignal={spec.kill_signal}", f"TimeoutStopSec={_ms(spec.kill_timeout)}"]
    if spec.max_memory_restart:
        svc.append(f"MemoryMax={_memory(spec.max_memory_restart)}")
        notes.add("max_memory_restart: MemoryMax= lets the kernel kill the unit (OOM, no graceful "
                  "stop) instead of a graceful restart")
    if spec.disable_logs:
        svc += ["StandardOutput=null", "StandardError=null"]
    else:
        for key, path in (("StandardOutput", spec.out_file), ("StandardError", spec.error_file)):
            if path == "/dev/null":
                svc.append(f"{key}=null")
            elif path:
                svc.append(f"{key}=append:{_specifiers(path)}")
    common_notes(spec, notes, logs=None)
    if spec.log_file:
        notes.add("log_file: no combined file is written; journalctl shows both streams")
    if options.user:
        svc.append(f"User={options.user}")
    install = [f"WantedBy={group}" if group else "WantedBy=multi-user.target"]
    if not spec.autostart:
        notes.add("autostart: false: install the units but do not enable them")
    if spec.namespace != "default":
        notes.add(f"namespace {spec.namespace!r}: no grouping; a target that wants the units "
                  "would be one")
    return _unit_text({"Unit": unit, "Service": svc, "Install": install})


def _unit_text(sections: dict[str, list[str]]) -> str:
    return "\n".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items())


def _doc(filename: str, top: str, body: str) -> Document:
    return Document(filename, f"# {filename}\n{top}{body}")


def export(apps: Sequence[AppSpec], options: Options) -> Export:
    result = Export()
    seen: dict[str, int] = {}
    for spec in apps:
        notes = Notes(spec.name)
        stem = unit_stem(spec.name)
        if stem in seen:
            seen[stem] += 1
            stem = f"{stem}-{seen[stem]}"
        seen.setdefault(stem, 1)
        template = spec.instances > 1
        service = f"{stem}@.service" if template else f"{stem}.service"
        group = f"{stem}.target" if template else None
        docs = [(service, _service(spec, stem, options, notes, template, group))]
        if group:
            wants = " ".join(f"{stem}@{i}.service" for i in range(spec.instances))
            docs.append((group, _unit_text({
                "Unit": [f"Description=pyvm2 app {_specifiers(spec.name)} "
                         f"({spec.instances} instances)", f"Wants={_specifiers(wants)}"],
                "Install": ["WantedBy=multi-user.target"]})))
        main = group or service
        if spec.cron_restart:
            calendar, why = on_calendar(spec.cron_restart)
            if why and calendar is None:
                notes.add(why + "; no timer written")
            elif calendar:
                if why:
                    notes.add(why)
                timer_section = [f"OnCalendar={calendar}", "AccuracySec=1s"]
                if spec.autorestart:
                    restarter = f"{stem}-restart.service"
                    target = f"{stem}@*.service" if template else service
                    docs.append((restarter, _unit_text({
                        "Unit": [f"Description=cron_restart of pyvm2 app {_specifiers(spec.name)}"],
                        "Service": ["Type=oneshot",
                                    f"ExecStart={SYSTEMCTL} restart {_quote(target, exec_line=True)}"]})))
                    timer_section.append(f"Unit={_specifiers(restarter)}")
                    timer = f"{stem}-restart.timer"
                else:
                    timer_section.append(f"Unit={_specifiers(main)}")
                    timer = f"{stem}.timer"
                    notes.add("cron_restart with autorestart: false: the timer does not start the "
                              "app again while it still runs (pm2 restarts it)")
                docs.append((timer, _unit_text({
                    "Unit": [f"Description=cron_restart {_specifiers(spec.cron_restart)} of "
                             f"pyvm2 app {_specifiers(spec.name)}"],
                    "Timer": timer_section, "Install": ["WantedBy=timers.target"]})))
        top = header(spec, options, "systemd unit") + notes.comment()
        for filename, body in docs:
            result.documents.append(_doc(filename, top, body))
        notes.flush_into(result)
    return result
