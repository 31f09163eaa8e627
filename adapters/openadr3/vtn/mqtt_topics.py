"""Which MQTT topics hear of a 3.1.0 change, and what each is told (the OpenADR 3.1 MQTT
binding's topic names; the notification object a webhook would carry)."""

from __future__ import annotations

from typing import Any

from adapters.openadr3.state import StoredObject
from adapters.openadr3.vtn.auth import Principal, Role
from adapters.openadr3.vtn.kinds import KINDS
from adapters.openadr3.vtn.mqtt import OPERATIONS, Publication
from adapters.openadr3.vtn.service import Change, VtnService


class MqttFanout:
    """Which MQTT topics hear of a 3.1.0 change, and what each is told (the notification
    object a webhook would carry). Business-logic topics get the whole object; a VEN's
    topics only objects it may read, target hiding applied."""

    def __init__(self, service: VtnService) -> None:
        self._service = service

    def publications(self, changes: list[Change]) -> list[Publication]:
        out: list[Publication] = []
        for change in changes:
            if change.version != "3.1.0":
                continue
            out += self._for_bl(change)
            out += self._for_vens(change)
        return out

    @staticmethod
    def _note(change: Change, seen: dict[str, Any]) -> dict[str, Any]:
        targets = seen.get("targets")
        return {"objectType": seen["objectType"], "operation": change.operation,
                "object": seen, "targets": targets if isinstance(targets, list) else None}

    def _for_bl(self, change: Change) -> list[Publication]:
        op, body = OPERATIONS[change.operation], self._service.render(change.obj)
        plural = f"{change.kind}s"
        bases = [plural]
        if change.kind in ("program", "ven") and change.operation != "CREATE":
            bases.append(f"{plural}/{change.obj.id}")
        if change.kind == "event":
            bases.append(f"events/programs/{body.get('programID')}")
        note = self._note(change, body)
        return [Publication(f"{b}/{op}", note) for b in bases]

    def _for_vens(self, change: Change) -> list[Publication]:
        op, obj = OPERATIONS[change.operation], change.obj
        if change.kind == "resource":
            ven = self._service.store.get("3.1.0", "ven", str(obj.body.get("venID")))
            if ven is None or not self._is_ven(ven.owner):
                return []
            return [Publication(f"resources/vens/{ven.id}/{op}",
                                self._note(change, self._service.render(obj)))]
        if change.kind == "ven" and change.operation == "CREATE" and self._is_ven(obj.owner):
            return [Publication(f"vens/{obj.id}/{op}", self._note(change, obj.body))]
        if not KINDS[change.kind].targeted:
            return []
        out: list[Publication] = []
        seen_by: dict[str, dict[str, Any] | None] = {}
        for ven in self._service.objects_of("3.1.0", "ven"):
            if ven.owner not in seen_by:
                seen_by[ven.owner] = self._seen_by_ven(ven.owner, obj)
            seen = seen_by[ven.owner]
            if seen is not None:
                out.append(Publication(f"{change.kind}s/vens/{ven.id}/{op}",
                                       self._note(change, seen)))
        return out

    def _is_ven(self, client_id: str) -> bool:
        cred = self._service.ownership.credentials.credential(client_id)
        return cred is not None and cred["role"] == Role.VEN.value

    def _seen_by_ven(self, client_id: str, obj: StoredObject) -> dict[str, Any] | None:
        if not self._is_ven(client_id):
            return None
        principal = Principal(client_id, Role.VEN, frozenset({"read_targets"}))
        granted = self._service.granted(obj.version, client_id)
        return self._service.view(principal, obj, requested=granted or None) if obj.targets \
            else self._service.view(principal, obj)
