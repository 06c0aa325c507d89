"""Kubernetes manifests: a Deployment per long-running app, a CronJob or Job for the others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyvm2.export.common import (
    Document,
    Export,
    Notes,
    Options,
    common_notes,
    container_argv,
    default_image,
    dns_label,
    env_items,
    five_field_cron,
    header,
    in_image,
    index_vars,
    label_value,
    listen_port,
    restart_notes,
    seconds_up,
    size,
    unique,
    yaml_dump,
)
from pyvm2.spec import AppSpec
from pyvm2.units import MIB

SEPARATOR = "---\n"


def _memory(n: int) -> str:
    return size(n, ((1024 * MIB, "Gi"), (MIB, "Mi"), (1024, "Ki")))


def _labels(spec: AppSpec, name: str) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": name}
    if spec.namespace != "default":
        labels["pyvm2.io/namespace"] = label_value(spec.namespace) or "default"
    return labels


def _container(spec: AppSpec, name: str, options: Options, notes: Notes,
               long_running: bool) -> dict[str, Any]:
    command, args = container_argv(spec, options)
    image = options.image or default_image(spec)
    c: dict[str, Any] = {"name": name, "image": image, "command": command}
    if args:
        c["args"] = args
    c["workingDir"] = in_image(spec.cwd, options)
    env = env_items(spec)
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env]
    if spec.max_memory_restart:
        mem = _memory(spec.max_memory_restart)
        c["resources"] = {"limits": {"memory": mem}, "requests": {"memory": mem}}
        notes.add(f"max_memory_restart: a memory limit of {mem}; above it the kernel kills the "
                  "container (OOMKilled, no graceful stop) instead of a graceful restart")
    port = listen_port(spec)
    if port is not None:
        c["ports"] = [{"containerPort": port}]
        if long_running:
            c["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 5}
    return c


def _pod(spec: AppSpec, container: dict[str, Any], restart_policy: str,
         notes: Notes) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": seconds_up(spec.kill_timeout),
        "containers": [container],
    }
    if spec.kill_signal != "SIGTERM":
        notes.add(f"kill_signal {spec.kill_signal}: Kubernetes stops a container with the image's "
                  "STOPSIGNAL, else SIGTERM; give the image STOPSIGNAL "
                  f"{spec.kill_signal} (lifecycle.stopSignal needs Kubernetes 1.33+ with the "
                  "ContainerStopSignals feature gate)")
    if not spec.treekill:
        notes.add("treekill: false: the whole container is killed at the end of the grace period")
    return pod


def _objects(spec: AppSpec, name: str, options: Options, notes: Notes) -> list[dict[str, Any]]:
    labels = _labels(spec, name)
    meta = {"name": name, "labels": labels}
    common_notes(spec, notes, logs="output goes to the container's stdout/stderr (kubectl logs)")
    if spec.instances > 1 or spec.increment_var:
        notes.add(f"{index_vars(spec)}: every replica gets the same environment; "
                  "there is no per-replica 0..N-1 index in a Deployment")
    if spec.autorestart:
        restart_notes(spec, notes, "the kubelet restarts with its own back-off (10 s doubling "
                                   "to 5 min) and never gives up")
        if spec.restart_delay or spec.stop_exit_codes:
            notes.add("restart_delay/stop_exit_codes: a Deployment always restarts, on its own "
                      "schedule")
        container = _container(spec, name, options, notes, long_running=True)
        pod = _pod(spec, container, "Always", notes)
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {
                "replicas": spec.instances if spec.autostart else 0,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
            },
        }
        out = [deployment]
        port = listen_port(spec)
        if port is not None:
            out.append({
                "apiVersion": "v1", "kind": "Service", "metadata": meta,
                "spec": {"selector": dict(labels),
                         "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}]},
            })
        return out

    container = _container(spec, name, options, notes, long_running=False)
    pod = _pod(spec, container, "Never", notes)
    job_spec: dict[str, Any] = {"backoffLimit": 0, "template": {"metadata": {"labels": dict(labels)},
                                                               "spec": pod}}
    if spec.instances > 1:
        job_spec["parallelism"] = job_spec["completions"] = spec.instances
    schedule = five_field_cron(spec.cron_restart) if spec.cron_restart else None
    if spec.cron_restart and schedule is None:
        notes.add(f"cron_restart {spec.cron_restart!r}: a CronJob has no seconds field; "
                  "exported as a Job that runs once")
    if schedule is not None:
        cron: dict[str, Any] = {"schedule": schedule, "concurrencyPolicy": "Replace",
                                "jobTemplate": {"spec": job_spec}}
        if not spec.autostart:
            cron["suspend"] = True
        return [{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": cron}]
    if not spec.autostart:
        job_spec["suspend"] = True
    return [{"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}]


def export(apps: Sequence[AppSpec], options: Options) -> Export:
    result = Export()
    names = unique([dns_label(a.name) for a in apps])
    for spec, name in zip(apps, names, strict=True):
        notes = Notes(spec.name)
        objects = _objects(spec, name, options, notes)
        if spec.exec_mode == "cluster" and listen_port(spec) is None and spec.autorestart:
            notes.add("exec_mode cluster: no PORT in the env, so no Service; add one to share "
                      "traffic between the replicas")
        top = header(spec, options, "Kubernetes") + notes.comment()
        for obj in objects:
            text = top + yaml_dump(obj)
            result.documents.append(
                Document(f"{name}-{obj['kind'].lower()}.yaml", text))
        notes.flush_into(result)
    return result
