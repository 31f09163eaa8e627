"""The control methods' OPC UA side: who may call, on which node, with which arguments.

What a call does (an instruction of the operator's LDC) is `feedback.OperatorActions`; here
the call is checked and its outcome becomes a status code. Arguments that do not fit are
refused before anything is submitted, naming the argument (`codec.arguments`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.codec.arguments import ArgumentError, decode_arguments, refusal
from adapters.opcua.codec.values import Value
from adapters.opcua.mapper import status_of_error
from adapters.opcua.model.nodes import METHODS, MethodName
from adapters.opcua.model.security import CURRENT_OPERATOR
from adapters.opcua.model.users import OperatorRole
from adapters.opcua.model.wire import call_refused, call_status, plain, status_named
from gateway import errors
from gateway.domain import Participant

if TYPE_CHECKING:
    from adapters.opcua.feedback import OperatorActions

log = logging.getLogger(__name__)

Callback = Callable[..., Awaitable[ua.CallMethodResult]]
Action = Callable[[Participant, str, dict[str, Value]], Awaitable[list[ua.Variant]]]
_SPECS = {spec.name: spec for spec in METHODS}


_refused = call_status


class ControlMethods:
    def __init__(self, actions: OperatorActions, ns: int,
                 resource_of_node: Callable[[object], str | None]) -> None:
        self._actions = actions
        self._ns = ns
        self._resource_of_node = resource_of_node
        self._run: dict[str, Action] = {
            MethodName.SET_LIMIT: self._submit(MethodName.SET_LIMIT),
            MethodName.DISPATCH: self._submit(MethodName.DISPATCH),
            MethodName.CONNECT: self._submit(MethodName.CONNECT),
            MethodName.DISCONNECT: self._submit(MethodName.DISCONNECT),
            MethodName.CLEAR_LIMIT: self._clear_limit,
        }

    def handlers(self) -> dict[str, Callback]:
        """One asyncua method callback per method name."""
        return {name: self._callback(name) for name in self._run}

    def _callback(self, name: str) -> Callback:
        async def callback(parent: ua.NodeId, *args: object) -> ua.CallMethodResult:
            return await self.call(name, parent, [plain(a) for a in args])
        return callback

    async def call(self, name: str, parent: ua.NodeId, raw: list[object]) -> ua.CallMethodResult:
        operator = CURRENT_OPERATOR.get()
        if operator is None or operator.role is not OperatorRole.CONTROLLER:
            return _refused(StatusCodes.BadUserAccessDenied)
        rid = self._resource_of_node(parent.Identifier) if parent.NamespaceIndex == self._ns \
            else None
        if rid is None:
            return _refused(StatusCodes.BadMethodInvalid)
        spec = _SPECS[name]
        try:
            args = decode_arguments(spec, raw)
        except ArgumentError as exc:
            log.info("opcua: %s by %s on %s: %s", name, operator.name, rid, exc.detail)
            return call_refused(refusal(spec, exc, len(raw)))
        actor = await self._actions.actor(operator.ldc_id)
        if actor is None:
            log.warning("opcua: user %s maps to no LDC participant %r", operator.name,
                        operator.ldc_id)
            return _refused(StatusCodes.BadUserAccessDenied)
        try:
            outputs = await self._run[name](actor, rid, args)
        except ArgumentError as exc:
            log.info("opcua: %s by %s on %s: %s", name, operator.name, rid, exc.detail)
            return call_refused(refusal(spec, exc, len(raw)))
        except errors.GatewayError as exc:
            log.info("opcua: %s by %s on %s refused: %s", name, operator.name, rid, exc.detail)
            return _refused(status_named(status_of_error(exc)).value)
        log.info("opcua: %s by %s (%s) on %s accepted", name, operator.name, actor.id, rid)
        result = ua.CallMethodResult()
        result.OutputArguments = outputs
        return result

    def _submit(self, method: str) -> Action:
        async def submit(actor: Participant, rid: str, args: dict[str, Value]
                         ) -> list[ua.Variant]:
            instruction_id = await self._actions.submit(actor, method, rid, args)
            return [ua.Variant(instruction_id, ua.VariantType.String)]
        return submit

    async def _clear_limit(self, actor: Participant, rid: str,
                           args: dict[str, Value]) -> list[ua.Variant]:
        cleared = await self._actions.clear_limits(actor, rid, str(args["InstructionId"] or ""))
        return [ua.Variant(cleared, ua.VariantType.UInt32)]
