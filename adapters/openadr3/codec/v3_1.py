"""OpenADR 3.1.0 request bodies (components/schemas/*Request): pure, no I/O."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from adapters.openadr3.codec.common import (
    DateTime,
    Duration,
    EventPayloadDescriptor31,
    Int32,
    IntervalPeriod31,
    Name128,
    NonNegative,
    NullIsAbsent,
    ObjectID,
    ObjectType,
    ReportPayloadDescriptor31,
    Uri,
    ValuesMap,
    Wire,
    check_program_descriptions,
)

Target = Name128
Targets = list[Target] | None
Operation = Literal["READ", "CREATE", "UPDATE", "DELETE", "GET", "POST", "PUT"]


class Interval(Wire):
    id: Int32
    intervalPeriod: Annotated[IntervalPeriod31 | None, NullIsAbsent] = None
    payloads: list[ValuesMap]


class ReportDescriptor(Wire):
    payloadType: Name128
    readingType: Name128 | None = None
    units: Name128 | None = None
    targets: Targets = None
    aggregate: Annotated[bool | None, NullIsAbsent] = None
    startInterval: Annotated[Int32 | None, NullIsAbsent] = None
    numIntervals: Annotated[Int32 | None, NullIsAbsent] = None
    historical: Annotated[bool | None, NullIsAbsent] = None
    frequency: Annotated[Int32 | None, NullIsAbsent] = None
    repeat: Annotated[Int32 | None, NullIsAbsent] = None
    reportIntervals: Annotated[
        Literal["INTERVALS", "SUB_INTERVALS", "OPEN_INTERVALS"] | None, NullIsAbsent
    ] = None


AnyPayloadDescriptor = Annotated[
    EventPayloadDescriptor31 | ReportPayloadDescriptor31, Field(discriminator="objectType")
]


class ProgramRequest(Wire):
    programName: Name128
    intervalPeriod: Annotated[IntervalPeriod31 | None, NullIsAbsent] = None
    programDescriptions: Annotated[list[Any] | None, AfterValidator(check_program_descriptions)] = (
        None
    )
    payloadDescriptors: list[AnyPayloadDescriptor] | None = None
    attributes: list[ValuesMap] | None = None
    targets: Targets = None


class EventRequest(Wire):
    programID: ObjectID
    eventName: str | None = None
    duration: Annotated[Duration | None, NullIsAbsent] = None
    priority: NonNegative | None = None
    targets: Targets = None
    reportDescriptors: list[ReportDescriptor] | None = None
    payloadDescriptors: list[EventPayloadDescriptor31] | None = None
    intervalPeriod: Annotated[IntervalPeriod31 | None, NullIsAbsent] = None
    intervals: Annotated[list[Interval] | None, NullIsAbsent] = None


class ReportResource(Wire):
    resourceName: Name128
    intervalPeriod: Annotated[IntervalPeriod31 | None, NullIsAbsent] = None
    intervals: list[Interval]


class ReportRequest(Wire):
    eventID: ObjectID
    clientName: Name128
    reportName: str | None = None
    payloadDescriptors: list[ReportPayloadDescriptor31] | None = None
    resources: list[ReportResource]


class ObjectOperation(Wire):
    objects: list[ObjectType]
    # The specification names CRUD words; some clients send HTTP verbs: both are accepted and
    # echoed back as sent (docs/openadr3.md).
    operations: list[Operation]
    callbackUrl: Uri
    bearerToken: str | None = None


class SubscriptionRequest(Wire):
    clientName: Name128
    programID: Annotated[ObjectID | None, NullIsAbsent] = None
    objectOperations: list[ObjectOperation]
    targets: Targets = None


class BlVenRequest(Wire):
    objectType: Literal["BL_VEN_REQUEST"]
    clientID: Name128
    targets: Targets = None
    venName: Name128
    attributes: list[ValuesMap] | None = None


class VenVenRequest(Wire):
    objectType: Literal["VEN_VEN_REQUEST"]
    venName: Name128
    attributes: list[ValuesMap] | None = None
    # Not in the VEN request schema: read so that a VEN sending targets other than those
    # granted is refused (403), not silently ignored.
    targets: Targets = None


VenRequest = Annotated[BlVenRequest | VenVenRequest, Field(discriminator="objectType")]


class BlResourceRequest(Wire):
    objectType: Literal["BL_RESOURCE_REQUEST"]
    clientID: Name128
    targets: Targets = None
    resourceName: Name128
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


class VenResourceRequest(Wire):
    objectType: Literal["VEN_RESOURCE_REQUEST"]
    resourceName: Name128
    venID: ObjectID
    attributes: list[ValuesMap] | None = None
    targets: Targets = None  # read only to refuse foreign targets (VenVenRequest)


ResourceRequest = Annotated[
    BlResourceRequest | VenResourceRequest, Field(discriminator="objectType")
]

__all__ = [
    "BlResourceRequest",
    "BlVenRequest",
    "DateTime",
    "EventRequest",
    "ObjectOperation",
    "ProgramRequest",
    "ReportRequest",
    "ResourceRequest",
    "SubscriptionRequest",
    "VenRequest",
    "VenResourceRequest",
    "VenVenRequest",
]
