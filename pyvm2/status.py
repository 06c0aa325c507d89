"""Process statuses (pm2's strings), the transitions allowed between them, and what the user
asked an instance to be doing."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    LAUNCHING = "launching"
    ONLINE = "online"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERRORED = "errored"
    WAITING_RESTART = "waiting restart"

    def __str__(self) -> str:
        return self.value


class Desired(str, Enum):
    """What the user last asked of an instance; only the user's commands change it."""

    RUNNING = "running"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


S = Status

#: Every allowed (from -> to); the only writer of a status checks it. Anything else is a bug.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    # a start; a stop (or delete) repeated with a new reason
    S.STOPPED: frozenset({S.LAUNCHING, S.STOPPED}),
    # a start; a stop, which also clears the error
    S.ERRORED: frozenset({S.LAUNCHING, S.STOPPED}),
    # a spawn that fails before exec is errored at once
    S.LAUNCHING: frozenset({S.ONLINE, S.ERRORED}),
    # a stop, a restart and an exit all go through stopping: the rest of the tree is swept
    # before anything else happens
    S.ONLINE: frozenset({S.STOPPING}),
    # stopped; a survivor of SIGKILL or too many unstable exits (errored); a back-off (waiting
    # restart); a restart at once (launching)
    S.STOPPING: frozenset({S.STOPPED, S.ERRORED, S.WAITING_RESTART, S.LAUNCHING}),
    # the wait is over, or cut short by a start or an automatic restart; a stop
    S.WAITING_RESTART: frozenset({S.LAUNCHING, S.STOPPED}),
}


def is_allowed(old: Status, new: Status) -> bool:
    return new in TRANSITIONS[old]


def is_settled(status: Status | str) -> bool:
    """Nothing more will happen without a command or a timer."""
    return Status(status) in (S.STOPPED, S.ERRORED)
