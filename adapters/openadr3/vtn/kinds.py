"""Per object kind and API version: which wire model validates a body, who may write it.

`parse(version, kind, raw)` turns a client's JSON into the body the VTN stores (without VTN
metadata); the rules on who may write what live in `KINDS`, one row per object kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from adapters.openadr3.codec import v3_0, v3_1
from adapters.openadr3.codec.common import Wire
from adapters.openadr3.codec.v3_0 import METADATA_FIELDS
from adapters.openadr3.vtn.auth import Role
from adapters.openadr3.vtn.problems import OadrProblem, bad_request


@dataclass(frozen=True, slots=True)
class KindRule:
    kind: str
    object_type: str
    write_scope: str
    writers: frozenset[Role]
    owned: bool  # VENs see only the objects they own (clientID privacy)
    targeted: bool  # VENs see these only through granted targets (target privacy)


BOTH = frozenset({Role.BL, Role.VEN})
KINDS: dict[str, KindRule] = {
    "program": KindRule("program", "PROGRAM", "write_programs", frozenset({Role.BL}), False, True),
    "event": KindRule("event", "EVENT", "write_events", frozenset({Role.BL}), False, True),
    "report": KindRule("report", "REPORT", "write_reports", frozenset({Role.VEN}), True, False),
    "subscription": KindRule(
        "subscription", "SUBSCRIPTION", "write_subscriptions", BOTH, True, False
    ),
    "ven": KindRule("ven", "VEN", "write_vens", BOTH, True, False),
    "resource": KindRule("resource", "RESOURCE", "write_vens", BOTH, True, False),
}

_MODELS: dict[tuple[str, str], Any] = {
    ("3.1.0", "program"): TypeAdapter(v3_1.ProgramRequest),
    ("3.1.0", "event"): TypeAdapter(v3_1.EventRequest),
    ("3.1.0", "report"): TypeAdapter(v3_1.ReportRequest),
    ("3.1.0", "subscription"): TypeAdapter(v3_1.SubscriptionRequest),
    ("3.1.0", "ven"): TypeAdapter(v3_1.VenRequest),
    ("3.1.0", "resource"): TypeAdapter(v3_1.ResourceRequest),
    ("3.0.1", "program"): TypeAdapter(v3_0.Program),
    ("3.0.1", "event"): TypeAdapter(v3_0.Event),
    ("3.0.1", "report"): TypeAdapter(v3_0.Report),
    ("3.0.1", "subscription"): TypeAdapter(v3_0.Subscription),
    ("3.0.1", "ven"): TypeAdapter(v3_0.Ven),
    ("3.0.1", "resource"): TypeAdapter(v3_0.Resource),
}


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse(version: str, kind: str, raw: Any) -> dict[str, Any]:
    """Validate a request body; answer what the client sent, VTN metadata removed."""
    if not isinstance(raw, dict):
        raise bad_request("the body must be a JSON object")
    try:
        model: Wire = _MODELS[(version, kind)].validate_python(raw)
    except ValidationError as exc:
        raise bad_request(_describe(exc)) from None
    body = model.wire()
    if version == "3.0.1":
        body = {k: v for k, v in body.items() if k not in METADATA_FIELDS}
        if kind == "ven":  # 3.0.1 ven.resources is computed from resource objects
            body.pop("resources", None)
    return body


def request_type(body: dict[str, Any]) -> str | None:
    """3.1 ven/resource request discriminator (BL_* or VEN_*), None for other bodies."""
    value = body.get("objectType")
    return value if isinstance(value, str) else None


def check_writer(rule: KindRule, role: Role, scopes: frozenset[str]) -> None:
    if rule.write_scope not in scopes or role not in rule.writers:
        raise OadrProblem(403, f"{rule.write_scope} is required to write {rule.kind}s")
