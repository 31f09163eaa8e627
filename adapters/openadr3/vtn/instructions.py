"""Business-logic events become instructions, on the authority of the platform party the
BL credential acts for (through coordination, like any instruction); replacing or deleting
the event cancels them. Gateway-rendered programs and events are read-only to clients."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from adapters.openadr3 import mapper
from adapters.openadr3.state import GATEWAY, StoredObject
from adapters.openadr3.vtn.auth import Principal
from adapters.openadr3.vtn.problems import OadrProblem, bad_request, forbidden
from adapters.openadr3.vtn.service import Change, Hook, VtnService
from gateway.domain import Target, TargetKind
from gateway.errors import GatewayError

log = logging.getLogger(__name__)


class BlInstructions(Hook):
    def __init__(self, service: VtnService, gateway: Any) -> None:
        self.service = service
        self.gateway = gateway

    async def before_write(self, change: Change) -> None:
        if change.principal is None or change.kind not in ("event", "program"):
            return
        if (change.old or change.obj).meta.get("origin") == GATEWAY:
            raise forbidden("the gateway renders this object from the platform; it is read-only")
        if change.kind == "program":
            return
        await self._cancel(change.old, change.principal)
        if change.operation != "DELETE":
            by_resource = await self._submit(change)
            change.obj.meta["instructions"] = [i for ids in by_resource.values() for i in ids]
            change.obj.meta["by_resource"] = by_resource

    def _event_resources(self, event: StoredObject) -> list[str]:
        targets = set(event.targets)
        return [
            r.meta["resource_id"]
            for r in self.service.objects_of(event.version, "resource")
            if "resource_id" in r.meta and targets & set(r.targets)
        ]

    async def _submit(self, change: Change) -> dict[str, list[str]]:
        """Instructions per DER for a BL event (none when it targets no DER of ours)."""
        resource_ids = self._event_resources(change.obj)
        if not resource_ids:
            return {}
        try:
            drafts = mapper.event_instructions(change.obj.body, datetime.now(UTC))
        except ValueError as exc:  # MappingError, or times beyond the calendar
            raise bad_request(str(exc)) from None
        if not drafts:
            return {}
        actor = await self._actor(change.principal)
        made: list[str] = []
        by_resource: dict[str, list[str]] = {}
        stamp = change.obj.body["modificationDateTime"]
        for rid in resource_ids:
            for n, draft in enumerate(drafts):
                key = f"openadr3:{change.obj.id}:{stamp}:{rid}:{n}"
                targeted = replace(draft, target=Target(TargetKind.RESOURCE, rid))
                try:
                    instruction, _created = await self.gateway.submit_instruction(
                        actor, targeted, key
                    )
                except GatewayError as exc:
                    await self._cancel_ids(made, actor)
                    raise OadrProblem(exc.status if exc.status < 500 else 409, exc.detail) from None
                made.append(instruction.id)
                by_resource.setdefault(rid, []).append(instruction.id)
        return by_resource

    async def _actor(self, principal: Principal | None) -> Any:
        if principal is None or not principal.participant_id:
            raise forbidden("this client acts for no platform party; it cannot instruct DERs")
        actor = await self.gateway.participant(principal.participant_id)
        if actor is None:
            raise forbidden("the platform party of this client is unknown")
        return actor

    async def _cancel(self, old: StoredObject | None, principal: Principal | None) -> None:
        if old is None or not old.meta.get("instructions"):
            return
        await self._cancel_ids(old.meta["instructions"], await self._actor(principal))

    async def _cancel_ids(self, ids: list[str], actor: Any) -> None:
        for instruction_id in ids:
            try:
                await self.gateway.cancel_instruction(actor, instruction_id)
            except GatewayError as exc:
                log.info("instruction %s not cancelled: %s", instruction_id, exc.detail)
