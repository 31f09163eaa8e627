"""The SCADA operator's console logic, as an OPC UA client and nothing else.

It knows the gateway only as a remote OPC UA server with the documented DER model
(docs/opcua.md): namespace URI, browse names, method signatures and alarms. Like a control
room client it rides through a gateway restart: asyncua reconnects with back-off and
recreates the subscriptions, and the console asks for the retained alarms again
(ConditionRefresh) once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.events import Event
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import (
    SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)
from asyncua.observer import Observer, SubscriptionEvent
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError

log = logging.getLogger(__name__)

MODEL_URI = "urn:der-gateway:opcua:der-model:1"
POLICIES = {"Basic256Sha256": SecurityPolicyBasic256Sha256,
            "Aes128Sha256RsaOaep": SecurityPolicyAes128Sha256RsaOaep,
            "Aes256Sha256RsaPss": SecurityPolicyAes256Sha256RsaPss}
ACKNOWLEDGE = ua.NodeId(ua.Int32(ObjectIds.AcknowledgeableConditionType_Acknowledge))
CONDITION_REFRESH = ua.NodeId(ua.Int32(ObjectIds.ConditionType_ConditionRefresh))


@dataclass(frozen=True)
class Console:
    """Where the gateway is and who the operator is."""

    url: str
    certificate: Path  # PEM, with the key beside it (.key)
    server_certificate: Path  # the gateway's certificate (DER), pinned by the console
    user: str
    password: str
    policy: str = "Basic256Sha256"
    sign_only: bool = False
    reconnect_max_delay_s: float = 5.0

    @property
    def application_uri(self) -> str:
        return f"urn:der-gateway:opcua:client:{self.certificate.stem}"


@dataclass(frozen=True)
class Alarm:
    """One alarm event, as the console shows it."""

    condition_id: ua.NodeId
    event_id: bytes
    der: str
    name: str
    active: bool
    acked: bool
    retain: bool
    severity: int
    message: str

    @classmethod
    def of(cls, event: Event) -> Alarm:
        fields = event.get_event_props_as_fields_dict()

        def field(name: str) -> Any:
            variant = fields.get(name)
            return variant.Value if variant is not None else None
        message = field("Message")
        return cls(condition_id=field("NodeId"), event_id=field("EventId") or b"",
                   der=str(field("SourceName")), name=str(field("ConditionName")),
                   active=bool(field("ActiveState/Id")), acked=bool(field("AckedState/Id")),
                   retain=bool(field("Retain")), severity=int(field("Severity") or 0),
                   message=str(message.Text or "") if isinstance(message, ua.LocalizedText) else "")

    def public(self) -> dict[str, Any]:
        return {"der": self.der, "alarm": self.name, "active": self.active,
                "acked": self.acked, "severity": self.severity, "message": self.message}


class _Recreated(Observer):
    """Hears asyncua recreate a subscription after a reconnect."""

    def __init__(self) -> None:
        self.recreated: asyncio.Queue[int] = asyncio.Queue()

    def on_subscription_event(self, subscription_id: int | None,
                              event: SubscriptionEvent) -> None:
        if event is SubscriptionEvent.RECREATED and subscription_id is not None:
            self.recreated.put_nowait(subscription_id)


class Operator:
    def __init__(self, client: Client, ns: int, recreated: _Recreated) -> None:
        self.client = client
        self.ns = ns
        self._recreated = recreated

    def _q(self, name: str) -> str:
        return f"{self.ns}:{name}"

    async def ders(self) -> dict[str, Node]:
        """Every DER object in the fleet, by its platform id (browsing the tree)."""
        fleet = await self.client.nodes.objects.get_child(self._q("DerFleet"))
        found: dict[str, Node] = {}
        for ldc in await fleet.get_children(refs=ObjectIds.Organizes):
            for cp in await ldc.get_children(refs=ObjectIds.Organizes):
                if (await cp.read_browse_name()).Name == "TdNodes":
                    continue
                for der in await cp.get_children(refs=ObjectIds.Organizes):
                    found[(await der.read_browse_name()).Name] = der
        return found

    async def der(self, resource_id: str) -> Node:
        ders = await self.ders()
        if resource_id not in ders:
            raise KeyError(f"no DER {resource_id!r} in the fleet")
        return ders[resource_id]

    async def snapshot(self, resource_id: str) -> dict[str, Any]:
        """Every variable of the DER: its value when Good, else the name of its status."""
        der = await self.der(resource_id)
        out: dict[str, Any] = {}
        for group in ("Measurements", "Control", "Acknowledgement"):
            for var in await (await der.get_child(self._q(group))).get_children():
                value = await var.read_data_value(raise_on_bad_status=False)
                name = (await var.read_browse_name()).Name
                code = value.StatusCode or ua.StatusCode()
                good = code.value == StatusCodes.Good
                out[f"{group}.{name}"] = (value.Value.Value if good and value.Value is not None
                                          else code.name)
        return out

    async def set_limit(self, resource_id: str, *, export_w: float = -1.0,
                        import_w: float = -1.0, duration_s: int = 0,
                        reason: str = "SCADA operator") -> str:
        der = await self.der(resource_id)
        result = await der.call_method(
            self._q("SetOperatingLimit"), ua.Variant(float(export_w), ua.VariantType.Double),
            ua.Variant(float(import_w), ua.VariantType.Double),
            ua.Variant(-1.0, ua.VariantType.Double), ua.Variant(-1.0, ua.VariantType.Double),
            ua.Variant(duration_s, ua.VariantType.UInt32), reason)
        return str(result)

    async def clear_limit(self, resource_id: str, instruction_id: str = "") -> int:
        der = await self.der(resource_id)
        return int(await der.call_method(self._q("ClearOperatingLimit"), instruction_id))

    async def watch(self, resource_id: str, on_change: Callable[[str, Any], None],
                    seconds: float, deadband_w: float = 1.0) -> None:
        """Follow the DER's W and export cap, with an absolute deadband, for a while (the
        subscription is recreated if the gateway restarts meanwhile)."""
        der = await self.der(resource_id)
        names: dict[ua.NodeId, str] = {}
        nodes = []
        for path in (("Measurements", "W"), ("Control", "ExportLimitW")):
            node = await der.get_child([self._q(p) for p in path])
            names[node.nodeid] = ".".join(path)
            nodes.append(node)

        class Handler:
            def datachange_notification(self, node: Node, val: Any,
                                        data: DataChangeNotif) -> None:
                on_change(names[node.nodeid], val)

        sub = await self.client.create_subscription(200, Handler())
        for node in nodes:
            await sub.deadband_monitor(node, ua.Double(deadband_w),
                                       ua.UInt32(ua.DeadbandType.Absolute))
        await asyncio.sleep(seconds)
        await sub.delete()

    async def alarms(self, on_alarm: Callable[[Alarm], None], seconds: float, *,
                     acknowledge: bool = False, comment: str = "simulated operator") -> None:
        """Follow the alarms for a while: the retained ones first (ConditionRefresh), again
        after each reconnect; with `acknowledge`, acknowledge every unacknowledged one."""
        queue: asyncio.Queue[Alarm] = asyncio.Queue()

        class Handler:
            def event_notification(self, event: Event) -> None:
                queue.put_nowait(Alarm.of(event))

        sub = await self.client.create_subscription(200, Handler())
        await sub.subscribe_events(self.client.nodes.server, ObjectIds.OffNormalAlarmType)
        await self._refresh(sub)

        async def follow() -> None:
            while True:
                alarm = await queue.get()
                on_alarm(alarm)
                if acknowledge and not alarm.acked and alarm.retain:
                    await self.acknowledge(alarm, comment)

        async def refresh_after_reconnects() -> None:
            while True:
                await self._recreated.recreated.get()
                await self._refresh(sub)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(follow()), group.create_task(refresh_after_reconnects())]
            await asyncio.sleep(seconds)
            for task in tasks:
                task.cancel()
        with suppress(ConnectionError, UaError):
            await sub.delete()

    async def _refresh(self, sub: Subscription) -> None:
        try:
            await self.client.nodes.server.call_method(
                CONDITION_REFRESH, ua.Variant(sub.subscription_id, ua.VariantType.UInt32))
        except (ConnectionError, UaError) as exc:  # asked again after the next reconnect
            log.warning("scada: ConditionRefresh failed: %s", exc)

    async def acknowledge(self, alarm: Alarm, comment: str) -> str:
        """Acknowledge an alarm's latest event; the status code's name."""
        request = ua.CallMethodRequest()
        request.ObjectId, request.MethodId = alarm.condition_id, ACKNOWLEDGE
        request.InputArguments = [ua.Variant(alarm.event_id, ua.VariantType.ByteString),
                                  ua.Variant(ua.LocalizedText(comment),
                                             ua.VariantType.LocalizedText)]
        try:
            [result] = await self.client.uaclient.call([request])
        except (ConnectionError, UaError) as exc:
            log.warning("scada: acknowledging %s of %s failed: %s", alarm.name, alarm.der, exc)
            return type(exc).__name__
        return str(result.StatusCode.name)


@asynccontextmanager
async def connect(console: Console) -> AsyncIterator[Operator]:
    client = Client(console.url, timeout=10, auto_reconnect=True,
                    reconnect_max_delay=console.reconnect_max_delay_s)
    recreated = _Recreated()
    client.uaclient.observer = recreated
    client.application_uri = console.application_uri
    mode = (ua.MessageSecurityMode.Sign if console.sign_only
            else ua.MessageSecurityMode.SignAndEncrypt)
    policy = cast("Any", POLICIES[console.policy])  # asyncua hints the abstract base
    await client.set_security(
        policy, str(console.certificate),
        uacrypto.CertProperties(str(console.certificate.with_suffix(".key")), extension="pem"),
        server_certificate=str(console.server_certificate), mode=mode)
    client.set_user(console.user)
    client.set_password(console.password)
    async with client:
        yield Operator(client, await client.get_namespace_index(MODEL_URI), recreated)
