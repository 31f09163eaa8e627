"""SunSpec point values <-> Modbus registers: types, "not implemented" markers, scale
factors, and the Modbus exception codes. Pure: no I/O, no core import (the simulators share it).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID = 0xFFFF
BASE_ADDRESSES = (40000, 0, 50000)
MAX_READ = 125  # registers in one read (Modbus limit)
MAX_WRITE = 123  # registers in one write (Modbus limit)

Raw = int | str | float | None  # None: "not implemented"


class ExceptionCode(IntEnum):
    """Modbus exception codes (the protocol's own error form)."""

    ILLEGAL_FUNCTION = 0x01  # also: Modbus/TCP Security "not authorised"
    ILLEGAL_ADDRESS = 0x02
    ILLEGAL_VALUE = 0x03
    DEVICE_FAILURE = 0x04
    DEVICE_BUSY = 0x06
    GATEWAY_NO_RESPONSE = 0x0B


class ModbusRefusal(Exception):
    """A request the device answers with a Modbus exception code."""

    def __init__(self, code: ExceptionCode, detail: str = "") -> None:
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TypeInfo:
    size: int  # registers, 0 = given by the definition (strings)
    signed: bool
    not_impl: int | None  # the "not implemented" marker, as an unsigned register value


# SunSpec point types. Accumulators have no "not implemented" marker (0 means none counted).
TYPES: Mapping[str, TypeInfo] = {
    "int16": TypeInfo(1, True, 0x8000),
    "sunssf": TypeInfo(1, True, 0x8000),
    "pad": TypeInfo(1, False, 0x8000),
    "uint16": TypeInfo(1, False, 0xFFFF),
    "enum16": TypeInfo(1, False, 0xFFFF),
    "bitfield16": TypeInfo(1, False, 0xFFFF),
    "count": TypeInfo(1, False, 0xFFFF),
    "acc16": TypeInfo(1, False, None),
    "int32": TypeInfo(2, True, 0x8000_0000),
    "uint32": TypeInfo(2, False, 0xFFFF_FFFF),
    "enum32": TypeInfo(2, False, 0xFFFF_FFFF),
    "bitfield32": TypeInfo(2, False, 0xFFFF_FFFF),
    "ipaddr": TypeInfo(2, False, 0),
    "acc32": TypeInfo(2, False, None),
    "int64": TypeInfo(4, True, 0x8000_0000_0000_0000),
    "uint64": TypeInfo(4, False, 0xFFFF_FFFF_FFFF_FFFF),
    "acc64": TypeInfo(4, False, None),
    "float32": TypeInfo(2, False, 0x7FC0_0000),
    "string": TypeInfo(0, False, None),
}


class CodecError(ValueError):
    """A value does not fit its point, or registers do not fit a model."""


@dataclass(frozen=True, slots=True)
class PointSpec:
    path: str
    offset: int  # registers from the model's ID register
    type: str
    size: int
    sf: str | int | None  # path of the scale-factor point, or a fixed exponent
    writable: bool
    mandatory: bool
    static: bool
    symbols: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_scaled(self) -> bool:
        return self.sf is not None


def apply_sf(raw: int | float, sf: int) -> float:
    return raw * 10.0**sf


# -- values <-> registers ---------------------------------------------------------------------


def decode_point(spec: PointSpec, regs: Sequence[int]) -> Raw:
    """Raw value of one point from its registers; None when it holds "not implemented"."""
    info = TYPES[spec.type]
    if spec.type == "string":
        data = b"".join(r.to_bytes(2, "big") for r in regs)
        text = data.rstrip(b"\0").decode("utf-8", errors="replace")
        return text or None
    value = 0
    for reg in regs:
        value = (value << 16) | reg
    if info.not_impl is not None and value == info.not_impl:
        return None
    if spec.type == "float32":
        (number,) = struct.unpack(">f", value.to_bytes(4, "big"))
        return float(number)
    if info.signed and value >= 1 << (16 * spec.size - 1):
        value -= 1 << (16 * spec.size)
    return value


def encode_point(spec: PointSpec, raw: Raw) -> list[int]:
    """Registers for one raw value; None encodes "not implemented"."""
    info = TYPES[spec.type]
    if spec.type == "string":
        data = (raw or "").encode() if isinstance(raw, str | type(None)) else b""
        if len(data) > 2 * spec.size:
            raise CodecError(f"{spec.path}: string longer than {2 * spec.size} bytes")
        data = data.ljust(2 * spec.size, b"\0")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if raw is None:
        value = info.not_impl or 0
    elif spec.type == "float32":
        value = int.from_bytes(struct.pack(">f", float(raw)), "big")
    else:
        value = _fit_int(spec, info, raw)
    return [(value >> (16 * (spec.size - 1 - i))) & 0xFFFF for i in range(spec.size)]


def _fit_int(spec: PointSpec, info: TypeInfo, raw: Raw) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise CodecError(f"{spec.path}: {type(raw).__name__} is not an integer")
    bits = 16 * spec.size
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if info.signed else (0, (1 << bits) - 1)
    if not low <= raw <= high or (info.not_impl is not None and raw % (1 << bits) == info.not_impl):
        raise CodecError(f"{spec.path}: {raw} does not fit {spec.type}")
    return raw % (1 << bits)


def has_marker(regs: Sequence[int]) -> bool:
    return tuple(regs[:2]) == SUNS_MARKER


def clamp_raw(spec: PointSpec, raw: int) -> int:
    """Saturate an integer to what its point can hold (measurements never overflow a type)."""
    info = TYPES[spec.type]
    bits = 16 * spec.size
    if info.signed:  # the lowest value is the "not implemented" marker
        low, high = -(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1
    else:
        low, high = 0, (1 << bits) - 2
    return min(max(raw, low), high)


