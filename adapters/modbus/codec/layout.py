"""SunSpec register layouts built from pysunspec2's shipped JSON model definitions. Pure.

Nothing here hand-writes a register map. A `ModelLayout` is computed from the model
definition (points, sizes, groups and their counts), and knows how to turn registers into raw
values, raw values into registers, and raw values into SI numbers through their scale factors.

Point paths: top-level points by name (``WMaxLimPct``), points of a group without a count by
``Group.Point`` (``PFWInj.PF``), points of a repeated group with a 0-based index
(``Crv[1].Pt[0].V``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from types import MappingProxyType
from typing import Any

from sunspec2 import device as sunspec_device

from adapters.modbus.codec.points import (
    MAX_WRITE,
    TYPES,
    CodecError,
    PointSpec,
    Raw,
    apply_sf,
    decode_point,
    encode_point,
)


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




# -- layouts from the model definitions --------------------------------------------------------


@cache
def model_definition(model_id: int) -> Mapping[str, Any]:
    """pysunspec2's JSON definition of a model (read once per process; treat as read-only)."""
    definition: Mapping[str, Any] = sunspec_device.get_model_def(model_id)
    return definition


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
        if isinstance(spec.sf, int):
            return spec.sf
        try:  # a fixed exponent written as text in the definition ("-2")
            return int(str(spec.sf))
        except ValueError:
            pass
        for prefix in self.scopes[path]:
            if prefix + str(spec.sf) in self.points:
                return prefix + str(spec.sf)
        raise CodecError(f"{path}: scale factor {spec.sf} not found")


def write_runs(layout: ModelLayout, regs: Sequence[int], paths: Sequence[str]
               ) -> list[tuple[int, list[int]]]:
    """Contiguous runs (model offset, registers) covering `paths`, each at most MAX_WRITE."""
    specs = sorted((layout.point(p) for p in paths), key=lambda s: s.offset)
    runs: list[tuple[int, list[int]]] = []
    for spec in specs:
        chunk = list(regs[spec.offset : spec.offset + spec.size])
        if runs and runs[-1][0] + len(runs[-1][1]) == spec.offset and (
                len(runs[-1][1]) + spec.size <= MAX_WRITE):
            runs[-1][1].extend(chunk)
        else:
            runs.append((spec.offset, chunk))
    return runs


def mismatches(layout: ModelLayout, regs: Sequence[int],
               points: Sequence[tuple[str, float]]) -> list[str]:
    """Points whose value in `regs` differs from the wanted engineering value by more than
    the device's own rounding (half a step of its scale factor), as "path=got (wanted x)"."""
    wrong = []
    for path, wanted in points:
        spec = layout.points.get(path)
        got = layout.value(regs, path) if spec else None
        step = 10.0 ** layout.scale(regs, spec) if spec and spec.is_scaled else 1.0
        if got is None or abs(got - wanted) > step / 2 + 1e-9:
            wrong.append(f"{path}={got} (wanted {wanted:g})")
    return wrong
