"""OPC UA Alarms & Conditions (Part 9) for the DERs: raised, cleared, acknowledged, refreshed.

Each DER has up to three conditions, instances of `OffNormalAlarmType`, identified by
ConditionId ``der/<id>.Alarms.<name>`` (not browsable: Part 9 lets a server expose its
conditions through events only; the id is what Acknowledge is called on):

| ConditionName | active while | severity | class |
|---|---|---|---|
| CommunicationLost | the gateway cannot reach the DER | 700 | System |
| ControlRefused | the DER's latest acknowledgement refused or could not comply | 500 | Process |
| ControlUndeliverable | the DER's control cannot be delivered to it | 800 | System |

Events are emitted by the Server object (subscribe there, with an event filter) with the
DER object as SourceNode, and reach a session only when the DER lies in its operator's area.
A condition is retained (Retain = true, replayed by ConditionRefresh) while it is active or
unacknowledged. Acknowledge (the standard method, `AcknowledgeableConditionType`) needs a
`controller` operator and the EventId of the condition's latest event (Part 9, 5.7.3).

The state is compact (one small object per condition that is active or unacknowledged);
event objects are made when sent, so a fleet-wide loss of communication holds no more than
that. `AlarmBook` is sans-I/O: `raise_`/`clear` change the state and queue events, which
`take_events()` hands to the server edge.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.codec.arguments import (
    ArgumentError,
    ArgumentSpec,
    MethodSpec,
    decode_arguments,
    refusal,
)
from adapters.opcua.codec.values import Dt
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.users import OperatorAccount, OperatorRole
from adapters.opcua.model.wire import call_refused, call_status, node_id, plain, status


class AlarmKind(StrEnum):
    COMMUNICATION_LOST = "CommunicationLost"
    CONTROL_REFUSED = "ControlRefused"
    CONTROL_UNDELIVERABLE = "ControlUndeliverable"


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    severity: int
    condition_class: int  # an ObjectIds ConditionClass type
    class_name: str
    input_variable: str  # the variable whose state the alarm is about, below the DER


SPECS: dict[AlarmKind, AlarmSpec] = {
    AlarmKind.COMMUNICATION_LOST: AlarmSpec(700, ObjectIds.SystemConditionClassType,
                                            "System", "Measurements.Online"),
    AlarmKind.CONTROL_REFUSED: AlarmSpec(500, ObjectIds.ProcessConditionClassType,
                                         "Process", "Acknowledgement.Status"),
    AlarmKind.CONTROL_UNDELIVERABLE: AlarmSpec(800, ObjectIds.SystemConditionClassType,
                                               "System", "Control.ExportLimitW"),
}


def condition_ident(resource_id: str, kind: AlarmKind) -> str:
    return ids.member(ids.member(ids.der(resource_id), "Alarms"), kind.value)


def parse_condition(ident: str) -> tuple[str, AlarmKind] | None:
    """(resource id, kind) of a ConditionId's identifier, or None if it is not one."""
    head, sep, name = ident.rpartition(".Alarms.")
    if not sep or not head.startswith("der/"):
        return None
    try:
        return head[4:], AlarmKind(name)
    except ValueError:
        return None


_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True)
class Condition:
    resource_id: str
    kind: AlarmKind
    active: bool
    acked: bool
    message: str
    since: datetime  # the last ActiveState transition
    event_id: bytes = b""  # of the latest event: Acknowledge must name it
    time: datetime = _NEVER
    acked_by: str = ""
    comment: str = ""

    @property
    def retain(self) -> bool:
        return self.active or not self.acked

    @property
    def ident(self) -> str:
        return condition_ident(self.resource_id, self.kind)


