"""Subscriptions: which subscribers hear of a change, and the webhook each one gets.

A notification goes out through the core's durable outbox (`ctx.deliveries`), which retries
with back-off. The same privacy rules as reads apply: a VEN's subscription is told only about
objects that VEN could read, with target hiding. A subscription without targets hears of
everything its owner may read; with targets, only objects matching them.

Callback URLs are checked when the subscription is written (`check_callback`): HTTPS only,
plain HTTP to loopback in development mode, never a literal private, link-local, multicast or
reserved address; the delivery queue checks the resolved address again at send time. MQTT
(3.1 /notifiers) would be a second `Channel` next to `WebhookChannel`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from adapters.openadr3.state import StoredObject
from adapters.openadr3.vtn.auth import Principal, Role
from adapters.openadr3.vtn.kinds import KINDS
from adapters.openadr3.vtn.mqtt import OPERATIONS, MqttPublisher, Publication
from adapters.openadr3.vtn.problems import bad_request
from adapters.openadr3.vtn.service import Change, Hook, VtnService
from gateway.delivery import DeliveryQueue, Outgoing, check_callback_url
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

# The notification `operation` word per API version (3.0.1 uses HTTP verbs).
OPERATION_WORDS = {
    "3.1.0": {"CREATE": "CREATE", "UPDATE": "UPDATE", "DELETE": "DELETE"},
    "3.0.1": {"CREATE": "POST", "UPDATE": "PUT", "DELETE": "DELETE"},
}
# Subscriptions may name operations either way; both select the same changes.
OPERATION_ALIASES = {"POST": "CREATE", "PUT": "UPDATE", "GET": "READ"}


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any notation a resolver accepts: dotted,
    decimal (167772161), hex (0x0a000001), octal (012.0.0.1) or short (10.1) IPv4, IPv6."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_callback(url: str, dev_mode: bool) -> None:
    """Refuse callback URLs that would make the VTN a request-forgery proxy (400)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise bad_request("callbackUrl needs a host and no user information")
    loopback = host == "localhost" or host.endswith(".localhost")
    address = _literal_address(host)
    if address is not None:
        loopback = address.is_loopback
        if not loopback and (
            address.is_private
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
        ):
            raise bad_request("callbackUrl may not name a private or reserved address")
    if loopback and not dev_mode:
        raise bad_request("callbackUrl may name loopback in development mode only")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback and dev_mode):
        return
    raise bad_request("callbackUrl must be https (plain http to loopback in development mode)")


class WebhookChannel:
    """Enqueues webhook POSTs in the core's outbox, one transaction per change."""

    def __init__(
        self, deliveries: DeliveryQueue, dev_mode: bool, tls_name: str | None = None
    ) -> None:
        self._deliveries = deliveries
        self._dev_mode = dev_mode
        self._tls_name = tls_name  # a delivery TLS context with the webhook trust store
        self._checked: dict[str, tuple[bool, float]] = {}  # scheme://host -> (safe, until)

    async def send(self, posts: list[tuple[str, dict[str, Any], str | None]]) -> None:
        checked: dict[str, bool] = {}
        items: list[Outgoing] = []
        for url, notification, bearer in posts:
            if url not in checked:
                checked[url] = await self._resolves_safely(url)
            if not checked[url]:
                continue
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
            items.append(
                Outgoing(url, json.dumps(notification).encode(), "application/json", headers,
                         self._tls_name)
            )
        if items:
            await self._deliveries.enqueue_many(items)

    async def _resolves_safely(self, url: str) -> bool:
        """Check the address the host resolves to now (DNS may have changed since).

        Answers are cached for a minute per scheme and host, and a resolver slower than two
        seconds counts as a refusal: a write must not wait on someone else's DNS."""
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        now = time.monotonic()
        cached = self._checked.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            await asyncio.wait_for(check_callback_url(url, dev_mode=self._dev_mode), 2.0)
            safe = True
        except (GatewayError, TimeoutError) as exc:
            log.warning("webhook to %s skipped: %s", parts.netloc, getattr(exc, "detail", exc))
            safe = False
        if len(self._checked) > 10_000:
            self._checked.clear()
        self._checked[key] = (safe, now + 60.0)
        return safe


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


class Notifier(Hook):
    """The service hook that fans a change out to matching subscriptions (webhooks) and,
    when a broker is configured, to MQTT topics."""

    def __init__(
        self,
        service: VtnService,
        channel: WebhookChannel,
        dev_mode: bool,
        mqtt: MqttPublisher | None = None,
    ) -> None:
        self._service = service
        self._channel = channel
        self._dev_mode = dev_mode
        self._mqtt = mqtt
        self._fanout = MqttFanout(service)

    async def before_write(self, change: Change) -> None:
        if change.kind == "subscription" and change.operation != "DELETE":
            for op in change.obj.body.get("objectOperations", ()):
                check_callback(op["callbackUrl"], self._dev_mode)

    async def after_write(self, change: Change) -> None:
        await self.after_writes([change])

    async def after_writes(self, changes: list[Change]) -> None:
        """Every subscription's notifications of the changes, enqueued together."""
        posts: list[tuple[str, dict[str, Any], str | None]] = []
        for change in changes:
            word = OPERATION_WORDS[change.version][change.operation]
            object_type = change.obj.body["objectType"]
            for sub in self._service.objects_of(change.version, "subscription"):
                posts += self._posts_for(sub, change, object_type, word)
        await self._channel.send(posts)
        if self._mqtt is not None:
            await self._mqtt.enqueue(self._fanout.publications(changes))

    def _posts_for(
        self, sub: StoredObject, change: Change, object_type: str, word: str
    ) -> list[tuple[str, dict[str, Any], str | None]]:
        program = sub.body.get("programID")
        if program is not None and _program_of(self._service, change) != program:
            return []
        seen = self._seen_by(sub, change.obj)
        if seen is None:
            return []
        posts: list[tuple[str, dict[str, Any], str | None]] = []
        sent: set[str] = set()
        for op in sub.body.get("objectOperations", ()):
            ops = {OPERATION_ALIASES.get(o, o) for o in op.get("operations", ())}
            if object_type not in op.get("objects", ()) or change.operation not in ops:
                continue
            if op["callbackUrl"] in sent:
                continue
            sent.add(op["callbackUrl"])
            notification = {
                "objectType": object_type,
                "operation": word,
                "object": seen,
                "targets": seen.get("targets") if isinstance(seen.get("targets"), list) else None,
            }
            posts.append((op["callbackUrl"], notification, op.get("bearerToken")))
        return posts

    def _seen_by(self, sub: StoredObject, obj: StoredObject) -> dict[str, Any] | None:
        """The object as the subscription's owner may read it, or None."""
        cred = self._service.ownership.credentials.credential(sub.owner)
        role = Role(cred["role"]) if cred else Role.BL
        principal = Principal(sub.owner, role, frozenset({"read_all"}))
        requested = frozenset(sub.targets) if sub.targets else None
        if role is Role.VEN and requested is None and KINDS[obj.kind].targeted and obj.targets:
            # No targets on the subscription: everything granted to this VEN (docs/openadr3.md).
            requested = self._service.granted(obj.version, sub.owner)
        return self._service.view(principal, obj, requested=requested)


def _program_of(service: VtnService, change: Change) -> Any:
    body = change.obj.body
    if change.kind == "program":
        return body.get("id")
    if change.kind == "event":
        return body.get("programID")
    if change.kind == "report":
        return body.get("programID") or service.event_program(change.version, body.get("eventID"))
    return body.get("programID")
