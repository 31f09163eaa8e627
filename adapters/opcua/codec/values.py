"""Variable values on the wire: the data types the model uses, and each value's status.

A variable's status says how far a SCADA client may trust it (OPC UA Part 4, 7.39; Part 8,
6.3.2). The model uses four, chosen so that a healthy DER never reads Bad:

- ``Good``: the value is known and current;
- ``Good_NoData`` (value null): nothing is in force by design - no setpoint, no generation
  cap, an open-ended interval, an acknowledgement that names no instruction;
- ``Uncertain_InitialValue`` (value null): not known yet - a measurement before the DER's
  first reading, an acknowledgement before the DER's first one (Part 8: "an initial value for
  a variable that normally receives its value from another variable");
- ``Uncertain_NoCommunicationLastUsableValue`` with the last value, or ``Bad_NoCommunication``
  when there never was one: the gateway lost communication with the DER (Part 8). Only
  measurements, which come from the DER, go stale; controls are the gateway's own truth.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum, StrEnum
from typing import cast

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

# What a variable may hold; None means "no value" (its status says why).
Value = float | bool | str | int | bytes | datetime | list[str] | None


class Dt(StrEnum):
    """The OPC UA built-in data types the model uses (names of `ua.VariantType`)."""

    DOUBLE = "Double"
    BOOLEAN = "Boolean"
    STRING = "String"
    DATETIME = "DateTime"
    UINT32 = "UInt32"
    BYTESTRING = "ByteString"
    LOCALIZEDTEXT = "LocalizedText"


DATA_TYPE_IDS: dict[Dt, ua.NodeId] = {dt: ua.NodeId(getattr(ObjectIds, dt.value)) for dt in Dt}
VARIANT_TYPES: dict[Dt, ua.VariantType] = {dt: getattr(ua.VariantType, dt.value) for dt in Dt}


class Quality(Enum):
    """Why a variable holds what it holds (see the module docstring)."""

    CURRENT = "current"  # Good; a None value is Good_NoData
    INITIAL = "initial"  # not known yet: Uncertain_InitialValue
    NO_COMMUNICATION = "no_communication"  # the DER is unreachable: last value, Uncertain


_STATUSES: dict[int, ua.StatusCode] = {}  # StatusCode is immutable: one of each is enough


def status(code: int) -> ua.StatusCode:
    found = _STATUSES.get(code)
    if found is None:
        found = _STATUSES[code] = ua.StatusCode(ua.UInt32(code))
    return found


def status_named(name: str) -> ua.StatusCode:
    """A status code by its name in `ua.StatusCodes` (e.g. "BadInvalidArgument")."""
    return status(int(getattr(StatusCodes, name)))


_NULL_STATUS: dict[Quality, int] = {
    Quality.CURRENT: StatusCodes.GoodNoData,
    Quality.INITIAL: StatusCodes.UncertainInitialValue,
    Quality.NO_COMMUNICATION: StatusCodes.BadNoCommunication,
}
_VALUE_STATUS: dict[Quality, int] = {
    Quality.CURRENT: StatusCodes.Good,
    Quality.INITIAL: StatusCodes.Good,  # a value is known after all
    Quality.NO_COMMUNICATION: StatusCodes.UncertainNoCommunicationLastUsableValue,
}


def status_of(value: Value, quality: Quality) -> int:
    """The status code a variable holding `value` with `quality` carries."""
    return (_NULL_STATUS if value is None else _VALUE_STATUS)[quality]


def data_value(value: Value, variant: ua.VariantType, quality: Quality,
               source_time: datetime | None, now: datetime) -> ua.DataValue:
    """The DataValue a variable holds. A null value is a null Variant (never 0, never "")."""
    code = status_of(value, quality)
    held = ua.Variant(None) if value is None else ua.Variant(value, variant)
    return ua.DataValue(held, StatusCode=status(code),
                        SourceTimestamp=cast("ua.DateTime", source_time or now),
                        ServerTimestamp=cast("ua.DateTime", now))


def node_id(identifier: str | int = 0, ns: int = 0) -> ua.NodeId:
    """A NodeId (asyncua's hints ask for its own int/str subclasses; plain ones are what it
    makes itself, and compare and hash the same)."""
    return ua.NodeId(cast("ua.Int32 | ua.String", identifier), cast("ua.Int16", ns))
