"""Subscriptions: which subscribers hear of a change, and the webhook each one gets; and,
when a broker is configured, the MQTT topics that hear of it (`vtn/mqtt_topics.py`).

Everything that announces a change is returned by `announce()` and committed with the change
in one transaction (`ObjectStore.commit`): webhooks as deliveries of the core's outbox
(retried with back-off, surviving restarts), MQTT publications as records the publisher sends.
The same privacy rules as reads apply: a VEN's subscription is told only about objects that
VEN could read, with target hiding. A subscription without targets hears of everything its
owner may read; with targets, only objects matching them. Callback URLs are checked with the
core's outbound guard when a subscription is written (refusals are 400 problems), and again
by the delivery worker at every connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any

from adapters.openadr3.state import Announcements, StoredObject
from adapters.openadr3.vtn.auth import Principal, Role
from adapters.openadr3.vtn.kinds import KINDS
from adapters.openadr3.vtn.mqtt import OUTBOX, MqttPublisher
from adapters.openadr3.vtn.mqtt_topics import MqttFanout
from adapters.openadr3.vtn.problems import bad_request
from adapters.openadr3.vtn.service import Change, Hook, VtnService
from gateway.errors import InvalidInput
from gateway.ports import OutboundGuard, Outgoing

log = logging.getLogger(__name__)

# The notification `operation` word per API version (3.0.1 uses HTTP verbs).
OPERATION_WORDS = {
    "3.1.0": {"CREATE": "CREATE", "UPDATE": "UPDATE", "DELETE": "DELETE"},
    "3.0.1": {"CREATE": "POST", "UPDATE": "PUT", "DELETE": "DELETE"},
}
# Subscriptions may name operations either way; both select the same changes.
OPERATION_ALIASES = {"POST": "CREATE", "PUT": "UPDATE", "GET": "READ"}
Post = tuple[str, dict[str, Any], str | None, str]  # url, notification, bearer, subscription


SUBJECT_PREFIX = "oadr-sub:"
EVENT_MARK = "#"  # (no object id holds it)


def subject(subscription_id: str, event_id: str | None = None) -> str:
    """The delivery subject of a subscription's webhooks, cancelled when it goes:
    `oadr-sub:<subscription>`, and for the creation or update of a gateway-rendered event
    (a DER's control) `oadr-sub:<subscription>#<event>`, so that what became of the webhook
    tells what became of that DER's control."""
    tail = f"{EVENT_MARK}{event_id}" if event_id is not None else ""
    return f"{SUBJECT_PREFIX}{subscription_id}{tail}"


def parse_subject(text: str | None) -> tuple[str, str | None] | None:
    """(subscription id, event id or None) of one of our delivery subjects, else None."""
    if not text or not text.startswith(SUBJECT_PREFIX):
        return None
    sub_id, mark, event_id = text.removeprefix(SUBJECT_PREFIX).partition(EVENT_MARK)
    return sub_id, (event_id if mark else None)


class Notifier(Hook):
    """Checks callback URLs before a subscription is stored; announces every change."""

    def __init__(
        self,
        service: VtnService,
        outbound: OutboundGuard,
        tls: str | None = None,
        mqtt: MqttPublisher | None = None,
    ) -> None:
        self._service = service
        self._outbound = outbound
        self._tls = tls  # a delivery TLS context with the webhook trust store
        self._mqtt = mqtt
        self._fanout = MqttFanout(service)

    async def before_write(self, change: Change) -> None:
        if change.kind == "subscription" and change.operation != "DELETE":
            for op in change.obj.body.get("objectOperations", ()):
                try:
                    await self._check_callback(op["callbackUrl"])
                except InvalidInput as exc:
                    raise bad_request(f"callbackUrl refused: {exc.detail}") from None

    async def _check_callback(self, url: str) -> None:
        """The core's outbound rules: scheme, credentials, every address notation, and the
        addresses a name resolves to now. A name that does not resolve (yet) is accepted:
        it cannot be used to reach anything, and the delivery worker checks the addresses
        again at every connection."""
        host, address, port = self._outbound.check_syntax(url)
        if address is not None:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError:
            log.info("callback host %s does not resolve now; checked again when used", host)
            return
        for info in infos:
            reason = self._outbound.refusal_for_address(ipaddress.ip_address(info[4][0]), port)
            if reason:
                raise InvalidInput(f"{host} resolves to an address where {reason}")

    async def announce(self, changes: list[Change]) -> Announcements:
        out = Announcements()
        for change in changes:
            word = OPERATION_WORDS[change.version][change.operation]
            object_type = change.obj.body["objectType"]
            # A DER's control (a rendered event written): its webhooks carry the event id.
            control = change.obj.id if (change.obj.rendered_for and
                                        change.operation != "DELETE") else None
            for sub in self._service.objects_of(change.version, "subscription"):
                for url, note, bearer, sub_id in self._posts_for(sub, change, object_type, word):
                    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
                    out.deliveries.append(Outgoing(url, json.dumps(note).encode(),
                                                   "application/json", headers, self._tls,
                                                   subject(sub_id, control)))
            out.cancel.extend(self._cancelled(change))
        if self._mqtt is not None:
            publications = self._fanout.publications(changes)
            if publications:
                out.puts[OUTBOX] = self._mqtt.docs(publications)
        return out

    def _cancelled(self, change: Change) -> list[str]:
        """The subjects whose pending webhooks a change makes moot: all of a subscription
        updated or deleted (its rendered events' included); a deleted rendered event's
        creation and updates to every subscription (its deletion is notified instead)."""
        version = change.version
        if change.kind == "subscription" and change.operation != "CREATE":
            sub_id = change.obj.id
            rendered = [e.id for e in self._service.objects_of(version, "event")
                        if e.rendered_for]
            return [subject(sub_id), *(subject(sub_id, e) for e in rendered)]
        if change.obj.rendered_for and change.operation == "DELETE":
            return [subject(s.id, change.obj.id)
                    for s in self._service.objects_of(version, "subscription")]
        return []

    async def after_write(self, change: Change) -> None:
        if self._mqtt is not None:
            self._mqtt.wake()

    async def after_writes(self, changes: list[Change]) -> None:
        if self._mqtt is not None:
            self._mqtt.wake()

    def _posts_for(
        self, sub: StoredObject, change: Change, object_type: str, word: str
    ) -> list[Post]:
        program = sub.body.get("programID")
        if program is not None and _program_of(self._service, change) != program:
            return []
        seen = self._seen_by(sub, change.obj)
        if seen is None:
            return []
        posts: list[Post] = []
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
            posts.append((op["callbackUrl"], notification, op.get("bearerToken"), sub.id))
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
