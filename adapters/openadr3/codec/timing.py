"""OpenADR timing: RFC 3339 instants and ISO 8601 durations to aware UTC datetimes.

`0001-01-01` (any time of day) as a start means "now"; a duration of `P9999Y` means "no end"
(User Guide, intervalPeriod). Calendar years and months are counted as 365 and 30 days.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from adapters.openadr3.codec.common import DURATION_PATTERN

_DURATION = re.compile(DURATION_PATTERN)
_FRACTION = re.compile(r"\.\d+")
INFINITE = "P9999Y"


def rfc3339(value: datetime) -> str:
    """An aware datetime as RFC 3339 in UTC, with "Z"."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_start(value: str | None, now: datetime) -> datetime:
    if value is None or value.startswith(("0001-01-01", "0000-")):
        return now
    text = value.replace("z", "Z").replace("t", "T").replace("Z", "+00:00")
    if text[17:19] == "60":  # a leap second: RFC 3339 allows it, Python does not
        text = text[:17] + "59" + text[19:]
    text = _FRACTION.sub(lambda m: m.group(0)[:7], text)  # Python keeps microseconds only
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"timestamp out of range: {value!r}") from None


def parse_duration(value: str | None) -> timedelta | None:
    """A duration as a timedelta; None for "no end" (P9999Y or anything too long)."""
    if value is None:
        return timedelta(0)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not an ISO 8601 duration: {value!r}")
    sign, years, months, dw, unit, hours, minutes, seconds = match.groups()
    days = int(dw or 0) * (7 if unit == "W" else 1)
    try:
        delta = timedelta(
            days=int(years or 0) * 365 + int(months or 0) * 30 + days,
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=float(seconds or 0),
        )
    except OverflowError:
        return None
    if delta >= timedelta(days=9999 * 365):
        return None
    return -delta if sign else delta


def format_duration(delta: timedelta | None) -> str:
    """A timedelta as an ISO 8601 duration (seconds precision); None is P9999Y."""
    if delta is None:
        return INFINITE
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if clock or not days:
        out += "T" + (clock or "0S")
    return out


def window(start: datetime, duration: timedelta | None) -> tuple[datetime, datetime | None]:
    """(start, end) with end None when open-ended or beyond the calendar."""
    if duration is None:
        return start, None
    try:
        return start, start + duration
    except OverflowError:
        return start, None
