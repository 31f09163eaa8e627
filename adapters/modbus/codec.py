"""SunSpec register layouts built from pysunspec2's shipped JSON model definitions: pure, no I/O.

Nothing here hand-writes a register map. A `ModelLayout` is computed from the model
definition (points, sizes, groups and their counts), and knows how to turn registers into raw
values, raw values into registers, and raw values into SI numbers through their scale factors.

Point paths: top-level points by name (``WMaxLimPct``), points of a group without a count by
``Group.Point`` (``PFWInj.PF``), points of a repeated group with a 0-based index
(``Crv[1].Pt[0].V``). The simulators share this codec; it imports nothing from the core.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from functools import cache
from types import MappingProxyType
from typing import Any

from sunspec2 import device as sunspec_device

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


@dataclass(frozen=True, slots=True)
class ModelLayout:
    model_id: int
    length: int  # L: registers after ID and L
    points: Mapping[str, PointSpec]

    @property
    def size(self) -> int:
        return self.length + 2

    def point(self, path: str) -> PointSpec:
        try:
            return self.points[path]
        except KeyError:
            raise CodecError(f"model {self.model_id} has no point {path}") from None

    def raw(self, regs: Sequence[int], path: str) -> Raw:
        spec = self.point(path)
        return decode_point(spec, regs[spec.offset : spec.offset + spec.size])

    def scale(self, regs: Sequence[int], spec: PointSpec) -> int:
        if isinstance(spec.sf, int):
            return spec.sf
        if spec.sf is None:
            return 0
        sf = self.raw(regs, spec.sf)
        if not isinstance(sf, int):
            raise CodecError(f"scale factor {spec.sf} of {spec.path} is not implemented")
        return sf

    def value(self, regs: Sequence[int], path: str) -> float | None:
        """The point in engineering units (raw x 10^SF), or None when not implemented."""
        spec = self.point(path)
        raw = decode_point(spec, regs[spec.offset : spec.offset + spec.size])
        if raw is None or isinstance(raw, str):
            return None
        return apply_sf(raw, self.scale(regs, spec)) if spec.is_scaled else float(raw)

    def encode_value(self, regs: Sequence[int], path: str, value: float) -> list[int]:
        """Registers for an engineering value, scaled with the SF currently in `regs`."""
        spec = self.point(path)
        sf = self.scale(regs, spec) if spec.is_scaled else 0
        return encode_point(spec, round(value / 10.0**sf))

    def points_in(self, start: int, count: int) -> list[PointSpec]:
        """The points overlapping registers [start, start+count) of this model."""
        end = start + count
        return [p for p in self.points.values() if p.offset < end and start < p.offset + p.size]


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
        return struct.unpack(">f", value.to_bytes(4, "big"))[0]
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


# -- layouts from the model definitions --------------------------------------------------------


@cache
def model_definition(model_id: int) -> Mapping[str, Any]:
    """pysunspec2's JSON definition of a model (read once per process; treat as read-only)."""
    return sunspec_device.get_model_def(model_id)


@cache
def count_points(model_id: int) -> tuple[str, ...]:
    """Names of the top-level points that give repeated groups their counts."""
    found: list[str] = []

    def walk(group: Mapping[str, Any]) -> None:
        for sub in group.get("groups", []):
            count = sub.get("count")
            if isinstance(count, str):
                found.append(count)
            walk(sub)

    walk(model_definition(model_id)["group"])
    return tuple(dict.fromkeys(found))


def build_layout(model_id: int, counts: Mapping[str, int] | None = None) -> ModelLayout:
    """The register layout of one model; `counts` sizes its repeated groups (default 1)."""
    wanted = set(count_points(model_id))
    key = tuple(sorted((k, v) for k, v in (counts or {}).items() if k in wanted))
    return _layout(model_id, key)


@cache
def _layout(model_id: int, counts: tuple[tuple[str, int], ...]) -> ModelLayout:
    """Layouts are immutable and shared: a fleet of 1,000 inverters builds each once."""
    builder = _LayoutBuilder(dict(counts))
    builder.group(model_definition(model_id)["group"], prefix="", scope=())
    return ModelLayout(model_id, builder.offset - 2, MappingProxyType(builder.resolved()))


def layout_from_registers(model_id: int, regs: Sequence[int]) -> ModelLayout:
    """The layout of a model image read from a device: counts come from its own points."""
    fixed = build_layout(model_id)
    counts: dict[str, int] = {}
    for name in count_points(model_id):
        raw = fixed.raw(regs, name)
        counts[name] = raw if isinstance(raw, int) else 1
    layout = build_layout(model_id, counts)
    if len(regs) >= 2 and regs[1] != layout.length:
        raise CodecError(f"model {model_id}: L={regs[1]} but the layout needs {layout.length}")
    return layout


class _LayoutBuilder:
    """Walks a model definition, laying points out in order, then resolves scale factors."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = counts
        self.offset = 0
        self.points: dict[str, PointSpec] = {}
        self.scopes: dict[str, tuple[str, ...]] = {}

    def group(self, gdef: Mapping[str, Any], prefix: str, scope: tuple[str, ...]) -> None:
        scope = (prefix, *scope)  # innermost group first, for scale-factor lookup
        for pdef in gdef.get("points", []):
            self.point(pdef, prefix, scope)
        for sub in gdef.get("groups", []):
            count = sub.get("count", 1)
            times = self.counts.get(count, 1) if isinstance(count, str) else int(count)
            repeated = isinstance(count, str) or times != 1
            for index in range(times):
                name = f"{sub['name']}[{index}]" if repeated else sub["name"]
                self.group(sub, f"{prefix}{name}.", scope)

    def point(self, pdef: Mapping[str, Any], prefix: str, scope: tuple[str, ...]) -> None:
        kind = pdef["type"]
        if kind not in TYPES:
            raise CodecError(f"point type {kind} is not supported")
        spec = PointSpec(
            path=prefix + pdef["name"],
            offset=self.offset,
            type=kind,
            size=int(pdef.get("size") or TYPES[kind].size),
            sf=pdef.get("sf"),
            writable=pdef.get("access") == "RW",
            mandatory=pdef.get("mandatory") == "M",
            static=pdef.get("static") == "S",
            symbols={s["name"]: int(s["value"]) for s in pdef.get("symbols", [])},
        )
        self.points[spec.path] = spec
        self.scopes[spec.path] = scope
        self.offset += spec.size

    def resolved(self) -> dict[str, PointSpec]:
        """Scale-factor names become point paths: the nearest enclosing group that has one."""
        out: dict[str, PointSpec] = {}
        for path, spec in self.points.items():
            out[path] = spec if spec.sf is None else replace(spec, sf=self._sf(spec, path))
        return out

    def _sf(self, spec: PointSpec, path: str) -> str | int:
        try:
            return int(spec.sf)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
        for prefix in self.scopes[path]:
            if prefix + str(spec.sf) in self.points:
                return prefix + str(spec.sf)
        raise CodecError(f"{path}: scale factor {spec.sf} not found")
