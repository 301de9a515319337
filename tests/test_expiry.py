"""Every expiry form accepted and refused (api.md "Expiry", bad-inputs.md E1-E11)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botmemory.errors import InvalidExpiryError
from botmemory.expiry import MAX_EXPIRY_MS, check_expiry_arg, duration_ms, expires_at

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY_MS = 86_400_000

ACCEPTED_DURATIONS: list[tuple[object, int]] = [
    # numbers of seconds
    (1, 1_000),
    (30, 30_000),
    (1.1, 1_100),  # shortest repr, not the binary value (1,101 ms)
    (0.1, 100),
    (2.675, 2_675),
    (0.0001, 1),  # rounded up, never 0
    (5e-324, 1),
    (1e-300, 1),
    (86_400 * 36_525, MAX_EXPIRY_MS),  # exactly 100 years
    (86_400.0 * 36_525, MAX_EXPIRY_MS),
    # timedelta, exact from days/seconds/microseconds
    (timedelta(days=1), DAY_MS),
    (timedelta(days=1, seconds=1), DAY_MS + 1_000),
    (timedelta(microseconds=1), 1),
    (timedelta(milliseconds=1, microseconds=1), 2),
    (timedelta(days=36_525), MAX_EXPIRY_MS),
    # strings from api.md
    ("30s", 30_000),
    ("10 m", 600_000),
    ("1.5h", 5_400_000),
    ("30 days", 30 * DAY_MS),
    ("2 hours", 7_200_000),
    ("1.1h", 3_960_000),
    ("0.0001ms", 1),
    ("0.5ms", 1),
    ("1.0001s", 1_001),
    ("00001s", 1_000),
    # every unit spelling
    ("7ms", 7),
    ("7msec", 7),
    ("7millisecond", 7),
    ("7 milliseconds", 7),
    ("7s", 7_000),
    ("7 sec", 7_000),
    ("7secs", 7_000),
    ("7 second", 7_000),
    ("7 seconds", 7_000),
    ("7m", 420_000),
    ("7 min", 420_000),
    ("7mins", 420_000),
    ("7 minute", 420_000),
    ("7 minutes", 420_000),
    ("7h", 25_200_000),
    ("7 hr", 25_200_000),
    ("7hrs", 25_200_000),
    ("7 hour", 25_200_000),
    ("7 hours", 25_200_000),
    ("7d", 7 * DAY_MS),
    ("7 day", 7 * DAY_MS),
    ("7 days", 7 * DAY_MS),
    ("7w", 49 * DAY_MS),
    ("7 week", 49 * DAY_MS),
    ("7 weeks", 49 * DAY_MS),
    ("36525d", MAX_EXPIRY_MS),
    ("36524.999999999999d", MAX_EXPIRY_MS),  # rounded up to exactly the limit
    ("3155759999999.9999ms", MAX_EXPIRY_MS),
    # ISO 8601 durations
    ("PT10M", 600_000),
    ("P2D", 2 * DAY_MS),
    ("P1W", 7 * DAY_MS),
    ("P1DT2H30.5S", DAY_MS + 7_200_000 + 30_500),
    ("PT0.0001S", 1),
    ("PT1H", 3_600_000),
    ("PT1.5M", 90_000),
    ("P1W2D", 9 * DAY_MS),
    ("P1DT1H1M1S", DAY_MS + 3_661_000),
    ("P36525D", MAX_EXPIRY_MS),
]

REFUSED_DURATIONS: list[object] = [
    # E1 negative, E2 zero
    -1,
    -5,
    -0.5,
    "-5m",
    0,
    0.0,
    -0.0,
    "0",
    "0s",
    "0.0s",
    "P0D",
    "PT0S",
    timedelta(0),
    timedelta(microseconds=-1),
    timedelta(days=-1),
    # E3, E4 infinities and NaN
    float("inf"),
    float("-inf"),
    float("nan"),
    1e309,
    "1e309 ms",
    "inf",
    "Infinity",
    "nan",
    "NaN",
    "1e3s",
    # E5 unknown, upper-case or ambiguous units
    "5 fortnights",
    "5 parsecs",
    "5 M",
    "5S",
    "5 Days",
    "5 MS",
    "5 y",
    "5 years",
    "5 months",
    "5 mo",
    "5us",
    # E6 "no expiry" spellings are not durations
    None,
    "never",
    "none",
    "forever",
    "Never",
    # E7 more than 100 years
    "6000 weeks",
    "36526d",
    "36525.00000001d",
    86_400 * 36_525 + 1,
    86_400 * 36_525 + 0.001,
    2**63,
    2**10_000,
    1e300,
    timedelta(days=36_525, microseconds=1),
    timedelta.max,
    "P36526D",
    "99999999999999999999999999999 weeks",
    # E8 strict number syntax
    ".5s",
    "5.s",
    "1_000s",
    " 5m ",
    " 5m",
    "5m ",
    "5  m",
    "5\tm",
    "５m",
    "١٢m",
    "5,5s",
    "+5s",
    "0x10s",
    "5 m s",
    "5",
    "30",
    "",
    " ",
    "s",
    # E11 junk
    "5m; DROP TABLE kv",
    "5m\n",
    "5m\x00",
    "\n5m",
    # ISO forms refused
    "P",
    "PT",
    "P1DT",
    "P1Y",
    "P1M",
    "P1Y2D",
    "PT1H2D",
    "P1,5D",
    "pt10m",
    "P1d",
    "PT-1S",
    "P1D ",
    "P.5D",
    "P1DT2H30.5S\n",
    "PT0S0.1",
    "P1D1W",
    "PT1S1M",
    # bools and other types
    True,
    False,
    b"5s",
    [5],
    {"s": 5},
    object(),
    # datetimes are absolute, not durations
    datetime(2030, 1, 1),
    datetime(2030, 1, 1, tzinfo=UTC),
    "2030-01-01T00:00:00Z",
    # hostile lengths
    "1" * 200 + "s",
    "0." + "0" * 200 + "1s",
]


@pytest.mark.parametrize(("value", "expected_ms"), ACCEPTED_DURATIONS, ids=repr)
def test_duration_ms_accepts(value: object, expected_ms: int) -> None:
    assert duration_ms(value) == expected_ms
    check_expiry_arg(value)
    assert expires_at(value, NOW) == NOW + expected_ms / 1000


@pytest.mark.parametrize("value", REFUSED_DURATIONS, ids=repr)
def test_duration_ms_refuses(value: object) -> None:
    with pytest.raises(InvalidExpiryError):
        duration_ms(value)


NOT_DURATIONS_BUT_ACCEPTED = (None, "never", "2030-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "value",
    [
        v
        for v in REFUSED_DURATIONS
        if not isinstance(v, datetime) and not any(v is a for a in NOT_DURATIONS_BUT_ACCEPTED)
    ],
    ids=repr,
)
def test_expires_at_and_check_refuse_what_duration_ms_refuses(value: object) -> None:
    with pytest.raises(InvalidExpiryError):
        expires_at(value, NOW)
    with pytest.raises(InvalidExpiryError):
        check_expiry_arg(value)


@pytest.mark.parametrize("value", [None, "never"])
def test_no_expiry_spellings(value: object) -> None:
    assert expires_at(value, NOW) is None
    check_expiry_arg(value)


@pytest.mark.parametrize("value", ["none", "forever", "Never", "NEVER", "never ", -1, "null", ""])
def test_other_no_expiry_spellings_refused(value: object) -> None:
    with pytest.raises(InvalidExpiryError):
        expires_at(value, NOW)
    with pytest.raises(InvalidExpiryError):
        check_expiry_arg(value)


ABSOLUTE_ACCEPTED: list[tuple[object, float]] = [
    (datetime(2030, 1, 1, tzinfo=UTC), 1_893_456_000.0),
    (datetime(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), 1_893_456_000.0),
    (datetime(2030, 1, 1, microsecond=1, tzinfo=UTC), 1_893_456_000.001),  # rounded up
    (datetime(2030, 1, 1, microsecond=1_000, tzinfo=UTC), 1_893_456_000.001),
    ("2030-01-01T00:00:00Z", 1_893_456_000.0),
    ("2030-01-01t00:00:00z", 1_893_456_000.0),
    ("2030-01-01T00:00:00.5+02:00", 1_893_448_800.5),
    ("2030-01-01T00:00:00.0001Z", 1_893_456_000.001),
    ("2030-01-01T00:00:00.000000001Z", 1_893_456_000.001),
    ("2030-01-01T00:00:00.999Z", 1_893_456_000.999),
    ("2030-01-01T00:00:00.9991Z", 1_893_456_001.0),
    ("2029-12-31T19:00:00-05:00", 1_893_456_000.0),
    ("2030-01-01T00:00:00-00:00", 1_893_456_000.0),
    ("2030-01-01T00:00:00+23:59", 1_893_456_000.0 - 86_340),
    ("2028-02-29T00:00:00Z", 1_835_395_200.0),
    ("2027-01-15T08:00:00.001Z", NOW + 0.001),  # just after now
]


@pytest.mark.parametrize(("value", "expected"), ABSOLUTE_ACCEPTED, ids=repr)
def test_absolute_expiry_accepted(value: object, expected: float) -> None:
    assert expires_at(value, NOW) == pytest.approx(expected, abs=1e-6)
    check_expiry_arg(value)


def test_absolute_at_exactly_100_years_accepted_and_one_ms_more_refused() -> None:
    now = 1_800_000_000.0
    limit = datetime.fromtimestamp(now, UTC) + timedelta(days=36_525)
    assert expires_at(limit, now) == now + MAX_EXPIRY_MS / 1000
    with pytest.raises(InvalidExpiryError):
        expires_at(limit + timedelta(milliseconds=1), now)


ABSOLUTE_MALFORMED: list[object] = [
    # E10: naive
    datetime(2030, 1, 1),
    "2030-01-01T00:00:00",
    "2030-01-01",
    "2030-01-01 00:00:00",
    # invalid dates and times
    "2030-02-30T00:00:00Z",
    "2029-02-29T00:00:00Z",
    "2030-01-01T23:59:60Z",
    "2030-01-01T24:00:00Z",
    "2030-13-01T00:00:00Z",
    "2030-00-01T00:00:00Z",
    "2030-01-01T00:60:00Z",
    "0000-01-01T00:00:00Z",
    "2030-01-01T00:00:00+24:00",
    "2030-01-01T00:00:00+02:60",
    # not RFC 3339
    "2030-01-01T00:00Z",
    "2030-01-01T00:00:00.Z",
    "2030-01-01T00:00:00,5Z",
    "2030-01-01T00:00:00+0200",
    "2030-01-01T00:00:00+02",
    "2030-01-01 00:00:00Z",
    "20300101T000000Z",
    "2030-001T00:00:00Z",
    "2030-W01-1T00:00:00Z",
    "２０３０-01-01T00:00:00Z",
    " 2030-01-01T00:00:00Z",
    "2030-01-01T00:00:00Z ",
    "2030-01-01T00:00:00Z\n",
    "2030-01-01T00:00:00 UTC",
    "+12030-01-01T00:00:00Z",
]

ABSOLUTE_REFUSED: list[object] = [
    *ABSOLUTE_MALFORMED,
    # E9: not in the future
    "2020-01-01T00:00:00Z",
    "2027-01-15T08:00:00Z",  # exactly now
    datetime(2027, 1, 15, 8, tzinfo=UTC),
    datetime(2020, 1, 1, tzinfo=UTC),
    # E7: beyond 100 years, year 9999
    "2200-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    datetime.max.replace(tzinfo=UTC),
]


@pytest.mark.parametrize("value", ABSOLUTE_REFUSED, ids=repr)
def test_absolute_expiry_refused(value: object) -> None:
    with pytest.raises(InvalidExpiryError):
        expires_at(value, NOW)


@pytest.mark.parametrize(
    "value",
    [
        "2020-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
        datetime(2020, 1, 1, tzinfo=UTC),
        datetime(2200, 1, 1, tzinfo=UTC),
    ],
    ids=repr,
)
def test_check_expiry_arg_does_not_look_at_the_clock(value: object) -> None:
    check_expiry_arg(value)


@pytest.mark.parametrize("value", ABSOLUTE_MALFORMED, ids=repr)
def test_check_expiry_arg_refuses_malformed_absolute_times(value: object) -> None:
    with pytest.raises(InvalidExpiryError):
        check_expiry_arg(value)


def test_message_repeats_the_input_escaped_and_truncated() -> None:
    with pytest.raises(InvalidExpiryError, match=r"'5m\\n'"):
        duration_ms("5m\n")
    long_junk = "x" * 100
    with pytest.raises(InvalidExpiryError) as info:
        expires_at(long_junk, NOW)
    assert "x" * 70 in str(info.value)
    assert "x" * 90 not in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_expiry_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        duration_ms("-5m")


@given(st.integers(min_value=1, max_value=MAX_EXPIRY_MS))
def test_integer_milliseconds_round_trip_through_every_form(ms: int) -> None:
    assert duration_ms(f"{ms}ms") == ms
    assert duration_ms(f"{ms} milliseconds") == ms
    assert duration_ms(timedelta(milliseconds=ms)) == ms
    seconds, frac = divmod(ms, 1000)
    assert duration_ms(f"{seconds}.{frac:03d}s") == ms
    assert duration_ms(f"PT{seconds}.{frac:03d}S") == ms


@given(st.floats(min_value=5e-324, max_value=36_525 * 86_400))
def test_float_seconds_round_up_from_the_shortest_repr(seconds: float) -> None:
    exact_ms = Fraction(repr(seconds)) * 1000
    assert duration_ms(seconds) == max(1, math.ceil(exact_ms))


@given(
    st.integers(min_value=0, max_value=10**6),
    st.text(alphabet="0123456789", min_size=1, max_size=12),
    st.sampled_from(["ms", "s", "m", "h", "d", "w"]),
)
def test_decimal_strings_are_exact(whole: int, frac: str, unit: str) -> None:
    unit_ms = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
    exact = Fraction(f"{whole}.{frac}") * unit_ms[unit]
    if exact == 0:
        with pytest.raises(InvalidExpiryError):
            duration_ms(f"{whole}.{frac}{unit}")
    elif exact > MAX_EXPIRY_MS:
        with pytest.raises(InvalidExpiryError):
            duration_ms(f"{whole}.{frac} {unit}")
    else:
        assert duration_ms(f"{whole}.{frac} {unit}") == math.ceil(exact)


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("value", [10**5000, -(10**5000), BrokenRepr(), ("x",) * 1000], ids=type)
def test_unprintable_inputs_still_raise_the_typed_error(value: object) -> None:
    with pytest.raises(InvalidExpiryError) as info:
        expires_at(value, NOW)
    assert len(str(info.value)) < 400


def test_unit_messages() -> None:
    with pytest.raises(InvalidExpiryError, match=r"unknown unit 'fortnights'$"):
        duration_ms("5 fortnights")
    with pytest.raises(InvalidExpiryError, match=r"unknown unit 'M' \(units are lower-case\)"):
        duration_ms("5 M")
