"""A 2030.5 client process: a device client (one certificate, one EndDevice) or an aggregator
client (one certificate, many EndDevices), each EndDevice driving one shared DER model.

    discover (/dcap) -> register (in-band POST /edev + ConnectionPoint, or out-of-band: wait
    for the platform's EndDevice) -> check the Registration PIN -> FSA -> DERPrograms ->
    subscribe (optional) -> loops: poll at the server's pollRate, apply the schedule and post
    Responses, post mirrored readings at the server's postRate.

Like a certified client in the field it rides through a server restart: no loop dies of a
dropped connection, a Response that could not be posted is tried again with back-off
(`response_attempts` tries, 1 s doubling to 30 s), and readings that could not be posted
are kept (bounded) and sent first once the server answers again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from adapters.ieee2030_5.codec import models as m
from pki.identity import lfdi as lfdi_of
from pki.identity import sfdi_from_fingerprint
from simulators.feeder.envelope import ControlledDer
from simulators.ieee2030_5_client.device import DeviceAgent
from simulators.ieee2030_5_client.events import Due
from simulators.ieee2030_5_client.http import Sep, ServerError, tls_session
from simulators.ieee2030_5_client.receiver import receiving

log = logging.getLogger(__name__)


class RegistrationError(Exception):
    """The server's registration does not match what the device expects."""


@dataclass(frozen=True)
class ClientConfig:
    name: str  # certificate name under <pki>/ieee2030_5/clients/
    url: str  # the server, https://host:port
    pki: Path
    in_band: bool = False  # register each DER by POSTing its EndDevice
    connection_point: str | None = None  # CSIP-AUS ConnectionPoint id sent after in-band
    pin: int | None = None  # the PIN on the device label, checked against the Registration
    subscribe: bool = False
    comms_loss_s: float = 120.0  # no contact for this long: DefaultDERControl
    min_poll_s: float = 0.5  # never poll faster, whatever the server says
    min_post_s: float = 1.0
    tick_s: float = 0.25
    connections: int = 8
    readings: bool = True
    discover_timeout_s: float = 60.0  # how long to wait for out-of-band EndDevices to appear
    retry_initial_s: float = 2.0  # discovery back-off after a failure, doubling ...
    retry_max_s: float = 60.0  # ... up to this (with +-20 % jitter)
    response_attempts: int = 12  # a Response is posted at most this often (1 s doubling)
    response_backoff_max_s: float = 30.0


@dataclass
class ClientStats:
    polls: int = 0
    poll_errors: int = 0
    responses: int = 0
    response_errors: int = 0  # failed posts (each retried until attempts run out)
    responses_lost: int = 0  # Responses given up on (refused by the server, or no attempts left)
    notifications: int = 0
    readings_posted: int = 0
    reading_errors: int = 0
    discovery_retries: int = 0


@dataclass
class _Subscribed:
    agent: DeviceAgent
    primacy: int


@dataclass
class _Owed:
    """A Response still to be posted: its attempts so far, and when to try again."""

    agent: DeviceAgent
    due: Due
    attempts: int = 0
    not_before: float = 0.0


# What a dropped connection or a server away looks like to a client: try again later.
TRANSIENT = (OSError, TimeoutError, aiohttp.ClientError)


