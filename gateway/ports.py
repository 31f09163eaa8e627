"""The seam: everything the core gives an adapter, typed, in one module.

Adapters import from the core only this module, `gateway.domain`, `gateway.errors` and
`gateway.jsonform` (an import-rule test holds them to it). The promises the core keeps -
nothing accepted is lost, least privilege, bad input refused, no connection where the
deployment forbids one - are kept at every adapter's edge through these ports, not rebuilt
by each adapter:

- `RecordsPort.write(RecordWrite(...))`: an adapter's records and the deliveries they imply
  in one transaction;
- `PlatformRoute` + `Access`: the core's authorisation (role, then area) on every route an
  adapter mounts;
- `OutboundGuard.check(url)`: the one check of every callback URL (again at connect time);
- `BodyReader`: the one JSON body reader (size, depth, duplicate keys);
- `follow()`: the one way to follow the event log, with one error policy.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiohttp import web

from gateway.api.keys import ACTOR
from gateway.authz import Concern
from gateway.bindings import canonical_address_key, require_keys
from gateway.body import BodyReader, parse_json
from gateway.coordination.topology import Topology
from gateway.delivery import DeliveryOutcome, Outgoing
from gateway.domain import (
    Acknowledgement,
    ConnectionPoint,
    DeliveryMark,
    DeliveryState,
    EffectiveControl,
    Instruction,
    InstructionDraft,
    Participant,
    Quantity,
    Reading,
    Resource,
    ResourceDelivery,
    Role,
)
from gateway.events import (
    AcknowledgementRecorded,
    ControlChanged,
    DeliveryChanged,
    Event,
    InstructionChanged,
    NoticeRaised,
    ParticipantChanged,
    ReadingRecorded,
    RecordsChanged,
    ResourceChanged,
    Topic,
    TopologyChanged,
    TypedEvent,
    decode,
)
from gateway.leases import Leases, Share
from gateway.metrics import GatewayMetrics
from gateway.outbound import OutboundGuard
from gateway.records import RecordWrite

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "Access",
    "AcknowledgementRecorded",
    "Adapter",
    "AdapterContext",
    "BodyReader",
    "Concern",
    "ControlChanged",
    "DeliveriesPort",
    "DeliveryChanged",
    "DeliveryMark",
    "DeliveryOutcome",
    "DeliveryState",
    "Event",
    "EventLog",
    "GatewayMetrics",
    "GatewayPort",
    "InstructionChanged",
    "Leases",
    "NoticeRaised",
    "OutboundGuard",
    "Outgoing",
    "ParticipantChanged",
    "PkiPaths",
    "PlatformRoute",
    "ReadingRecorded",
    "RecordWrite",
    "RecordsChanged",
    "RecordsPort",
    "ResourceChanged",
    "Share",
    "Topic",
    "TopologyChanged",
    "TypedEvent",
    "actor",
    "canonical_address_key",
    "decode",
    "follow",
    "parse_json",
    "platform_request",
    "require_keys",
]

log = logging.getLogger(__name__)


# -- what adapters call on the gateway --------------------------------------------------------


class GatewayPort(Protocol):
    """The domain operations adapters use. Every write is one transaction in the core."""

    async def topology(self) -> Topology: ...
    async def participant(self, participant_id: str) -> Participant | None: ...
    async def participants(self, role: Role | None = None) -> list[Participant]: ...
    async def connection_point(self, cp_id: str) -> ConnectionPoint | None: ...
    async def resource(self, resource_id: str) -> Resource | None: ...

    async def resources(self, *, protocol: str | None = None,
                        aggregator_id: str | None = None,
                        ids: Iterable[str] | None = None) -> list[Resource]: ...

    async def find_resources(self, protocol: str, **address: Any) -> list[Resource]: ...

    async def register_resources(self, actor: Participant, resources: Sequence[Resource]
                                 ) -> list[Resource]: ...

    async def set_online_many(self, marks: dict[str, bool]) -> dict[str, bool]: ...

    async def submit_instruction(self, actor: Participant, draft: InstructionDraft,
                                 idempotency_key: str | None = None, request: Any = None,
                                 ) -> tuple[Instruction, bool]: ...

    async def cancel_instruction(self, actor: Participant, instruction_id: str
                                 ) -> Instruction: ...

    async def instruction(self, instruction_id: str) -> Instruction | None: ...

    async def instructions(self, *, live_only: bool = True, issuer_id: str | None = None,
                           limit: int | None = None, offset: int = 0) -> list[Instruction]: ...

    async def effective_control(self, resource_id: str) -> EffectiveControl | None: ...

    async def effective_controls(self, resource_ids: Iterable[str] | None = None
                                 ) -> dict[str, EffectiveControl]: ...

    async def record_acknowledgement(self, ack: Acknowledgement) -> Acknowledgement: ...
    async def record_readings(self, readings: Sequence[Reading]) -> int: ...

    async def latest_acknowledgements(self, resource_ids: Iterable[str] | None = None
                                      ) -> dict[str, Acknowledgement]: ...

    async def acknowledgements(self, *, resource_id: str | None = None,
                               resource_ids: Iterable[str] | None = None,
                               instruction_id: str | None = None, since_id: int = 0,
                               limit: int = 100) -> list[Acknowledgement]: ...

    async def readings(self, *, resource_id: str | None = None,
                       resource_ids: Iterable[str] | None = None,
                       quantity: Quantity | None = None, since: datetime | None = None,
                       since_id: int = 0, limit: int = 100) -> list[Reading]: ...

    async def mark_delivery(self, marks: Sequence[DeliveryMark]) -> None: ...

    async def delivery_states(self, resource_ids: Iterable[str] | None = None
                              ) -> dict[str, ResourceDelivery]: ...


class RecordsPort(Protocol):
    """The adapter's own durable documents (scoped to it), and its deliveries with them."""

    async def get(self, kind: str, key: str) -> dict[str, Any] | None: ...
    async def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...
    async def put(self, kind: str, key: str, doc: dict[str, Any]) -> None: ...
    async def put_many(self, kind: str, docs: dict[str, dict[str, Any]]) -> None: ...
    async def delete(self, kind: str, key: str) -> bool: ...
    async def next_sequence(self, name: str, count: int = 1) -> int: ...
    async def write(self, change: RecordWrite) -> list[int]: ...

    # (last: inside the class, the name `list` means this method from here on)
    async def list(self, kind: str, prefix: str | None = None
                   ) -> builtins.list[tuple[str, dict[str, Any]]]: ...


