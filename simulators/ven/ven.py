"""One VEN: token -> its ven object -> its resources (with their targets) -> events by
polling or by webhook -> each resource's DER follows its event -> reports (acknowledgement and
telemetry) when an event changes and every `report_s`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from simulators.feeder.envelope import ControlledDer, Envelope
from simulators.ven import events
from simulators.ven.http import VtnClient, VtnError
from simulators.ven.receiver import receiving

log = logging.getLogger(__name__)
TARGETS_PER_QUERY = 20  # keeps request lines short
REPORT_RETRY_MAX_S = 60.0
# What a VTN that is restarting, unreachable or busy answers (a VtnError only if retryable).
RETRYABLE = (VtnError, OSError, TimeoutError, aiohttp.ClientError)


@dataclass(frozen=True)
class VenConfig:
    ven_name: str
    base_url: str  # https://host:port/openadr3/3.1.0
    ca: Path  # the VTN's CA
    client_id: str
    client_secret: str
    subscribe: bool = False
    poll_s: float = 5.0  # with a subscription this is only the safety net
    report_s: float = 10.0
    tick_s: float = 0.25
    connections: int = 8
    report_retry_s: float = 1.0  # a failed report is sent again after this, doubling to 60 s


@dataclass
class VenStats:
    polls: int = 0
    poll_errors: int = 0
    notifications: int = 0
    reports: int = 0
    report_errors: int = 0


@dataclass
class _Resource:
    name: str
    der: ControlledDer
    targets: set[str] = field(default_factory=set)
    event_id: str | None = None
    applied: Envelope = field(default_factory=Envelope)
    acked_ref: str | None = None  # id@modificationDateTime last acknowledged by a report
    retry_s: float = 0.0  # back-off of a failed report
    # The envelope of the interval in force, while it is: (event ref, start, end, envelope).
    # Parsing an event's times is most of a tick's work for a VEN with hundreds of resources.
    window: tuple[str, datetime, datetime | None, Envelope] | None = None


class Ven:
    def __init__(self, config: VenConfig, ders: dict[str, ControlledDer]) -> None:
        self.config = config
        self.resources = {name: _Resource(name, der) for name, der in ders.items()}
        self.events: dict[str, dict[str, Any]] = {}
        self.stats = VenStats()
        self.ven_id: str | None = None
        self._reports: asyncio.Queue[tuple[_Resource, dict[str, Any]]] = asyncio.Queue(10_000)
        # Notifications wake the tick loop rather than each applying every resource: a
        # burst of them (one per resource's event) is applied once.
        self._changed = asyncio.Event()
        self._subscribed = False

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        cfg = self.config
        async with VtnClient(cfg.base_url, cfg.ca, cfg.client_id, cfg.client_secret,
                             cfg.connections) as vtn, AsyncExitStack() as stack:
            url, secret = None, secrets.token_urlsafe(24)
            if cfg.subscribe:
                url = await stack.enter_async_context(receiving(self._notified, secret))
            await self._start(vtn, url, secret)
            if ready is not None:
                ready()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._poll_loop(vtn), name=f"{cfg.ven_name}-poll")
                group.create_task(self._tick_loop(), name=f"{cfg.ven_name}-tick")
                group.create_task(self._periodic_reports(), name=f"{cfg.ven_name}-reports")
                for n in range(cfg.connections):
                    group.create_task(self._report_worker(vtn), name=f"{cfg.ven_name}-rep{n}")

    async def _start(self, vtn: VtnClient, url: str | None, secret: str) -> None:
        """Token, registration, subscription and a first poll - tried again, backing off,
        while the VTN is unreachable or busy (a VEN started before its gateway, or during
        a restart, waits for it as a field VEN does)."""
        delay = 1.0
        while True:
            try:
                await vtn.token()
                await self.register(vtn)
                if url is not None and not self._subscribed:
                    await self._subscribe(vtn, url, secret)
                    self._subscribed = True
                await self.poll(vtn)
                return
            except RETRYABLE as exc:
                if isinstance(exc, VtnError) and not exc.retryable:
                    raise
                log.info("%s: VTN not ready (%s); again in %.0f s", self.config.ven_name,
                         exc.__class__.__name__, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(2 * delay, REPORT_RETRY_MAX_S)

    # -- registration --------------------------------------------------------------------

    async def register(self, vtn: VtnClient) -> None:
        """Find (or create) our ven object, then our resources; learn their targets."""
        name = self.config.ven_name
        vens = await vtn.search("/vens", [("venName", name)])
        ven = next((v for v in vens if v.get("venName") == name), None)
        if ven is None:
            ven = await vtn.call("POST", "/vens", {"objectType": "VEN", "venName": name})
        self.ven_id = str(ven["id"])
        found = {r["resourceName"]: r for r in await vtn.search("/resources", [])
                 if r.get("venID") == self.ven_id}
        for res in self.resources.values():
            obj = found.get(res.name)
            if obj is None:
                obj = await vtn.call("POST", "/resources", {
                    "objectType": "RESOURCE", "resourceName": res.name, "venID": self.ven_id})
            res.targets = {t for t in obj.get("targets") or () if isinstance(t, str)}

    async def _subscribe(self, vtn: VtnClient, url: str, secret: str) -> None:
        await vtn.call("POST", "/subscriptions", {
            "objectType": "SUBSCRIPTION", "clientName": self.config.ven_name,
            "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE", "UPDATE",
                                                                       "DELETE"],
                                  "callbackUrl": url, "bearerToken": secret}]})

    # -- events --------------------------------------------------------------------------

    async def poll(self, vtn: VtnClient) -> None:
        targets = sorted({t for r in self.resources.values() for t in r.targets})
        fresh: dict[str, dict[str, Any]] = {}
        for n in range(0, len(targets), TARGETS_PER_QUERY):
            chunk = targets[n:n + TARGETS_PER_QUERY]
            for event in await vtn.search("/events", [("targets", t) for t in chunk]):
                fresh[str(event["id"])] = event
        self.events = fresh
        self.stats.polls += 1

    async def _notified(self, note: dict[str, Any]) -> None:
        self.stats.notifications += 1
        obj = note.get("object")
        if note.get("objectType") != "EVENT" or not isinstance(obj, dict) or "id" not in obj:
            return
        if note.get("operation") == "DELETE":
            self.events.pop(str(obj["id"]), None)
        else:
            self.events[str(obj["id"])] = obj
        self._changed.set()

    def apply(self, now: datetime) -> None:
        """Each resource follows the event that targets it (the newest, if several)."""
        by_target: dict[str, list[_Resource]] = {}
        for res in self.resources.values():
            for target in res.targets:
                by_target.setdefault(target, []).append(res)
        chosen: dict[str, dict[str, Any]] = {}
        for event in self.events.values():
            targets = {t for t in event.get("targets") or () if isinstance(t, str)}
            for res in {r.name: r for t in targets for r in by_target.get(t, ())}.values():
                best = chosen.get(res.name)
                if best is None or _stamp(event) > _stamp(best):
                    chosen[res.name] = event
        for res in self.resources.values():
            picked = chosen.get(res.name)
            envelope = _envelope(res, picked, now) if picked else Envelope()
            if envelope != res.applied:
                res.der.apply(envelope)
                res.applied = envelope
            res.event_id = picked["id"] if picked else None
            if picked is not None and _ref(picked) != res.acked_ref:
                res.acked_ref = _ref(picked)
                self._queue_report(res, picked)

    # -- reports -------------------------------------------------------------------------

    def _queue_report(self, res: _Resource, event: dict[str, Any]) -> None:
        try:
            self._reports.put_nowait((res, event))
        except asyncio.QueueFull:
            self.stats.report_errors += 1

    async def _report_worker(self, vtn: VtnClient) -> None:
        while True:
            res, event = await self._reports.get()
            if _ref(event) != res.acked_ref:
                continue  # superseded: the event the resource follows now has its own report
            m = res.der.measurement()
            body = events.report_body(
                event, self.config.ven_name, res.name, m.w,
                events.is_curtailed(res.applied, m.available_w, res.der.model.rating.w_max),
                datetime.now(UTC), int(self.config.report_s))
            try:
                await vtn.call("POST", "/reports", body)
                self.stats.reports += 1
                res.retry_s = 0.0
            except RETRYABLE as exc:
                self.stats.report_errors += 1
                if isinstance(exc, VtnError) and not exc.retryable:
                    log.info("%s: report for %s refused: %s", self.config.ven_name, res.name,
                             exc)
                    continue
                # As a field VEN does: send it again later, backing off (with jitter).
                res.retry_s = min(max(2 * res.retry_s, self.config.report_retry_s),
                                  REPORT_RETRY_MAX_S)
                log.info("%s: report for %s failed (%s); again in %.0f s", self.config.ven_name,
                         res.name, exc.__class__.__name__, res.retry_s)
                asyncio.get_running_loop().call_later(
                    res.retry_s * random.uniform(0.8, 1.2), self._queue_report, res, event)

    async def _periodic_reports(self) -> None:
        while True:
            await asyncio.sleep(self.config.report_s)
            for res in self.resources.values():
                event = self.events.get(res.event_id or "")
                if event is not None:
                    self._queue_report(res, event)

    # -- loops -----------------------------------------------------------------------------

    async def _poll_loop(self, vtn: VtnClient) -> None:
        while True:
            await asyncio.sleep(self.config.poll_s)
            try:
                await self.poll(vtn)
            except RETRYABLE as exc:  # the VTN restarting: poll again next time
                self.stats.poll_errors += 1
                log.info("%s: poll failed: %s", self.config.ven_name, exc)

    async def _tick_loop(self) -> None:
        while True:
            self._changed.clear()
            self.apply(datetime.now(UTC))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.config.tick_s)


def _envelope(res: _Resource, event: dict[str, Any], now: datetime) -> Envelope:
    """What `event` asks of `res` at `now`, parsed again only when the interval ends."""
    ref, memo = _ref(event), res.window
    if memo is not None and memo[0] == ref and memo[1] <= now and (memo[2] is None
                                                                  or now < memo[2]):
        return memo[3]
    found = events.current_window(event, now)
    if found is None:
        res.window = None
        return Envelope()
    interval, start, end = found
    envelope = events.envelope_of(event, interval)
    res.window = (ref, start, end, envelope)
    return envelope


def _stamp(event: dict[str, Any]) -> str:
    return str(event.get("modificationDateTime") or event.get("createdDateTime") or "")


def _ref(event: dict[str, Any]) -> str:
    return f"{event['id']}@{_stamp(event)}"
