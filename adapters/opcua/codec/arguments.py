"""Method arguments on the wire: their declared signature, and checking what a client sent.

A call whose arguments do not fit is answered Bad_InvalidArgument (or Bad_TypeMismatch,
Bad_OutOfRange) with a result per input argument (OPC UA Part 4, 5.11.2.2): the offending
ones carry the bad code and a diagnostic naming the argument and saying why, the others Good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.codec.values import Dt, Value, status

_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class ArgumentSpec:
    name: str
    dtype: Dt
    description: str


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    description: str
    inputs: tuple[ArgumentSpec, ...]
    outputs: tuple[ArgumentSpec, ...]


@dataclass(slots=True)
class ArgumentError(Exception):
    """Arguments (by name) that a call cannot take, the status code to answer and why."""

    arguments: tuple[str, ...]
    detail: str
    code: int = field(default=StatusCodes.BadInvalidArgument)

    def __str__(self) -> str:
        return self.detail


def _double(spec: ArgumentSpec, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError((spec.name,), f"{spec.name} must be a Double",
                            StatusCodes.BadTypeMismatch)
    return float(value)


def _uint32(spec: ArgumentSpec, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError((spec.name,), f"{spec.name} must be a UInt32",
                            StatusCodes.BadTypeMismatch)
    if isinstance(value, float) and not value.is_integer():
        raise ArgumentError((spec.name,), f"{spec.name} must be a whole number",
                            StatusCodes.BadTypeMismatch)
    if not 0 <= value <= _UINT32_MAX:
        raise ArgumentError((spec.name,), f"{spec.name} must be between 0 and {_UINT32_MAX}",
                            StatusCodes.BadOutOfRange)
    return int(value)


def _string(spec: ArgumentSpec, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if not isinstance(value, str):
        raise ArgumentError((spec.name,), f"{spec.name} must be a String",
                            StatusCodes.BadTypeMismatch)
    return value


def _bytes(spec: ArgumentSpec, value: object) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, bytes | bytearray):
        raise ArgumentError((spec.name,), f"{spec.name} must be a ByteString",
                            StatusCodes.BadTypeMismatch)
    return bytes(value)


# Codes that describe one argument; the call itself then answers Bad_InvalidArgument.
_PER_ARGUMENT = frozenset({StatusCodes.BadInvalidArgument, StatusCodes.BadTypeMismatch,
                           StatusCodes.BadOutOfRange})
_DECODERS: dict[Dt, Callable[[ArgumentSpec, object], Value]] = {
    Dt.DOUBLE: _double, Dt.UINT32: _uint32, Dt.STRING: _string, Dt.LOCALIZEDTEXT: _string,
    Dt.BYTESTRING: _bytes}


def decode_arguments(method: MethodSpec, raw: Sequence[object]) -> dict[str, Value]:
    """The call's input arguments by name, each converted to its declared type.

    Raises ArgumentError: too few (Bad_ArgumentsMissing), too many (Bad_TooManyArguments),
    or one that is not of its declared type (Bad_TypeMismatch / Bad_OutOfRange)."""
    names = tuple(spec.name for spec in method.inputs)
    if len(raw) < len(names):
        missing = names[len(raw):]
        raise ArgumentError(missing, f"missing argument(s): {', '.join(missing)}",
                            StatusCodes.BadArgumentsMissing)
    if len(raw) > len(names):
        raise ArgumentError((), f"{method.name} takes {len(names)} arguments, not {len(raw)}",
                            StatusCodes.BadTooManyArguments)
    out: dict[str, Value] = {}
    for spec, item in zip(method.inputs, raw, strict=True):
        given = item.Value if isinstance(item, ua.Variant) else item
        out[spec.name] = _DECODERS[spec.dtype](spec, given)
    return out


def refusal(method: MethodSpec, error: ArgumentError, given: int) -> ua.CallMethodResult:
    """The CallMethodResult for `error`: the call's status, and one result per argument given
    (the named ones bad, with a diagnostic saying why; the others Good)."""
    result = ua.CallMethodResult()
    per_argument = error.code in _PER_ARGUMENT
    result.StatusCode = status(StatusCodes.BadInvalidArgument if per_argument else error.code)
    named = set(error.arguments)
    specs = method.inputs[:given]
    result.InputArgumentResults = [
        status(error.code) if spec.name in named else status(StatusCodes.Good) for spec in specs]
    result.InputArgumentDiagnosticInfos = [
        ua.DiagnosticInfo(AdditionalInfo=cast("ua.String", error.detail)) if spec.name in named
        else ua.DiagnosticInfo() for spec in specs]
    return result
