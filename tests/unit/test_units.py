"""Unit converters: pm2's value formats in, canonical values out, errors that name the value."""

from __future__ import annotations

import pytest

from pyvm2.units import (
    MAX_MS,
    MIB,
    UnitError,
    parse_bool,
    parse_cli_seconds,
    parse_ms,
    parse_signal,
    parse_size,
)


@pytest.mark.parametrize(("value", "expected"), [
    ("100M", 100 * MIB),
    ("100MB", 100 * MIB),
    ("100m", 100 * MIB),
    ("100mb", 100 * MIB),
    ("1.5G", int(1.5 * 1024 * MIB)),
    ("512K", 512 * 1024),
    ("2048K", 2 * MIB),
    ("200M", 209715200),  # pm2's observed value
    ("1G", 1024 * MIB),
    (" 64 M ", 64 * MIB),
    (2 * MIB, 2 * MIB),
    ("3145728", 3 * MIB),
    (1.5 * MIB, int(1.5 * MIB)),
])
def test_sizes_are_bytes_with_base_1024_units(value: object, expected: int) -> None:
    assert parse_size(value) == expected


def test_a_size_in_words_is_rejected_with_the_value_named() -> None:
    with pytest.raises(UnitError) as e:
        parse_size("100 megs")
    assert str(e.value) == 'expected a size like "100M", got "100 megs"'
    assert e.value.hint and "100M" in e.value.hint


def test_a_bare_number_below_one_mib_suggests_megabytes() -> None:
    with pytest.raises(UnitError) as e:
        parse_size(100)
    assert "100 bytes" in str(e.value)
    assert e.value.hint is not None and 'did you mean "100M"?' in e.value.hint


def test_a_bare_numeric_string_below_one_mib_is_rejected_too() -> None:
    with pytest.raises(UnitError) as e:
        parse_size("300")
    assert e.value.hint is not None and '"300M"' in e.value.hint


@pytest.mark.parametrize("value", [True, None, [], {}, "-5M", -1, "M", "", "1.2.3M", "100T",
                                   float("inf"), float("nan")])
def test_sizes_that_are_not_sizes_are_rejected(value: object) -> None:
    with pytest.raises(UnitError):
        parse_size(value)


@pytest.mark.parametrize(("value", "expected"), [
    (1600, 1600),
    (1600.4, 1600),
    ("1600", 1600),
    ("500ms", 500),
    ("2s", 2000),
    ("1.5s", 1500),
    ("1m", 60_000),
    ("1h", 3_600_000),
    ("5S", 5000),
    (0, 0),
])
def test_durations_are_milliseconds(value: object, expected: int) -> None:
    assert parse_ms(value) == expected


@pytest.mark.parametrize("value", [-1, "-2s", "-5"])
def test_negative_durations_are_rejected(value: object) -> None:
    with pytest.raises(UnitError, match="negative"):
        parse_ms(value)


@pytest.mark.parametrize("value", [True, False, None, "soon", "2 days", [], "1d"])
def test_durations_of_the_wrong_kind_are_rejected_with_the_value_named(value: object) -> None:
    with pytest.raises(UnitError) as e:
        parse_ms(value)
    assert "got" in str(e.value) or "negative" in str(e.value)


def test_a_duration_below_the_minimum_names_the_minimum() -> None:
    with pytest.raises(UnitError, match="minimum of 100 ms"):
        parse_ms(50, minimum=100)
    assert parse_ms("1s", minimum=100) == 1000


def test_absurdly_long_durations_are_rejected() -> None:
    with pytest.raises(UnitError, match="longest"):
        parse_ms(MAX_MS + 1)


@pytest.mark.parametrize(("value", "expected"), [
    ("2", 2000), ("1.5", 1500), (2, 2000), (0.5, 500), ("500ms", 500), ("3s", 3000), ("0", 0),
])
def test_cli_delays_are_seconds_unless_given_in_ms(value: object, expected: int) -> None:
    assert parse_cli_seconds(value) == expected


@pytest.mark.parametrize("value", ["-1", -2, "soon", "", None, True])
def test_bad_cli_delays_are_rejected(value: object) -> None:
    with pytest.raises(UnitError):
        parse_cli_seconds(value)


@pytest.mark.parametrize("value", ["SIGTERM", "TERM", "sigterm", "term", 15, "15", " SIGTERM "])
def test_signals_have_one_canonical_name(value: object) -> None:
    assert parse_signal(value) == "SIGTERM"


def test_sigint_and_sigkill_are_accepted() -> None:
    assert parse_signal("INT") == "SIGINT"
    assert parse_signal(9) == "SIGKILL"


@pytest.mark.parametrize("value", ["SIGFOO", "", 0, 999, True, None, 1.5])
def test_unknown_signals_list_examples(value: object) -> None:
    with pytest.raises(UnitError) as e:
        parse_signal(value)
    assert "unknown signal" in str(e.value)
    assert e.value.hint is not None and "SIGTERM" in e.value.hint


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ("FALSE", False), ("yes", True), ("no", False),
    ("1", True), ("0", False),
])
def test_booleans_accept_pm2s_values_and_plain_words(value: object, expected: bool) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", [1, 0, None, "on", "", "maybe", [], 1.0])
def test_anything_else_is_not_a_boolean(value: object) -> None:
    with pytest.raises(UnitError, match="expected true or false"):
        parse_bool(value)


def test_unit_errors_are_value_errors() -> None:
    assert issubclass(UnitError, ValueError)
