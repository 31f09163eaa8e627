"""Down: DERs' effective controls become OpenADR events for their VENs.

- `render(resource_id)`: the DER's effective control becomes (or updates, or removes) one event
  on its LDC's program, targeted at the DER's VEN resource, in every API version where that
  VEN has a ven object.
- `sync_ven(ven)`: the platform's DERs bound to a VEN (binding address {"ven", "resource"})
  get resource objects with a granted target, so the VEN can read their events.
- A ven or resource object that stands for platform DERs cannot be deleted or renamed by a
  client (no silent loss of control: docs/openadr3.md).

With several gateway processes one renders: the holder of the adapter's render lease
(`renders`). Another that provisions a VEN leaves its rendering to the holder, which hears of
the ven or credential from the event log, and waits (at most `wait_s`) until the VEN's
resource objects are there, as a VEN that provisions itself expects.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from contextlib import AsyncExitStack
from typing import Any

from adapters.openadr3 import mapper
from adapters.openadr3.state import (
    GATEWAY,
    UNNUMBERED,
    VERSIONS,
    StoredObject,
    resource_name_key,
)
from adapters.openadr3.vtn.notifier import parse_subject
from adapters.openadr3.vtn.problems import forbidden
from adapters.openadr3.vtn.service import Change, Hook, VtnService, now_text
from adapters.openadr3.vtn.targeting import normalise
from gateway.domain import DeliveryMark, DeliveryState, EffectiveControl, Resource
from gateway.ports import DeliveryOutcome

log = logging.getLogger(__name__)


def _digest(*parts: str, n: int = 20) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:n]


def resource_target(ven_name: str, resource_name: str) -> str:
    """The target string granted to a VEN for one of its DERs."""
    text = f"{ven_name}/{resource_name}"
    return text if len(text) <= 128 else f"res-{_digest(ven_name, resource_name, n=32)}"


def wire_targets(version: str, target: str) -> list[Any]:
    if version == "3.1.0":
        return [target]
    return [{"type": "RESOURCE_NAME", "values": [target]}]


class Renderer(Hook):
    """Renders DERs' effective controls as events; keeps the VENs' resource objects that
    stand for DERs (and refuses writes that would cut DERs off)."""

    def __init__(self, service: VtnService, gateway: Any, name: str) -> None:
        self.service = service
        self.gateway = gateway
        self.name = name  # the adapter's name: the Binding.protocol of its DERs
        # Rendering runs concurrently (bus events, VEN provisioning): the check-then-create of
        # an LDC's program must not race, or two renders create it twice.
        self._program_lock = asyncio.Lock()
        self._render_locks: dict[str, asyncio.Lock] = {}
        # Whether this process renders (it holds the render lease; without leases: always).
        self.renders = True
        self.wait_s = 10.0  # how long a VEN's provisioning waits for the holder's render

    # -- hooks -----------------------------------------------------------------------------

    async def before_write(self, change: Change) -> None:
        if change.principal is not None and change.kind in ("ven", "resource"):
            self._keep_bindings(change)

    def _keep_bindings(self, change: Change) -> None:
        """No silent loss of control: a client may not delete or rename a ven or resource
        object that stands for platform DERs (their events would stop reaching the VEN while
        the platform believed them delivered). Refused with the reason; the platform unbinds
        DERs (PUT /v1/resources/{id}) and then the objects go with their events."""
        current = change.old or change.obj
        if change.operation == "UPDATE" and not _renamed(change):
            return
        ders = self._ders_standing(current)
        if ders:
            shown = ", ".join(sorted(ders)[:5]) + (" ..." if len(ders) > 5 else "")
            raise forbidden(
                f"this {change.kind} stands for platform DERs ({shown}); deleting or renaming "
                "it would cut them off from their controls: the platform must unbind them first"
            )

    def _ders_standing(self, obj: StoredObject) -> set[str]:
        store = self.service.store
        if obj.kind == "resource":
            der = obj.meta.get("resource_id")
            return {str(der)} if der else set()
        return {
            str(r.meta["resource_id"])
            for r in store.all(obj.version, "resource")
            if r.body.get("venID") == obj.id and r.meta.get("resource_id")
        }

    async def after_write(self, change: Change) -> None:
        if change.kind == "ven" and change.operation != "DELETE" and change.principal is not None:
            await self.sync_ven(change.obj)

    # -- business-logic events -> instructions -------------------------------------------


    # -- the VEN's DERs as resource objects ------------------------------------------------

    def _ven_client(self, ven: StoredObject, resource: Resource | None = None) -> bool:
        """Whether `ven` belongs to the VEN credential provisioned for its name (and, when the
        credential was issued to an aggregator, whether that aggregator owns `resource`)."""
        cred = self.service.ownership.credentials.credential(ven.owner)
        if not (
            cred
            and cred["role"] == "ven"
            and not cred.get("revoked_at")
            and cred.get("ven_name") == ven.body.get("venName")
        ):
            return False
        owner = cred.get("owner_id")
        return resource is None or owner is None or resource.aggregator_id == owner

    async def sync_ven(self, ven: StoredObject) -> None:
        """Give a provisioned VEN resource objects (with granted targets) for its DERs; in
        a process that does not render, wait until the one that does has given them."""
        if not self._ven_client(ven):
            return
        served = [r for r in await self.gateway.find_resources(self.name, ven=ven.body["venName"])
                  if self._ven_client(ven, r)]
        if not self.renders:
            await self._rendered_elsewhere(ven, [r.id for r in served])
            return
        # Its DERs in batches (their controls read at once, their events written together):
        # provisioning 100 VENs of 250 DERs one DER at a time took over ten minutes.
        ids = [r.id for r in served]
        for start in range(0, len(ids), 250):
            await self.render_many(ids[start:start + 250])

    async def _rendered_elsewhere(self, ven: StoredObject, resource_ids: list[str]) -> None:
        """Wait until every one of these DERs has a resource object under `ven` (written by
        the render lease holder, brought here by the event log), for at most `wait_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        store = self.service.store
        while not all(any(o.body.get("venID") == ven.id
                          for o in store.standing_for(ven.version, rid))
                      for rid in resource_ids):
            if loop.time() >= deadline:
                log.info("ven %s: its resource objects are not rendered yet; the render "
                         "lease holder gives them", ven.id)
                return
            await asyncio.sleep(0.05)

    async def _ensure_resource(self, ven: StoredObject, resource: Resource) -> StoredObject:
        name = str(resource.binding.address.get("resource", resource.id))
        target = resource_target(ven.body["venName"], name)
        # Objects carry their targets normalised (3.0.1: "RESOURCE_NAME<US>value"): compare
        # in that form, or a 3.0.1 object gains the target again on every render.
        (term,) = normalise(ven.version, wire_targets(ven.version, target))
        store = self.service.store
        # The ven's resource of that name, by the index of names (no scan of every resource
        # object: provisioning a VEN's DERs one scan each was quadratic in the fleet).
        candidates = store.named(ven.version, "resource", resource_name_key(ven.id, name))
        for obj in candidates:
            if obj.body.get("venID") == ven.id and obj.body.get("resourceName") == name:
                if obj.meta.get("resource_id") == resource.id and term in obj.targets:
                    return obj
                targets = obj.body.get("targets")
                if term not in obj.targets:
                    targets = _with(targets, ven.version, target)
                body = {**obj.body, "targets": targets}
                new = self.service.compose(
                    ven.version,
                    "resource",
                    obj.id,
                    obj.seq,
                    body,
                    obj.owner,
                    obj.body["createdDateTime"],
                    now_text(),
                )
                new.meta = {**obj.meta, "resource_id": resource.id}
                await self.service.put_object(
                    Change(ven.version, "resource", "UPDATE", None, new, obj)
                )
                return new
        seq = await self.service.store.next_seq()
        body = {"resourceName": name, "venID": ven.id, "targets": wire_targets(ven.version, target)}
        stamp = now_text()
        obj = self.service.compose(
            ven.version, "resource", f"resource-{seq}", seq, body, ven.owner, stamp, stamp
        )
        obj.meta = {"resource_id": resource.id, "origin": GATEWAY}
        await self.service.put_object(Change(ven.version, "resource", "CREATE", None, obj))
        return obj

    # -- effective control -> event ------------------------------------------------------

    def _vens_serving(self, resource: Resource) -> list[StoredObject]:
        name = resource.binding.address.get("ven")
        return [
            v
            for version in VERSIONS
            for v in self.service.objects_of(version, "ven")
            if v.body.get("venName") == name and self._ven_client(v, resource)
        ]

    async def render(self, resource_id: str) -> None:
        resource = await self.gateway.resource(resource_id)
        if resource is None or resource.binding.protocol != self.name:
            await self._forget_stale(resource_id, [])
            return
        await self.render_resource(resource)

    async def render_many(self, resource_ids: list[str]) -> None:
        """Render several DERs: one read of their controls, their changed events stored with
        one write and notified in one batch (a fleet-wide instruction changes thousands)."""
        found = {r.id: r for r in await self.gateway.resources(ids=resource_ids)
                 if r.binding.protocol == self.name}
        for rid in resource_ids:
            if rid not in found:
                await self._forget_stale(rid, [])
        ours = [found[rid] for rid in resource_ids if rid in found]
        controls = await self.gateway.effective_controls([r.id for r in ours])
        async with AsyncExitStack() as stack:
            for resource in ours:  # (a single render holds one lock only: no deadlock)
                await stack.enter_async_context(self._render_lock(resource.id))
            changes: list[Change] = []
            marks: list[DeliveryMark] = []
            for resource in ours:
                changes += await self._event_changes(resource, controls.get(resource.id), marks)
            await self.service.store.number([c.obj for c in changes])
            # Told before the events are written: their webhooks and the VENs' polls, which
            # may come at once, have the last word.
            await self._mark(marks)
            await self.service.put_objects([c for c in changes if c.operation != "DELETE"])
            for change in changes:
                if change.operation == "DELETE":
                    await self.service.remove(change)

    async def render_resource(self, resource: Resource) -> None:
        # One render per DER at a time: a bus event and a VEN's provisioning may render the
        # same DER together, and each checks-then-creates its resource object and event.
        marks: list[DeliveryMark] = []
        async with self._render_lock(resource.id):
            control = await self.gateway.effective_control(resource.id)
            changes = await self._event_changes(resource, control, marks)
            await self.service.store.number([c.obj for c in changes])
            await self._mark(marks)  # (before the writes, as in render_many)
            for change in changes:
                if change.operation == "DELETE":
                    await self.service.remove(change)
                else:
                    await self.service.put_object(change)

    async def _mark(self, marks: list[DeliveryMark]) -> None:
        """Tell the core what we know of getting the DERs' controls to them (no silent
        loss: a DER whose control cannot reach its VEN is reported undeliverable)."""
        if marks:
            await self.gateway.mark_delivery(marks)

    def _render_lock(self, resource_id: str) -> asyncio.Lock:
        return self._render_locks.setdefault(resource_id, asyncio.Lock())

    async def _event_changes(
        self, resource: Resource, control: EffectiveControl | None, marks: list[DeliveryMark]
    ) -> list[Change]:
        """Make sure the DER's resource objects exist and stale ones are gone; the changes
        its events need (stored by the caller), and the DER's delivery state (in `marks`)."""
        ven_name = str(resource.binding.address.get("ven", ""))
        serving = self._vens_serving(resource)
        live = control is not None and bool(control.intervals)
        if live and not serving:
            marks.append(DeliveryMark(resource.id, DeliveryState.UNDELIVERABLE, (
                f"no ven object of a VEN credential named {ven_name!r} serves this DER "
                "(not provisioned, revoked, or owned by another aggregator)")))
        changes: list[Change] = []
        for ven in serving:
            res_obj = await self._ensure_resource(ven, resource)
            target = resource_target(ven_name, res_obj.body["resourceName"])
            program_id = await self._program(ven.version, resource)
            change = self._event_change(ven.version, resource, control, program_id, target)
            if change is not None:
                changes.append(change)
        await self._forget_stale(resource.id, serving)
        if live and any(c.operation != "DELETE" for c in changes):
            marks.append(DeliveryMark(resource.id, DeliveryState.PENDING,
                                      "event changed; its VEN has not read it yet"))
        return changes

    async def fetched(self, version: str, events: list[dict[str, Any]]) -> None:
        """A VEN read these events: the DERs of those the gateway rendered got them."""
        marks = []
        for body in events:
            event = self.service.store.get(version, "event", str(body.get("id")))
            der = event.meta.get("resource_id") if event is not None else None
            if der and event is not None and event.meta.get("origin") == GATEWAY:
                marks.append(DeliveryMark(str(der), DeliveryState.FETCHED))
        await self._mark(marks)

    async def on_outcomes(self, outcomes: list[DeliveryOutcome]) -> None:
        """What became of webhooks carrying a DER's control (a rendered event) to the VEN
        whose resource it targets: delivered, the DER's control reached it; failed for
        good, it cannot be reached by push (a VEN that still polls marks it fetched again).
        Webhooks to others (business logic) and about other objects tell nothing of it."""
        marks: dict[str, DeliveryMark] = {}
        for outcome in outcomes:
            sub_id, event_id = parse_subject(outcome.subject) or ("", None)
            if event_id is None or not (outcome.delivered or outcome.final):
                continue
            der = self._control_to_ven(sub_id, event_id)
            if der is None:
                continue
            marks[der] = DeliveryMark(der, DeliveryState.DELIVERED) if outcome.delivered else \
                DeliveryMark(der, DeliveryState.UNDELIVERABLE,
                             f"webhook of subscription {sub_id} failed: {outcome.error}")
        await self._mark(list(marks.values()))

    def _control_to_ven(self, sub_id: str, event_id: str) -> str | None:
        """The DER of a rendered event, if the subscription belongs to its VEN."""
        store = self.service.store
        for version in VERSIONS:
            event = store.get(version, "event", event_id)
            sub = store.get(version, "subscription", sub_id)
            der = event.rendered_for if event is not None else None
            if der is None or sub is None:
                continue
            if any(r.owner == sub.owner for r in store.standing_for(version, der)):
                return der
        return None

    async def render_ven(self, ven_name: str) -> None:
        """Render again the DERs bound to a VEN name (its credential changed). Only where
        rendering is done: the render lease holder hears of the change from the log."""
        if not self.renders:
            return
        bound = await self.gateway.find_resources(self.name, ven=ven_name)
        if bound:
            await self.render_many([r.id for r in bound])

    async def _forget_stale(self, resource_id: str, serving: list[StoredObject]) -> None:
        """A DER rebound elsewhere (or unbound): its old resource object and event go."""
        kept = {(v.version, v.id) for v in serving}
        for version in VERSIONS:
            for res in self.service.store.standing_for(version, resource_id):
                if (version, res.body.get("venID")) in kept:
                    continue
                if res.meta.get("origin") == GATEWAY:
                    await self.service.remove(Change(version, "resource", "DELETE", None, res, res))
                else:  # the VEN's own object: keep it, but it no longer stands for the DER
                    res.meta = {k: v for k, v in res.meta.items() if k != "resource_id"}
                    await self.service.store.save(res)
            if not any(v == version for v, _ in kept):
                event = self.service.store.get(
                    version, "event", f"gw-{_digest(version, resource_id)}"
                )
                if event is not None:
                    await self.service.remove(
                        Change(version, "event", "DELETE", None, event, event)
                    )

    async def _program(self, version: str, resource: Resource) -> str:
        point = await self.gateway.connection_point(resource.connection_point_id)
        ldc = point.ldc_id if point is not None else "unknown"
        program_id = f"ldc-{_digest(ldc)}"
        async with self._program_lock:
            await self._ensure_program(version, ldc, program_id)
        return program_id

    async def _ensure_program(self, version: str, ldc: str, program_id: str) -> None:
        if self.service.store.get(version, "program", program_id) is None:
            seq = await self.service.store.next_seq()
            stamp = now_text()
            body = {"programName": f"der-gateway:{ldc}"}
            obj = self.service.compose(
                version, "program", program_id, seq, body, GATEWAY, stamp, stamp
            )
            obj.meta = {"origin": GATEWAY, "ldc_id": ldc}
            await self.service.put_object(Change(version, "program", "CREATE", None, obj))

    def _event_change(
        self,
        version: str,
        resource: Resource,
        control: EffectiveControl | None,
        program_id: str,
        target: str,
    ) -> Change | None:
        """The write the DER's event needs in one API version, or None."""
        event_id = f"gw-{_digest(version, resource.id)}"
        old = self.service.store.get(version, "event", event_id)
        body = None
        if control is not None:
            body = mapper.event_for_control(
                control, program_id, wire_targets(version, target), f"der-gateway {resource.id}"
            )
        if body is None or control is None:
            return None if old is None else Change(version, "event", "DELETE", None, old, old)
        if old is not None and _same(old.body, body):
            return None
        seq = old.seq if old else UNNUMBERED  # new events are numbered by the batch
        stamp = now_text()
        created = old.body["createdDateTime"] if old else stamp
        obj = self.service.compose(version, "event", event_id, seq, body, GATEWAY, created, stamp)
        obj.meta = {
            "origin": GATEWAY,
            "resource_id": resource.id,
            "instructions": mapper.control_sources(control),
        }
        return Change(version, "event", "UPDATE" if old else "CREATE", None, obj, old)


def _renamed(change: Change) -> bool:
    """Whether an update changes what binds DERs to the object (its name or its ven)."""
    keys = ("venName",) if change.kind == "ven" else ("resourceName", "venID")
    old = change.old.body if change.old is not None else {}
    return any(change.obj.body.get(k) != old.get(k) for k in keys)


def _with(targets: list[Any] | None, version: str, target: str) -> list[Any]:
    return [*(targets or []), *wire_targets(version, target)]


def _same(stored: dict[str, Any], body: dict[str, Any]) -> bool:
    return all(stored.get(k) == v for k, v in body.items())
