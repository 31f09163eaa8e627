"""The VTN's behaviour: create, read, update, delete and search OpenADR objects.

Both API versions share this code; what differs (wire models, target shapes) is looked up by
version in `kinds`, `ownership` and `targeting`. Business logic (BL) sees everything; a VEN
sees the objects it owns and, through granted targets, the programs and events meant for it.
Gateway-specific work (instructions, readings, acknowledgements) and notifications hang off
the `Hooks` called around every write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from adapters.openadr3.codec.timing import parse_start, rfc3339
from adapters.openadr3.mapper import slots
from adapters.openadr3.state import Announcements, ObjectStore, StoredObject, name_key
from adapters.openadr3.vtn.auth import Principal
from adapters.openadr3.vtn.kinds import KINDS, check_writer, parse
from adapters.openadr3.vtn.ownership import Ownership
from adapters.openadr3.vtn.problems import conflict, not_found
from adapters.openadr3.vtn.targeting import (
    SEP,
    Audience,
    audience_for_bl,
    audience_for_ven,
    hide,
    matched,
    normalise,
)

MAX_LIMIT = 50


@dataclass(frozen=True, slots=True)
class SearchQuery:
    skip: int = 0
    limit: int = MAX_LIMIT
    targets: frozenset[str] | None = None
    filters: dict[str, str] = field(default_factory=dict)  # programID, eventID, clientName…
    objects: frozenset[str] | None = None
    active: bool | None = None


@dataclass
class Change:
    """One write, as the hooks and the notifier see it."""

    version: str
    kind: str
    operation: str  # CREATE, UPDATE, DELETE
    principal: Principal | None  # None: the gateway itself
    obj: StoredObject
    old: StoredObject | None = None


class Hook:
    """Called around every write; the default does nothing. `before_write` may refuse (an
    OadrProblem), and then nothing is stored; `after_writes` gets several changes stored
    together (the gateway's batched renders)."""

    async def before_write(self, change: Change) -> None:
        return None

    async def after_write(self, change: Change) -> None:
        return None

    async def after_writes(self, changes: list[Change]) -> None:
        for change in changes:
            await self.after_write(change)


class Announcer(Protocol):
    async def announce(self, changes: list[Change]) -> Announcements: ...


def now_text() -> str:
    return rfc3339(datetime.now(UTC))


class VtnService:
    def __init__(self, store: ObjectStore, ownership: Ownership, hooks: list[Hook]) -> None:
        self.store = store
        self.ownership = ownership
        self.hooks = hooks
        self._granted: dict[tuple[str, str], tuple[int, frozenset[str]]] = {}
        self._names = asyncio.Lock()
        self.announcer: Announcer | None = None  # the notifier, once wired
        self.max_reports = 1000  # per VEN client and API version
        self.max_subscriptions = 100  # per VEN client and API version

    # -- writes ----------------------------------------------------------------------------

    async def create(
        self,
        version: str,
        kind: str,
        principal: Principal,
        raw: Any,
        *,
        scope_id: str | None = None,
    ) -> dict[str, Any]:
        check_writer(KINDS[kind], principal.role, principal.scopes)
        body = parse(version, kind, raw)
        await self._fetch_references(version, kind, body, scope_id)
        owner, body = self.ownership.assign(version, kind, principal, body, None, scope_id)
        self._check_references(version, kind, body, None, principal)
        self._check_quota(version, kind, principal)
        # A 3.0.1 body is the object itself and may carry an id: kept when free (docs).
        wanted = raw.get("id") if version == "3.0.1" else None
        if wanted is not None and await self.store.fetch(version, kind, wanted) is not None:
            raise conflict(f"{kind} {wanted} exists")
        inline = _inline_resources(version, kind, raw)
        obj = await self._new_object(version, kind, body, owner, wanted)
        await self._write(Change(version, kind, "CREATE", principal, obj))
        for resource in inline:  # 3.0.1: a ven may arrive with its resources
            await self.create(version, "resource", principal, resource, scope_id=obj.id)
        if kind == "report":
            await self._retain_reports(version, owner)
        return self.render(obj)

    async def _fetch_references(
        self, version: str, kind: str, body: dict[str, Any], scope_id: str | None
    ) -> None:
        """Objects a body names, read from the records if not indexed here yet: a client
        may name what it made through another process a moment ago (or heard of by a
        webhook that process sent) before the event log brings it here."""
        for ref_kind, field_name in REFERENCES.get(kind, ()):
            value = body.get(field_name)
            if isinstance(value, str):
                await self.store.fetch(version, ref_kind, value)
        if scope_id is not None:
            await self.store.fetch(version, "ven", scope_id)

    async def _retain_reports(self, version: str, owner: str) -> None:
        """Keep a VEN's newest `max_reports` reports: periodic reports must not grow memory
        (and the records) without bound. The data they carried is in the core already."""
        excess = self.store.count_owned(version, "report", owner) - self.max_reports
        if excess <= 0:
            return
        for old in self.store.oldest_owned(version, "report", owner, excess):
            await self.remove(Change(version, "report", "DELETE", None, old, old))

    async def update(
        self,
        version: str,
        kind: str,
        principal: Principal,
        object_id: str,
        raw: Any,
        *,
        scope_id: str | None = None,
    ) -> dict[str, Any]:
        check_writer(KINDS[kind], principal.role, principal.scopes)
        await self.store.fetch(version, kind, object_id)
        old = self._visible_or_404(version, kind, principal, object_id, scope_id)
        body = parse(version, kind, raw)
        await self._fetch_references(version, kind, body, scope_id)
        owner, body = self.ownership.assign(version, kind, principal, body, old, scope_id)
        self._check_references(version, kind, body, old, principal)
        obj = self._replace(old, body, owner)
        await self._write(Change(version, kind, "UPDATE", principal, obj, old))
        return self.render(obj)

    async def delete(
        self,
        version: str,
        kind: str,
        principal: Principal,
        object_id: str,
        *,
        scope_id: str | None = None,
    ) -> dict[str, Any]:
        check_writer(KINDS[kind], principal.role, principal.scopes)
        await self.store.fetch(version, kind, object_id)
        obj = self._visible_or_404(version, kind, principal, object_id, scope_id)
        self.ownership.check_delete(version, kind, principal, obj)
        rendered = self.render(obj)
        await self.remove(Change(version, kind, "DELETE", principal, obj, obj))
        return rendered

    async def put_object(self, change: Change) -> None:
        """A write by the gateway itself (rendered events, synced resources)."""
        await self._write(change)

    async def put_objects(self, changes: list[Change]) -> None:
        """Several writes by the gateway itself (not deletions): stored, with everything
        that announces them, in one transaction; then the hooks see them together."""
        if not changes:
            return
        for change in changes:
            for hook in self.hooks:
                await hook.before_write(change)
        async with self._names:
            for change in changes:
                self._check_references(change.version, change.kind, change.obj.body, change.old,
                                       change.principal)
            await self.store.commit(
                [c.obj for c in changes], [], await self._announce(changes)
            )
        for hook in self.hooks:
            await hook.after_writes(changes)

    async def remove(self, change: Change) -> None:
        for hook in self.hooks:
            await hook.before_write(change)  # may refuse, before any child goes
        for child in self._children(change.obj):
            await self.remove(
                Change(child.version, child.kind, "DELETE", change.principal, child, child)
            )
        await self.store.commit([], [change.obj], await self._announce([change]))
        for hook in self.hooks:
            await hook.after_write(change)

    async def _write(self, change: Change) -> None:
        for hook in self.hooks:
            await hook.before_write(change)  # may refuse: nothing is stored then
        if change.kind in NAMED_KINDS:
            async with self._names:  # two concurrent writers must not both take one name
                await self._store_one(change)
        else:  # nothing unique to claim: concurrent writes (reports) share transactions
            await self._store_one(change)
        for hook in self.hooks:
            await hook.after_write(change)

    async def _store_one(self, change: Change) -> None:
        if change.operation != "DELETE":
            self._check_references(change.version, change.kind, change.obj.body, change.old,
                                   change.principal)
        await self.store.commit([change.obj], [], await self._announce([change]))

    async def _announce(self, changes: list[Change]) -> Announcements | None:
        """What announces the changes (webhooks, MQTT), to commit with them."""
        return await self.announcer.announce(changes) if self.announcer is not None else None

    def _children(self, obj: StoredObject) -> list[StoredObject]:
        """Objects that cannot outlive `obj`: a program's events, a ven's resources."""
        child_kind, key = {"program": ("event", "programID"), "ven": ("resource", "venID")}.get(
            obj.kind, ("", "")
        )
        if not child_kind:
            return []
        return [c for c in self.store.all(obj.version, child_kind) if c.body.get(key) == obj.id]

    async def _new_object(
        self, version: str, kind: str, body: dict[str, Any], owner: str, wanted: str | None
    ) -> StoredObject:
        seq = await self.store.next_seq()
        stamp = now_text()
        object_id = wanted or f"{kind}-{seq}"
        return self.compose(version, kind, object_id, seq, body, owner, stamp, stamp)

    def _replace(self, old: StoredObject, body: dict[str, Any], owner: str) -> StoredObject:
        obj = self.compose(
            old.version,
            old.kind,
            old.id,
            old.seq,
            body,
            owner,
            old.body["createdDateTime"],
            now_text(),
        )
        obj.meta = dict(old.meta)
        return obj

    @staticmethod
    def compose(
        version: str,
        kind: str,
        object_id: str,
        seq: int,
        body: dict[str, Any],
        owner: str,
        created: str,
        modified: str,
    ) -> StoredObject:
        """An object with its VTN metadata (id, times, objectType, clientID in 3.1)."""
        full = {k: v for k, v in body.items() if k != "objectType"}
        full.update(
            id=object_id,
            createdDateTime=created,
            modificationDateTime=modified,
            objectType=KINDS[kind].object_type,
        )
        if version == "3.1.0" and KINDS[kind].owned:
            full["clientID"] = owner
        return StoredObject(
            version, kind, seq, full, owner, normalise(version, body.get("targets"))
        )

    def _check_quota(self, version: str, kind: str, principal: Principal) -> None:
        if kind != "subscription" or principal.is_bl:
            return
        mine = self.store.count_owned(version, kind, principal.client_id)
        if mine >= self.max_subscriptions:
            raise conflict(f"a VEN may hold {self.max_subscriptions} subscriptions")

    def _check_references(
        self,
        version: str,
        kind: str,
        body: dict[str, Any],
        old: StoredObject | None,
        principal: Principal | None,
    ) -> None:
        check = REFERENCE_CHECKS.get(kind)
        if check is not None:
            check(Ref(self, version, body, old, principal))

    def clash(
        self,
        version: str,
        kind: str,
        old: StoredObject | None,
        pred: Callable[[StoredObject], bool],
        name: str | None = None,
    ) -> StoredObject | None:
        """Another object of `kind` for which `pred` holds (a taken name), or None; among
        those with this unique `name` (`name_key`) when given, not among all."""
        found = self.store.named(version, kind, name) if name is not None \
            else self.store.all(version, kind)
        for obj in sorted(found, key=lambda o: o.seq) if name is not None else found:
            if (old is None or obj.id != old.id) and pred(obj):
                return obj
        return None

    def exists(
        self, version: str, kind: str, object_id: Any, principal: Principal | None = None
    ) -> bool:
        """Whether `object_id` names an object that `principal` may refer to. An object the
        caller may not see is answered as if it did not exist (no existence leak)."""
        obj = self.store.get(version, kind, object_id) if isinstance(object_id, str) else None
        return obj is not None and self.referable(principal, obj)

    def referable(self, principal: Principal | None, obj: StoredObject) -> bool:
        """Whether a client may name `obj` in a reference: BL and the gateway any; a VEN its
        own objects, and programs and events untargeted or carrying a target granted to it."""
        if principal is None or principal.is_bl:
            return True
        rule = KINDS[obj.kind]
        if rule.targeted:
            granted = Audience(self.granted(obj.version, principal.client_id), untargeted=True)
            return granted.visible(obj.targets) is not None
        return not rule.owned or obj.owner == principal.client_id

    # -- reads -----------------------------------------------------------------------------

    def get(
        self,
        version: str,
        kind: str,
        principal: Principal,
        object_id: str,
        *,
        scope_id: str | None = None,
    ) -> dict[str, Any]:
        obj = self.store.get(version, kind, object_id)
        view = self.view(principal, obj, scope_id=scope_id) if obj else None
        if view is None:
            raise not_found(f"{kind} {object_id} not found")
        return view

    def search(
        self,
        version: str,
        kind: str,
        principal: Principal,
        query: SearchQuery,
        *,
        scope_id: str | None = None,
    ) -> list[dict[str, Any]]:
        audience = self.audience(version, principal, query.targets)
        predicate = FILTERS.get(kind)
        out: list[dict[str, Any]] = []
        skipped = 0
        for obj in self._candidates(version, kind, audience):
            if len(out) >= query.limit:
                break
            if predicate is not None and not predicate(self, obj, query):
                continue
            view = self.view(principal, obj, audience, query.targets, scope_id)
            if view is None:
                continue
            if skipped < query.skip:
                skipped += 1
                continue
            out.append(view)
        return out

    def _candidates(self, version: str, kind: str, audience: Audience) -> Iterable[StoredObject]:
        """Every object, or only those carrying the audience's targets when that suffices."""
        terms = audience.terms
        if (
            KINDS[kind].targeted
            and terms is not None
            and not audience.untargeted
            and not any(t.startswith(SEP) for t in terms)  # 3.0.1 "any type": scan
        ):
            return self.store.carrying(version, kind, terms)
        return self.store.all(version, kind)

    def audience(
        self, version: str, principal: Principal, requested: frozenset[str] | None
    ) -> Audience:
        if principal.is_bl:
            return audience_for_bl(requested)
        return audience_for_ven(version, self.granted(version, principal.client_id), requested)

    def granted(self, version: str, client_id: str) -> frozenset[str]:
        """Targets granted to a VEN client: on its ven objects and their resources."""
        key = (version, client_id)
        cached = self._granted.get(key)
        if cached is not None and cached[0] == self.store.grants_generation:
            return cached[1]
        if len(self._granted) > 10_000:  # bounded: one entry per active client is plenty
            self._granted.clear()
        found = self._compute_granted(version, client_id)
        self._granted[key] = (self.store.grants_generation, found)
        return found

    def _compute_granted(self, version: str, client_id: str) -> frozenset[str]:
        vens = {v.id: v for v in self.store.all(version, "ven") if v.owner == client_id}
        out: set[str] = set()
        for ven in vens.values():
            out.update(ven.targets)
        for res in self.store.all(version, "resource"):
            if res.body.get("venID") in vens:
                out.update(res.targets)
        return frozenset(out)

    def view(
        self,
        principal: Principal,
        obj: StoredObject,
        audience: Audience | None = None,
        requested: frozenset[str] | None = None,
        scope_id: str | None = None,
    ) -> dict[str, Any] | None:
        """What `principal` may see of `obj`, or None when it may not see it."""
        rule = KINDS[obj.kind]
        if scope_id is not None and obj.body.get("venID") != scope_id:
            return None
        if rule.targeted:
            audience = audience or self.audience(obj.version, principal, requested)
            shown = audience.visible(obj.targets)
            if shown is None:
                return None
            body = self.render(obj)
            return body if principal.is_bl else hide(obj.version, body, shown)
        if rule.owned and not principal.is_bl and obj.owner != principal.client_id:
            return None
        if requested is not None and not matched(obj.targets, requested):
            return None
        return self.render(obj)

    def render(self, obj: StoredObject) -> dict[str, Any]:
        if obj.version == "3.0.1" and obj.kind == "ven":
            resources = [
                r.body for r in self.store.all("3.0.1", "resource") if r.body.get("venID") == obj.id
            ]
            return {**obj.body, "resources": resources}
        return obj.body

    def _visible_or_404(
        self, version: str, kind: str, principal: Principal, object_id: str, scope_id: str | None
    ) -> StoredObject:
        obj = self.store.get(version, kind, object_id)
        if obj is None or self.view(principal, obj, scope_id=scope_id) is None:
            raise not_found(f"{kind} {object_id} not found")
        return obj

    def event_program(self, version: str, event_id: Any) -> Any:
        event = self.store.get(version, "event", event_id) if isinstance(event_id, str) else None
        return event.body.get("programID") if event else None

    def objects_of(self, version: str, kind: str) -> Iterator[StoredObject]:
        return self.store.all(version, kind)


def _inline_resources(version: str, kind: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    """3.0.1 ven.resources (already validated with the ven): names must be distinct."""
    if version != "3.0.1" or kind != "ven" or not raw.get("resources"):
        return []
    names = [r["resourceName"] for r in raw["resources"]]
    if len(names) != len(set(names)):
        raise conflict("the ven lists two resources with one resourceName")
    return [{k: v for k, v in r.items() if k not in ("id", "venID")} for r in raw["resources"]]


# --- referential integrity: 409 for a dangling reference or a taken name ------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """What a reference check needs: the body to store, the object it replaces, the writer."""

    svc: VtnService
    version: str
    body: dict[str, Any]
    old: StoredObject | None
    principal: Principal | None

    def taken(self, kind: str, what: str, pred: Callable[[StoredObject], bool]) -> None:
        """409 when the name is taken by an object the writer may see; 404 when it is taken
        by one it may not (a VEN learns nothing of other parties' objects)."""
        other = self.svc.clash(self.version, kind, self.old, pred,
                               name_key(kind, self.body))
        if other is None:
            return
        if self.svc.referable(self.principal, other):
            raise conflict(f"{what} exists")
        raise not_found(f"{what} cannot be used by this client")

    def must_exist(self, kind: str, field_name: str) -> None:
        if not self.svc.exists(self.version, kind, self.body.get(field_name), self.principal):
            raise conflict(f"{kind} {self.body.get(field_name)} does not exist")


def _program_refs(ref: Ref) -> None:
    name = ref.body["programName"]
    ref.taken("program", f"a program named {name!r}", lambda o: o.body.get("programName") == name)


def _event_refs(ref: Ref) -> None:
    ref.must_exist("program", "programID")


def _report_refs(ref: Ref) -> None:
    ref.must_exist("event", "eventID")
    if "programID" in ref.body:
        ref.must_exist("program", "programID")


def _subscription_refs(ref: Ref) -> None:
    if ref.body.get("programID") is not None:
        ref.must_exist("program", "programID")


def _ven_refs(ref: Ref) -> None:
    name = ref.body["venName"]
    ref.taken("ven", f"a ven named {name!r}", lambda o: o.body.get("venName") == name)


def _resource_refs(ref: Ref) -> None:
    ven_id, name = ref.body.get("venID"), ref.body["resourceName"]
    ref.taken(
        "resource",
        f"ven {ven_id} has a resource named {name!r}",
        lambda o: o.body.get("venID") == ven_id and o.body.get("resourceName") == name,
    )


# What a body of each kind refers to: (kind, field).
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "event": (("program", "programID"),),
    "report": (("event", "eventID"), ("program", "programID")),
    "subscription": (("program", "programID"),),
    "resource": (("ven", "venID"),),
}

# Kinds whose names are unique (programName; venName; resourceName within a ven): their
# check-then-save is serialised.
NAMED_KINDS = frozenset({"program", "ven", "resource"})

REFERENCE_CHECKS: dict[str, Callable[[Ref], None]] = {
    "program": _program_refs,
    "event": _event_refs,
    "report": _report_refs,
    "subscription": _subscription_refs,
    "ven": _ven_refs,
    "resource": _resource_refs,
}


# --- search filters (several parameters: all must match) ---------------------------------


def _eq(obj: StoredObject, query: SearchQuery, *names: str) -> bool:
    return all(obj.body.get(n) == query.filters[n] for n in names if n in query.filters)


def _event_filter(svc: VtnService, obj: StoredObject, query: SearchQuery) -> bool:
    if not _eq(obj, query, "programID"):
        return False
    return not query.active or event_active(obj.body, datetime.now(UTC))


def _report_filter(svc: VtnService, obj: StoredObject, query: SearchQuery) -> bool:
    if not _eq(obj, query, "eventID", "clientName"):
        return False
    program = query.filters.get("programID")
    if program is None:
        return True
    return bool(
        (obj.body.get("programID") or svc.event_program(obj.version, obj.body.get("eventID")))
        == program
    )


def _subscription_filter(svc: VtnService, obj: StoredObject, query: SearchQuery) -> bool:
    if not _eq(obj, query, "programID", "clientName"):
        return False
    if query.objects is None:
        return True
    kinds = {o for op in obj.body.get("objectOperations", ()) for o in op.get("objects", ())}
    return bool(kinds & query.objects)


FILTERS: dict[str, Callable[[VtnService, StoredObject, SearchQuery], bool]] = {
    "event": _event_filter,
    "report": _report_filter,
    "subscription": _subscription_filter,
    "ven": lambda _s, o, q: _eq(o, q, "venName"),
    "resource": lambda _s, o, q: _eq(o, q, "resourceName", "venID"),
}


def event_active(body: dict[str, Any], now: datetime) -> bool:
    """Whether an event has not yet transpired (no end, or an end after now)."""
    try:
        windows = slots(body, body.get("intervals") or (), now)
    except (ValueError, OverflowError):
        return True
    if not windows:
        start = (body.get("intervalPeriod") or {}).get("start")
        return start is None or parse_start(start, now) >= now
    return any(w.end is None or w.end > now for w in windows)
