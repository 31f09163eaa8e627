"""Adapters' own durable documents (registrations, subscriptions, credentials...), and the
deliveries they imply, committed together.

JSON documents keyed by (adapter, kind, key), so a new protocol needs no core migration. A
`RecordWrite` stores documents, deletes others, enqueues the notifications the change
implies and cancels those that no longer apply, in one transaction: a crash can lose
neither half alone (the fault point `crash-between-records-and-deliveries` proves it).
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.batching import Coalescer
from gateway.delivery import Outgoing, add_deliveries, cancel_pending
from gateway.domain import utcnow
from gateway.events import Topic
from gateway.store import repo
from gateway.store.engine import Database

log = logging.getLogger(__name__)
FAULT_ENV = "DER_GATEWAY_FAULT_INJECT"
CRASH_BETWEEN = "crash-between-records-and-deliveries"
CRASH_EXIT_CODE = 70


@dataclass(frozen=True, slots=True)
class RecordWrite:
    """Documents, deletions, the deliveries they imply and the cancellation of deliveries
    that no longer apply (by `Outgoing.subject`), committed in one transaction."""

    puts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # kind->key->doc
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (kind, key)
    deliveries: list[Outgoing] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)  # delivery subjects


@dataclass(frozen=True, slots=True)
class _Write:
    """One caller's write: documents to put, a key to delete, numbers to take, or a whole
    RecordWrite."""

    op: str  # "put", "delete", "sequence" or "write"
    kind: str  # record kind, or sequence name
    docs: dict[str, dict[str, Any]] | None = None
    key: str = ""
    count: int = 1
    change: RecordWrite | None = None


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


class AdapterRecords:
    """Writes are group-committed (gateway.batching): concurrent callers, e.g. thousands of
    DERs answering one instruction, share a transaction; each returns once it is committed.
    Should a shared transaction fail, each write is tried again alone, so one bad write
    fails only its own caller."""

    def __init__(self, db: Database, adapter: str,
                 on_deliveries: Callable[[], None] | None = None, *,
                 announce_as: str | None = None,
                 on_commit: Callable[[], None] | None = None) -> None:
        self._db = db
        self.adapter = adapter
        self._writes: Coalescer[_Write, Any] = Coalescer(self._commit)
        self._on_deliveries = on_deliveries or (lambda: None)  # wakes the delivery worker
        # With several processes, every write of documents is announced on the event log
        # (`records.changed`, naming this process), so the adapter in the others refreshes
        # what it keeps in memory; `on_commit` wakes this process's log follower.
        self._announce_as = announce_as
        self._on_commit = on_commit or (lambda: None)

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        async with self._db.read() as session:
            return await repo.get_record(session, self.adapter, kind, key)

    async def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The documents of these keys that exist, in one read."""
        async with self._db.read() as session:
            return await repo.get_records(session, self.adapter, kind, sorted(set(keys)))

    async def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        await self.put_many(kind, {key: doc})

    async def put_many(self, kind: str, docs: dict[str, dict[str, Any]]) -> None:
        """Write several documents in one transaction (one statement)."""
        await self._submit(_Write("put", kind, docs=docs))

    async def delete(self, kind: str, key: str) -> bool:
        return bool(await self._submit(_Write("delete", kind, key=key)))

    async def write(self, change: RecordWrite) -> builtins.list[int]:
        """Commit `change` in one transaction; returns the new deliveries' ids."""
        ids: builtins.list[int] = await self._submit(_Write("write", "", change=change))
        if change.deliveries:
            self._on_deliveries()
        return ids

    async def list(self, kind: str, prefix: str | None = None
                   ) -> builtins.list[tuple[str, dict[str, Any]]]:
        """All documents of a kind, ordered by key."""
        async with self._db.read() as session:
            return await repo.list_records(session, self.adapter, kind, prefix)

    async def next_sequence(self, name: str, count: int = 1) -> int:
        """The next number of a sequence; with `count`, that many at once (one transaction
        for a batch of new records): the last of them is returned."""
        if count < 1:
            raise ValueError("count must be at least 1")
        return int(await self._submit(_Write("sequence", name, count=count)))

    # -- group commit ------------------------------------------------------------------------

    async def _submit(self, write: _Write) -> Any:
        result = await self._writes.submit(write)
        if isinstance(result, _Failed):
            raise result.error
        return result

    async def _commit(self, writes: builtins.list[_Write]) -> builtins.list[Any]:
        try:
            async with self._db.write() as session:
                results = await self._apply_all(session, writes)
                await self._announce(session, writes)
            self._announced(writes)
            return results
        except Exception:
            if len(writes) == 1:
                raise
        results = []
        for write in writes:  # alone, so that only a bad write fails
            try:
                async with self._db.write() as session:
                    results.append(await self._apply(session, write))
                    await self._announce(session, [write])
                self._announced([write])
            except Exception as exc:
                results.append(_Failed(exc))
        return results

    async def _announce(self, session: AsyncSession, writes: builtins.list[_Write]) -> None:
        if self._announce_as is None:
            return
        changes = _changed_keys(writes)
        if changes:
            await repo.add_outbox(session, Topic.RECORDS_CHANGED, {
                "adapter": self.adapter, "by": self._announce_as, "changes": changes})

    def _announced(self, writes: builtins.list[_Write]) -> None:
        if self._announce_as is not None and _changed_keys(writes):
            self._on_commit()

    async def _apply_all(self, session: AsyncSession, writes: builtins.list[_Write]
                         ) -> builtins.list[Any]:
        """Apply a batch in order. Runs of documents and their deliveries are merged: one
        statement per kind for thousands of callers' small writes (each statement costs a
        trip through the database thread), and so are a sequence's numbers; a deletion by
        key or a cancellation is applied on its own, after what came before it."""
        results: builtins.list[Any] = [None] * len(writes)
        await self._take_sequences(session, writes, results)
        run: builtins.list[int] = []
        for index, write in enumerate(writes):
            if write.op == "sequence":
                continue  # (taken above)
            if _mergeable(write):
                run.append(index)
                continue
            await self._apply_run(session, writes, run, results)
            run = []
            results[index] = await self._apply(session, write)
        await self._apply_run(session, writes, run, results)
        return results

    async def _take_sequences(self, session: AsyncSession, writes: builtins.list[_Write],
                              results: builtins.list[Any]) -> None:
        """A batch's numbers of each sequence in one statement, handed out in the batch's
        order (a VEN's report, each taking an object id, was a statement per report). A
        sequence only counts, so taking its numbers first changes nothing of the rest."""
        wanted: dict[str, builtins.list[int]] = {}
        for index, write in enumerate(writes):
            if write.op == "sequence":
                wanted.setdefault(write.kind, []).append(index)
        for name, indexes in wanted.items():
            total = sum(writes[i].count for i in indexes)
            last = await repo.next_sequence(session, f"{self.adapter}:{name}", total)
            taken = last - total
            for i in indexes:
                taken += writes[i].count
                results[i] = taken

    async def _apply_run(self, session: AsyncSession, writes: builtins.list[_Write],
                         run: builtins.list[int], results: builtins.list[Any]) -> None:
        if not run:
            return
        if len(run) == 1:
            results[run[0]] = await self._apply(session, writes[run[0]])
            return
        final: dict[tuple[str, str], dict[str, Any] | None] = {}  # None: deleted
        for index in run:
            write = writes[index]
            for kind, docs in _puts(write).items():
                for key, put in docs.items():
                    final[(kind, key)] = put
            for kind, key in write.change.deletes if write.change else ():
                final[(kind, key)] = None
        now = utcnow()
        puts: dict[str, dict[str, dict[str, Any]]] = {}
        deletes: dict[str, builtins.list[str]] = {}
        for (kind, key), last in final.items():
            if last is None:
                deletes.setdefault(kind, []).append(key)
            else:
                puts.setdefault(kind, {})[key] = last
        for kind, docs in puts.items():
            await repo.put_records(session, self.adapter, kind, docs, now)
        for kind, keys in deletes.items():
            await repo.delete_records(session, self.adapter, kind, keys)
        await session.flush()
        changes = {i: c for i in run if (c := writes[i].change) is not None}
        for change in changes.values():
            _maybe_crash(change)
        ordered = [(i, o) for i, c in changes.items() for o in c.deliveries]
        ids = await add_deliveries(session, self.adapter, [o for _, o in ordered])
        for index in run:
            results[index] = [] if index in changes else None
        for (index, _), row_id in zip(ordered, ids, strict=True):
            results[index].append(row_id)

    async def _apply(self, session: AsyncSession, write: _Write) -> Any:
        if write.op == "write":
            assert write.change is not None
            return await self._apply_change(session, write.change)
        if write.op == "put":
            await repo.put_records(session, self.adapter, write.kind, write.docs or {},
                                   utcnow())
            return None
        if write.op == "delete":
            return bool(await repo.delete_records(session, self.adapter, write.kind,
                                                  [write.key]))
        return await repo.next_sequence(session, f"{self.adapter}:{write.kind}", write.count)

    async def _apply_change(self, session: AsyncSession, change: RecordWrite) -> builtins.list[int]:
        now = utcnow()
        for kind, docs in change.puts.items():
            await repo.put_records(session, self.adapter, kind, docs, now)
        for kind, key in change.deletes:
            await repo.delete_records(session, self.adapter, kind, [key])
        await session.flush()
        _maybe_crash(change)
        await cancel_pending(session, self.adapter, change.cancel)
        return await add_deliveries(session, self.adapter, change.deliveries)


