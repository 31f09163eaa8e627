"""The control methods: an operator's call becomes a platform instruction of its LDC.

Every call passes through `GatewayServices.submit_instruction` (and so through coordination
and the platform's own authorisation of the LDC's area); the outcome is an OPC UA status code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from adapters.opcua.codec import METHODS, MethodName
from adapters.opcua.mapper import (
    connection_draft,
    dispatch_draft,
    limit_draft,
    status_of_error,
)
from adapters.opcua.security import CURRENT_OPERATOR
from adapters.opcua.users import OperatorRole
from gateway import errors
from gateway.domain import InstructionKind, Participant, Role, TargetKind
from gateway.services import GatewayServices

log = logging.getLogger(__name__)

Action = Callable[[Participant, str, list[Any]], Awaitable[list[ua.Variant]]]
_ARITY = {spec.name: len(spec.inputs) for spec in METHODS}


def _status(name: str) -> ua.CallMethodResult:
    result = ua.CallMethodResult()
    result.StatusCode = ua.StatusCode(getattr(ua.StatusCodes, name))
    return result


class ControlMethods:
    def __init__(self, gateway: GatewayServices, ns: int,
                 resource_of_node: Callable[[object], str | None]) -> None:
        self._gateway = gateway
        self._ns = ns
        self._resource_of_node = resource_of_node
        self._actions: dict[str, Action] = {
            MethodName.SET_LIMIT: self._set_limit,
            MethodName.CLEAR_LIMIT: self._clear_limit,
            MethodName.DISPATCH: self._dispatch,
            MethodName.CONNECT: self._connect,
            MethodName.DISCONNECT: self._disconnect,
        }

    def handlers(self) -> dict[str, Callable[..., Awaitable[ua.CallMethodResult]]]:
        """One asyncua method callback per method name."""
        return {name: self._callback(name) for name in self._actions}

    def _callback(self, name: str) -> Callable[..., Awaitable[ua.CallMethodResult]]:
        async def callback(parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
            return await self.call(name, parent, [a.Value if isinstance(a, ua.Variant) else a
                                                  for a in args])
        return callback

    async def call(self, name: str, parent: ua.NodeId, args: list[Any]) -> ua.CallMethodResult:
        operator = CURRENT_OPERATOR.get()
        if operator is None or operator.role is not OperatorRole.CONTROLLER:
            return _status("BadUserAccessDenied")
        rid = self._resource_of_node(parent.Identifier) if parent.NamespaceIndex == self._ns \
            else None
        if rid is None:
            return _status("BadMethodInvalid")
        if len(args) != _ARITY[name]:
            return _status("BadArgumentsMissing" if len(args) < _ARITY[name]
                           else "BadTooManyArguments")
        actor = await self._gateway.participant(operator.ldc_id)
        if actor is None or actor.role not in {Role.LDC, Role.SCADA}:
            log.warning("opcua: user %s maps to no LDC participant %r", operator.name,
                        operator.ldc_id)
            return _status("BadUserAccessDenied")
        try:
            outputs = await self._actions[name](actor, rid, args)
        except errors.GatewayError as exc:
            log.info("opcua: %s by %s on %s refused: %s", name, operator.name, rid, exc.detail)
            return _status(status_of_error(exc))
        except (TypeError, ValueError, OverflowError):
            return _status("BadInvalidArgument")
        log.info("opcua: %s by %s (%s) on %s accepted", name, operator.name, actor.id, rid)
        result = ua.CallMethodResult()
        result.OutputArguments = outputs
        return result

    async def _submit(self, actor: Participant, draft: Any) -> list[ua.Variant]:
        instruction, _ = await self._gateway.submit_instruction(actor, draft)
        return [ua.Variant(instruction.id, ua.VariantType.String)]

    async def _set_limit(self, actor: Participant, rid: str, args: list[Any]) -> list[ua.Variant]:
        return await self._submit(actor, limit_draft(rid, _now(), args))

    async def _dispatch(self, actor: Participant, rid: str, args: list[Any]) -> list[ua.Variant]:
        return await self._submit(actor, dispatch_draft(rid, _now(), args))

    async def _connect(self, actor: Participant, rid: str, args: list[Any]) -> list[ua.Variant]:
        return await self._submit(actor, connection_draft(rid, _now(), args, connect=True))

    async def _disconnect(self, actor: Participant, rid: str,
                          args: list[Any]) -> list[ua.Variant]:
        return await self._submit(actor, connection_draft(rid, _now(), args, connect=False))

    async def _clear_limit(self, actor: Participant, rid: str,
                           args: list[Any]) -> list[ua.Variant]:
        """Cancel this LDC's live limits on this DER (or the one named)."""
        wanted = str(args[0] or "")
        issuer_id = actor.ldc_id if actor.role is Role.SCADA else actor.id
        live = await self._gateway.instructions(live_only=True, issuer_id=issuer_id)
        mine = [i for i in live if i.kind is InstructionKind.LIMIT
                and i.target.kind is TargetKind.RESOURCE and i.target.id == rid
                and (not wanted or i.id == wanted)]
        if wanted and not mine:
            raise errors.NotFound(f"no live limit {wanted!r} of {issuer_id} on {rid}")
        for instruction in mine:
            await self._gateway.cancel_instruction(actor, instruction.id)
        return [ua.Variant(len(mine), ua.VariantType.UInt32)]


def _now() -> datetime:
    return datetime.now(UTC)
