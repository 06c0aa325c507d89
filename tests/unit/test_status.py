"""The status vocabulary and its transition table."""

from __future__ import annotations

import pytest

from pyvm2.status import (
    TRANSITIONS,
    Desired,
    Status,
    is_allowed,
    is_settled,
)


def test_statuses_are_pm2_strings():
    assert {s.value for s in Status} == {"launching", "online", "stopping", "stopped", "errored",
                                         "waiting restart"}


def test_every_status_has_a_row():
    assert set(TRANSITIONS) == set(Status)


@pytest.mark.parametrize("old,new", [
    (Status.STOPPED, Status.LAUNCHING), (Status.LAUNCHING, Status.ONLINE),
    (Status.ONLINE, Status.STOPPING), (Status.STOPPING, Status.STOPPED),
    (Status.STOPPING, Status.WAITING_RESTART), (Status.WAITING_RESTART, Status.LAUNCHING),
    (Status.WAITING_RESTART, Status.STOPPED), (Status.STOPPING, Status.ERRORED),
    (Status.ERRORED, Status.LAUNCHING), (Status.LAUNCHING, Status.ERRORED),
])
def test_allowed_transitions(old, new):
    assert is_allowed(old, new)


@pytest.mark.parametrize("old,new", [
    (Status.ONLINE, Status.STOPPED),          # a stop always passes through stopping
    (Status.STOPPED, Status.ONLINE),          # and a start through launching
    (Status.ONLINE, Status.WAITING_RESTART),  # an exit is swept (stopping) before a restart
    (Status.ERRORED, Status.ERRORED),         # errored is left by a start or a stop only
    (Status.WAITING_RESTART, Status.STOPPING),  # nothing runs while waiting
])
def test_forbidden_transitions(old, new):
    assert not is_allowed(old, new)


def test_desired_is_one_of_two_strings():
    assert {d.value for d in Desired} == {"running", "stopped"}
    assert Desired("running") is Desired.RUNNING and Desired.STOPPED == "stopped"


def test_predicates():
    assert is_settled("errored") and is_settled("stopped") and not is_settled("online")
