"""pm2's saved list (dump.pm2) turned into pyvm2's saved-list entries."""

from __future__ import annotations

import os
from typing import Any

from pyvm2.errors import ConfigError, Pyvm2Error

#: pm2_env fields carried over as pyvm2 options.
CARRIED = ("namespace", "max_memory_restart", "autorestart", "watch", "ignore_watch", "watch_delay",
           "cron_restart", "max_restarts", "min_uptime", "kill_timeout", "restart_delay",
           "exp_backoff_restart_delay", "stop_exit_codes", "log_date_format", "instance_var",
           "merge_logs", "treekill")
#: Variables pm2 adds to every app's environment; they are not the user's.
PM2_VARS = {"pm_id", "name", "namespace", "status", "unique_id", "username", "instances",
            "pm_exec_path", "pm_cwd", "cwd", "pm_out_log_path", "pm_err_log_path", "pm_pid_path",
            "pm_log_path", "exec_mode", "exec_interpreter", "restart_time", "unstable_restarts",
            "created_at", "pm_uptime", "autorestart", "autostart", "treekill", "pmx", "automation",
            "windowsHide", "merge_logs", "vizion", "vizion_running", "km_link", "kill_retry_time",
            "instance_var", "NODE_APP_INSTANCE", "PM2_USAGE", "PM2_JSON_PROCESSING", "PM2_HOME",
            "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "axm_actions", "axm_monitor",
            "axm_options", "axm_dynamic", "node_version", "version", "exit_code", "filter_env",
            "prev_restart_delay", "watch", "env"}


def read_pm2_dump(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Entries for the daemon's `resurrect` (spec, base_env, desired, instance) and warnings."""
    import json5

    from pyvm2.spec import from_options

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", "pass the path of pm2's dump.pm2 (pm2 save writes it)") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        doc = json5.loads(text) if text.strip() else []
    except ValueError as e:
        raise ConfigError(f"{path} is not a pm2 dump: {e}", "pm2 writes it with: pm2 save") from None
    if not isinstance(doc, list):
        raise ConfigError(f"{path} is not a pm2 dump (expected a list of processes)")
    entries: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for i, env in enumerate(doc):
        if not isinstance(env, dict) or not env.get("pm_exec_path"):
            warnings.append(f"{path}: entry {i} skipped: not a pm2 process")
            continue
        name = str(env.get("name") or os.path.basename(env["pm_exec_path"]))
        app_env = env["env"] if isinstance(env.get("env"), dict) else {}
        base_env = {str(k): str(v) for k, v in app_env.items()
                    if k not in PM2_VARS and not isinstance(v, (dict, list)) and v is not None
                    and not str(k).startswith("PM2_") and k != name}
        raw: dict[str, Any] = {"name": name, "script": env["pm_exec_path"],
                               "cwd": env.get("pm_cwd") or os.path.dirname(env["pm_exec_path"])}
        if env.get("args"):
            raw["args"] = env["args"]
        interp = env.get("exec_interpreter")
        if interp and interp != "node":
            raw["interpreter"] = interp
        if env.get("node_args"):
            raw["interpreter_args"] = env["node_args"]
        for key in CARRIED:
            if env.get(key) not in (None, "", [], False) or key == "autorestart" and env.get(key) is False:
                raw[key] = env[key]
        try:
            spec = from_options(raw, base_dir=raw["cwd"], origin=f"{path}: {name}",
                                base_env=base_env, warn=warnings.append)
        except Pyvm2Error as e:
            warnings.append(f"{name} skipped: {e.message}")
            continue
        instance = seen.get(name, 0)
        seen[name] = instance + 1
        entries.append({"spec": spec.to_dict(), "base_env": base_env, "instance": instance,
                        "desired": "stopped" if env.get("status") in ("stopped", "errored") else "running"})
    return entries, warnings
