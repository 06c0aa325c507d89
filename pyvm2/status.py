"""Process statuses (pm2's strings) and the transitions allowed between them."""

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


S = Status

#: Every allowed (from -> to). Anything else is a bug and raises.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.STOPPED: frozenset({S.LAUNCHING, S.STOPPED}),
    S.ERRORED: frozenset({S.LAUNCHING, S.STOPPED, S.ERRORED}),
    # a spawn that fails before exec is errored at once
    S.LAUNCHING: frozenset({S.ONLINE, S.ERRORED, S.STOPPING}),
    # exits go through stopping: the rest of the tree is swept before anything else happens
    S.ONLINE: frozenset({S.STOPPING}),
    S.STOPPING: frozenset({S.STOPPED, S.ERRORED, S.WAITING_RESTART, S.LAUNCHING}),
    S.WAITING_RESTART: frozenset({S.LAUNCHING, S.STOPPED, S.STOPPING}),
}


class TransitionError(RuntimeError):
    pass


def check_transition(old: Status, new: Status) -> None:
    if new not in TRANSITIONS[old]:
        raise TransitionError(f"illegal status change {old.value!r} -> {new.value!r}")


def is_running(status: Status | str) -> bool:
    """A process exists (or is being created) for this status."""
    return Status(status) in (S.LAUNCHING, S.ONLINE, S.STOPPING)


def is_settled(status: Status | str) -> bool:
    """Nothing more will happen without a command or a timer."""
    return Status(status) in (S.STOPPED, S.ERRORED)
