"""Who owns an object (its clientID) and which targets a writer may set.

Definitions §Object Privacy: the VTN writes the requesting VEN's client id into the objects it
creates; only business logic (BL) may write targets on ven and resource objects, because those
targets grant access to targeted programs and events. A VEN that updates its own ven or
resource keeps the targets BL granted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.openadr3.state import ObjectStore, StoredObject
from adapters.openadr3.vtn.auth import Credentials, Principal, Role
from adapters.openadr3.vtn.problems import forbidden, not_found
from adapters.openadr3.vtn.targeting import normalise

Assign = Callable[
    ["Ownership", str, Principal, dict[str, Any], StoredObject | None, str | None],
    tuple[str, dict[str, Any]],
]


class Ownership:
    def __init__(self, store: ObjectStore, credentials: Credentials) -> None:
        self.store = store
        self.credentials = credentials

    def assign(
        self,
        version: str,
        kind: str,
        principal: Principal,
        body: dict[str, Any],
        old: StoredObject | None,
        scope_id: str | None,
    ) -> tuple[str, dict[str, Any]]:
        if old is not None and not principal.is_bl and old.owner != principal.client_id:
            raise not_found(f"{kind} {old.id} not found")
        return ASSIGN[kind](self, version, principal, body, old, scope_id)

    def check_delete(
        self, version: str, kind: str, principal: Principal, obj: StoredObject
    ) -> None:
        if KIND_OWNED.get(kind) and not principal.is_bl and obj.owner != principal.client_id:
            raise not_found(f"{kind} {obj.id} not found")

    def ven_owner_by_name(self, ven_name: str) -> str | None:
        """The VEN client provisioned for this venName (3.0.1 vens carry no clientID)."""
        for cred in self.credentials.credentials():
            if cred["role"] == "ven" and cred["ven_name"] == ven_name and not cred["revoked_at"]:
                return str(cred["client_id"])
        return None

    def owned_ven(self, version: str, principal: Principal, ven_id: Any) -> StoredObject:
        ven = self.store.get(version, "ven", ven_id) if isinstance(ven_id, str) else None
        if ven is None or (not principal.is_bl and ven.owner != principal.client_id):
            raise not_found(f"ven {ven_id} not found")
        return ven


def _creator(
    o: Ownership,
    version: str,
    p: Principal,
    body: dict[str, Any],
    old: StoredObject | None,
    scope_id: str | None,
) -> tuple[str, dict[str, Any]]:
    return (old.owner if old is not None else p.client_id), body


def _keep_granted_targets(
    version: str, p: Principal, body: dict[str, Any], old: StoredObject | None
) -> dict[str, Any]:
    """VENs may not change targets: keep BL's; refuse a VEN that tries to set others."""
    if p.is_bl:
        return body
    sent = body.get("targets")
    current = old.body.get("targets") if old is not None else None
    if sent and normalise(version, sent) != normalise(version, current):
        raise forbidden("only business logic may write targets on vens and resources")
    return {**body, "targets": current} if current is not None else body


def _ven(
    o: Ownership,
    version: str,
    p: Principal,
    body: dict[str, Any],
    old: StoredObject | None,
    scope_id: str | None,
) -> tuple[str, dict[str, Any]]:
    if version == "3.1.0":
        if body["objectType"] == "BL_VEN_REQUEST":
            if not p.is_bl:
                raise forbidden("only business logic may send BL_VEN_REQUEST")
            return body["clientID"], {k: v for k, v in body.items() if k != "clientID"}
        owner = old.owner if old is not None else p.client_id
        return owner, _keep_granted_targets(version, _as_ven(p), body, old)
    if p.is_bl:
        owner = o.ven_owner_by_name(body["venName"]) or (old.owner if old else p.client_id)
        return owner, body
    return (old.owner if old else p.client_id), _keep_granted_targets(version, p, body, old)


def _resource(
    o: Ownership,
    version: str,
    p: Principal,
    body: dict[str, Any],
    old: StoredObject | None,
    scope_id: str | None,
) -> tuple[str, dict[str, Any]]:
    if version == "3.0.1":
        ven = o.owned_ven(version, p, scope_id)
        return ven.owner, _keep_granted_targets(version, p, {**body, "venID": ven.id}, old)
    ven = o.owned_ven(version, p, body["venID"])
    if body["objectType"] == "BL_RESOURCE_REQUEST":
        if not p.is_bl:
            raise forbidden("only business logic may send BL_RESOURCE_REQUEST")
        return body["clientID"], {k: v for k, v in body.items() if k != "clientID"}
    return ven.owner, _keep_granted_targets(version, _as_ven(p), body, old)


def _as_ven(p: Principal) -> Principal:
    """A VEN_*_REQUEST carries no targets: keep the granted ones even when BL sends it."""
    return Principal(p.client_id, Role.VEN, p.scopes, p.participant_id)


ASSIGN: dict[str, Assign] = {
    "program": _creator,
    "event": _creator,
    "report": _creator,
    "subscription": _creator,
    "ven": _ven,
    "resource": _resource,
}
KIND_OWNED = {"report": True, "subscription": True, "ven": True, "resource": True}
