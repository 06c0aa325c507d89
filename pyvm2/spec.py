"""AppSpec: one app's definition, fields named as pm2's options, validated and resolved."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_KILL_SIGNAL = "SIGINT"


@dataclass(frozen=True)
class AppSpec:
    """A validated app. Paths are absolute; durations are milliseconds and sizes bytes, as in pm2.

    Built by `from_options` from the same pm2 keys whether they come from an ecosystem file or
    from CLI flags, so both mean exactly the same thing.
    """

    name: str
    script: str                      # absolute path (not symlink-resolved), or a command found on PATH
    cwd: str                         # absolute
    args: tuple[str, ...] = ()
    interpreter: str | None = None   # exec_interpreter; None = chosen from extension/shebang; "none" = exec directly
    interpreter_args: tuple[str, ...] = ()
    namespace: str = "default"
    instances: int = 1               # resolved count, >= 1
    exec_mode: str = "fork"          # "fork" or "cluster" (cluster runs fork copies for non-node)
    instance_var: str = "NODE_APP_INSTANCE"
    increment_var: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # app env with --env <name> already merged
    filter_env: bool | tuple[str, ...] = False
    watch: bool | tuple[str, ...] = False
    ignore_watch: tuple[str, ...] = ()
    watch_delay: int = 0
    max_memory_restart: int | None = None
    out_file: str | None = None      # None = default under PYVM2_HOME/logs; "/dev/null" = discard
    error_file: str | None = None
    log_file: str | None = None      # combined out+err; None = none
    merge_logs: bool = True          # False = "-<id>" suffix on log names
    log_date_format: str | None = None  # dayjs format; `time: true` sets "YYYY-MM-DDTHH:mm:ss"
    log_type: str = "raw"
    disable_logs: bool = False
    pid_file: str | None = None
    min_uptime: int = 1000
    max_restarts: int = 16
    autorestart: bool = True
    autostart: bool = True
    restart_delay: int = 0
    exp_backoff_restart_delay: int = 0  # 0 = off
    kill_timeout: int = 1600
    kill_signal: str = DEFAULT_KILL_SIGNAL
    treekill: bool = True
    stop_exit_codes: tuple[int, ...] = ()
    cron_restart: str | None = None
    source: str | None = None        # the ecosystem file it came from, if any

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env"] = dict(self.env)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AppSpec:
        """Rebuild from `to_dict` output (wire, dumps). Unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k not in names:
                continue
            if isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        if "env" in kw:
            kw["env"] = dict(kw["env"])
        return cls(**kw)

    def definition(self) -> dict[str, Any]:
        """What decides whether a running app must be restarted when its file is started again."""
        d = self.to_dict()
        d.pop("source", None)
        return d
