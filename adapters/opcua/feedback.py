"""Up: what comes back from the DERs to SCADA, and what SCADA operators ask of them.

- `FeedbackPublisher`: readings and acknowledgements become Measurement and Acknowledgement
  values (staged: a reading costs one dict store), and a DER the gateway cannot reach shows
  its measurements as stale (`codec.values`: Uncertain_NoCommunicationLastUsableValue).
- `OperatorActions`: an operator's method call becomes a platform instruction of its LDC,
  through `submit_instruction` (so through the platform's authorisation and coordination).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from adapters.opcua.codec.values import Quality, Value
from adapters.opcua.mapper import (
    acknowledgement_values,
    connection_draft,
    dispatch_draft,
    limit_draft,
    reading_update,
)
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.aggregates import Aggregates
from adapters.opcua.model.alarms import AlarmKind, AlarmServer
from adapters.opcua.model.nodes import FROM_DER, MethodName
from adapters.opcua.state import Fleet, Measurements
from gateway import errors
from gateway.domain import (
    REFUSALS,
    Acknowledgement,
    DeliveryState,
    InstructionDraft,
    InstructionKind,
    Participant,
    Reading,
    Role,
    TargetKind,
)

if TYPE_CHECKING:
    from gateway.ports import GatewayPort

_PAGE = 1000


class FeedbackPublisher:
    def __init__(self, gateway: GatewayPort, space: AddressSpace, fleet: Fleet,
                 aggregates: Aggregates, alarms: AlarmServer) -> None:
        self._gateway = gateway
        self._space = space
        self._fleet = fleet
        self._aggregates = aggregates
        self._alarms = alarms

    def reading(self, reading: Reading) -> None:
        update = reading_update(reading)
        if update is None or update.resource_id not in self._fleet.ders:
            return
        latest = self._fleet.measurements.get(update.resource_id)
        if latest is None:
            latest = self._fleet.measurements[update.resource_id] = Measurements()
        latest.values[update.variable] = (update.value, update.at)
        if latest.last_seen is None or update.at > latest.last_seen:
            latest.last_seen = update.at
        group = ids.member(ids.der(update.resource_id), "Measurements")
        quality = self._measurement_quality(update.resource_id)
        self._space.stage(ids.member(group, update.variable), update.value, update.at, quality)
        self._space.stage(ids.member(group, "LastSeen"), latest.last_seen, latest.last_seen)
        if update.variable == "W":
            self._aggregates.set_power(update.resource_id, w=float(update.value))
        elif update.variable == "var":
            self._aggregates.set_power(update.resource_id, var=float(update.value))

    def acknowledgement(self, ack: Acknowledgement) -> None:
        """The DER's latest acknowledgement; a refusal raises ControlRefused until an
        acknowledgement that is not one."""
        rid = ack.resource_id
        if rid not in self._fleet.ders:
            return
        self._fleet.acknowledgements[rid] = ack
        self._space.stage_group(ids.member(ids.der(rid), "Acknowledgement"),
                                acknowledgement_values(ack), ack.at)
        if ack.status in REFUSALS:
            what = f" ({ack.detail})" if ack.detail else ""
            self._alarms.raise_(rid, AlarmKind.CONTROL_REFUSED,
                                f"DER {rid}: control {ack.status} by the DER: "
                                f"{ack.protocol_status}{what}")
        else:
            self._alarms.clear(rid, AlarmKind.CONTROL_REFUSED,
                               f"DER {rid}: control {ack.status}")

    def online_changed(self, resource_id: str, online: bool | None) -> None:
        """Measurements from the DER go stale while the gateway cannot reach it (False), and
        are current again (or not known yet) once it can, or before anything connected
        (None: not an alarm, a DER that has not been installed yet is not lost)."""
        group = ids.member(ids.der(resource_id), "Measurements")
        lost = online is False
        quality = Quality.NO_COMMUNICATION if lost else Quality.INITIAL
        for name in FROM_DER:
            self._space.restage(ids.member(group, name), quality)
        self._aggregates.set_online(resource_id, online is True)
        if lost:
            self._alarms.raise_(resource_id, AlarmKind.COMMUNICATION_LOST,
                                f"DER {resource_id}: the gateway lost communication with it")
        else:
            self._alarms.clear(resource_id, AlarmKind.COMMUNICATION_LOST,
                               f"DER {resource_id}: communication restored")

    def delivery_changed(self, resource_id: str, state: str, reason: str) -> None:
        """ControlUndeliverable while the core says the DER's control cannot reach it."""
        if resource_id not in self._fleet.ders:
            return
        if state == DeliveryState.UNDELIVERABLE:
            self._alarms.raise_(resource_id, AlarmKind.CONTROL_UNDELIVERABLE,
                                f"DER {resource_id}: its control cannot be delivered"
                                + (f": {reason}" if reason else ""))
        else:
            self._alarms.clear(resource_id, AlarmKind.CONTROL_UNDELIVERABLE,
                               f"DER {resource_id}: control {state}")

    def dropped(self, resource_id: str) -> None:
        """A DER left the fleet."""
        self._alarms.forget(resource_id)

    def _measurement_quality(self, resource_id: str) -> Quality:
        record = self._fleet.ders.get(resource_id)
        return Quality.NO_COMMUNICATION if record is not None and record.online is False \
            else Quality.INITIAL

    async def restore(self, window_s: float) -> None:
        """Readings from the last `window_s` and each DER's latest acknowledgement (however
        old: it is the latest until another arrives) from the store. Events queued while
        restoring are applied after this, in order, so the newest still wins."""
        since = datetime.now(UTC) - timedelta(seconds=window_s)
        since_id = 0
        while True:
            page = await self._gateway.readings(since=since, since_id=since_id, limit=_PAGE)
            for reading in page:
                self.reading(reading)
            if len(page) < _PAGE:
                break
            since_id = page[-1].id or since_id + len(page)
        for ack in (await self._gateway.latest_acknowledgements()).values():
            self.acknowledgement(ack)
        await self._restore_delivery_states()

    async def _restore_delivery_states(self) -> None:
        """DERs whose control is undeliverable now (ControlUndeliverable)."""
        states = await self._gateway.delivery_states(list(self._fleet.ders))
        for rid, delivery in states.items():
            self.delivery_changed(rid, str(delivery.state), delivery.reason)


