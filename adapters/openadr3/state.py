"""The VTN's objects: durable in the adapter's records, indexed in memory for fast polls.

Every write goes to `ctx.records` first (the truth) and then to the in-memory index, which is
rebuilt from the records at start-up. Objects keep their creation sequence, so every list is
in a stable order (creation order) and skip/limit paging is repeatable. Sequence numbers (and
the object ids made of them) come from the store's sequence `object`, taken in a transaction:
several gateway processes on one database never issue the same one.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.ports import Outgoing, RecordsPort, RecordWrite

KINDS = ("program", "event", "report", "subscription", "ven", "resource")
VERSIONS = ("3.1.0", "3.0.1")
SEQUENCE = "object"  # the store's sequence of object numbers (ids, creation order)
UNNUMBERED = 0  # the seq of an object not yet numbered (`ObjectStore.number`)
GATEWAY = "gateway"  # owner and origin of what the gateway itself writes


# The records port as this adapter uses it: one shape of result each, always awaited.
Records = RecordsPort


@dataclass
class Announcements:
    """What a write announces, committed with it: deliveries (webhooks), more records (MQTT
    publications waiting for the broker) and deliveries no longer wanted (by subject)."""

    deliveries: list[Outgoing] = field(default_factory=list)
    puts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    cancel: list[str] = field(default_factory=list)

    def add(self, other: Announcements) -> None:
        self.deliveries.extend(other.deliveries)
        for kind, docs in other.puts.items():
            self.puts.setdefault(kind, {}).update(docs)
        self.cancel.extend(other.cancel)


async def list_docs(records: Records, kind: str) -> list[dict[str, Any]]:
    """Every document of one kind, in key order."""
    return [doc for _key, doc in await records.list(kind)]


@dataclass
class StoredObject:
    """One OpenADR object: its wire body as served, plus what the VTN keeps beside it."""

    version: str
    kind: str
    seq: int
    body: dict[str, Any]
    owner: str  # clientID of the client that owns it (VEN privacy), or the BL creator
    targets: tuple[str, ...] = ()  # normalised target strings, for matching
    meta: dict[str, Any] = field(default_factory=dict)  # mapping state (resource ids, …)

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def rendered_for(self) -> str | None:
        """The platform DER whose control this event is (a gateway-rendered event), else
        None."""
        if self.kind != "event" or self.meta.get("origin") != GATEWAY:
            return None
        der = self.meta.get("resource_id")
        return str(der) if der else None

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "seq": self.seq,
            "body": self.body,
            "owner": self.owner,
            "targets": list(self.targets),
            "meta": self.meta,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StoredObject:
        return cls(
            version=doc["version"],
            kind=doc["kind"],
            seq=int(doc["seq"]),
            body=doc["body"],
            owner=doc.get("owner", ""),
            targets=tuple(doc.get("targets", ())),
            meta=doc.get("meta", {}),
        )


def record_kind(version: str, kind: str) -> str:
    return f"v{version.replace('.', '')}.{kind}"


# records kind -> (API version, object kind), for the changes other processes announce
OBJECT_KINDS = {record_kind(v, k): (v, k) for v in VERSIONS for k in KINDS}
LIST_ABOVE = 20  # more changed keys of a kind than this: one listing instead of a read each


class ObjectStore:
    """Write-through index of every OpenADR object, per API version and kind."""

    def __init__(self, records: Records) -> None:
        self._records = records
        # Reloading, refreshing and indexing a commit take turns: a reload's reads must not
        # be installed over what a commit or a refresh indexed meanwhile.
        self._lock = asyncio.Lock()
        self._index: dict[tuple[str, str], dict[str, StoredObject]] = {
            (v, k): {} for v in VERSIONS for k in KINDS
        }
        # target -> ids of the objects carrying it, per (version, kind): polls with target
        # filters touch only the objects they can match.
        self._by_target: dict[tuple[str, str], dict[str, set[str]]] = {
            (v, k): {} for v in VERSIONS for k in KINDS
        }
        # A platform DER -> the resource objects standing for it (meta "resource_id"), per
        # version: rendering one DER finds its own without scanning every resource object.
        self._by_der: dict[str, dict[str, set[str]]] = {v: {} for v in VERSIONS}
        self._der_of: dict[tuple[str, str], str] = {}  # (version, object id) -> DER
        # Owner (clientID) -> ids of its objects, per (version, kind): a report finds its
        # VEN's resources, and report retention its VEN's reports, without a full scan.
        self._by_owner: dict[tuple[str, str], dict[str, set[str]]] = {
            (v, k): {} for v in VERSIONS for k in KINDS
        }
        self._owner_of: dict[tuple[str, str, str], str] = {}  # (version, kind, id) -> owner
        # Unique names (name_key) -> ids, per (version, kind): checking that a new resource's
        # name is free scanned every resource object (quadratic in a VEN's provisioning).
        self._by_name: dict[tuple[str, str], dict[str, set[str]]] = {
            (v, k): {} for v in VERSIONS for k in KINDS
        }
        self._name_of: dict[tuple[str, str, str], str] = {}  # (version, kind, id) -> name
        # Bumped on every ven/resource write: caches of granted targets compare against it.
        self.grants_generation = 0

    async def load(self) -> None:
        """(Re)build the whole index from the records (start-up, or after the event log
        overflowed)."""
        async with self._lock:
            for bucket in (self._by_target, self._by_owner, self._by_name):
                for index in bucket.values():
                    index.clear()
            self._name_of.clear()
            for by_der in self._by_der.values():
                by_der.clear()
            self._der_of.clear()
            self._owner_of.clear()
            for version in VERSIONS:
                for kind in KINDS:
                    docs = await list_docs(self._records, record_kind(version, kind))
                    objs = sorted((StoredObject.from_doc(d) for d in docs),
                                  key=lambda o: o.seq)
                    self._index[(version, kind)] = {o.id: o for o in objs}
                    for obj in objs:
                        self._link(obj)
            self.grants_generation += 1

    async def refresh(self, kind: str, keys: tuple[str, ...] | None) -> list[StoredObject]:
        """Bring the index up to what another process wrote: records `kind`, those `keys`
        (None: the whole kind). Answers the objects found (saved or updated) among them."""
        version, object_kind = OBJECT_KINDS[kind]
        bucket_key = (version, object_kind)
        async with self._lock:
            if keys is None:
                docs = await list_docs(self._records, kind)
                objs = sorted((StoredObject.from_doc(d) for d in docs), key=lambda o: o.seq)
                for stale in self._index[bucket_key].values():
                    self._unlink(stale)
                self._index[bucket_key] = {o.id: o for o in objs}
                for obj in objs:
                    self._link(obj)
                    self._touched(obj)
                return objs
            if len(keys) > LIST_ABOVE:
                listed = dict(await self._records.list(kind))
                found = {key: listed.get(key) for key in keys}
            else:
                found = {key: await self._records.get(kind, key) for key in keys}
            for key, doc in found.items():
                old = self._index[bucket_key].get(key)
                if doc is None and old is not None:
                    self._index_removed(old)
            # (in sequence order: new objects append, as they do when written here)
            objs = sorted((StoredObject.from_doc(d) for d in found.values() if d is not None),
                          key=lambda o: o.seq)
            for obj in objs:
                self._index_saved(obj)
            return objs

    async def align_sequence(self) -> None:
        """Make the store's sequence pass every number in use (objects written before the
        numbers came from the store). Harmless when several processes do it at once."""
        highest = max((o.seq for bucket in self._index.values() for o in bucket.values()),
                      default=0)
        taken = await self._records.next_sequence(SEQUENCE)
        if taken < highest:
            await self._records.next_sequence(SEQUENCE, highest - taken)

    async def next_seq(self) -> int:
        """A new object number, unique among every process of the gateway."""
        return await self._records.next_sequence(SEQUENCE)

    async def number(self, objs: list[StoredObject]) -> None:
        """Number new objects (seq UNNUMBERED) at once: one transaction for a whole batch,
        in the order given."""
        todo = [o for o in objs if o.seq == UNNUMBERED]
        if not todo:
            return
        last = await self._records.next_sequence(SEQUENCE, len(todo))
        for n, obj in enumerate(todo, start=last - len(todo) + 1):
            obj.seq = n

    async def fetch(self, version: str, kind: str, object_id: str) -> StoredObject | None:
        """As `get`; an object not indexed here yet (another process wrote it a moment ago,
        and the event log has not brought it) is read from the records and indexed."""
        found = self.get(version, kind, object_id)
        if found is not None:
            return found
        async with self._lock:  # (a refresh that deletes it must not be overtaken)
            found = self.get(version, kind, object_id)
            if found is None:
                doc = await self._records.get(record_kind(version, kind), object_id)
                if doc is not None:
                    found = StoredObject.from_doc(doc)
                    self._index_saved(found)
            return found

    def get(self, version: str, kind: str, object_id: str) -> StoredObject | None:
        return self._index[(version, kind)].get(object_id)

    def all(self, version: str, kind: str) -> Iterator[StoredObject]:
        """Objects in creation order (the stable order of every list)."""
        return iter(tuple(self._index[(version, kind)].values()))

    async def save(self, obj: StoredObject) -> None:
        await self.commit([obj], [])

    async def commit(
        self,
        saved: list[StoredObject],
        removed: list[StoredObject],
        announced: Announcements | None = None,
    ) -> None:
        """Objects saved and removed, and what announces them (webhooks, MQTT publications,
        cancelled deliveries), in ONE transaction of the records; then the index."""
        change = RecordWrite()
        for obj in saved:
            change.puts.setdefault(record_kind(obj.version, obj.kind), {})[obj.id] = obj.to_doc()
        change.deletes.extend((record_kind(o.version, o.kind), o.id) for o in removed)
        if announced is not None:
            for kind, docs in announced.puts.items():
                change.puts.setdefault(kind, {}).update(docs)
            change.deliveries.extend(announced.deliveries)
            change.cancel.extend(announced.cancel)
        await self._records.write(change)
        async with self._lock:
            for obj in saved:
                self._index_saved(obj)
            for obj in removed:
                self._index_removed(obj)

    def _index_saved(self, obj: StoredObject) -> None:
        # New objects usually carry the highest sequence and append; updates keep their
        # place. One numbered before the last (taken by another process, or committed after
        # a later one of this process) puts the bucket back in sequence order.
        bucket = self._index[(obj.version, obj.kind)]
        old = bucket.get(obj.id)
        if old is not None:
            self._unlink(old)
        behind = old is None and bool(bucket) and next(reversed(bucket.values())).seq > obj.seq
        bucket[obj.id] = obj
        if behind:
            self._index[(obj.version, obj.kind)] = dict(
                sorted(bucket.items(), key=lambda item: item[1].seq))
        self._link(obj)
        self._touched(obj)

    async def remove(self, obj: StoredObject) -> None:
        await self.commit([], [obj])

    def _index_removed(self, obj: StoredObject) -> None:
        old = self._index[(obj.version, obj.kind)].pop(obj.id, None)
        if old is not None:
            self._unlink(old)
        self._touched(obj)

    def carrying(self, version: str, kind: str, targets: frozenset[str]) -> list[StoredObject]:
        """Objects carrying any of `targets`, in creation order."""
        index, bucket = self._by_target[(version, kind)], self._index[(version, kind)]
        ids = set().union(*(index.get(t, ()) for t in targets)) if targets else set()
        return sorted((bucket[i] for i in ids if i in bucket), key=lambda o: o.seq)

    def standing_for(self, version: str, resource_id: str) -> list[StoredObject]:
        """The resource objects standing for a platform DER, in creation order."""
        bucket = self._index[(version, "resource")]
        ids = self._by_der[version].get(resource_id, ())
        return sorted((bucket[i] for i in ids if i in bucket), key=lambda o: o.seq)

    def owned(self, version: str, kind: str, owner: str) -> list[StoredObject]:
        """The objects of one owner, in creation order."""
        bucket = self._index[(version, kind)]
        ids = self._by_owner[(version, kind)].get(owner, ())
        return sorted((bucket[i] for i in ids if i in bucket), key=lambda o: o.seq)

    def oldest_owned(self, version: str, kind: str, owner: str, n: int) -> list[StoredObject]:
        """The `n` first-created objects of one owner (no sort of all of them: a VEN's
        report retention asks for one of its 1,000 reports on each new one)."""
        bucket = self._index[(version, kind)]
        ids = self._by_owner[(version, kind)].get(owner, ())
        return heapq.nsmallest(n, (bucket[i] for i in ids if i in bucket), key=lambda o: o.seq)

    def count_owned(self, version: str, kind: str, owner: str) -> int:
        return len(self._by_owner[(version, kind)].get(owner, ()))

    def named(self, version: str, kind: str, name: str) -> list[StoredObject]:
        """The objects of a kind whose unique name (`name_key`) is `name`."""
        bucket = self._index[(version, kind)]
        ids = self._by_name[(version, kind)].get(name, ())
        return [bucket[i] for i in ids if i in bucket]

    def _link(self, obj: StoredObject) -> None:
        name = name_key(obj.kind, obj.body)
        if name is not None:
            self._by_name[(obj.version, obj.kind)].setdefault(name, set()).add(obj.id)
            self._name_of[(obj.version, obj.kind, obj.id)] = name
        self._by_owner[(obj.version, obj.kind)].setdefault(obj.owner, set()).add(obj.id)
        self._owner_of[(obj.version, obj.kind, obj.id)] = obj.owner
        index = self._by_target[(obj.version, obj.kind)]
        for target in obj.targets:
            index.setdefault(target, set()).add(obj.id)
        der = obj.meta.get("resource_id") if obj.kind == "resource" else None
        if der:
            self._by_der[obj.version].setdefault(der, set()).add(obj.id)
            self._der_of[(obj.version, obj.id)] = der

    def _unlink(self, obj: StoredObject) -> None:
        # By what was linked, not by obj.meta: callers may have changed the meta in place.
        name = self._name_of.pop((obj.version, obj.kind, obj.id), None)
        if name is not None:
            _discard(self._by_name[(obj.version, obj.kind)], name, obj.id)
        owner = self._owner_of.pop((obj.version, obj.kind, obj.id), None)
        if owner is not None:
            _discard(self._by_owner[(obj.version, obj.kind)], owner, obj.id)
        der = self._der_of.pop((obj.version, obj.id), None)
        if der is not None:
            _discard(self._by_der[obj.version], der, obj.id)
        index = self._by_target[(obj.version, obj.kind)]
        for target in obj.targets:
            ids = index.get(target)
            if ids is not None:
                ids.discard(obj.id)
                if not ids:
                    del index[target]

    def _touched(self, obj: StoredObject) -> None:
        if obj.kind in ("ven", "resource"):
            self.grants_generation += 1


def name_key(kind: str, body: dict[str, Any]) -> str | None:
    """What must be unique among objects of a kind: a program's or a ven's name, a
    resource's name within its ven (None: the kind has no unique name)."""
    if kind == "program":
        return str(body.get("programName"))
    if kind == "ven":
        return str(body.get("venName"))
    if kind == "resource":
        return resource_name_key(body.get("venID"), body.get("resourceName"))
    return None


def resource_name_key(ven_id: Any, resource_name: Any) -> str:
    """A resource's unique name: its name within its ven."""
    return f"{ven_id}\x1f{resource_name}"


def _discard(index: dict[str, set[str]], key: str, object_id: str) -> None:
    """Take an id out of an index entry, and the entry with its last id."""
    ids = index.get(key)
    if ids is not None:
        ids.discard(object_id)
        if not ids:
            del index[key]