class ConditionEvent:
    """One event of a condition, as asyncua's monitored items read it: attributes by field
    name (browse paths joined with '/'), `data_types` by name, `EventType`, `emitting_node`.
    Fields a client selects that are not here answer null."""

    data_types: dict[str, ua.VariantType] = {
        "EventId": ua.VariantType.ByteString, "EventType": ua.VariantType.NodeId,
        "SourceNode": ua.VariantType.NodeId, "SourceName": ua.VariantType.String,
        "Time": ua.VariantType.DateTime, "ReceiveTime": ua.VariantType.DateTime,
        "Message": ua.VariantType.LocalizedText, "Severity": ua.VariantType.UInt16,
        "ConditionClassId": ua.VariantType.NodeId,
        "ConditionClassName": ua.VariantType.LocalizedText,
        "ConditionName": ua.VariantType.String, "BranchId": ua.VariantType.NodeId,
        "Retain": ua.VariantType.Boolean, "EnabledState": ua.VariantType.LocalizedText,
        "EnabledState/Id": ua.VariantType.Boolean, "Quality": ua.VariantType.StatusCode,
        "LastSeverity": ua.VariantType.UInt16, "Comment": ua.VariantType.LocalizedText,
        "ClientUserId": ua.VariantType.String, "AckedState": ua.VariantType.LocalizedText,
        "AckedState/Id": ua.VariantType.Boolean, "ActiveState": ua.VariantType.LocalizedText,
        "ActiveState/Id": ua.VariantType.Boolean,
        "ActiveState/TransitionTime": ua.VariantType.DateTime,
        "InputNode": ua.VariantType.NodeId, "SuppressedOrShelved": ua.VariantType.Boolean,
        "NodeId": ua.VariantType.NodeId,  # the ConditionId (Part 9, 5.5.2)
    }
    emitting_node = node_id(ObjectIds.Server)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __getattr__(self, name: str) -> Any:  # asyncua reads fields as attributes
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_event_fields(self, select_clauses: list[ua.SimpleAttributeOperand]) -> list[ua.Variant]:
        out = []
        for clause in select_clauses:
            name = ("/".join(q.Name for q in clause.BrowsePath) if clause.BrowsePath
                    else AttributeIds(clause.AttributeId).name)
            value = self.fields.get(name)
            out.append(ua.Variant(None) if value is None
                       else ua.Variant(value, self.data_types[name]))
        return out


def event_of(condition: Condition, ns: int) -> ConditionEvent:
    spec = SPECS[condition.kind]
    der = node_id(ids.der(condition.resource_id), ns)
    return ConditionEvent({
        "EventId": condition.event_id, "EventType": node_id(ObjectIds.OffNormalAlarmType),
        "SourceNode": der, "SourceName": condition.resource_id, "Time": condition.time,
        "ReceiveTime": condition.time, "Message": ua.LocalizedText(condition.message),
        "Severity": spec.severity, "ConditionClassId": node_id(spec.condition_class),
        "ConditionClassName": ua.LocalizedText(spec.class_name),
        "ConditionName": condition.kind.value, "Retain": condition.retain,
        "EnabledState": ua.LocalizedText("Enabled"), "EnabledState/Id": True,
        "Quality": status(StatusCodes.Good), "LastSeverity": spec.severity,
        "Comment": ua.LocalizedText(condition.comment), "ClientUserId": condition.acked_by,
        "AckedState": ua.LocalizedText("Acknowledged" if condition.acked
                                       else "Unacknowledged"),
        "AckedState/Id": condition.acked,
        "ActiveState": ua.LocalizedText("Active" if condition.active else "Inactive"),
        "ActiveState/Id": condition.active, "ActiveState/TransitionTime": condition.since,
        "InputNode": node_id(ids.member(ids.der(condition.resource_id), spec.input_variable),
                             ns),
        "SuppressedOrShelved": False, "NodeId": node_id(condition.ident, ns),
    })