class DeliveriesPort(Protocol):
    """Outbound notifications. Enqueue them with `RecordsPort.write` when they announce a
    change of records; `enqueue_many` only for those that announce nothing stored."""

    def register_tls(self, name: str, context: ssl.SSLContext) -> None: ...
    def on_outcomes(self, listener: Callable[[list[DeliveryOutcome]], Awaitable[None]]
                    ) -> None: ...
    async def enqueue_many(self, items: Sequence[Outgoing]) -> list[int]: ...
    async def cancel(self, subjects: Iterable[str]) -> int: ...


class Subscription(Protocol):
    overflowed: bool
    first_id: int | None

    def __aiter__(self) -> Any: ...
    def drain(self, limit: int) -> list[Event]: ...


class EventLog(Protocol):
    def subscription(self, *topics: str, maxsize: int = 10_000
                     ) -> AbstractAsyncContextManager[Any]: ...

    async def history(self, topics: Collection[str], after: int, limit: int
                      ) -> list[Event] | None: ...


# -- following the event log: one helper, one error policy ------------------------------------


async def follow(log_: EventLog, topics: Collection[Topic], *,
                 on_batch: Callable[[list[TypedEvent]], Awaitable[None]],
                 resync: Callable[[], Awaitable[None]], name: str, batch: int = 500,
                 maxsize: int = 10_000) -> None:
    """Follow the event log until cancelled.

    The policy, the same for every adapter: subscribe, then `resync()` (rebuild from the
    store, the truth - nothing committed before the subscription is missed); then hand
    `on_batch` the typed events in order, up to `batch` at a time when they queue up.
    A follower that falls `maxsize` events behind (a fan-out to 100,000 DERs is 100,000
    events) subscribes again and reads what it missed back from the event log, in order,
    from the last event it handled: its work stays that of the events, however often it
    falls behind (a rebuild of every DER each time did not: at 100,000 DERs a rebuild took
    long enough to fall behind again). It rebuilds only when the log no longer holds them.
    If `resync`/`on_batch` raises, it logs (with `name`), waits a back-off (1 s doubling to
    30 s) and starts over with a resync. Events of topics this version does not know are
    skipped.
    """
    backoff = 1.0
    # The id of the last event handed on; 0 after a rebuild, until one is; None: rebuild.
    last: int | None = None
    while True:
        try:
            async with log_.subscription(*topics, maxsize=maxsize) as sub:
                if last is not None:
                    last = await _catch_up(log_, topics, last, on_batch, batch)
                if last is None:
                    await resync()
                    last = 0
                backoff = 1.0
                async for first in sub:
                    events = [e for e in (first, *sub.drain(batch - 1)) if e.id > last]
                    if not events:
                        continue
                    typed = [t for e in events if (t := _typed(e)) is not None]
                    if typed:
                        await on_batch(typed)
                    last = events[-1].id
                if last == 0:  # it fell behind before handling any: on from its first
                    last = sub.first_id - 1 if sub.first_id is not None else None
            log.warning("%s fell behind the event log; reading on after event %s", name, last)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; rebuilding from the store in %.0f s", name, backoff)
            last = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


