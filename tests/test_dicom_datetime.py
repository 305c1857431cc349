"""DICOM DA, TM and DT values (PS3.5 section 6.2, Table 6.2-1), read by one parser.

The expected values are the standard's definitions written out by hand: components may be left
off from the right, a fraction of up to six digits follows the seconds, a DT may end in a UTC
offset from -1200 to +1400, seconds run to 60 (a leap second), and the ACR-NEMA forms
"YYYY.MM.DD" and "HH:MM:SS.frac" are noted by PS3.5 as met in older files.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

import recon
from recon.io._dicom import combine_datetime, parse_date_time, seconds_between, utc_offset

UTC = dt.timezone.utc


def _zone(minutes: int) -> dt.timezone:
    return dt.timezone(dt.timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240506", dt.date(2024, 5, 6)),
        ("20240506 ", dt.date(2024, 5, 6)),  # padded to an even length
        ("2024.05.06", dt.date(2024, 5, 6)),  # ACR-NEMA
        ("2024-05-06", dt.date(2024, 5, 6)),  # ISO 8601
        ("20240229", dt.date(2024, 2, 29)),  # leap year
        (b"19991231", dt.date(1999, 12, 31)),
    ],
)
def test_da(text, expected):
    assert parse_date_time(text, "DA") == expected


@pytest.mark.parametrize(
    "text",
    ["", "  ", "2024056", "202405067", "20241306", "20230229", "20240500", "2024.0506", "abcdefgh"],
)
def test_malformed_da_is_none(text):
    assert parse_date_time(text, "DA") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", dt.time(10)),
        ("1030", dt.time(10, 30)),
        ("103015", dt.time(10, 30, 15)),
        ("103015.1", dt.time(10, 30, 15, 100_000)),
        ("103015.000015", dt.time(10, 30, 15, 15)),
        ("235959.999999", dt.time(23, 59, 59, 999_999)),
        ("000000", dt.time(0)),
        ("235960", dt.time(23, 59, 59, 999_999)),  # a leap second: its minute's last microsecond
        ("10:30:15.25", dt.time(10, 30, 15, 250_000)),  # ACR-NEMA
        ("10:30", dt.time(10, 30)),
        ("103015 ", dt.time(10, 30, 15)),
    ],
)
def test_tm(text, expected):
    assert parse_date_time(text, "TM") == expected


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "103",
        "2400",
        "1060",
        "103061",
        "10.5",  # a fraction needs the seconds
        "1030.5",
        "103015.",
        "103015.1234567",  # at most six digits
        "10:3015",
        "10:30.5",
        "103015+0100",  # offsets belong to DT
    ],
)
def test_malformed_tm_is_none(text):
    assert parse_date_time(text, "TM") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", dt.datetime(2024, 1, 1)),
        ("202405", dt.datetime(2024, 5, 1)),
        ("20240506", dt.datetime(2024, 5, 6)),
        ("2024050610", dt.datetime(2024, 5, 6, 10)),
        ("202405061030", dt.datetime(2024, 5, 6, 10, 30)),
        ("20240506103015", dt.datetime(2024, 5, 6, 10, 30, 15)),
        ("20240506103015.25", dt.datetime(2024, 5, 6, 10, 30, 15, 250_000)),
        ("20240506103015.123456", dt.datetime(2024, 5, 6, 10, 30, 15, 123_456)),
        ("20240506103015.5+0130", dt.datetime(2024, 5, 6, 10, 30, 15, 500_000, _zone(90))),
        ("20240506103015-0800", dt.datetime(2024, 5, 6, 10, 30, 15, tzinfo=_zone(-480))),
        ("20240506+0000", dt.datetime(2024, 5, 6, tzinfo=UTC)),
        ("2024050610+1400", dt.datetime(2024, 5, 6, 10, tzinfo=_zone(14 * 60))),
        ("2024050610-1200", dt.datetime(2024, 5, 6, 10, tzinfo=_zone(-12 * 60))),
        ("20241231235960", dt.datetime(2024, 12, 31, 23, 59, 59, 999_999)),
    ],
)
def test_dt(text, expected):
    got = parse_date_time(text, "DT")
    assert got == expected
    assert got.tzinfo == expected.tzinfo  # aware exactly when the value has an offset


@pytest.mark.parametrize(
    "text",
    [
        "202",
        "20240",
        "2024050",
        "202405061",
        "20241306",
        "2024050624",
        "20240506103015.",
        "2024050610.5",  # a fraction needs the seconds
        "20240506103015.1234567",
        "20240506103015+1401",
        "20240506103015-1201",
        "20240506103015+0160",
        "20240506103015+01",
        "20240506103015 +0100",
        "2024-05-06T10:30:15",
    ],
)
def test_malformed_dt_is_none(text):
    assert parse_date_time(text, "DT") is None


def test_python_values_and_absent_values():
    when = dt.datetime(2024, 5, 6, 10, 30, tzinfo=UTC)
    assert parse_date_time(when, "DT") is when
    assert parse_date_time(when, "DA") == dt.date(2024, 5, 6)
    assert parse_date_time(when, "TM") == dt.time(10, 30, tzinfo=UTC)
    assert parse_date_time(dt.date(2024, 5, 6), "DA") == dt.date(2024, 5, 6)
    assert parse_date_time(dt.time(10, 30), "TM") == dt.time(10, 30)
    assert parse_date_time(dt.date(2024, 5, 6), "TM") is None
    for vr in ("DA", "TM", "DT"):
        assert parse_date_time(None, vr) is None
    with pytest.raises(ValueError, match="vr"):
        parse_date_time("20240506", "DS")  # type: ignore[call-overload]


def test_utc_offset():
    assert utc_offset("+0100") == _zone(60)
    assert utc_offset("-0530") == _zone(-330)
    assert utc_offset("+1400") == _zone(840)
    for bad in (None, "", "0100", "+100", "+1500", "-1300", "+0060", "UTC"):
        assert utc_offset(bad) is None, bad


def test_combine_and_intervals():
    assert combine_datetime("20240506", "0930") == dt.datetime(2024, 5, 6, 9, 30)
    assert combine_datetime("20240506", None) is None
    assert combine_datetime("2024056", "0930") is None
    # Both with offsets: compared in UTC. 10:00+01:00 is 09:00Z, one hour after 08:00Z.
    later = parse_date_time("20240506100000+0100", "DT")
    earlier = parse_date_time("20240506080000+0000", "DT")
    assert seconds_between(later, earlier) == 3600.0
    # One with an offset, one without: both are the scanner's local time.
    assert seconds_between(later, dt.datetime(2024, 5, 6, 8)) == 7200.0
    assert seconds_between(None, earlier) is None


def test_no_other_dicom_date_parser_in_recon():
    # Every DICOM date and time goes through recon.io._dicom.parse_date_time: no module parses
    # them with pydicom's DA/TM/DT classes or with strptime.
    package = Path(recon.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "pydicom.valuerep":
                names = {alias.name for alias in node.names} & {"DA", "TM", "DT"}
                offenders += [f"{path.name}: pydicom.valuerep.{n}" for n in sorted(names)]
            if isinstance(node, ast.Attribute) and node.attr == "strptime":
                offenders.append(f"{path.name}: strptime")
    assert offenders == []