@dataclass
class Ieee2030Client:
    config: ClientConfig
    ders: dict[str, ControlledDer]  # by LFDI (uppercase): the DERs this client runs
    agents: dict[str, DeviceAgent] = field(default_factory=dict)
    stats: ClientStats = field(default_factory=ClientStats)
    self_href: str | None = None

    def __post_init__(self) -> None:
        self.ders = {k.upper(): v for k, v in self.ders.items()}
        cert_path = self.config.pki / "ieee2030_5/clients" / f"{self.config.name}.pem"
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        self.lfdi = lfdi_of(cert)
        self._subs: dict[str, _Subscribed] = {}
        self._responses: asyncio.Queue[_Owed] = asyncio.Queue(10_000)
        self._retries: list[_Owed] = []  # Responses waiting for their next attempt

    # -- the whole life ------------------------------------------------------------------

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        async with tls_session(self.config.url, self.config.pki, self.config.name,
                               self.config.connections) as http, AsyncExitStack() as stack:
            sep = Sep(http)
            uri = await stack.enter_async_context(receiving(self._notified)) \
                if self.config.subscribe else None
            await self._retrying(sep, lambda: self._join(sep, uri))
            if ready is not None:
                ready()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._poll_loop(sep), name=f"{self.config.name}-poll")
                group.create_task(self._tick_loop(), name=f"{self.config.name}-tick")
                for n in range(self.config.connections):
                    group.create_task(self._respond_worker(sep), name=f"{self.config.name}-rsp{n}")
                if self.config.readings:
                    group.create_task(self._readings_loop(sep), name=f"{self.config.name}-mup")

    # -- discovery and registration --------------------------------------------------------

    async def _join(self, sep: Sep, uri: str | None) -> None:
        await self.connect(sep)
        if uri is not None:
            await self.subscribe(sep, uri)
        if self.config.readings:
            await self._mirror(sep)

    async def _mirror(self, sep: Sep) -> None:
        """Create each DER's MirrorUsagePoint as part of joining, as a field client does at
        start-up: a client is ready once it mirrors. Its readings follow at the postRate."""
        for agent in self.agents.values():
            if agent.mup_href is not None:
                continue
            try:
                await agent.post_readings(sep)  # (creates the mirror, then reads its postRate)
            except (ServerError, *TRANSIENT) as exc:  # the readings loop tries again
                self.stats.reading_errors += 1
                log.info("%s: mirror of %s failed: %s", self.config.name, agent.lfdi, exc)
                continue
            agent.next_post = time.monotonic() + max(self.config.min_post_s, agent.post_s)

    async def _retrying(self, sep: Sep, attempt: Callable[[], Any]) -> None:
        """Retry discovery as a field client does: after a time-out, a dropped connection or
        a server error, back off (doubling, with jitter) and carry on where it stopped."""
        delay = self.config.retry_initial_s
        while True:
            try:
                await attempt()
                return
            except (ServerError, OSError, TimeoutError, aiohttp.ClientError) as exc:
                if isinstance(exc, ServerError) and exc.status < 500:
                    raise  # refused, not failed: retrying would not change the answer
                self.stats.discovery_retries += 1
                wait = delay * random.uniform(0.8, 1.2)
                log.warning("%s: discovery failed at %s (%s); retrying in %.0f s",
                            self.config.name, sep.last, exc.__class__.__name__, wait)
                await asyncio.sleep(wait)
                delay = min(2 * delay, self.config.retry_max_s)

    async def connect(self, sep: Sep) -> None:
        await sep.get("/dcap", m.DeviceCapability)
        if self.config.in_band:
            await self._register_in_band(sep)
        edevs = await self._wait_for_end_devices(sep)
        for edev in edevs:
            lfdi = (edev.lFDI or "").upper()
            if lfdi not in self.ders or edev.FunctionSetAssignmentsListLink is None \
                    or lfdi in self.agents:  # (discovered before a retry)
                continue
            if self.config.pin is not None and edev.RegistrationLink is not None:
                await self._check_pin(sep, edev.RegistrationLink.href)
            agent = DeviceAgent(edev.href or "", lfdi, self.ders[lfdi])
            await agent.discover(sep)
            self.agents[lfdi] = agent
        # Subscriptions live on the client's own EndDevice (the one carrying its own LFDI
        # and a SubscriptionListLink); the SelfDevice is the server's, not ours.
        own = next((e for e in edevs if (e.lFDI or "").upper() == self.lfdi.upper()
                    and e.SubscriptionListLink is not None), None)
        self.self_href = own.href if own is not None else None

    async def _register_in_band(self, sep: Sep) -> None:
        """POST an EndDevice for each of our DERs not registered yet (a device client: itself;
        an aggregator client: every DER behind it), then name its ConnectionPoint."""
        edevs = await sep.get_all("/edev", m.EndDeviceList, "EndDevice")
        known = {(e.lFDI or "").upper() for e in edevs}
        for lfdi in self.ders:
            if lfdi in known:
                continue  # registered before (a restart)
            location = await sep.send("POST", "/edev", m.EndDevice(
                lFDI=lfdi, sFDI=sfdi_from_fingerprint(lfdi), changedTime=int(time.time())))
            if location is None:
                raise RegistrationError("in-band registration returned no Location")
            if self.config.connection_point:
                await sep.send("PUT", f"{location}/cp", m.ConnectionPoint(
                    connectionPointId=self.config.connection_point))

    async def _check_pin(self, sep: Sep, href: str) -> None:
        registration = await sep.get(href, m.Registration)
        if registration.pIN != self.config.pin:
            raise RegistrationError(f"Registration PIN {registration.pIN} is not the device's")

    async def _wait_for_end_devices(self, sep: Sep) -> list[m.EndDevice]:
        """Out-of-band DERs appear once the platform registered them: wait for all of ours,
        re-reading the list after 0.5 s, then less and less often (each read is the whole
        EndDeviceList, every page of it)."""
        deadline = time.monotonic() + self.config.discover_timeout_s
        pause = 0.5
        while True:
            edevs = await sep.get_all("/edev", m.EndDeviceList, "EndDevice")
            seen = {(e.lFDI or "").upper() for e in edevs if e.FunctionSetAssignmentsListLink}
            if set(self.ders) <= seen or time.monotonic() > deadline:
                missing = set(self.ders) - seen
                if missing:
                    log.warning("%s: %d DERs have no EndDevice", self.config.name, len(missing))
                return edevs
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(2 * pause, 10.0)

    async def subscribe(self, sep: Sep, uri: str) -> None:
        holder = self.self_href
        if holder is None:
            raise RegistrationError("no EndDevice of our own: nowhere to hold subscriptions")
        for agent in self.agents.values():
            for program in agent.programs:
                for href in (program.controls_href, program.default_href):
                    if href is None or href in self._subs:  # (subscribed before a retry)
                        continue
                    await sep.send("POST", f"{holder}/sub", m.Subscription(
                        subscribedResource=href, encoding=0, level="+S1", limit=255,
                        notificationURI=uri))
                    self._subs[href] = _Subscribed(agent, program.primacy)

    async def _notified(self, href: str, resource: Any) -> None:
        self.stats.notifications += 1
        target = self._subs.get(href)
        if target is None:
            return
        if isinstance(resource, m.DERControlList) and (resource.all or 0) <= len(
                resource.DERControl):
            target.agent.take_controls(target.primacy, resource.DERControl)
            self._tick_agent(target.agent, int(time.time()))
        elif isinstance(resource, m.DefaultDERControl):
            target.agent.take_default(resource)
        else:
            target.agent.next_poll = 0.0  # partial or empty: fetch it

    # -- loops -----------------------------------------------------------------------------

    async def _poll_loop(self, sep: Sep) -> None:
        sem = asyncio.Semaphore(self.config.connections)

        async def poll(agent: DeviceAgent) -> None:
            async with sem:
                try:
                    await agent.poll(sep)
                    self.stats.polls += 1
                    agent.next_poll = time.monotonic() + max(self.config.min_poll_s, agent.poll_s)
                except (ServerError, ValueError, *TRANSIENT) as exc:
                    self.stats.poll_errors += 1
                    log.info("%s: poll of %s failed: %s", self.config.name, agent.edev_href, exc)
                    agent.next_poll = time.monotonic() + min(agent.poll_s, 5.0)

        while True:
            now = time.monotonic()
            due = [a for a in self.agents.values() if a.next_poll <= now]
            if due:
                await asyncio.gather(*(poll(a) for a in due))
            await asyncio.sleep(self.config.tick_s)

    def _tick_agent(self, agent: DeviceAgent, now: int) -> None:
        for due in agent.tick(now, self.config.comms_loss_s):
            self._owe(_Owed(agent, due))

    def _owe(self, owed: _Owed) -> None:
        try:
            self._responses.put_nowait(owed)
        except asyncio.QueueFull:
            self.stats.responses_lost += 1

    async def _tick_loop(self) -> None:
        while True:
            now = int(time.time())
            for agent in self.agents.values():
                self._tick_agent(agent, now)
            moment = time.monotonic()
            ready = [o for o in self._retries if o.not_before <= moment]
            if ready:
                self._retries = [o for o in self._retries if o.not_before > moment]
                for owed in ready:
                    self._owe(owed)
            await asyncio.sleep(self.config.tick_s)

    async def _respond_worker(self, sep: Sep) -> None:
        while True:
            owed = await self._responses.get()
            try:
                await owed.agent.respond(sep, owed.due)
                self.stats.responses += 1
            except (ServerError, *TRANSIENT) as exc:
                self.stats.response_errors += 1
                self._retry_later(owed, exc)

    def _retry_later(self, owed: _Owed, exc: BaseException) -> None:
        """Back off and try again - unless the server refused it (4xx: the same Response
        would be refused again) or its attempts ran out."""
        owed.attempts += 1
        refused = isinstance(exc, ServerError) and exc.status < 500
        if refused or owed.attempts >= self.config.response_attempts:
            self.stats.responses_lost += 1
            log.warning("%s: Response %s for %s given up after %d attempts: %s",
                        self.config.name, owed.due.status, owed.due.mrid, owed.attempts, exc)
            return
        delay = min(self.config.response_backoff_max_s, 2.0 ** (owed.attempts - 1))
        owed.not_before = time.monotonic() + delay
        self._retries.append(owed)
        log.info("%s: Response %s for %s failed (%s); again in %.0f s", self.config.name,
                 owed.due.status, owed.due.mrid, exc.__class__.__name__, delay)

    async def _readings_loop(self, sep: Sep) -> None:
        while True:
            now = time.monotonic()
            for agent in [a for a in self.agents.values() if a.next_post <= now]:
                try:
                    await agent.post_readings(sep)
                    self.stats.readings_posted += 1
                except (ServerError, *TRANSIENT) as exc:
                    self.stats.reading_errors += 1
                    log.info("%s: readings of %s failed: %s", self.config.name, agent.lfdi, exc)
                agent.next_post = now + max(self.config.min_post_s, agent.post_s)
            await asyncio.sleep(self.config.tick_s)
