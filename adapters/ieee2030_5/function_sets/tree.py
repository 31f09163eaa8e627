"""The resource tree a client reads: DeviceCapability, EndDevices, FunctionSetAssignments,
DERPrograms, their DERControls, DefaultDERControl and DERCurves - as one client's scope sees
them, with the platform's program layout and poll rates.

The published controls come from the renderer (`ControlSource`); nothing here writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from adapters.ieee2030_5 import mapper
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.function_sets import documents as docs
from adapters.ieee2030_5.function_sets import programs
from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.function_sets.scope import ClientScope
from adapters.ieee2030_5.state import AdapterState, ControlRecord, EndDeviceRecord
from gateway.domain import EffectiveControl
from gateway.errors import InvalidInput, NotFound

DEFAULT_POLL = {"DERControlList": 300, "DERProgramList": 300, "EndDeviceList": 300,
                "FunctionSetAssignmentsList": 300, "MirrorUsagePointList": 300}
# A list's pollRate is part of the list: its subscribers hear of a change (by href tail).
RATED_LISTS = {"EndDeviceList": "/edev", "FunctionSetAssignmentsList": "/fsa",
               "DERProgramList": "/derp"}


@dataclass(frozen=True, slots=True)
class ControlSource:
    """What the renderer has published for a DER, and its effective control."""

    published: Callable[[str], Awaitable[list[ControlRecord]]]
    effective: Callable[[str], Awaitable[EffectiveControl | None]]


class ResourceTree:
    def __init__(self, registry: EndDeviceRegistry, state: AdapterState, source: ControlSource,
                 layout: programs.Layout, pen: int) -> None:
        self.registry = registry
        self.state = state
        self.source = source
        self.layout = layout  # the configured layout; a DER may have its own
        self.pen = pen
        self.rates: dict[str, dict[str, int]] = {"poll": {}, "post": {}}
        # DER LFDI -> primacy, randomize_start, programs (its own layout)
        self.programs: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        self.rates = await self.state.rates()
        self.programs = await self.state.programs()

    # --- program settings and rates ---------------------------------------------------------

    def program_settings(self, lfdi: str) -> dict[str, Any]:
        return self.programs.get(lfdi.upper(), {})

    def layout_of(self, record: EndDeviceRecord) -> programs.Layout:
        return programs.resolve(self.layout, self.program_settings(record.lfdi))

    def poll_rate(self, name: str) -> int:
        return docs.poll(self.rates, name, DEFAULT_POLL.get(name, 900))

    @staticmethod
    def checked_rate(kind: str, seconds: int) -> None:
        if kind not in ("poll", "post") or seconds < 0 or seconds > 2**32 - 1:
            raise InvalidInput("rate kind must be poll or post, seconds a UInt32")

    # --- discovery ------------------------------------------------------------------------

    def device_capability(self, scope: ClientScope, mups: int) -> m.DeviceCapability:
        return docs.device_capability(len(self.registry.visible(scope)), mups, self.rates)

    def end_device_doc(self, scope: ClientScope, record: EndDeviceRecord) -> m.EndDevice:
        return docs.end_device(record, holds_subscriptions=record.lfdi == scope.lfdi,
                               fsas=len(programs.fsa_numbers(self.layout_of(record))))

    def end_device_list(self, scope: ClientScope, rows: list[EndDeviceRecord], total: int
                        ) -> m.EndDeviceList:
        devices = [self.end_device_doc(scope, r) for r in rows]
        return m.EndDeviceList(href="/edev", all=total, results=len(devices), subscribable=1,
                               pollRate=self.poll_rate("EndDeviceList"), EndDevice=devices)

    async def list_document(self, scope: ClientScope, href: str,
                            limit: int | None = None) -> Any:
        """The current EndDeviceList, FSA list or DERProgramList at `href`, as `scope` sees
        it; an EndDeviceList only up to `limit` (what a notification carries)."""
        if href == "/edev":
            rows = self.registry.visible(scope)
            return self.end_device_list(scope, rows[:limit], len(rows))
        parts = href.strip("/").split("/")
        if len(parts) not in (3, 5) or parts[0] != "edev" or not parts[1].isdigit():
            return None
        try:
            record = self.registry.get(scope, int(parts[1]))
        except NotFound:
            return None
        if parts[2:] == ["fsa"]:
            return self.fsa_list(record)
        if parts[2:] == ["derp"]:
            return await self.program_list(record)
        if len(parts) == 5 and parts[2] == "fsa" and parts[3].isdigit() and parts[4] == "derp" \
                and int(parts[3]) in programs.fsa_numbers(self.layout_of(record)):
            return await self.program_list(record, int(parts[3]))
        return None

    # --- function set assignments and programs -------------------------------------------

    def fsa_mrid(self, record: EndDeviceRecord, number: int = 1) -> str:
        key = (record.id,) if number == 1 else (record.id, number)
        return mapper.server_mrid(self.pen, "fsa", *key)

    def response_set_mrid(self) -> str:
        return mapper.server_mrid(self.pen, "rsps", docs.RESPONSE_SET)

    def fsa_list(self, record: EndDeviceRecord) -> m.FunctionSetAssignmentsList:
        layout = self.layout_of(record)
        fsas = [docs.fsa(record, n, layout, self.fsa_mrid(record, n))
                for n in programs.fsa_numbers(layout)]
        return m.FunctionSetAssignmentsList(
            href=docs.Hrefs(record.id).path("fsa"), all=len(fsas), results=len(fsas),
            subscribable=1, pollRate=self.poll_rate("FunctionSetAssignmentsList"),
            FunctionSetAssignments=fsas)

    def fsa(self, record: EndDeviceRecord, number: int) -> m.FunctionSetAssignments:
        layout = self.layout_of(record)
        if number not in programs.fsa_numbers(layout):
            raise NotFound("no such FunctionSetAssignments")
        return docs.fsa(record, number, layout, self.fsa_mrid(record, number))

    async def program_list(self, record: EndDeviceRecord, fsa: int | None = None
                           ) -> m.DERProgramList:
        """The DER's programs (its AssociatedDERProgramList), or those of one FSA; by
        primacy."""
        layout = self.layout_of(record)
        specs = programs.in_fsa(layout, fsa) if fsa is not None else \
            sorted(layout, key=lambda p: (p.primacy, p.index))
        h = docs.Hrefs(record.id)
        found = [await self.program(record, spec) for spec in specs]
        return m.DERProgramList(
            href=h.path("derp") if fsa is None else h.fsa_programs(fsa), all=len(found),
            results=len(found), subscribable=1, pollRate=self.poll_rate("DERProgramList"),
            DERProgram=found)

    def program_spec(self, record: EndDeviceRecord, index: int) -> programs.ProgramSpec:
        spec = programs.by_index(self.layout_of(record), index)
        if spec is None:
            raise NotFound("no such DERProgram")
        return spec

    async def program(self, record: EndDeviceRecord, spec: programs.ProgramSpec
                      ) -> m.DERProgram:
        controls = await self.controls(record, spec)
        curves = await self.curves(record, spec)
        key = (record.id,) if spec.index == 1 else (record.id, spec.index)
        return docs.der_program(record, spec, mapper.server_mrid(self.pen, "derp", *key),
                                len(controls), len(curves))

    # --- controls ---------------------------------------------------------------------------

    async def controls(self, record: EndDeviceRecord, spec: programs.ProgramSpec,
                       active_only: bool = False) -> list[m.DERControl]:
        now = int(time.time())
        rows = await self.listed(record, spec, now)
        return self.control_docs(record, spec, rows, now, active_only)

    async def listed(self, record: EndDeviceRecord, spec: programs.ProgramSpec, now: int
                     ) -> list[ControlRecord]:
        if record.resource_id is None:
            return []
        return sorted((c for c in await self.source.published(record.resource_id)
                       if c.program == spec.index and docs.listed(c, now)), key=docs.sort_key)

    @staticmethod
    def control_docs(record: EndDeviceRecord, spec: programs.ProgramSpec,
                     rows: list[ControlRecord], now: int, active_only: bool
                     ) -> list[m.DERControl]:
        if active_only:
            rows = [c for c in rows if docs.live_status(c, now) == docs.ACTIVE]
        base = docs.Hrefs(record.id).program(spec.index, "derc")
        return [docs.der_control(c, f"{base}/{c.mrid}", f"/rsps/{docs.RESPONSE_SET}/rsp", now)
                for c in rows]

    async def default_control(self, record: EndDeviceRecord, spec: programs.ProgramSpec
                              ) -> m.DefaultDERControl:
        if "default" not in spec.carries:
            raise NotFound("this DERProgram carries no DefaultDERControl")
        h = docs.Hrefs(record.id)
        control = await self.source.effective(record.resource_id) if record.resource_id \
            else None
        settings = (control.default_control if control else None) or {}
        functions = (control.function_settings if control else None) or {}
        curve_base = h.program(programs.carrying(self.layout_of(record), "curves").index, "dc")
        links = mapper.curve_links(functions, curve_base)
        droop = json.dumps(functions.get("freq_droop"), sort_keys=True, default=str)
        gradients = [(key, functions[key]) for key in mapper.GRADIENTS
                     if functions.get(key) is not None]  # (none: the mRID stays as it was)
        dderc = mapper.default_control(settings, mapper.server_mrid(
            self.pen, "dderc", record.id, sorted(settings.items()), sorted(links.items()),
            droop, *gradients), h.program(spec.index, "dderc"), functions)
        # Standing 1547 settings apply by default: the DefaultDERControl links their curves.
        for element, href in links.items():
            setattr(dderc.DERControlBase, element, m.Link(href=href))
        return dderc

    async def curves(self, record: EndDeviceRecord, spec: programs.ProgramSpec
                     ) -> list[m.DERCurve]:
        if "curves" not in spec.carries or record.resource_id is None:
            return []
        control = await self.source.effective(record.resource_id)
        settings = (control.function_settings if control else None) or {}
        out = []
        base = docs.Hrefs(record.id).program(spec.index, "dc")
        for n, (key, curve) in enumerate(mapper.curves(settings, mapper.from_epoch(0)), 1):
            curve.href = f"{base}/{n}"
            curve.mRID = mapper.server_mrid(self.pen, "dc", record.id, key)
            out.append(curve)
        return out
