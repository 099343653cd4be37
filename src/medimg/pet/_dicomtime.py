"""DICOM dates and times (DA, TM, DT) as :mod:`datetime` values, for the SUV decision tree.

DICOM writes dates as ``YYYYMMDD``, times as ``HHMMSS.FFFFFF`` (minutes, seconds and the
fraction optional; old ACR-NEMA files use ``HH:MM:SS``) and date-times as
``YYYYMMDDHHMMSS.FFFFFF&ZZXX`` (everything after the year optional, ``&ZZXX`` a UTC offset).
Vendors pad values with spaces (``"20201217084500.00 "``). A value that does not parse raises
:class:`~medimg.errors.ParameterError` naming the tag.
"""

from __future__ import annotations

import datetime as dt
import re

from medimg.errors import ParameterError

__all__ = ["parse_da", "parse_tm", "parse_dt", "parse_user_time", "iso"]

_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")


def parse_da(text: object, *, tag: str) -> dt.date:
    """A DICOM DA value (``YYYYMMDD``; ``YYYY.MM.DD`` and ``YYYY-MM-DD`` tolerated) as a date."""
    s = str(text).strip().replace(".", "").replace("-", "")
    try:
        if len(s) != 8 or not s.isdigit():
            raise ValueError(s)
        return dt.date(int(s[0:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        raise ParameterError(f"SUV: {tag} is {text!r}, not a DICOM date (YYYYMMDD)") from None


def parse_tm(text: object, *, tag: str) -> dt.time:
    """A DICOM TM value (``HHMMSS.FFFFFF``, ``HHMM``, ``HH`` or ``HH:MM:SS``) as a time."""
    s = str(text).strip().replace(":", "")
    whole, _, frac = s.partition(".")
    try:
        if not whole.isdigit() or len(whole) not in (2, 4, 6) or (frac and not frac.isdigit()):
            raise ValueError(s)
        hh = int(whole[0:2])
        mm = int(whole[2:4]) if len(whole) >= 4 else 0
        ss = int(whole[4:6]) if len(whole) >= 6 else 0
        us = int((frac + "000000")[:6]) if frac else 0
        return dt.time(hh, mm, min(ss, 59), us)  # a leap second (60) is kept as 59
    except ValueError:
        raise ParameterError(f"SUV: {tag} is {text!r}, not a DICOM time (HHMMSS.FFFFFF)") from None


def parse_dt(text: object, *, tag: str) -> tuple[dt.datetime, dt.timedelta | None]:
    """A DICOM DT value as a naive date-time and its UTC offset (``None`` when not given)."""
    s = str(text).strip()
    m = _DT.match(s)
    if m is None:
        raise ParameterError(f"SUV: {tag} is {text!r}, not a DICOM date-time (YYYYMMDDHHMMSS.FFFFFF)")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    try:
        value = dt.datetime(int(year), int(month or 1), int(day or 1), int(hh or 0), int(mm or 0),
                            min(int(ss or 0), 59), int(((frac or ".")[1:] + "000000")[:6]))
    except ValueError:
        raise ParameterError(f"SUV: {tag} is {text!r}, not a valid DICOM date-time") from None
    offset = None
    if zone:
        sign = -1 if zone[0] == "-" else 1
        offset = sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return value, offset


def parse_user_time(text: str, *, name: str = "--injection-time") -> dt.datetime | dt.time:
    """A date-time or a time of day given by a user (local time, as DICOM stores it).

    Accepts ISO 8601 (``2024-01-02T10:00:00``, ``2024-01-02 10:00``), DICOM DT
    (``20240102100000``) and times of day (``10:00``, ``10:00:30``, ``100030``); a time of day is
    returned as :class:`datetime.time` (the caller supplies the date).
    """
    s = str(text).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?", s):
            value = dt.datetime.fromisoformat(s.replace(" ", "T", 1))
            if value.tzinfo is None:
                return value
        elif re.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d{1,6})?)?", s):
            return dt.time.fromisoformat(s.zfill(len(s) + (1 if s.index(":") == 1 else 0)))
        elif re.fullmatch(r"\d{8,14}(\.\d{1,6})?", s):
            return parse_dt(s, tag=name)[0]
        elif re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?", s):
            return parse_tm(s, tag=name)
    except (ValueError, ParameterError):
        pass
    msg = (f"{name} is {text!r}; expected a local date-time without UTC offset (2024-01-02T10:00:00 "
           "or 20240102100000) or a time of day (10:00:00)")
    raise ParameterError(msg)


def iso(value: dt.datetime) -> str:
    """``value`` as ISO 8601 text (microseconds only when not zero)."""
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