Action = Callable[[str, datetime, dict[str, Value]], InstructionDraft]

# Each method that becomes an instruction, and how its arguments make the draft.
DRAFTS: dict[str, Action] = {
    MethodName.SET_LIMIT: limit_draft,
    MethodName.DISPATCH: dispatch_draft,
    MethodName.CONNECT: lambda rid, now, args: connection_draft(rid, now, args, connect=True),
    MethodName.DISCONNECT: lambda rid, now, args: connection_draft(rid, now, args,
                                                                   connect=False),
}


class OperatorActions:
    """Method calls -> platform instructions, issued by the LDC the operator acts for."""

    def __init__(self, gateway: GatewayPort) -> None:
        self._gateway = gateway

    async def actor(self, participant_id: str) -> Participant | None:
        """The participant an operator acts for, if it may issue instructions."""
        actor = await self._gateway.participant(participant_id)
        return actor if actor is not None and actor.role in {Role.LDC, Role.SCADA} else None

    async def submit(self, actor: Participant, method: str, resource_id: str,
                     args: dict[str, Value]) -> str:
        """The id of the instruction the call became."""
        draft = DRAFTS[method](resource_id, datetime.now(UTC), args)
        instruction, _ = await self._gateway.submit_instruction(actor, draft)
        return instruction.id

    async def clear_limits(self, actor: Participant, resource_id: str, wanted: str) -> int:
        """Cancel this LDC's live limits on this DER (or the one named); how many."""
        issuer_id = actor.ldc_id if actor.role is Role.SCADA and actor.ldc_id else actor.id
        live = await self._gateway.instructions(live_only=True, issuer_id=issuer_id)
        mine = [i.id for i in live if i.kind is InstructionKind.LIMIT
                and i.target.kind is TargetKind.RESOURCE and i.target.id == resource_id
                and (not wanted or i.id == wanted)]
        if wanted and not mine:
            raise errors.NotFound(f"no live limit {wanted!r} of {issuer_id} on {resource_id}")
        await _cancel_all(self._gateway, actor, mine)
        return len(mine)


async def _cancel_all(gateway: GatewayPort, actor: Participant, ids_: Iterable[str]) -> None:
    for instruction_id in ids_:
        await gateway.cancel_instruction(actor, instruction_id)
