"""GET /metrics: every app instance and the daemon in Prometheus' text format, under pyvm2's
own names and under pm2-prometheus-exporter's (pm2_up, pm2_cpu, ...) for existing dashboards."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pyvm2.status import Status

LABELS = ["name", "id", "namespace", "instance"]
PM2_LABELS = ["id", "name", "instance", "interpreter", "node_version"]
STATUSES = [s.value for s in Status]


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(apps: list[dict[str, Any]], daemon: dict[str, Any] | None,
           web: dict[str, float]) -> bytes:
    now = time.time()
    g = GaugeMetricFamily
    up = g("pyvm2_up", "1 if the instance is online", labels=LABELS)
    status = g("pyvm2_status", "1 for the instance's current status", labels=LABELS + ["status"])
    cpu = g("pyvm2_cpu_percent", "cpu of the instance's whole process tree, percent of one core",
            labels=LABELS)
    mem = g("pyvm2_memory_bytes", "resident memory of the instance's whole process tree",
            labels=LABELS)
    restarts = CounterMetricFamily("pyvm2_restarts", "restarts (reset by pyvm2 reset)",
                                   labels=LABELS)
    unstable = g("pyvm2_unstable_restarts", "restarts that came too soon after the last start",
                 labels=LABELS)
    uptime = g("pyvm2_uptime_seconds", "seconds since the instance started (0 when not running)",
               labels=LABELS)
    started = g("pyvm2_start_time_seconds", "unix time the instance started (only while running)",
                labels=LABELS)
    exit_code = g("pyvm2_last_exit_code", "exit code of the instance's last run", labels=LABELS)
    p_up = g("pm2_up", "Is the process running", labels=PM2_LABELS)
    p_cpu = g("pm2_cpu", "Process cpu usage", labels=PM2_LABELS)
    p_mem = g("pm2_memory", "Process memory usage", labels=PM2_LABELS)
    p_uptime = g("pm2_uptime", "Process uptime", labels=PM2_LABELS)
    p_instances = g("pm2_instances", "Process instances", labels=PM2_LABELS)
    p_restarts = g("pm2_restarts", "Process restarts", labels=PM2_LABELS)
    p_delay = g("pm2_prev_restart_delay", "Previous restart delay", labels=PM2_LABELS)
    for app in apps:
        env = app.get("pm2_env") or {}
        monit = app.get("monit") or {}
        labels = [str(app.get("name")), str(app.get("pm_id")), str(env.get("namespace", "")),
                  str(env.get("instance", 0))]
        pm2 = [str(app.get("pm_id")), str(app.get("name")), str(env.get("instance", 0)),
               str(env.get("exec_interpreter") or ""), "N/A"]
        online = env.get("status") == Status.ONLINE.value
        begun = env.get("pm_uptime")
        secs = max(0.0, now - begun / 1000) if online and begun else 0.0
        up.add_metric(labels, 1 if online else 0)
        for s in STATUSES:
            status.add_metric(labels + [s], 1 if env.get("status") == s else 0)
        cpu.add_metric(labels, float(monit.get("cpu") or 0))
        mem.add_metric(labels, float(monit.get("memory") or 0))
        restarts.add_metric(labels, float(env.get("restart_time") or 0))
        unstable.add_metric(labels, float(env.get("unstable_restarts") or 0))
        uptime.add_metric(labels, round(secs, 3))
        if online and begun:
            started.add_metric(labels, begun / 1000)
        if env.get("exit_code") is not None:
            exit_code.add_metric(labels, float(env["exit_code"]))
        p_up.add_metric(pm2, 1 if online else 0)
        p_cpu.add_metric(pm2, float(monit.get("cpu") or 0))
        p_mem.add_metric(pm2, float(monit.get("memory") or 0))
        p_uptime.add_metric(pm2, round(secs))
        p_instances.add_metric(pm2, float(env.get("instances") or 1))
        p_restarts.add_metric(pm2, float(env.get("restart_time") or 0))
        p_delay.add_metric(pm2, float(env.get("restart_delay") or 0))

    d_up = g("pyvm2_daemon_up", "1 if the web server reaches the pyvm2 daemon")
    d_up.add_metric([], 1 if daemon else 0)
    families: list[Metric] = [up, status, cpu, mem, restarts, unstable, uptime, started, exit_code,
                              p_up, p_cpu, p_mem, p_uptime, p_instances, p_restarts, p_delay, d_up]
    if daemon:
        d_uptime = g("pyvm2_daemon_uptime_seconds", "seconds since the daemon started")
        d_uptime.add_metric([], daemon.get("uptime_ms", 0) / 1000)
        d_apps = g("pyvm2_daemon_apps", "instances the daemon manages")
        d_apps.add_metric([], len(apps))
        families += [d_uptime, d_apps]
        if "cpu_seconds" in daemon:
            d_cpu = CounterMetricFamily("pyvm2_daemon_cpu_seconds", "cpu time the daemon used")
            d_cpu.add_metric([], daemon["cpu_seconds"])
            d_mem = g("pyvm2_daemon_memory_bytes", "resident memory of the daemon")
            d_mem.add_metric([], daemon["memory"])
            families += [d_cpu, d_mem]
    w_streams = g("pyvm2_web_event_streams", "browsers following /api/events")
    w_streams.add_metric([], web.get("streams", 0))
    w_dropped = CounterMetricFamily("pyvm2_web_events_dropped",
                                    "events not sent to a browser that read too slowly")
    w_dropped.add_metric([], web.get("dropped", 0))
    families += [w_streams, w_dropped]
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return generate_latest(registry)
