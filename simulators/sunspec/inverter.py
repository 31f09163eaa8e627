"""One simulated SunSpec inverter: a register image in front of the shared DER model.

Reads return the image; writes are checked point by point (writable, whole points, enum
and range), committed, then pushed to the DER model. `step(dt)` advances the model, completes
pending curve adoptions and writes measurements, timers and reversions back into the image.
No sockets here: `simulators.sunspec.server` puts this behind pymodbus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.modbus.codec import ExceptionCode, ModbusRefusal, PointSpec
from simulators.der import Constant, DerModel, Profile, Rating
from simulators.der.curves import CurveError
from simulators.sunspec import defaults
from simulators.sunspec.controls import (
    CONTROLS_704,
    READ_ONLY,
    control_of,
    read_enter_service,
)
from simulators.sunspec.curves import CURVES, CurveFunction
from simulators.sunspec.image import Block, RegisterImage

BASE_ADDRESS = 40000
_INDEX = re.compile(r"\[\d+\]")

@dataclass(frozen=True)
class InverterSpec:
    serial: str
    rating: Rating
    profile: Profile = field(default_factory=lambda: Constant(0.8))
    soc_pct: float = 50.0
    ramp_pct_s: float = 20.0
    curves: int = 3  # NCrv / NCtl of each curve model (curve 1 is the active, read-only one)
    curve_points: int = 4  # NPt of 705, 706 and 712
    functions: frozenset[int] = frozenset(CURVES)  # curve models implemented (705, 706, ...)


class SunSpecInverter:
    def __init__(self, spec: InverterSpec, base: int = BASE_ADDRESS) -> None:
        self.spec = spec
        self.model = DerModel(spec.rating, profile=spec.profile, soc_pct=spec.soc_pct,
                              ramp_pct_s=spec.ramp_pct_s)
        models = defaults.models(spec)
        self.image = RegisterImage(base, models)
        defaults.populate(self.image, spec)
        self._seen_reversions: dict[str, int] = {}
        self._pending: dict[int, int] = {}  # model id -> curve index waiting for adoption
        self._countdowns: dict[tuple[int, str], int] = {}  # read-only countdowns as written
        self.curves = {mid: c for mid, c in CURVES.items() if mid in self.image.blocks}
        self._meter = _MeterWriters(self.image, spec.rating)
        self.writes = 0
        self._sync_settings_from_image()
        self._meter.write(self.model)

    # -- Modbus-facing -------------------------------------------------------------------

    def read(self, address: int, count: int) -> list[int]:
        offset = address - self.image.base
        if count < 1 or not self.image.contains(offset, count):
            raise ModbusRefusal(ExceptionCode.ILLEGAL_ADDRESS, f"{address}+{count}")
        return self.image.regs[offset : offset + count]

    def write(self, address: int, values: list[int]) -> None:
        offset = address - self.image.base
        if not values or not self.image.contains(offset, len(values)):
            raise ModbusRefusal(ExceptionCode.ILLEGAL_ADDRESS, f"{address}+{len(values)}")
        touched = self.image.touched(offset, len(values))
        self._check_addressing(offset, len(values), touched)
        before = self.image.regs[offset : offset + len(values)]
        self.image.regs[offset : offset + len(values)] = values
        try:
            for block, points in touched:
                for spec in points:
                    self._check_value(block, spec)
        except ModbusRefusal:
            self.image.regs[offset : offset + len(values)] = before
            raise
        self.writes += 1
        for block, points in touched:
            self._apply(block.model_id, {p.path for p in points})

    def _check_addressing(self, offset: int, count: int,
                          touched: list[tuple[Block, list[PointSpec]]]) -> None:
        covered = 0
        for block, points in touched:
            for spec in points:
                start = block.start + spec.offset
                if start < offset or start + spec.size > offset + count:
                    raise ModbusRefusal(ExceptionCode.ILLEGAL_ADDRESS, f"part of {spec.path}")
                if not spec.writable or self._curve_read_only(block.model_id, spec.path):
                    raise ModbusRefusal(ExceptionCode.ILLEGAL_ADDRESS, f"{spec.path} is read-only")
                covered += spec.size
        if covered != count:
            raise ModbusRefusal(ExceptionCode.ILLEGAL_ADDRESS, "not a writable point")

    def _curve_read_only(self, model_id: int, path: str) -> bool:
        if "[" not in path:
            return False
        group = path.split("]", 1)[0] + "]"
        return self.image.get(model_id, f"{group}.ReadOnly") == READ_ONLY

    def _check_value(self, block: Block, spec: PointSpec) -> None:
        raw = self.image.get(block.model_id, spec.path)
        if raw is None:
            return  # "not implemented" leaves the function at its default
        if spec.symbols and spec.type.startswith("enum") and raw not in spec.symbols.values():
            raise ModbusRefusal(ExceptionCode.ILLEGAL_VALUE, f"{spec.path}={raw}")
        bounds = defaults.RANGES.get((block.model_id, _INDEX.sub("[*]", spec.path)))
        if bounds is None:
            return
        low, high = bounds(self.spec.rating, self.image)
        value = self.image.value(block.model_id, spec.path)
        if value is None or not low <= value <= high:
            raise ModbusRefusal(ExceptionCode.ILLEGAL_VALUE, f"{spec.path}={value}")

    # -- registers -> model --------------------------------------------------------------

    def _apply(self, model_id: int, paths: set[str]) -> None:
        if (curve := self.curves.get(model_id)) is not None:
            self._apply_curve(curve, paths)
            return
        appliers: dict[int, Callable[[set[str]], None]] = {
            703: self._apply_703, 704: self._apply_704,
        }
        if (applier := appliers.get(model_id)) is not None:
            applier(paths)  # other models (1 DA, 702 settings) are stored only

    def _apply_703(self, paths: set[str]) -> None:
        del paths
        self.model.enter_service = read_enter_service(self.image)

    def _apply_704(self, paths: set[str]) -> None:
        for control in {c for p in paths if (c := control_of(p)) is not None}:
            control.apply(self.image, self.model)
        if "WRmp" in paths:
            self.model.ramp_pct_s = self.image.value(704, "WRmp") or 0.0

    def _apply_curve(self, curve: CurveFunction, paths: set[str]) -> None:
        if curve.req in paths:
            index = self.image.get(curve.model_id, curve.req)
            if isinstance(index, int) and index > 0:
                self._pending[curve.model_id] = index - 1
                self.image.set(curve.model_id, curve.rslt, curve.IN_PROGRESS)
        curve.push_settings(self.image, self.model)

    def _sync_settings_from_image(self) -> None:
        self.model.enter_service = read_enter_service(self.image)
        for control in CONTROLS_704:
            control.apply(self.image, self.model)
        for curve in self.curves.values():
            curve.push_settings(self.image, self.model)
            getattr(self.model, curve.setting).write(
                value=curve.read(self.image, 0, self.model.rating))
        self._seen_reversions = {s: getattr(self.model, s).reverted for s in self._settings()}

    def _settings(self) -> list[str]:
        return [c.setting for c in CONTROLS_704] + [c.setting for c in self.curves.values()]

    # -- time ------------------------------------------------------------------------------

    def step(self, dt: float) -> None:
        self._adopt_pending()
        self.model.step(dt)
        self._write_back_reversions()
        self._meter.write(self.model)

    def _adopt_pending(self) -> None:
        for model_id, index in list(self._pending.items()):
            curve = self.curves[model_id]
            try:
                curve.adopt(self.image, self.model, index)
            except CurveError:
                self.image.set(model_id, curve.rslt, curve.FAILED)
            else:
                self.image.set(model_id, curve.rslt, curve.COMPLETED)
            del self._pending[model_id]

    def _write_back_reversions(self) -> None:
        for control in CONTROLS_704:
            setting = getattr(self.model, control.setting)
            if setting.reverted != self._seen_reversions[control.setting]:
                control.revert_registers(self.image)
            self._set_countdown(704, control.rem, math.ceil(setting.remaining_s))
        for curve in self.curves.values():
            setting = getattr(self.model, curve.setting)
            if setting.reverted != self._seen_reversions[curve.setting]:
                curve.revert_registers(self.image, setting.enabled)
            self._set_countdown(curve.model_id, "RvrtRem", math.ceil(setting.remaining_s))
        self._seen_reversions = {s: getattr(self.model, s).reverted for s in self._settings()}
        self._set_countdown(703, "ESDlyRemTms", math.ceil(self.model.enter_service_remaining_s))

    def _set_countdown(self, model_id: int, path: str, seconds: int) -> None:
        """A read-only countdown point, written only when it changes (a fleet steps
        thousands of inverters a second, and most timers are idle)."""
        key = (model_id, path)
        if self._countdowns.get(key) != seconds:
            self.image.set(model_id, path, seconds)
            self._countdowns[key] = seconds


class _MeterWriters:
    """Fast writers for the points refreshed every step (701, 713)."""

    def __init__(self, image: RegisterImage, rating: Rating) -> None:
        fields = defaults.meter_points(713 in image.blocks, rating.wh_max)
        self.writers = [(getter, image.writer(mid, path)) for mid, path, getter in fields]

    def write(self, model: DerModel) -> None:
        m = model.measurement()
        for getter, put in self.writers:
            put(getter(m))

