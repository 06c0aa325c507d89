"""The daemon's descriptor budget: starts refused near the limit, the reserve given back."""

from __future__ import annotations

import os

import pytest

from pyvm2.daemon import fds


def test_a_start_that_would_leave_too_few_descriptors_is_refused() -> None:
    b = fds.Budget()
    b.hold()
    try:
        used = fds.open_count()
        assert used is not None
        b.limit = used + fds.PER_START + fds.MARGIN + 2
        b.check_start()                      # room for one
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(fds.PER_START)]  # the app
        try:
            with pytest.raises(fds.TooFew) as e:
                b.check_start()              # near the limit it counts again: no room
        finally:
            for fd in held:
                os.close(fd)
        assert str(b.limit) in str(e.value) and "ulimit -n" in str(e.value)
        assert "LimitNOFILE" in str(e.value)
    finally:
        b.release()


def test_no_limit_means_no_refusal() -> None:
    b = fds.Budget()
    b.limit = None
    for _ in range(100):
        b.check_start()


def test_the_reserve_is_given_back_and_taken_again_when_there_is_room() -> None:
    b = fds.Budget()
    logged: list[str] = []
    b.log = logged.append
    b.hold()
    before = fds.open_count()
    assert before is not None
    assert b.release() is True
    assert fds.open_count() == before - fds.RESERVE
    assert logged and "reserve released" in logged[0]
    assert b.release() is False
    b.limit = 1 << 20
    b.refill()
    assert fds.open_count() == before
    b.release()