class AlarmBook:
    """The conditions that are active or unacknowledged, and the events still to send."""

    def __init__(self) -> None:
        self._conditions: dict[tuple[str, AlarmKind], Condition] = {}
        self._events: list[Condition] = []  # snapshots, in order

    def __len__(self) -> int:
        return len(self._conditions)

    def get(self, resource_id: str, kind: AlarmKind) -> Condition | None:
        return self._conditions.get((resource_id, kind))

    def retained(self) -> list[Condition]:
        return list(self._conditions.values())

    def raise_(self, resource_id: str, kind: AlarmKind, message: str, *,
               acked: bool = False, now: datetime | None = None) -> bool:
        """Active from now (unless it already is); `acked`: acknowledged before (a restart)."""
        key = (resource_id, kind)
        condition = self._conditions.get(key)
        if condition is not None and condition.active:
            return False
        now = now or datetime.now(UTC)
        condition = Condition(resource_id, kind, active=True, acked=acked, message=message,
                              since=now)
        self._conditions[key] = condition
        self._emit(condition, now)
        return True

    def clear(self, resource_id: str, kind: AlarmKind, message: str, *,
              now: datetime | None = None) -> bool:
        """Inactive from now; kept (retained) until acknowledged if it was not."""
        key = (resource_id, kind)
        condition = self._conditions.get(key)
        if condition is None or not condition.active:
            return False
        now = now or datetime.now(UTC)
        condition.active, condition.since, condition.message = False, now, message
        self._emit(condition, now)
        if not condition.retain:
            del self._conditions[key]
        return True

    def acknowledge(self, resource_id: str, kind: AlarmKind, event_id: bytes, comment: str,
                    user: str, *, now: datetime | None = None) -> int:
        """A status code: Good, or why not (Part 9, 5.7.3)."""
        key = (resource_id, kind)
        condition = self._conditions.get(key)
        if condition is None or condition.event_id != event_id:
            return StatusCodes.BadEventIdUnknown
        if condition.acked:
            return StatusCodes.BadConditionBranchAlreadyAcked
        now = now or datetime.now(UTC)
        condition.acked, condition.acked_by, condition.comment = True, user, comment
        self._emit(condition, now)
        if not condition.retain:
            del self._conditions[key]
        return StatusCodes.Good

    def forget(self, resource_id: str) -> list[Condition]:
        """A DER that left the fleet takes its conditions with it (no event: its node is
        gone, and so are the sessions' view of it)."""
        gone = [self._conditions.pop((resource_id, kind), None) for kind in AlarmKind]
        return [c for c in gone if c is not None]

    def _emit(self, condition: Condition, now: datetime) -> None:
        condition.event_id = uuid.uuid4().bytes
        condition.time = now
        self._events.append(dataclasses.replace(condition))

    def take_events(self) -> list[Condition]:
        events, self._events = self._events, []
        return events


# --- the server side: events out, Acknowledge and ConditionRefresh in ------------------------

ACKNOWLEDGE = MethodSpec("Acknowledge", "Acknowledge a condition's latest event", (
    ArgumentSpec("EventId", Dt.BYTESTRING, "EventId of the condition's latest event"),
    ArgumentSpec("Comment", Dt.LOCALIZEDTEXT, "Why, for the record")), ())
REFRESH = MethodSpec("ConditionRefresh", "Send the retained conditions again", (
    ArgumentSpec("SubscriptionId", Dt.UINT32, "A subscription of this session"),), ())
REFRESH2 = MethodSpec("ConditionRefresh2", "Send the retained conditions again to one item", (
    ArgumentSpec("SubscriptionId", Dt.UINT32, "A subscription of this session"),
    ArgumentSpec("MonitoredItemId", Dt.UINT32, "An event item of that subscription")), ())


class AckStore(Protocol):
    def acked(self, ident: str) -> bool: ...
    async def put(self, ident: str, user: str, comment: str, at: str) -> None: ...
    async def delete(self, ident: str) -> None: ...


class Caller(Protocol):
    """The session calling a condition method."""

    @property
    def account(self) -> OperatorAccount | None: ...
    def owns(self, subscription_id: int) -> bool: ...


Subscriptions = Callable[[], Mapping[int, Any]]  # id -> asyncua InternalSubscription
MethodHandler = Callable[[Caller, ua.CallMethodRequest], Awaitable[ua.CallMethodResult]]


