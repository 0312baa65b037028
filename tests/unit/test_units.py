"""Exact fixed-point units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshi.errors import UnitError
from kalshi.models.units import (
    DOLLAR,
    _parse_fixed,
    _parse_general,
    format_price,
    format_rfc3339_us,
    format_size,
    parse_price,
    parse_rfc3339_us,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.4200", 42000),
        ("0.0001", 10),
        ("1.0000", 100000),
        ("0", 0),
        ("0.00001", 1),
        ("0.960", 96000),
        ("0.42000000", 42000),
        ("-0", 0),
        ("1.00000", 100000),
    ],
)
def test_parse_price(text: str, value: int) -> None:
    assert parse_price(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("136.00", 13600), ("0.01", 1), ("-54.00", -5400), ("2", 200), ("1.5", 150)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.000001", "more than 5 decimal places"),
        ("", "not a decimal number"),
        ("1.", "not a decimal number"),
        (".5", "not a decimal number"),
        ("1e3", "not a decimal number"),
        ("0x10", "not a decimal number"),
        ("١٢", "not a decimal number"),
        (" 1", "not a decimal number"),
        ("1.2000", "price: '1.2000' is outside 0 to 1 dollars"),
        ("1.00001", "price: '1.00001' is outside 0 to 1 dollars"),
        ("-0.1000", "price: '-0.1000' is outside 0 to 1 dollars"),
        ("-0.00001", "price: '-0.00001' is outside 0 to 1 dollars"),
        ("+2", "price: '\\+2' is outside 0 to 1 dollars"),
    ],
)
def test_parse_price_rejects(text: str, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        parse_price(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(UnitError, match="expected a decimal string, got float"):
        parse_price(0.42)
    with pytest.raises(UnitError, match="more than 2 decimal places"):
        parse_size("1.005")


@given(st.text(alphabet="0123456789-+.²٣ ", max_size=9), st.sampled_from([2, 5]))
def test_the_fast_path_agrees_with_the_general_rules(text: str, digits: int) -> None:
    # The wire's own form ("-12.34") takes one int(); every other text the general rules.
    try:
        expected: int | str = _parse_general(text, digits, "x")
    except UnitError as exc:
        expected = str(exc)
    try:
        got: int | str = _parse_fixed(text, digits, "x")
    except UnitError as exc:
        got = str(exc)
    assert got == expected


@given(st.integers(min_value=0, max_value=DOLLAR))
def test_price_round_trip(value: int) -> None:
    assert parse_price(format_price(value)) == value


@given(st.integers(min_value=-(10**12), max_value=10**12).filter(lambda v: not 0 <= v <= DOLLAR))
def test_a_price_outside_0_to_1_dollars_is_refused(value: int) -> None:
    with pytest.raises(UnitError, match="is outside 0 to 1 dollars"):
        parse_price(format_price(value))


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_size_round_trip(value: int) -> None:
    assert parse_size(format_size(value)) == value


@given(st.integers(min_value=0, max_value=99_999))
def test_decimal_string_round_trips_exactly(units: int) -> None:
    """Decoding then re-encoding a 4- or 5-decimal dollar string gives it back exactly."""
    text = f"0.{units // 10:04d}" if units % 10 == 0 else f"0.{units:05d}"
    assert format_price(parse_price(text)) == text


@given(st.integers(min_value=0, max_value=10**8), st.integers(min_value=0, max_value=99))
def test_size_string_round_trips_exactly(whole: int, cents: int) -> None:
    text = f"{whole}.{cents:02d}"
    assert format_size(parse_size(text)) == text


def test_rfc3339() -> None:
    assert parse_rfc3339_us("2022-11-22T20:44:01.123Z") == 1_669_149_841_123_000
    assert parse_rfc3339_us("2022-11-22T20:44:01Z") == 1_669_149_841_000_000
    assert parse_rfc3339_us("2022-11-22T21:44:01.000001+01:00") == 1_669_149_841_000_001
    assert parse_rfc3339_us("2022-11-22T20:44:01.123456000Z") == 1_669_149_841_123_456
    assert format_rfc3339_us(1_669_149_841_123_000) == "2022-11-22T20:44:01.123Z"
    with pytest.raises(UnitError, match="finer than a microsecond"):
        parse_rfc3339_us("2022-11-22T20:44:01.1234567Z")
    with pytest.raises(UnitError, match="not an RFC 3339 string"):
        parse_rfc3339_us("yesterday at noon, roughly")


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (1_785_901_542_001_740, "2026-08-05T03:45:42.00174Z"),  # a real delta's ts (F2)
        (1_785_901_542_001_741, "2026-08-05T03:45:42.001741Z"),
        (1_785_901_542_100_000, "2026-08-05T03:45:42.1Z"),
        (1_785_901_542_000_000, "2026-08-05T03:45:42Z"),
    ],
)
def test_rfc3339_trimmed_as_kalshi_sends_it_round_trips(micros: int, text: str) -> None:
    assert format_rfc3339_us(micros, digits=6, trim=True) == text
    assert parse_rfc3339_us(text) == micros


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999))  # to 9999-12-31
def test_a_trimmed_time_parses_back_to_its_microsecond(micros: int) -> None:
    assert parse_rfc3339_us(format_rfc3339_us(micros, digits=6, trim=True)) == micros


@pytest.mark.parametrize(
    "text",
    [
        "2026-08-05T03:45:42,5Z",  # ISO's ',' (fromisoformat took it; the .5 s was dropped)
        "2026-W32-3T03:45:42Z",  # an ISO week date
        "2026-08-05T03:45:42.Z",
        "2026-08-05T03:45:42.5+0200",
        "2026-08-05T03:45:42+24:00",
        "2026-13-05T03:45:42Z",
        "2026-08-05T03:45Z",
    ],
)
def test_only_rfc3339_is_a_timestamp(text: str) -> None:
    with pytest.raises(UnitError, match="RFC 3339"):
        parse_rfc3339_us(text)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    st.integers(min_value=0, max_value=9),
    st.sampled_from(["T", "t", " "]),
)
def test_any_rfc3339_time_is_read_exactly(
    moment: datetime, offset: int, digits: int, sep: str
) -> None:
    """Any fraction length (0 to 9 digits, trailing zeros kept or trimmed) and any offset,
    to the µs, as the standard library reads the same moment."""
    unit = 10 ** (6 - min(digits, 6))  # what the digits can say
    moment = moment.replace(microsecond=moment.microsecond // unit * unit)
    zone = (
        "Z"
        if offset == 0
        else f"{'+' if offset > 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    )
    fraction = f"{moment.microsecond:06d}000"[:digits]
    m = moment
    text = f"{m.year:04d}-{m.month:02d}-{m.day:02d}{sep}{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
    text += (f".{fraction}" if digits else "") + zone
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset)))
    expected = (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert parse_rfc3339_us(text) == expected
