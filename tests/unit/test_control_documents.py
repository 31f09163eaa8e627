"""The API shows a stored control as its JSON; a body stored by an older version (a field
missing) is rebuilt, so every reader sees every field with its default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.domain import EffectiveControl, EffectiveInterval, Source
from gateway.jsonform import control_document, control_from_json, to_json

T0 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


def stored() -> dict:
    control = EffectiveControl("d1", (EffectiveInterval(
        T0, T0 + timedelta(hours=1), 4000.0, 0.0, issuer_of_record="ldc",
        sources=(Source("i1", "ldc", "limit", "export_max_w", 4000.0),)),))
    return to_json(control)


def test_a_current_body_is_shown_as_stored():
    body = stored()
    assert control_document(body) is body
    assert control_document(body) == to_json(control_from_json(body))


def test_a_body_from_an_older_version_is_rebuilt_with_every_field():
    body = stored()
    del body["intervals"][0]["requested_setpoint_w"]  # a field added later
    del body["function_source"]
    shown = control_document(body)
    assert shown == stored()
    assert shown["intervals"][0]["requested_setpoint_w"] is None