def _mergeable(write: _Write) -> bool:
    """Puts, and whole writes without cancellations (whose order against deliveries of the
    same batch matters), merge with their neighbours."""
    return write.op == "put" or (write.op == "write" and write.change is not None
                                 and not write.change.cancel)


def _puts(write: _Write) -> dict[str, dict[str, dict[str, Any]]]:
    if write.op == "put":
        return {write.kind: write.docs or {}}
    return write.change.puts if write.change is not None else {}


MAX_KEYS_ANNOUNCED = 500  # per kind; more and the event says "the whole kind" (None)


def _changed_keys(writes: list[_Write]) -> dict[str, list[str] | None]:
    """kind -> the keys written or deleted (None: too many to name, reload the kind)."""
    keys: dict[str, set[str]] = {}
    for w in writes:
        if w.op == "put":
            keys.setdefault(w.kind, set()).update(w.docs or {})
        elif w.op == "delete":
            keys.setdefault(w.kind, set()).add(w.key)
        elif w.op == "write" and w.change is not None:
            for kind, docs in w.change.puts.items():
                keys.setdefault(kind, set()).update(docs)
            for kind, key in w.change.deletes:
                keys.setdefault(kind, set()).add(key)
    return {kind: (sorted(found) if len(found) <= MAX_KEYS_ANNOUNCED else None)
            for kind, found in keys.items()}


def _maybe_crash(change: RecordWrite) -> None:
    """Fault injection for the crash tests: exit after the records are written and before
    the deliveries are, inside the one transaction (so neither may survive alone)."""
    if change.deliveries and os.environ.get(FAULT_ENV, "") == CRASH_BETWEEN:
        log.error("fault injection: exiting between the records and their deliveries")
        os._exit(CRASH_EXIT_CODE)
