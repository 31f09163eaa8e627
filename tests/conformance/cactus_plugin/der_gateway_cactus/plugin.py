"""Admin hooks for cactus-client (entry point group `cactus_client.admin`).

Configured by environment: DERGW_CACTUS_PLATFORM (platform API base URL) and
DERGW_CACTUS_PKI (the gateway's PKI directory, with platform client certificates for
`admin`, `ldc-cactus` and `agg-cactus`). Every admin step is done through the platform API,
exactly as an operator or LDC would: nothing reaches into the gateway's store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cactus_client.admin import hookimpl
from cactus_client.model.execution import ActionResult

from der_gateway_cactus.platform import PlatformApi, cert_lfdi, cert_sha256

log = logging.getLogger(__name__)
LDC, AGG, CP = "ldc-cactus", "agg-cactus", "cp-cactus"
ADAPTER = "/v1/adapters/ieee2030_5"
LIMITS = {"opModExpLimW": "export_max_w", "opModImpLimW": "import_max_w",
          "opModGenLimW": "generation_max_w", "opModLoadLimW": "load_max_w"}
PARTS = ("limits", "dispatch", "connection", "curves", "default")


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _is_aggregator(client: Any) -> bool:
    return str(client.type).lower().endswith("aggregator")


def _rid(client: Any) -> str:
    return f"cactus-{client.id}"


class ProgramPlan:
    """The FSAs and DERPrograms a procedure asks for, as a gateway program layout.

    The gateway publishes each part of a DER's coordinated control (limits, dispatch,
    connection, curves, default) in exactly one DERProgram. With one program everything is
    in it; with several, an admin step that creates a control "in the program of primacy p"
    routes that control's parts to that program - as an operator would configure it.
    """

    def __init__(self) -> None:
        self.fsas: list[str] = []  # annotations, in the order ensured: FSA 1, 2, ...
        self.programs: list[tuple[str, int]] = []  # (FSA annotation, primacy), in order
        self.routes: dict[str, int] = {}  # part -> primacy of the program carrying it

    def ensure_fsa(self, annotation: str) -> None:
        if annotation not in self.fsas:
            self.fsas.append(annotation)

    def ensure_program(self, fsa: str, primacy: int) -> None:
        self.ensure_fsa(fsa)
        if (fsa, primacy) not in self.programs:
            self.programs.append((fsa, primacy))

    def route(self, parts: list[str], primacy: int) -> None:
        if any(p == primacy for _, p in self.programs):
            self.routes.update(dict.fromkeys(parts, primacy))

    def layout(self) -> list[dict[str, Any]] | None:
        """The layout to PUT (None: a single program, left to the plain primacy setting)."""
        if len(self.programs) < 2:
            return None
        carries: dict[int, list[str]] = {n: [] for n in range(len(self.programs))}
        for part in PARTS:
            primacy = self.routes.get(part)
            n = next((i for i, (_, p) in enumerate(self.programs) if p == primacy), 0)
            carries[n].append(part)
        used = [f for f in self.fsas if any(f == fsa for fsa, _ in self.programs)]
        return [{"primacy": primacy, "fsa": used.index(fsa) + 1, "carries": carries[n]}
                for n, (fsa, primacy) in enumerate(self.programs)]


def _parts(params: dict[str, Any]) -> list[str]:
    """The layout parts a create-der-control step's parameters express."""
    parts = []
    if any(k in params for k in LIMITS):
        parts.append("limits")
    if "opModConnect" in params or "opModEnergize" in params:
        parts.append("connection")
    if "opModFixedW" in params:
        parts.append("dispatch")
    return parts