class AlarmServer:
    """Sends the book's events to every subscription (each filters them by its area) and
    serves the condition methods."""

    def __init__(self, book: AlarmBook, ns: int, subscriptions: Subscriptions,
                 acks: AckStore) -> None:
        self.book = book
        self._ns = ns
        self._subscriptions = subscriptions
        self._acks = acks
        self._forgotten: list[str] = []  # conditions of removed DERs: acks to delete

    def handlers(self) -> dict[ua.NodeId, MethodHandler]:
        """The condition methods, by MethodId."""
        return {node_id(ObjectIds.AcknowledgeableConditionType_Acknowledge): self.acknowledge,
                node_id(ObjectIds.ConditionType_ConditionRefresh): self.refresh,
                node_id(ObjectIds.ConditionType_ConditionRefresh2): self.refresh}

    def raise_(self, resource_id: str, kind: AlarmKind, message: str) -> None:
        acked = self._acks.acked(condition_ident(resource_id, kind))  # before a restart
        self.book.raise_(resource_id, kind, message, acked=acked)

    def clear(self, resource_id: str, kind: AlarmKind, message: str) -> None:
        self.book.clear(resource_id, kind, message)

    def forget(self, resource_id: str) -> None:
        self._forgotten.extend(c.ident for c in self.book.forget(resource_id))

    async def publish(self) -> None:
        """Send the events queued since the last call; forget acknowledgements of gone
        conditions."""
        for condition in self.book.take_events():
            await self._send(event_of(condition, self._ns))
            if not condition.retain:
                await self._acks.delete(condition.ident)
        forgotten, self._forgotten = self._forgotten, []
        for ident in forgotten:
            await self._acks.delete(ident)

    async def _send(self, event: ConditionEvent | RefreshEvent, subscription_id: int | None = None,
                    item: int | None = None) -> None:
        subscriptions = self._subscriptions()
        targets = ([subscriptions[subscription_id]] if subscription_id is not None
                   else list(subscriptions.values()))
        for sub in targets:
            await sub.monitored_item_srv.trigger_event(event, item)

    async def acknowledge(self, caller: Caller, request: ua.CallMethodRequest
                          ) -> ua.CallMethodResult:
        account = caller.account
        if account is None or account.role is not OperatorRole.CONTROLLER:
            return _result(StatusCodes.BadUserAccessDenied)
        target = (parse_condition(request.ObjectId.Identifier)
                  if request.ObjectId.NamespaceIndex == self._ns
                  and isinstance(request.ObjectId.Identifier, str) else None)
        condition = self.book.get(*target) if target else None
        if target is None or condition is None:
            return _result(StatusCodes.BadNodeIdUnknown)
        raw = [plain(a) for a in request.InputArguments or []]
        try:
            args = decode_arguments(ACKNOWLEDGE, raw)
        except ArgumentError as exc:
            return call_refused(refusal(ACKNOWLEDGE, exc, len(raw)))
        event_id, comment = args["EventId"], str(args["Comment"])
        assert isinstance(event_id, bytes)  # decoded as its declared ByteString
        if condition.event_id != event_id:
            return _result(StatusCodes.BadEventIdUnknown)
        if condition.acked:
            return _result(StatusCodes.BadConditionBranchAlreadyAcked)
        now = datetime.now(UTC)
        if condition.active:  # stored before it is answered Good (an inactive one just goes)
            await self._acks.put(condition.ident, account.name, comment, now.isoformat())
        code = self.book.acknowledge(*target, event_id, comment, account.name, now=now)
        await self.publish()
        return _result(code)

    async def refresh(self, caller: Caller, request: ua.CallMethodRequest
                      ) -> ua.CallMethodResult:
        """ConditionRefresh(2): RefreshStart, every retained condition, RefreshEnd, to one
        subscription (or one of its items) of the caller's own."""
        spec = REFRESH2 if request.MethodId == node_id(
            ObjectIds.ConditionType_ConditionRefresh2) else REFRESH
        raw = [plain(a) for a in request.InputArguments or []]
        try:
            args = decode_arguments(spec, raw)
        except ArgumentError as exc:
            return call_refused(refusal(spec, exc, len(raw)))
        subscription_id, item = args["SubscriptionId"], args.get("MonitoredItemId")
        assert isinstance(subscription_id, int) and (item is None or isinstance(item, int))
        if not caller.owns(subscription_id) or subscription_id not in self._subscriptions():
            return _result(StatusCodes.BadSubscriptionIdInvalid)
        await self._send(RefreshEvent(ObjectIds.RefreshStartEventType), subscription_id, item)
        for condition in self.book.retained():
            await self._send(event_of(condition, self._ns), subscription_id, item)
        await self._send(RefreshEvent(ObjectIds.RefreshEndEventType), subscription_id, item)
        return _result(StatusCodes.Good)


class RefreshEvent(ConditionEvent):
    """RefreshStartEvent / RefreshEndEvent (Part 9, 5.5.7): they bracket a refresh."""

    def __init__(self, event_type: int) -> None:
        now = datetime.now(UTC)
        super().__init__({"EventId": uuid.uuid4().bytes, "EventType": node_id(event_type),
                          "SourceNode": node_id(ObjectIds.Server), "SourceName": "Server",
                          "Time": now, "ReceiveTime": now, "Severity": 100,
                          "Message": ua.LocalizedText("ConditionRefresh")})


_result = call_status
