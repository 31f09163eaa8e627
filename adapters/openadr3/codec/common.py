"""Wire building blocks shared by OpenADR 3.0.1 and 3.1.0: pure, no I/O.

Field names are the specification's own (camelCase). Validation is strict, as the
specification's JSON schema is: no string-to-number coercion, explicit nulls only where a
property is `nullable: true`, timestamps RFC 3339 *with* a zone, durations ISO 8601.
Properties the specification does not name are allowed (the schemas do not forbid them) and
dropped.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    model_validator,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$"
)
# The specification's own duration pattern (components/schemas/duration).
DURATION_PATTERN = (
    r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
# RFC 3986: a scheme, then characters a URI may carry (no spaces, controls or <>"{}|\^`).
_DURATION = re.compile(DURATION_PATTERN)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year == 0:  # proleptic Gregorian: year 0 is a leap year
        return 29
    return calendar.monthrange(year, month)[1]


def check_rfc3339(value: str) -> str:
    """Accept an RFC 3339 date-time with a zone; keep the client's spelling."""
    match = _RFC3339.match(value)
    if not match:
        raise ValueError("must be an RFC 3339 date-time with a time zone")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        raise ValueError("date out of range")
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError("time out of range")
    if match.group(9) and (int(match.group(10)) > 23 or int(match.group(11)) > 59):
        raise ValueError("zone offset out of range")
    return value


def check_uri(value: str) -> str:
    if not _URI.match(value) or _PCT.search(value):
        raise ValueError("must be an absolute URI")
    return value


def check_duration(value: str) -> str:
    # Python's re: pydantic's Rust regex engine has no look-ahead, which the pattern uses.
    if not _DURATION.match(value):
        raise ValueError("must be an ISO 8601 duration")
    return value


class _NullIsAbsent:
    """Marks an optional property the schema does not make nullable: an explicit null is
    taken as absent (widely used clients send `"intervalPeriod": null`), never stored."""

    def __repr__(self) -> str:
        return "NullIsAbsent"


NullIsAbsent = _NullIsAbsent()

ObjectID = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]*$")
]
Name128 = Annotated[str, StringConstraints(min_length=1, max_length=128)]
DateTime = Annotated[str, AfterValidator(check_rfc3339)]
Duration = Annotated[str, AfterValidator(check_duration)]


def _integer_in(low: float, high: float) -> Callable[[float], float]:
    """A JSON Schema integer check: 3 and 3.0 alike (never a bool), within [low, high]."""

    def check(value: float) -> float:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be an integer")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return check


Int32 = Annotated[int | float, AfterValidator(_integer_in(INT32_MIN, INT32_MAX))]
Percent = Annotated[int | float, AfterValidator(_integer_in(0, 100))]
NonNegative = Annotated[int | float, AfterValidator(_integer_in(0, float("inf")))]
Uri = Annotated[str, StringConstraints(min_length=2, max_length=8000), AfterValidator(check_uri)]
AnyUri = Annotated[str, AfterValidator(check_uri)]
ObjectType = Literal["PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"]


class Wire(BaseModel):
    """Base of every wire model: strict types, unknown properties ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_absent_nulls(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        absent = _null_is_absent(cls)
        if not any(data.get(name, 0) is None for name in absent):
            return data
        return {k: v for k, v in data.items() if v is not None or k not in absent}

    def wire(self) -> dict[str, Any]:
        """JSON-ready dict of what the client sent (explicit nulls kept, absent left out)."""
        return self.model_dump(mode="json", exclude_unset=True)


@functools.cache
def _null_is_absent(model: type[BaseModel]) -> frozenset[str]:
    """The properties of `model` whose explicit null means absent (once per class)."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if any(m is NullIsAbsent for m in info.metadata)
    )


class Point(Wire):
    x: float
    y: float


# bool before numbers: in strict mode True is not an int, and order decides the error text.
Value = bool | int | float | str | Point


class ValuesMap(Wire):
    type: Name128
    values: list[Value]


class IntervalPeriod31(Wire):
    start: Annotated[DateTime | None, NullIsAbsent] = None
    duration: Annotated[Duration | None, NullIsAbsent] = None
    randomizeStart: Annotated[Duration | None, NullIsAbsent] = None


class IntervalPeriod301(Wire):
    start: DateTime
    duration: Annotated[Duration | None, NullIsAbsent] = None
    randomizeStart: Annotated[Duration | None, NullIsAbsent] = None


class EventPayloadDescriptor301(Wire):
    objectType: Annotated[Literal["EVENT_PAYLOAD_DESCRIPTOR"] | None, NullIsAbsent] = None
    payloadType: Name128
    units: str | None = None
    currency: str | None = None


class ReportPayloadDescriptor301(Wire):
    objectType: Annotated[Literal["REPORT_PAYLOAD_DESCRIPTOR"] | None, NullIsAbsent] = None
    payloadType: Name128
    readingType: str | None = None
    units: str | None = None
    accuracy: float | None = None
    confidence: Percent | None = None


Units = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class EventPayloadDescriptor31(Wire):
    objectType: Literal["EVENT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name128
    units: Units | None = None
    currency: str | None = None


class ReportPayloadDescriptor31(Wire):
    objectType: Literal["REPORT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name128
    readingType: Name128 | None = None
    units: Units | None = None
    accuracy: float | None = None
    confidence: Percent | None = None


class ProgramDescription(Wire):
    """programDescriptions items: the schema requires URL only when the item is an object."""

    URL: Uri


def check_program_descriptions(items: list[Any] | None) -> list[Any] | None:
    if items is None:
        return None
    return [
        ProgramDescription.model_validate(i).wire() if isinstance(i, dict) else i for i in items
    ]


class ClientCredentialRequest(Wire):
    """POST /auth/token form fields (RFC 6749 names)."""

    grant_type: Literal["client_credentials"]
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    scope: Annotated[str, StringConstraints(max_length=4096)] | None = None
