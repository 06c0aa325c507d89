"""A Compose file: a service per app, for `docker compose up` and `docker stack deploy`."""

from __future__ import annotations

import re
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
    duration,
    env_items,
    in_image,
    index_vars,
    restart_notes,
    size,
    unique,
    yaml_dump,
)
from pyvm2.spec import AppSpec
from pyvm2.units import MIB

FILENAME = "compose.yaml"


def service_name(name: str) -> str:
    """A Compose service name (letters, digits, . _ -), lower case for stack task names."""
    text = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return text or "app"


def _memory(n: int) -> str:
    return size(n, ((1024 * MIB, "G"), (MIB, "M"), (1024, "K")))


def _service(spec: AppSpec, options: Options, notes: Notes) -> dict[str, Any]:
    command, args = container_argv(spec, options)
    svc: dict[str, Any] = {"image": options.image or default_image(spec), "entrypoint": command}
    if args:
        svc["command"] = args
    svc["working_dir"] = in_image(spec.cwd, options)
    env = env_items(spec)
    if env:
        svc["environment"] = dict(env)
    # an init as PID 1 forwards the stop signal and reaps what the app leaves behind
    svc["init"] = True
    svc["stop_signal"] = spec.kill_signal
    svc["stop_grace_period"] = duration(spec.kill_timeout)
    if not spec.treekill:
        notes.add("treekill: false: the stop signal reaches the app's main process through the "
                  "init; the rest is killed with the container")

    deploy: dict[str, Any] = {"replicas": spec.instances if spec.autostart else 0}
    policy: dict[str, Any]
    if not spec.autorestart:
        policy = {"condition": "none"}
    elif spec.stop_exit_codes == (0,):
        policy = {"condition": "on-failure"}
    else:
        policy = {"condition": "any"}
        if spec.stop_exit_codes:
            notes.add(f"stop_exit_codes {list(spec.stop_exit_codes)}: only [0] has a Compose "
                      "counterpart (on-failure); the service restarts after any exit")
    if spec.restart_delay:
        policy["delay"] = duration(spec.restart_delay)
    deploy["restart_policy"] = policy
    if spec.autorestart:
        restart_notes(spec, notes, "Docker restarts after every exit and never gives up")
    elif spec.cron_restart:
        notes.add(f"cron_restart {spec.cron_restart!r}: Compose has no scheduler; the service "
                  "runs once (use a CronJob, a systemd timer, or cron on the host)")
    if spec.max_memory_restart:
        mem = _memory(spec.max_memory_restart)
        deploy["resources"] = {"limits": {"memory": mem}}
        notes.add(f"max_memory_restart: a memory limit of {mem}; above it the kernel kills the "
                  "container (no graceful stop) instead of a graceful restart")
    if spec.namespace != "default":
        deploy["labels"] = {"io.pyvm2.namespace": spec.namespace}
    svc["deploy"] = deploy
    if spec.instances > 1 or spec.increment_var:
        notes.add(f"{index_vars(spec)}: every replica gets the same environment "
                  "(in a Swarm, {{.Task.Slot}} counts 1..N)")
    if spec.log_max_size or spec.log_retain:
        options_ = {}
        if spec.log_max_size:
            options_["max-size"] = str(spec.log_max_size)
        if spec.log_retain:
            options_["max-file"] = str(spec.log_retain + 1)
        svc["logging"] = {"driver": "json-file", "options": options_}
    common_notes(spec, notes, logs="output goes to the container's stdout/stderr (docker logs)")
    if spec.log_max_size or spec.log_retain:  # mapped to the json-file driver's options above
        notes.items = [n for n in notes.items if not n.startswith("log_max_size/")]
    return svc


def export(apps: Sequence[AppSpec], options: Options) -> Export:
    result = Export()
    names = unique([service_name(a.name) for a in apps])
    source = options.source_name or "the command line"
    parts = [f"# Compose file for {source}, written by pyvm2 export.\n"
             "# docker compose up -d, or on a Swarm: docker stack deploy -c compose.yaml NAME\n"
             "services:\n"]
    for spec, name in zip(apps, names, strict=True):
        notes = Notes(spec.name)
        body = yaml_dump({name: _service(spec, options, notes)})
        comment = f"# app {spec.name!r}\n" + notes.comment()
        parts.append(_indent(comment + body, "  "))
        notes.flush_into(result)
    result.documents.append(Document(FILENAME, "".join(parts)))
    return result


def _indent(text: str, pad: str) -> str:
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))
