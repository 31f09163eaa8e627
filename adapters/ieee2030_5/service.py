"""IEEE 2030.5 protocol behaviour: one object the routes call, scoped by the client.

It owns the EndDevice registry, control publishing, feedback and notifications, and talks
to the core only through the adapter context (gateway services, records, deliveries).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from adapters.ieee2030_5 import mapper, nmi, programs, views
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from adapters.ieee2030_5.controls import (
    ControlPublisher,
    PublishOptions,
    der_control,
    listed,
    live_status,
)
from adapters.ieee2030_5.controls import sort_key as control_order
from adapters.ieee2030_5.feedback import Feedback
from adapters.ieee2030_5.notify import Notifier, UrlCheck
from adapters.ieee2030_5.registry import EndDeviceRegistry
from adapters.ieee2030_5.scope import ClientIdentity, ClientScope, scope_for
from adapters.ieee2030_5.settings import Settings
from adapters.ieee2030_5.state import AdapterState, ControlRecord, EndDeviceRecord
from gateway.domain import Protocol
from gateway.errors import Forbidden, InvalidInput, NotFound

log = logging.getLogger(__name__)

RENDERED_MAX_AGE_S = 300  # a rendered document is rebuilt at least this often
DEFAULT_POLL = {"DERControlList": 300, "DERProgramList": 300, "EndDeviceList": 300,
                "FunctionSetAssignmentsList": 300, "MirrorUsagePointList": 300}


class Ieee2030Service:
    def __init__(self, gateway: Any, records: Any, deliveries: Any, config: Settings,
                 *, pen: int, horizon_s: int, check_url: UrlCheck,
                 ssl_name: str | None = None) -> None:
        self.gateway = gateway
        self.settings = config
        self.state = AdapterState(records)
        self.pen = pen
        self.registry = EndDeviceRegistry(gateway, self.state, config)
        self.publisher = ControlPublisher(gateway, self.state, PublishOptions(
            pen=pen, horizon_s=horizon_s, dispatch_as=config.dispatch_as))
        self.feedback = Feedback(gateway, self.state, self.registry)
        self.notifier = Notifier(self.state, deliveries, ssl_name, check_url)
        self.layout = programs.parse(config.programs) if config.programs else \
            programs.single(config.primacy)
        self.rates: dict[str, dict[str, int]] = {"poll": {}, "post": {}}
        # Pollable control documents as served, rendered once per change (issue 12: the
        # DefaultDERControl was recomputed on every poll). EndDevice id -> its generation,
        # bumped whenever what its documents say may have changed; (EndDevice, program,
        # document) -> (generation, valid until (epoch s), bytes).
        self._generation: dict[int, int] = {}
        self._rendered: dict[tuple[int, int, str], tuple[int, float, bytes]] = {}
        # DER LFDI -> primacy, randomize_start, programs (its own layout)
        self.programs: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        await self.registry.load()
        await self.notifier.load()
        self.rates = await self.state.rates()
        self.programs = await self.state.programs()

    def program_settings(self, lfdi: str) -> dict[str, Any]:
        return self.programs.get(lfdi.upper(), {})

    def layout_of(self, record: EndDeviceRecord) -> programs.Layout:
        return programs.resolve(self.layout, self.program_settings(record.lfdi))

    async def set_program(self, lfdi: str, doc: dict[str, Any]) -> None:
        await self.state.save_program(lfdi, doc)
        self.programs[lfdi.upper()] = doc
        self.invalidate([r.id for r in self.registry.by_lfdi(lfdi)])
        records = [r for r in self.registry.by_lfdi(lfdi) if r.resource_id]
        await self.on_controls_changed([r.resource_id for r in records if r.resource_id])
        for record in records:  # program lists show the new settings; FSAs are re-announced
            subs = self.subscribers(record)
            fsa = self.fsa_list(record)
            await self.notifier.announce(subs, fsa.href or "", fsa)
            for number in [None, *programs.fsa_numbers(self.layout_of(record))]:
                lst = await self.program_list(record, number)
                await self.notifier.announce(subs, lst.href or "", lst)

    async def scope(self, identity: ClientIdentity) -> ClientScope:
        if self.registry.denied(identity.lfdi):
            raise Forbidden("this client's access has been revoked")
        scope = scope_for(identity, self.registry.aggregator_clients)
        await self.registry.sync(scope)
        return scope

    def poll_rate(self, name: str) -> int:
        return views.poll(self.rates, name, DEFAULT_POLL.get(name, 900))

    async def set_rate(self, kind: str, resource: str, seconds: int) -> None:
        if kind not in ("poll", "post") or seconds < 0 or seconds > 2**32 - 1:
            raise InvalidInput("rate kind must be poll or post, seconds a UInt32")
        self.rates.setdefault(kind, {})[resource] = seconds
        await self.state.save_rates(self.rates)
        # A list's pollRate is part of the list: its subscribers hear of the change.
        tails = {"EndDeviceList": "/edev", "FunctionSetAssignmentsList": "/fsa",
                 "DERProgramList": "/derp"}
        if kind == "poll" and resource in tails:
            await self.notify_lists(tails[resource])

    async def notify_lists(self, tail: str) -> None:
        """Send every subscription to a list whose href ends with `tail` its current state."""
        outgoing = []
        for holder in self.registry.all_records():
            subs = [s for s in self.notifier.subscriptions(holder.id) if s.resource.endswith(tail)]
            scope = ClientScope(holder.lfdi, holder.sfdi,
                                self.registry.aggregator_clients.get(holder.lfdi))
            for sub in subs:
                doc = await self.list_document(scope, sub.resource, sub.limit)
                if doc is not None:
                    outgoing += self.notifier.notifications([sub], sub.resource, doc)
        await self.notifier.send(outgoing)

    async def list_document(self, scope: ClientScope, href: str,
                            limit: int | None = None) -> Any:
        """The current EndDeviceList, FSA list or DERProgramList at `href`, as `scope` sees
        it; an EndDeviceList only up to `limit` (what a notification carries)."""
        if href == "/edev":
            rows = self.registry.visible(scope)
            devices = [self.end_device_doc(scope, r) for r in rows[:limit]]
            return m.EndDeviceList(href="/edev", all=len(rows), results=len(devices),
                                   subscribable=1, pollRate=self.poll_rate("EndDeviceList"),
                                   EndDevice=devices)
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

    def fsa_list(self, record: EndDeviceRecord) -> m.FunctionSetAssignmentsList:
        layout = self.layout_of(record)
        fsas = [views.fsa(record, n, layout, self.fsa_mrid(record, n))
                for n in programs.fsa_numbers(layout)]
        return m.FunctionSetAssignmentsList(
            href=views.Hrefs(record.id).path("fsa"), all=len(fsas), results=len(fsas),
            subscribable=1, pollRate=self.poll_rate("FunctionSetAssignmentsList"),
            FunctionSetAssignments=fsas)

    def fsa(self, record: EndDeviceRecord, number: int) -> m.FunctionSetAssignments:
        layout = self.layout_of(record)
        if number not in programs.fsa_numbers(layout):
            raise NotFound("no such FunctionSetAssignments")
        return views.fsa(record, number, layout, self.fsa_mrid(record, number))

    async def program_list(self, record: EndDeviceRecord, fsa: int | None = None
                           ) -> m.DERProgramList:
        """The DER's programs (its AssociatedDERProgramList), or those of one FSA; by
        primacy."""
        layout = self.layout_of(record)
        specs = programs.in_fsa(layout, fsa) if fsa is not None else \
            sorted(layout, key=lambda p: (p.primacy, p.index))
        h = views.Hrefs(record.id)
        docs = [await self.program(record, spec) for spec in specs]
        return m.DERProgramList(
            href=h.path("derp") if fsa is None else h.fsa_programs(fsa), all=len(docs),
            results=len(docs), subscribable=1, pollRate=self.poll_rate("DERProgramList"),
            DERProgram=docs)

    # --- discovery ------------------------------------------------------------------------

    async def device_capability(self, scope: ClientScope) -> m.DeviceCapability:
        visible = self.registry.visible(scope)
        mups = await self.feedback.mup_count(scope)
        return views.device_capability(len(visible), mups, self.rates)

    def end_device_doc(self, scope: ClientScope, record: EndDeviceRecord) -> m.EndDevice:
        return views.end_device(record, holds_subscriptions=record.lfdi == scope.lfdi,
                                fsas=len(programs.fsa_numbers(self.layout_of(record))))

    def end_device(self, scope: ClientScope, edev_id: int) -> EndDeviceRecord:
        return self.registry.get(scope, edev_id)

    async def register(self, scope: ClientScope, doc: m.EndDevice) -> EndDeviceRecord:
        record = await self.registry.register_inband(scope, doc)
        await self.announce_end_devices(scope)
        return record

    async def announce_end_devices(self, scope: ClientScope) -> None:
        """Notify the client's own EndDevice subscriptions to /edev of the current list."""
        for own in [r for r in self.registry.visible(scope) if r.lfdi == scope.lfdi]:
            subs = [s for s in self.notifier.subscriptions(own.id) if s.resource == "/edev"]
            if not subs:
                continue
            limit = max(s.limit for s in subs)
            await self.notifier.announce(subs, "/edev",
                                         await self.list_document(scope, "/edev", limit))

    async def announce_new_devices(self, aggregator_ids: set[str]) -> None:
        """New DERs of an aggregator change what its clients' EndDeviceList shows."""
        for aggregator_id in sorted(aggregator_ids):
            for own in self.registry.by_lfdi_any_aggregator(aggregator_id):
                await self.announce_end_devices(ClientScope(own.lfdi, own.sfdi, aggregator_id))

    async def set_connection_point(self, record: EndDeviceRecord, cp_id: str) -> None:
        cp_id = cp_id.strip()
        if not nmi.is_valid(cp_id.upper()) and \
                await self.registry.known_connection_point(cp_id) is None:
            raise InvalidInput("connectionPointId is neither a valid NMI nor a known "
                               "connection point")
        await self.registry.bind_connection_point(record, cp_id)

    # --- programs -------------------------------------------------------------------------

    def fsa_mrid(self, record: EndDeviceRecord, number: int = 1) -> str:
        key = (record.id,) if number == 1 else (record.id, number)
        return mapper.server_mrid(self.pen, "fsa", *key)

    def fsa_mrid_for_set(self) -> str:
        return mapper.server_mrid(self.pen, "rsps", views.RESPONSE_SET)

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
        return views.der_program(record, spec, mapper.server_mrid(self.pen, "derp", *key),
                                 len(controls), len(curves))

    async def controls(self, record: EndDeviceRecord, spec: programs.ProgramSpec,
                       active_only: bool = False) -> list[m.DERControl]:
        now = int(time.time())
        rows = await self._listed(record, spec, now)
        return self._control_docs(record, spec, rows, now, active_only)

    async def _listed(self, record: EndDeviceRecord, spec: programs.ProgramSpec, now: int
                      ) -> list[ControlRecord]:
        if record.resource_id is None:
            return []
        return sorted((c for c in await self.publisher.published(record.resource_id)
                       if c.program == spec.index and listed(c, now)), key=control_order)

    def _control_docs(self, record: EndDeviceRecord, spec: programs.ProgramSpec,
                      rows: list[ControlRecord], now: int, active_only: bool
                      ) -> list[m.DERControl]:
        if active_only:
            rows = [c for c in rows if live_status(c, now) == 1]
        base = views.Hrefs(record.id).program(spec.index, "derc")
        return [der_control(c, f"{base}/{c.mrid}", f"/rsps/{views.RESPONSE_SET}/rsp", now)
                for c in rows]

    async def default_control(self, record: EndDeviceRecord, spec: programs.ProgramSpec
                              ) -> m.DefaultDERControl:
        if "default" not in spec.carries:
            raise NotFound("this DERProgram carries no DefaultDERControl")
        h = views.Hrefs(record.id)
        control = await self.publisher.effective(record.resource_id) if record.resource_id else None
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
        control = await self.publisher.effective(record.resource_id)
        settings = (control.function_settings if control else None) or {}
        out = []
        base = views.Hrefs(record.id).program(spec.index, "dc")
        for n, (key, curve) in enumerate(mapper.curves(settings, mapper.from_epoch(0)), 1):
            curve.href = f"{base}/{n}"
            curve.mRID = mapper.server_mrid(self.pen, "dc", record.id, key)
            out.append(curve)
        return out

    # --- pollable documents from rendered state -------------------------------------------

    def invalidate(self, edev_ids: list[int] | None = None) -> None:
        """What these EndDevices' documents say may have changed (None: every one)."""
        if edev_ids is None:
            self._rendered.clear()
            self._generation = {k: v + 1 for k, v in self._generation.items()}
            return
        for edev in edev_ids:
            self._generation[edev] = self._generation.get(edev, 0) + 1
        gone = set(edev_ids)
        for key in [k for k in self._rendered if k[0] in gone]:
            del self._rendered[key]

    async def rendered(self, record: EndDeviceRecord, spec: programs.ProgramSpec,
                       kind: str) -> bytes:
        """The bytes of a program's DERControlList ("derc"), ActiveDERControlList
        ("actderc") or DefaultDERControl ("dderc"), rendered once and served until what it
        says changes (a new render) or time moves a control to its next status."""
        key = (record.id, spec.index, kind)
        now = time.time()
        hit = self._rendered.get(key)
        generation = self._generation.get(record.id, 0)
        if hit is not None and hit[0] == generation and now < hit[1]:
            return hit[2]
        doc, valid_until = await self._render_document(record, spec, kind, int(now))
        body = serialize(doc)
        if self._generation.get(record.id, 0) == generation:  # (no change while rendering)
            self._rendered[key] = (generation, valid_until, body)
        return body

    async def _render_document(self, record: EndDeviceRecord, spec: programs.ProgramSpec,
                               kind: str, now: int) -> tuple[Any, float]:
        if kind == "dderc":
            return await self.default_control(record, spec), now + RENDERED_MAX_AGE_S
        rows = await self._listed(record, spec, now)
        edges = [t for c in rows for t in (c.start, c.start + c.duration,
                                           c.start + c.duration + 60) if t > now]
        valid_until = min([*edges, now + RENDERED_MAX_AGE_S])
        items = self._control_docs(record, spec, rows, now, active_only=kind == "actderc")
        href = views.Hrefs(record.id).program(spec.index, kind)
        if kind == "actderc":
            return m.DERControlList(href=href, all=len(items), results=len(items),
                                    DERControl=items), valid_until
        return m.DERControlList(href=href, all=len(items), results=len(items), subscribable=1,
                                DERControl=items), valid_until

    async def on_control_changed(self, resource_id: str) -> None:
        await self.on_controls_changed([resource_id])

    async def on_controls_changed(self, resource_ids: list[str]) -> None:
        """Re-render DERs' controls from the store and notify their subscribers; a batch is
        one read of the effective controls, one write of the controls, one of the outbox."""
        wanted = set(resource_ids)
        if not wanted:
            return
        resources = {r.id: r for r in await self.gateway.resources(ids=wanted)
                     if r.binding.protocol == Protocol.IEEE2030_5}
        new = {rid for rid in resources if self.registry.by_resource(rid) is None}
        records = await self.registry.ensure_resources(list(resources.values()))
        grown = {rec.aggregator_id for rid, rec in records.items()
                 if rid in new and rec.aggregator_id}
        await self.announce_new_devices(grown)
        self.invalidate([rec.id for rec in records.values()])
        changes = await self.publisher.refresh_many(
            {rid: resources[rid].nameplate.export_max_w for rid in records},
            {rid: (self.program_settings(rec.lfdi), self.layout_of(rec))
             for rid, rec in records.items()})
        self.invalidate([rec.id for rec in records.values()])  # (and after: now published)
        outgoing = []
        for rid in sorted(changes.controls | changes.defaults):
            outgoing += await self._control_notifications(
                records[rid], rid in changes.controls, rid in changes.defaults)
        await self.notifier.send(outgoing)

    async def _control_notifications(self, record: EndDeviceRecord, controls: bool,
                                     default: bool) -> list[Any]:
        subs = self.subscribers(record)
        if not subs:
            return []
        h = views.Hrefs(record.id)
        out = []
        for spec in self.layout_of(record):
            derc, dderc = h.program(spec.index, "derc"), h.program(spec.index, "dderc")
            if controls and any(s.resource == derc for s in subs):
                items = await self.controls(record, spec)
                lst = m.DERControlList(href=derc, all=len(items), results=len(items),
                                       subscribable=1, DERControl=items)
                out += self.notifier.notifications(subs, derc, lst)
            if default and "default" in spec.carries and any(s.resource == dderc for s in subs):
                out += self.notifier.notifications(subs, dderc,
                                                   await self.default_control(record, spec))
        return out

    def subscribers(self, record: EndDeviceRecord) -> list[Any]:
        """Subscriptions held by the device itself or by its aggregator's own EndDevice."""
        holders = [record.id]
        if record.aggregator_id:
            holders += [r.id for r in self.registry.by_lfdi_any_aggregator(record.aggregator_id)]
        return [s for holder in holders for s in self.notifier.subscriptions(holder)]

    # --- DER documents --------------------------------------------------------------------

    async def der_document(self, record: EndDeviceRecord, which: str) -> bytes:
        stored = await self.state.der_document(record.id, which)
        if stored is None:
            raise NotFound(f"no {views.DER_DOCS[which]} has been posted")
        return stored.encode()

    async def put_der_document(self, record: EndDeviceRecord, which: str, model: Any) -> None:
        model.href = views.Hrefs(record.id).path("der", 1, which)
        await self.state.save_der_document(record.id, which, serialize(model).decode())

    async def log_event(self, record: EndDeviceRecord, model: m.LogEvent) -> str:
        log_id = await self.state.next_id("log")
        model.href = views.Hrefs(record.id).path("lel", log_id)
        await self.state.save_log_event(record.id, log_id, serialize(model).decode())
        return model.href
