"""Method arguments: their declared signature, and checking what a client sent.

A call whose arguments do not fit is answered Bad_InvalidArgument (or Bad_ArgumentsMissing,
Bad_TooManyArguments) with a result per input argument (OPC UA Part 4, 5.11.2.2): the
offending ones carry their own code (Bad_TypeMismatch, Bad_OutOfRange, Bad_InvalidArgument)
and a diagnostic naming the argument and saying why, the others Good. Pure: the values come
in as plain Python (the server edge unwraps asyncua's Variants) and the answer goes out as
status codes (`refusal`), which the edge wraps again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adapters.opcua.codec.status import Status
from adapters.opcua.codec.values import Dt, Value

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
    code: Status = field(default=Status.BAD_INVALID_ARGUMENT)

    def __str__(self) -> str:
        return self.detail


def _double(spec: ArgumentSpec, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError((spec.name,), f"{spec.name} must be a Double",
                            Status.BAD_TYPE_MISMATCH)
    return float(value)


def _uint32(spec: ArgumentSpec, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError((spec.name,), f"{spec.name} must be a UInt32",
                            Status.BAD_TYPE_MISMATCH)
    if isinstance(value, float) and not value.is_integer():
        raise ArgumentError((spec.name,), f"{spec.name} must be a whole number",
                            Status.BAD_TYPE_MISMATCH)
    if not 0 <= value <= _UINT32_MAX:
        raise ArgumentError((spec.name,), f"{spec.name} must be between 0 and {_UINT32_MAX}",
                            Status.BAD_OUT_OF_RANGE)
    return int(value)


def _string(spec: ArgumentSpec, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ArgumentError((spec.name,), f"{spec.name} must be a String",
                            Status.BAD_TYPE_MISMATCH)
    return value


def _bytes(spec: ArgumentSpec, value: object) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, bytes | bytearray):
        raise ArgumentError((spec.name,), f"{spec.name} must be a ByteString",
                            Status.BAD_TYPE_MISMATCH)
    return bytes(value)


# Codes that describe one argument; the call itself then answers Bad_InvalidArgument.
_PER_ARGUMENT = frozenset({Status.BAD_INVALID_ARGUMENT, Status.BAD_TYPE_MISMATCH,
                           Status.BAD_OUT_OF_RANGE})
_DECODERS: dict[Dt, Callable[[ArgumentSpec, object], Value]] = {
    Dt.DOUBLE: _double, Dt.UINT32: _uint32, Dt.STRING: _string, Dt.LOCALIZEDTEXT: _string,
    Dt.BYTESTRING: _bytes}


def decode_arguments(method: MethodSpec, raw: Sequence[object]) -> dict[str, Value]:
    """The call's input arguments by name, each checked against its declared type.

    Raises ArgumentError: too few (Bad_ArgumentsMissing), too many (Bad_TooManyArguments),
    or one that is not of its declared type (Bad_TypeMismatch / Bad_OutOfRange)."""
    names = tuple(spec.name for spec in method.inputs)
    if len(raw) < len(names):
        missing = names[len(raw):]
        raise ArgumentError(missing, f"missing argument(s): {', '.join(missing)}",
                            Status.BAD_ARGUMENTS_MISSING)
    if len(raw) > len(names):
        raise ArgumentError((), f"{method.name} takes {len(names)} arguments, not {len(raw)}",
                            Status.BAD_TOO_MANY_ARGUMENTS)
    return {spec.name: _DECODERS[spec.dtype](spec, value)
            for spec, value in zip(method.inputs, raw, strict=True)}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused call: its status, and per argument given a status and a diagnostic."""

    status: Status
    results: tuple[Status, ...]
    diagnostics: tuple[str | None, ...]


def refusal(method: MethodSpec, error: ArgumentError, given: int) -> Refusal:
    per_argument = error.code in _PER_ARGUMENT
    named = set(error.arguments)
    specs = method.inputs[:given]
    return Refusal(
        Status.BAD_INVALID_ARGUMENT if per_argument else error.code,
        tuple(error.code if spec.name in named else Status.GOOD for spec in specs),
        tuple(error.detail if spec.name in named else None for spec in specs))
