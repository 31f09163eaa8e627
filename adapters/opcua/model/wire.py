"""asyncua's types for the model's values: DataValue, NodeId, StatusCode, call results.

The rules (which status a value carries, which arguments a call may take) are `codec/`'s;
this makes asyncua's objects of them, at the server edge.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.codec.arguments import Refusal
from adapters.opcua.codec.values import Dt, Quality, Value, status_of

DATA_TYPE_IDS: dict[Dt, ua.NodeId] = {
    dt: ua.NodeId(cast("ua.Int32", getattr(ObjectIds, dt.value))) for dt in Dt}
VARIANT_TYPES: dict[Dt, ua.VariantType] = {dt: getattr(ua.VariantType, dt.value) for dt in Dt}

_STATUSES: dict[int, ua.StatusCode] = {}  # StatusCode is immutable: one of each is enough


def status(code: int) -> ua.StatusCode:
    found = _STATUSES.get(code)
    if found is None:
        found = _STATUSES[code] = ua.StatusCode(ua.UInt32(code))
    return found


def status_named(name: str) -> ua.StatusCode:
    """A status code by its name in `ua.StatusCodes` (e.g. "BadInvalidArgument")."""
    return status(int(getattr(StatusCodes, name)))


def node_id(identifier: str | int = 0, ns: int = 0) -> ua.NodeId:
    """A NodeId (asyncua's hints ask for its own int/str subclasses; plain ones are what it
    makes itself, and compare and hash the same)."""
    return ua.NodeId(cast("ua.Int32 | ua.String", identifier), cast("ua.Int16", ns))


def data_value(value: Value, variant: ua.VariantType, quality: Quality,
               source_time: datetime | None, now: datetime) -> ua.DataValue:
    """The DataValue a variable holds. A null value is a null Variant (never 0, never "")."""
    held = ua.Variant(None) if value is None else ua.Variant(value, variant)
    return ua.DataValue(held, StatusCode=status(status_of(value, quality)),
                        SourceTimestamp=cast("ua.DateTime", source_time or now),
                        ServerTimestamp=cast("ua.DateTime", now))


def plain(argument: object) -> object:
    """A method argument as plain Python (a Variant's value, a LocalizedText's text)."""
    value = argument.Value if isinstance(argument, ua.Variant) else argument
    return value.Text if isinstance(value, ua.LocalizedText) else value


def call_refused(refused: Refusal) -> ua.CallMethodResult:
    result = ua.CallMethodResult()
    result.StatusCode = status(refused.status)
    result.InputArgumentResults = [status(code) for code in refused.results]
    result.InputArgumentDiagnosticInfos = [
        ua.DiagnosticInfo(AdditionalInfo=cast("ua.String", text)) if text
        else ua.DiagnosticInfo() for text in refused.diagnostics]
    return result


def call_status(code: int) -> ua.CallMethodResult:
    result = ua.CallMethodResult()
    result.StatusCode = status(code)
    return result