class DerGatewayAdmin:
    """Per-run state: the instructions this run created (so that they can be cleared)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.scheduled_ends: dict[str, datetime] = {}  # instruction id -> end, if scheduled
        self.plan = ProgramPlan()
        self.handlers: dict[str, Callable[[dict[str, Any], Any, Any], Awaitable[None]]] = {
            "ensure-end-device": self.ensure_end_device,
            "ensure-fsa": self.ensure_fsa,
            "ensure-der-program": self.ensure_program,
            "ensure-der-control-list": self.nothing,
            "ensure-mup-list-empty": self.nothing,  # each procedure runs on a fresh gateway
            "create-der-control": self.create_der_control,
            "create-default-der-control": self.create_default,
            "clear-der-controls": self.clear,
            "set-poll-rate": self.set_poll_rate,
            "set-post-rate": self.set_post_rate,
            "set-client-access": self.set_client_access,
        }

    @property
    def api(self) -> PlatformApi:
        pki = Path(os.environ["DERGW_CACTUS_PKI"])
        return PlatformApi(os.environ["DERGW_CACTUS_PLATFORM"], pki)

    # --- hooks ----------------------------------------------------------------------------

    @hookimpl
    async def admin_setup(self, context: Any) -> ActionResult:
        self.created, self.scheduled_ends, self.plan = [], {}, ProgramPlan()
        try:
            await self.seed()
            for client in context.client_configs.values():
                if _is_aggregator(client):
                    await self.grant(client, True)
        except Exception as exc:  # reported to the harness as a failed setup
            return ActionResult.failed(f"seeding the platform failed: {exc}")
        return ActionResult.done()

    @hookimpl
    async def admin_teardown(self, context: Any) -> ActionResult:
        return ActionResult.done()

    @hookimpl
    async def admin_instruction(self, instruction: Any, step: Any, context: Any
                                ) -> ActionResult | None:
        handler = self.handlers.get(str(instruction.type))
        if handler is None:
            return None
        client = context.client_config_for(instruction.client)
        try:
            await handler(dict(instruction.parameters or {}), client, context)
        except Exception as exc:
            log.exception("admin instruction %s failed", instruction.type)
            return ActionResult.failed(f"{instruction.type}: {exc}")
        return ActionResult.done()

    # --- setup ----------------------------------------------------------------------------

    async def seed(self) -> None:
        api = self.api
        pki = api.pki / "platform/clients"
        participants = [
            {"id": LDC, "role": "ldc", "dso_model": "dual_participation",
             "cert_sha256": cert_sha256(pki / f"{LDC}.pem")},
            {"id": AGG, "role": "aggregator", "cert_sha256": cert_sha256(pki / f"{AGG}.pem")},
        ]
        await api.call("admin", "POST", "/v1/participants", participants, ok=(409,))
        await api.call("admin", "POST", "/v1/connection-points",
                       [{"id": CP, "ldc_id": LDC, "td_node": "N-CACTUS", "feeder": "F-1"}],
                       ok=(409,))

    # --- instructions -----------------------------------------------------------------------

    async def nothing(self, params: dict[str, Any], client: Any, context: Any) -> None:
        return None

    async def ensure_end_device(self, params: dict[str, Any], client: Any, context: Any) -> None:
        if not params.get("registered", True):
            return  # a fresh gateway has no registration for this client
        resource = {
            "id": _rid(client), "connection_point_id": CP, "kind": "pv",
            "nameplate": {"export_max_w": float(client.max_watts),
                          "import_max_w": float(client.max_watts)},
            "binding": {"protocol": "ieee2030_5", "address": {
                "lfdi": client.lfdi.upper(), "sfdi": int(client.sfdi), "pin": int(client.pin)}},
            "aggregator_id": AGG,
        }
        await self.api.call("admin", "POST", "/v1/resources", [resource], ok=(409,))

    async def grant(self, client: Any, granted: bool) -> None:
        lfdi = cert_lfdi(Path(client.certificate_file))
        await self.api.call("admin", "PUT", f"{ADAPTER}/clients/{lfdi}", {
            "aggregator_id": AGG if _is_aggregator(client) else None, "granted": granted})

    async def set_client_access(self, params: dict[str, Any], client: Any, context: Any) -> None:
        await self.grant(client, bool(params.get("granted", True)))

    async def ensure_fsa(self, params: dict[str, Any], client: Any, context: Any) -> None:
        self.plan.ensure_fsa(str(params.get("annotation", "fsa1")))
        await self.ensure_program({}, client, context)

    async def ensure_program(self, params: dict[str, Any], client: Any, context: Any) -> None:
        """Every DER has at least one FSA and DERProgram; this records the program asked for,
        sets the layout (several programs) or primacy (one), and makes the server
        re-announce the lists to their subscribers."""
        if "primacy" in params:
            self.plan.ensure_program(str(params.get("fsa_annotation", "fsa1")),
                                     int(params["primacy"]))
        layout = self.plan.layout()
        body: dict[str, Any] = {"programs": layout} if layout else \
            ({"primacy": int(params["primacy"])} if "primacy" in params else {})
        await self.api.call("admin", "PUT", f"{ADAPTER}/programs/{client.lfdi.upper()}", body)

    async def _place(self, parts: list[str], params: dict[str, Any], client: Any) -> None:
        """Put a new control's parts in the program of the primacy the step names (several
        programs), or give the single program that primacy and randomizeStart."""
        program: dict[str, Any] = {}
        if "randomizeStart_seconds" in params:
            program["randomize_start"] = int(params["randomizeStart_seconds"])
        if "primacy" in params:
            self.plan.route(parts, int(params["primacy"]))
            layout = self.plan.layout()
            if layout:
                program["programs"] = layout
            else:
                program["primacy"] = int(params["primacy"])
        if program:
            await self.api.call("admin", "PUT", f"{ADAPTER}/programs/{client.lfdi.upper()}",
                                program, ok=(400,))

    def _window(self, params: dict[str, Any]) -> tuple[datetime, datetime]:
        now = datetime.now(UTC).replace(microsecond=0)
        duration = timedelta(seconds=int(params.get("duration_seconds", 300)))
        if params.get("status", "active") == "scheduled":
            start = now + timedelta(seconds=int(params.get("start_offset_seconds", 120)))
            # Scheduled controls still in force are stacked end to start (a procedure that
            # creates several wants them all scheduled, not superseding one another).
            ends = [end for i, end in self.scheduled_ends.items() if i in self.created]
            if ends and start < max(ends):
                start = max(ends)
            return start, start + duration
        return now - timedelta(seconds=30), now + duration

    async def create_der_control(self, params: dict[str, Any], client: Any, context: Any
                                 ) -> None:
        start, end = self._window(params)
        target = {"kind": "resource", "id": _rid(client)}
        window = {"target": target, "start": _iso(start), "end": _iso(end),
                  "reason": "cactus create-der-control"}
        await self._place(_parts(params), params, client)
        bodies = []
        limits = {LIMITS[k]: float(v) for k, v in params.items() if k in LIMITS}
        if limits:
            bodies.append({"kind": "limit", "limits": limits, **window})
        if "opModConnect" in params or "opModEnergize" in params:
            bodies.append({"kind": "connection", "connect": params.get("opModConnect"),
                           "energize": params.get("opModEnergize"), **window})
        if "opModFixedW" in params:
            watts = float(params["opModFixedW"]) / 100.0 * float(client.max_watts)
            bodies.append({"kind": "dispatch", "setpoint_w": watts, **window})
        if "rampTms" in params:
            bodies.append({"kind": "function_settings",
                           "settings": {"ramp_s": int(params["rampTms"]) / 100.0}, **window})
        for body in bodies:
            created = await self.api.call(LDC, "POST", "/v1/instructions", body)
            self.created.append(created["id"])
            if params.get("status", "active") == "scheduled":
                self.scheduled_ends[created["id"]] = end

    async def create_default(self, params: dict[str, Any], client: Any, context: Any) -> None:
        settings: dict[str, Any] = {LIMITS[k]: float(v) for k, v in params.items() if k in LIMITS}
        if "setGradW" in params:
            settings["set_grad_w"] = int(params["setGradW"])
        await self._place(["default"], params, client)
        now = datetime.now(UTC).replace(microsecond=0)
        created = await self.api.call(LDC, "POST", "/v1/instructions", {
            "kind": "default_control", "target": {"kind": "resource", "id": _rid(client)},
            "start": _iso(now - timedelta(seconds=30)), "settings": settings,
            "reason": "cactus create-default-der-control"})
        self.created.append(created["id"])

    async def clear(self, params: dict[str, Any], client: Any, context: Any) -> None:
        ids = list(self.created) if params.get("all", False) else self.created[-1:]
        for instruction_id in ids:
            await self.api.call(LDC, "POST", f"/v1/instructions/{instruction_id}/cancel",
                                ok=(404, 409))
            self.created.remove(instruction_id)

    async def set_poll_rate(self, params: dict[str, Any], client: Any, context: Any) -> None:
        await self.api.call("admin", "PUT", f"{ADAPTER}/rates/poll",
                            {"resource": str(params["resource"]),
                             "seconds": int(params["rate_seconds"])})

    async def set_post_rate(self, params: dict[str, Any], client: Any, context: Any) -> None:
        await self.api.call("admin", "PUT", f"{ADAPTER}/rates/post",
                            {"resource": str(params["resource"]),
                             "seconds": int(params["rate_seconds"])})


plugin = DerGatewayAdmin()
