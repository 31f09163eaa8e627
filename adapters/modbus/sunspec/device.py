"""A SunSpec device over a Modbus link: its model map (discovery), model reads, point writes,
and the comparison of what was read back with what was wanted.

`Outcome` is what writing something to a device came to: the acknowledgement's status and
words, and whether it is in force on the device (for the DER's delivery state).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sunspec2.mdef import ModelDefinitionError

from adapters.modbus.client import DeviceError, DeviceRefused, ModbusLink, read_span
from adapters.modbus.codec import (
    BASE_ADDRESSES,
    END_MODEL_ID,
    CodecError,
    ModelLayout,
    build_layout,
    count_points,
    has_marker,
    layout_from_registers,
    write_runs,
)
from gateway.domain import AckStatus

log = logging.getLogger(__name__)

MAX_MODELS = 64  # a model chain longer than this is not a device we understand


class NotSunSpec(DeviceError):
    """No "SunS" marker at any base address, or a broken model chain."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    model_id: int
    address: int  # of the model's ID register
    layout: ModelLayout


@dataclass(frozen=True, slots=True)
class DeviceMap:
    base: int
    models: Mapping[int, ModelRef]  # the first instance of each model id

    def has(self, model_id: int) -> bool:
        return model_id in self.models


@dataclass(frozen=True, slots=True)
class Outcome:
    """What writing one part of a control to a device came to."""

    status: AckStatus
    protocol_status: str
    detail: str = ""
    adopted: bool = False  # a curve had to be adopted (it was not in force)
    # In force on the device as far as SunSpec can carry it. False when the device cannot
    # be given it (a model it lacks, an exception code, a value that does not fit, a
    # read-back that differs); True for settings SunSpec cannot express at all, which the
    # acknowledgement refuses while the rest is delivered.
    in_force: bool = True

    @property
    def ok(self) -> bool:
        return self.status is AckStatus.COMPLETED

    @property
    def reason(self) -> str:
        return f"{self.protocol_status}: {self.detail}" if self.detail else self.protocol_status


def completed(protocol_status: str, *, adopted: bool = False) -> Outcome:
    return Outcome(AckStatus.COMPLETED, protocol_status, adopted=adopted)


def not_in_force(status: AckStatus, protocol_status: str, detail: str) -> Outcome:
    return Outcome(status, protocol_status, detail, in_force=False)


def missing_model(model_id: int, name: str = "") -> Outcome:
    what = f"{name} ({model_id})" if name else f"model {model_id}"
    return not_in_force(AckStatus.CANNOT_COMPLY, f"no model {model_id}",
                        f"the device does not implement SunSpec {what}")


def refused(exc: DeviceRefused) -> Outcome:
    return not_in_force(AckStatus.REJECTED, f"exception 0x{exc.code:02X}", str(exc))


def unrepresentable(detail: str) -> Outcome:
    return not_in_force(AckStatus.CANNOT_COMPLY, "not representable", detail)


# -- discovery -----------------------------------------------------------------------------


async def discover(link: ModbusLink) -> DeviceMap:
    """Find the SunSpec base (40000, 0, 50000) and walk the model chain to its end."""
    for base in BASE_ADDRESSES:
        try:
            if has_marker(await link.read(base, 2)):
                break
        except DeviceRefused:
            continue
    else:
        raise NotSunSpec(f"{link.endpoint}: no SunSpec marker at {BASE_ADDRESSES}")
    models: dict[int, ModelRef] = {}
    address = base + 2
    for _ in range(MAX_MODELS):
        model_id, length = await link.read(address, 2)
        if model_id == END_MODEL_ID:
            return DeviceMap(base, models)
        layout = await _layout_at(link, model_id, address, length)
        if layout is not None:
            models.setdefault(model_id, ModelRef(model_id, address, layout))
        address += 2 + length
    raise NotSunSpec(f"{link.endpoint}: model chain longer than {MAX_MODELS} models")


async def _layout_at(link: ModbusLink, model_id: int, address: int, length: int
                     ) -> ModelLayout | None:
    """The model's layout; None for a model pysunspec2 does not define (it is skipped)."""
    try:
        if not count_points(model_id):
            layout = build_layout(model_id)
        else:  # repeated groups: their counts are in the model's own registers
            regs = [model_id, length, *await read_span(link, address + 2, length)]
            layout = layout_from_registers(model_id, regs)
    except ModelDefinitionError:
        log.info("%s: model %s at %s is not defined by pysunspec2; skipped",
                 link.endpoint, model_id, address)
        return None
    except CodecError as exc:
        raise NotSunSpec(f"{link.endpoint}: model {model_id}: {exc}") from exc
    if layout.length != length:
        raise NotSunSpec(f"{link.endpoint}: model {model_id}: L={length}, "
                         f"definition says {layout.length}")
    return layout


# -- reads, writes, read-back ----------------------------------------------------------------


async def read_model(link: ModbusLink, ref: ModelRef, size: int | None = None) -> list[int]:
    """The model's registers from its ID on (`size` registers, default the whole model)."""
    return await read_span(link, ref.address, size or ref.layout.size)


def encode_into(layout: ModelLayout, regs: list[int],
                values: Sequence[tuple[str, float]]) -> None:
    """Put engineering values into a model image, scaled with the image's own factors."""
    for path, value in values:
        spec = layout.point(path)
        regs[spec.offset : spec.offset + spec.size] = layout.encode_value(regs, path, value)


async def write_points(link: ModbusLink, ref: ModelRef, regs: Sequence[int],
                       paths: Sequence[str]) -> None:
    """Write the registers of `paths` from the image, in as few requests as fit."""
    for offset, chunk in write_runs(ref.layout, regs, paths):
        await link.write(ref.address + offset, chunk)