async def _catch_up(log_: EventLog, topics: Collection[Topic], last: int,
                    on_batch: Callable[[list[TypedEvent]], Awaitable[None]], batch: int
                    ) -> int | None:
    """Hand on what was committed after `last`, read from the log, until it has no more
    (what comes later is in the new subscription's queue); the new last id, or None if
    the log no longer holds them all."""
    wanted = [str(t) for t in topics]
    while True:
        events = await log_.history(wanted, last, batch)
        if events is None:
            return None
        if not events:
            return last
        typed = [t for e in events if (t := _typed(e)) is not None]
        if typed:
            await on_batch(typed)
        last = events[-1].id


def _typed(event: Event) -> TypedEvent | None:
    try:
        return decode(event)
    except KeyError:
        return None


# -- platform routes: the core's authorisation on every one -----------------------------------


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a route: `roles`, then - if `concerns` is given - only when every DER and
    participant it names is in the caller's area (an LDC: its area and the LDCs embedded
    below it; an aggregator: its own DERs and itself; the admin: everything). Without
    `concerns` the role alone decides: use that only for routes that touch nothing
    area-bound (or for the admin alone)."""

    roles: frozenset[Role]
    concerns: Callable[[web.Request], Awaitable[Concern]] | None = None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class PlatformRoute:
    method: str
    path: str  # relative to /v1/adapters/<name>
    handler: Handler
    summary: str
    access: Access
    openapi: dict[str, Any] = field(default_factory=dict)  # more of the OpenAPI operation


def actor(request: web.Request) -> Participant:
    """The authenticated participant calling a platform route."""
    found: Participant = request[ACTOR]
    return found


# -- the context an adapter is built with ------------------------------------------------------


@dataclass(frozen=True)
class PkiPaths:
    """Where the certificates live; `pki.devpki` has the layout."""

    root: Path

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


@dataclass
class AdapterContext:
    name: str
    settings: Settings  # the gateway's own settings (read-only): iana_pen, horizon_s ...
    config: dict[str, Any]  # this adapter's table [adapters.<name>]; validate it yourself
    gateway: GatewayPort
    bus: EventLog
    deliveries: DeliveriesPort
    records: RecordsPort  # already scoped to this adapter
    pki: PkiPaths
    outbound: OutboundGuard = field(default_factory=OutboundGuard)
    body: BodyReader = field(default_factory=BodyReader)
    # Put `metrics.http_middleware(name)` first in your aiohttp server's middlewares.
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    # Work only one process may do (several processes on PostgreSQL): `leases.holding(name)`,
    # `leases.sharing(prefix, count)`; with one process every lease is held at once.
    leases: Leases | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dev_mode(self) -> bool:
        return self.settings.dev_mode

    @property
    def reuse_port(self) -> bool:
        """Several processes share this host's listening ports: bind with SO_REUSEPORT."""
        return self.settings.reuse_port


@runtime_checkable
class Adapter(Protocol):
    name: str

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Start listeners/pollers on enter; stop them, cleanly, on exit."""
        ...

    def listeners(self) -> list[str]:
        """URLs this adapter serves or reaches, for `der-gateway status`."""
        ...


# -- CLI plugins (entry-point group der_gateway.cli) ------------------------------------------


async def platform_request(config: Path | None, method: str, path: str, body: Any = None, *,
                           cert: Path | None = None, token: str | None = None
                           ) -> tuple[int, Any]:
    """One call of the platform API as the `der-gateway` CLI makes it (the settings' address
    and dev PKI; the admin's certificate unless `cert` or `token`): an adapter's CLI plugin
    is a client of its own platform routes, with their authority rules."""
    from gateway.client import PlatformClient  # (the CLI starts fast: load on use)
    from gateway.settings import load_settings

    client = PlatformClient(load_settings(config), cert=cert, token=token)
    return await client.request(method, path, body)
