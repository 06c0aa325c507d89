"""`scale`'s pure parts: the CLI's N / +N / -N, which instance numbers new instances take, pid
file names per instance, and that the number of instances alone never restarts an app."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from pyvm2.cli.more import parse_scale
from pyvm2.daemon.commands import _free_instances
from pyvm2.daemon.daemon import pid_path
from pyvm2.errors import UsageError
from pyvm2.spec import AppSpec


@pytest.mark.parametrize(("text", "expected"), [
    ("4", (4, False)), ("1", (1, False)), ("+2", (2, True)), ("-1", (-1, True)),
    (" 3 ", (3, False)), ("+0", (0, True)), ("-0", (0, True)),
])
def test_scale_numbers(text: str, expected: tuple[int, bool]) -> None:
    assert parse_scale(text) == expected


@pytest.mark.parametrize("text", ["x", "", "2.5", "+", "--2", "1e3", "four", "+-1", "9999999"])
def test_scale_refuses_what_is_not_a_number(text: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_scale(text)
    assert e.value.code == 2 and "not a number of instances" in e.value.message
    assert e.value.hint and "+2" in e.value.hint


def test_scale_to_zero_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(UsageError) as e:
        parse_scale("0")
    assert e.value.code == 2 and "at least 1" in e.value.message
    assert e.value.hint and "pyvm2 delete" in e.value.hint


def _procs(*instances: int) -> list[Any]:
    return [SimpleNamespace(instance=i) for i in instances]


@pytest.mark.parametrize(("have", "n", "expected"), [
    ((), 3, [0, 1, 2]),
    ((0, 1), 2, [2, 3]),
    ((2, 3), 2, [0, 1]),         # pm2 reuses the numbers freed by a delete
    ((0, 2, 5), 3, [1, 3, 4]),
    ((0,), 0, []),
])
def test_new_instances_take_the_lowest_free_numbers(have: tuple[int, ...], n: int,
                                                    expected: list[int]) -> None:
    assert _free_instances(_procs(*have), n) == expected


@pytest.mark.parametrize(("given", "pm_id", "expected"), [
    ("/run/app.pid", 3, "/run/app-3.pid"),
    ("/home/u/.pyvm2/pids/web.pid", 0, "/home/u/.pyvm2/pids/web-0.pid"),
    ("/run/app-1.pid", 2, "/run/app-1-2.pid"),
    ("/run/app.lock", 1, "/run/app.lock-1"),
    ("/dev/null", 4, "/dev/null"),
])
def test_each_instance_has_its_own_pid_file(given: str, pm_id: int, expected: str) -> None:
    assert pid_path(given, pm_id) == expected


def test_the_number_of_instances_is_not_part_of_the_definition() -> None:
    spec = AppSpec(name="web", script="/srv/web.py", cwd="/srv")
    assert dataclasses.replace(spec, instances=4).definition() == spec.definition()
    assert dataclasses.replace(spec, args=("-v",)).definition() != spec.definition()
