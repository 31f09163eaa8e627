"""`GET /notifiers` and `GET /notifiers/mqtt/topics/...` when an MQTT broker is configured.

Asking `GET /notifiers` gives the caller its broker login: user name its clientID, password
the bearer token it asked with (OAUTH2_BEARER_TOKEN, user name "{clientID}"), with topic ACLs
for its own VENs (a VEN) or all notification topics (business logic). A broker that cannot
be reached leaves MQTT out of the answer (webhooks still work) rather than failing it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from adapters.openadr3.vtn.auth import Principal
from adapters.openadr3.vtn.mqtt import BrokerAccess, MqttConfig, topic_names
from adapters.openadr3.vtn.problems import forbidden, not_found
from adapters.openadr3.vtn.service import VtnService

log = logging.getLogger(__name__)
V31 = "3.1.0"

# Topic endpoint (after /notifiers/mqtt/topics/) -> (topic base, has CREATE, who may ask).
BL, OWN_VEN, PROGRAM = "bl", "own_ven", "program"
TOPIC_ROUTES: list[tuple[re.Pattern[str], str, bool, str]] = [
    (re.compile(p), base, create, who)
    for p, base, create, who in (
        (r"programs", "programs", True, BL),
        (r"programs/(?P<id>[A-Za-z0-9_-]{1,128})", "programs/{id}", False, PROGRAM),
        (r"events", "events", True, BL),
        (r"programs/(?P<id>[A-Za-z0-9_-]{1,128})/events", "events/programs/{id}", True, PROGRAM),
        (r"reports", "reports", True, BL),
        (r"subscriptions", "subscriptions", True, BL),
        (r"vens", "vens", True, BL),
        (r"vens/(?P<id>[A-Za-z0-9_-]{1,128})", "vens/{id}", False, OWN_VEN),
        (r"resources", "resources", True, BL),
        (r"vens/(?P<id>[A-Za-z0-9_-]{1,128})/events", "events/vens/{id}", True, OWN_VEN),
        (r"vens/(?P<id>[A-Za-z0-9_-]{1,128})/programs", "programs/vens/{id}", True, OWN_VEN),
        (r"vens/(?P<id>[A-Za-z0-9_-]{1,128})/resources", "resources/vens/{id}", True, OWN_VEN),
    )
]


class MqttNotifierRoutes:
    def __init__(self, config: MqttConfig, access: BrokerAccess, service: VtnService) -> None:
        self._config = config
        self._access = access
        self._service = service

    async def binding(self, principal: Principal, token: str) -> dict[str, Any] | None:
        """The mqttNotifierBindingObject for this caller, once its broker login is set."""
        ven_ids = None if principal.is_bl else self._own_vens(principal)
        try:
            await self._access.grant(principal.client_id, token, ven_ids)
        except (OSError, TimeoutError, RuntimeError, ConnectionError) as exc:
            log.warning("MQTT broker login for %s not set (%s): MQTT left out of /notifiers",
                        principal.client_id, exc)
            return None
        return {
            "URIS": self._config.advertised,
            "serialization": "JSON",
            "authentication": {"method": "OAUTH2_BEARER_TOKEN", "username": "{clientID}"},
        }

    def topics(self, principal: Principal, tail: str) -> dict[str, str]:
        for pattern, base, create, who in TOPIC_ROUTES:
            match = pattern.fullmatch(tail)
            if match is None:
                continue
            object_id = match.groupdict().get("id")
            CHECKS[who](self, principal, object_id)
            return topic_names(base.format(id=object_id), create=create)
        raise not_found("no such MQTT topic endpoint")

    def _own_vens(self, principal: Principal) -> list[str]:
        return [v.id for v in self._service.store.owned(V31, "ven", principal.client_id)]

    def _bl_only(self, principal: Principal, _object_id: str | None) -> None:
        if not principal.is_bl:
            raise forbidden("VENs read their VEN-scoped topics (/notifiers/mqtt/topics/vens/...)")

    def _program(self, principal: Principal, object_id: str | None) -> None:
        self._bl_only(principal, object_id)
        if self._service.store.get(V31, "program", str(object_id)) is None:
            raise not_found(f"program {object_id} not found")

    def _own_ven(self, principal: Principal, object_id: str | None) -> None:
        ven = self._service.store.get(V31, "ven", str(object_id))
        if ven is None or (not principal.is_bl and ven.owner != principal.client_id):
            raise not_found(f"ven {object_id} not found")


CHECKS: dict[str, Callable[[MqttNotifierRoutes, Principal, str | None], None]] = {
    BL: MqttNotifierRoutes._bl_only,
    OWN_VEN: MqttNotifierRoutes._own_ven,
    PROGRAM: MqttNotifierRoutes._program,
}
