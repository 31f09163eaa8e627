"""OpenADR 3.0.1 bodies (components/schemas/*): pure, no I/O.

In 3.0.1 a request body is the object itself; the VTN-provisioned properties (id,
createdDateTime, modificationDateTime, objectType) may be present and are checked, then
replaced by the VTN's own values. Targets are valuesMaps, not strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Tag

from adapters.openadr3.codec.common import (
    AnyUri,
    DateTime,
    Duration,
    EventPayloadDescriptor301,
    Int32,
    IntervalPeriod301,
    Name128,
    NonNegative,
    NullIsAbsent,
    ObjectID,
    ObjectType,
    ReportPayloadDescriptor301,
    ValuesMap,
    Wire,
)

Targets = list[ValuesMap] | None
Operation = Literal["GET", "POST", "PUT", "DELETE", "READ", "CREATE", "UPDATE"]


def _program_descriptions(items: list[Any] | None) -> list[Any] | None:
    if items is None:
        return None
    return [
        ProgramDescription.model_validate(i).wire() if isinstance(i, dict) else i for i in items
    ]


class ProgramDescription(Wire):
    URL: AnyUri


class Metadata(Wire):
    """VTN-provisioned properties a 3.0.1 client may echo back; checked, then replaced."""

    id: Annotated[ObjectID | None, NullIsAbsent] = None
    createdDateTime: Annotated[DateTime | None, NullIsAbsent] = None
    modificationDateTime: Annotated[DateTime | None, NullIsAbsent] = None


class Interval(Wire):
    id: Int32
    intervalPeriod: Annotated[IntervalPeriod301 | None, NullIsAbsent] = None
    payloads: list[ValuesMap]


class ReportDescriptor(Wire):
    payloadType: Name128
    readingType: str | None = None
    units: str | None = None
    targets: Targets = None
    aggregate: Annotated[bool | None, NullIsAbsent] = None
    startInterval: Annotated[Int32 | None, NullIsAbsent] = None
    numIntervals: Annotated[Int32 | None, NullIsAbsent] = None
    historical: Annotated[bool | None, NullIsAbsent] = None
    frequency: Annotated[Int32 | None, NullIsAbsent] = None
    repeat: Annotated[Int32 | None, NullIsAbsent] = None


REPORT_ONLY = ("readingType", "accuracy", "confidence")


def _descriptor_kind(value: Any) -> str:
    """objectType says which descriptor it is; without it (optional in 3.0.1), fields only
    a report descriptor has decide, so that they are checked rather than dropped."""
    if isinstance(value, ReportPayloadDescriptor301):  # (when serialising a validated body)
        return "report"
    if not isinstance(value, dict):
        return "event"
    kind = value.get("objectType")
    if kind == "REPORT_PAYLOAD_DESCRIPTOR":
        return "report"
    if kind is None and any(k in value for k in REPORT_ONLY):
        return "report"
    return "event"


AnyPayloadDescriptor = Annotated[
    Annotated[EventPayloadDescriptor301, Tag("event")]
    | Annotated[ReportPayloadDescriptor301, Tag("report")],
    Discriminator(_descriptor_kind),
]


class Program(Metadata):
    objectType: Annotated[Literal["PROGRAM"] | None, NullIsAbsent] = None
    programName: Name128
    programLongName: str | None = None
    retailerName: str | None = None
    retailerLongName: str | None = None
    programType: str | None = None
    country: str | None = None
    principalSubdivision: str | None = None
    timeZoneOffset: Annotated[Duration | None, NullIsAbsent] = None
    intervalPeriod: Annotated[IntervalPeriod301 | None, NullIsAbsent] = None
    programDescriptions: Annotated[list[Any] | None, AfterValidator(_program_descriptions)] = None
    bindingEvents: bool | None = None
    localPrice: bool | None = None
    payloadDescriptors: list[AnyPayloadDescriptor] | None = None
    targets: Targets = None


class ReportResource(Wire):
    resourceName: Name128
    intervalPeriod: Annotated[IntervalPeriod301 | None, NullIsAbsent] = None
    intervals: list[Interval]


class Report(Metadata):
    objectType: Annotated[Literal["REPORT"] | None, NullIsAbsent] = None
    programID: ObjectID
    eventID: ObjectID
    clientName: Name128
    reportName: str | None = None
    payloadDescriptors: list[ReportPayloadDescriptor301] | None = None
    resources: list[ReportResource]


class Event(Metadata):
    objectType: Annotated[Literal["EVENT"] | None, NullIsAbsent] = None
    programID: ObjectID
    eventName: str | None = None
    priority: NonNegative | None = None
    targets: Targets = None
    reportDescriptors: list[ReportDescriptor] | None = None
    payloadDescriptors: list[EventPayloadDescriptor301] | None = None
    intervalPeriod: Annotated[IntervalPeriod301 | None, NullIsAbsent] = None
    intervals: list[Interval]


class ObjectOperation(Wire):
    objects: list[ObjectType]
    operations: list[Operation]
    callbackUrl: AnyUri
    bearerToken: str | None = None


class Subscription(Metadata):
    objectType: Annotated[Literal["SUBSCRIPTION"] | None, NullIsAbsent] = None
    clientName: Name128
    programID: ObjectID
    objectOperations: list[ObjectOperation]
    targets: Targets = None


class Resource(Metadata):
    objectType: Annotated[Literal["RESOURCE"] | None, NullIsAbsent] = None
    resourceName: Name128
    venID: Annotated[ObjectID | None, NullIsAbsent] = None
    attributes: list[ValuesMap] | None = None
    targets: Targets = None


class Ven(Metadata):
    objectType: Annotated[Literal["VEN"] | None, NullIsAbsent] = None
    venName: Name128
    attributes: list[ValuesMap] | None = None
    targets: Targets = None
    resources: list[Resource] | None = None


METADATA_FIELDS = frozenset({"id", "createdDateTime", "modificationDateTime", "objectType"})
