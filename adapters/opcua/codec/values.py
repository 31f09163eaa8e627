"""Variable values: the data types the model uses, and the status each value carries.

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

Pure: the server edge (`model/wire.py`) makes asyncua's DataValues of these.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum, StrEnum

from adapters.opcua.codec.status import Status

# What a variable may hold; None means "no value" (its status says why).
Value = float | bool | str | int | bytes | datetime | list[str] | None


class Dt(StrEnum):
    """The OPC UA built-in data types the model uses (names of the built-in types)."""

    DOUBLE = "Double"
    BOOLEAN = "Boolean"
    STRING = "String"
    DATETIME = "DateTime"
    UINT32 = "UInt32"
    BYTESTRING = "ByteString"
    LOCALIZEDTEXT = "LocalizedText"


class Quality(Enum):
    """Why a variable holds what it holds (see the module docstring)."""

    CURRENT = "current"  # Good; a None value is Good_NoData
    INITIAL = "initial"  # not known yet: Uncertain_InitialValue
    NO_COMMUNICATION = "no_communication"  # the DER is unreachable: last value, Uncertain


_NULL_STATUS: dict[Quality, Status] = {
    Quality.CURRENT: Status.GOOD_NO_DATA,
    Quality.INITIAL: Status.UNCERTAIN_INITIAL_VALUE,
    Quality.NO_COMMUNICATION: Status.BAD_NO_COMMUNICATION,
}
_VALUE_STATUS: dict[Quality, Status] = {
    Quality.CURRENT: Status.GOOD,
    Quality.INITIAL: Status.GOOD,  # a value is known after all
    Quality.NO_COMMUNICATION: Status.UNCERTAIN_NO_COMMUNICATION_LAST_USABLE_VALUE,
}


def status_of(value: Value, quality: Quality) -> Status:
    """The status code a variable holding `value` with `quality` carries."""
    return (_NULL_STATUS if value is None else _VALUE_STATUS)[quality]
