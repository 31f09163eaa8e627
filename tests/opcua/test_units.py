"""The pure layers: mapper, aggregates, users, configuration, trust list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.opcua.codec.arguments import ArgumentError, decode_arguments
from adapters.opcua.mapper import (
    control_values,
    dispatch_draft,
    limit_draft,
    reading_update,
    status_of_error,
)
from adapters.opcua.model.aggregates import Aggregates
from adapters.opcua.model.nodes import METHODS
from adapters.opcua.model.security import OperatorUserManager, TrustList, security_policies
from adapters.opcua.model.users import (
    UserDirectory,
    account_from_doc,
    hash_password,
    verify_password,
)
from adapters.opcua.settings import Settings
from gateway import errors
from gateway.domain import (
    EffectiveInterval,
    InstructionKind,
    Nameplate,
    Quantity,
    Reading,
    Source,
)
from pki.devpki import DevPki, issue_certificate, new_key

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def test_readings_map_to_measurement_variables():
    update = reading_update(Reading("d1", Quantity.ACTIVE_POWER, 1200.5, NOW, "modbus"))
    assert (update.resource_id, update.variable, update.value) == ("d1", "W", 1200.5)
    connected = reading_update(Reading("d1", Quantity.CONNECTED, 0, NOW, "modbus"))
    assert connected.variable == "Connected" and connected.value is False
    assert reading_update(Reading("d1", Quantity.ENERGY, 1, NOW, "modbus")) is None


def test_control_values_carry_provenance_and_absent_values():
    interval = EffectiveInterval(
        start=NOW, end=NOW + timedelta(hours=1), export_max_w=3000.0, import_max_w=0.0,
        setpoint_w=2000.0, requested_setpoint_w=5000.0, issuer_of_record="iso",
        sources=(Source("i1", "ldc-a", InstructionKind.LIMIT, "export_max_w", 3000.0),
                 Source("i2", "iso", InstructionKind.DISPATCH, "setpoint_w", 5000.0)),
        limited_by=("i1",))
    values = control_values(interval, {"i1": "thermal", "i2": "energy market"},
                            Nameplate(10_000))
    assert values["ExportLimitW"] == 3000.0 and values["SetpointW"] == 2000.0
    assert values["GenerationLimitW"] is None  # published as Good_NoData
    assert values["Sources"] == ["i1|ldc-a|limit|export_max_w|3000.0",
                                 "i2|iso|dispatch|setpoint_w|5000.0"]
    assert values["LimitedBy"] == ["i1"] and values["Reason"] == "thermal; energy market"
    idle = control_values(None, {}, Nameplate(10_000, import_max_w=5000))
    assert (idle["ExportLimitW"], idle["ImportLimitW"], idle["SetpointW"]) == (10_000, 5000, None)


SPECS = {m.name: m for m in METHODS}


def args(method: str, *values):
    return decode_arguments(SPECS[method], list(values))


def test_method_arguments_become_drafts_or_name_the_bad_argument():
    draft = limit_draft("d1", NOW, args("SetOperatingLimit", 2500.0, -1.0, float("nan"), -1.0,
                                        600, ""))
    assert draft.limits.items() == [("export_max_w", 2500.0)]
    assert draft.end == NOW + timedelta(seconds=600) and draft.reason == "OPC UA operating limit"
    assert limit_draft("d1", NOW, args("SetOperatingLimit", 1.0, -1, -1, -1, 0, "x")).end is None
    with pytest.raises(ArgumentError) as nothing_capped:
        limit_draft("d1", NOW, args("SetOperatingLimit", -1.0, -1.0, -1.0, -1.0, 0, ""))
    assert nothing_capped.value.arguments == ("ExportMaxW", "ImportMaxW", "GenerationMaxW",
                                              "LoadMaxW")
    with pytest.raises(ArgumentError) as infinite:
        limit_draft("d1", NOW, args("SetOperatingLimit", float("inf"), -1, -1, -1, 0, ""))
    assert infinite.value.arguments == ("ExportMaxW",)
    with pytest.raises(ArgumentError) as negative:  # a UInt32 cannot be negative
        args("Dispatch", 100.0, -5, "")
    assert negative.value.arguments == ("DurationS",)
    with pytest.raises(ArgumentError) as text:
        args("Dispatch", "abc", 0, "")
    assert text.value.arguments == ("SetpointW",) and "Double" in text.value.detail
    with pytest.raises(ArgumentError) as missing:
        args("Dispatch", 100.0)
    assert missing.value.arguments == ("DurationS", "Reason")
    with pytest.raises(ArgumentError) as long_reason:
        dispatch_draft("d1", NOW, args("Dispatch", 100.0, 0, "x" * 501))
    assert long_reason.value.arguments == ("Reason",)
    assert dispatch_draft("d1", NOW, args("Dispatch", 100.0, 60, "r")).schedule[0].setpoint_w \
        == 100.0


def test_domain_errors_map_to_status_codes():
    assert status_of_error(errors.Forbidden("x")) == "BadUserAccessDenied"
    assert status_of_error(errors.NotFound("x")) == "BadNodeIdUnknown"
    assert status_of_error(errors.Unprocessable("x")) == "BadOutOfRange"
    assert status_of_error(errors.GatewayError("x")) == "BadInternalError"


def test_aggregates_follow_members():
    agg = Aggregates()
    agg.place("a", ("cp1", "td1"), online=True)
    agg.place("b", ("cp2", "td1"), online=False)
    agg.set_power("a", w=100.0)
    agg.set_power("b", w=50.0, var=-3.0)
    agg.set_caps("a", 1000.0, 0.0)
    totals = agg.take_dirty()
    assert totals["td1"]["ActivePowerW"] == 150.0 and totals["td1"]["OnlineCount"] == 1
    assert totals["cp1"]["DerCount"] == 1 and totals["cp1"]["ExportLimitW"] == 1000.0
    assert agg.take_dirty() == {}
    agg.remove("a")
    assert agg.take_dirty()["td1"]["DerCount"] == 1


def test_aggregates_are_running_sums_without_drift():
    """Kept by each DER's change (not summed from 100,000 members each second), exactly:
    a million changes leave the same totals as summing the DERs afresh."""
    agg = Aggregates()
    for n in range(100):
        agg.place(f"d{n}", ("cp", "td"), online=n % 2 == 0)
    for step in range(10_000):
        agg.set_power(f"d{step % 100}", w=0.1 * (step % 7), var=-0.3)
    agg.set_online("d1", True)
    agg.place("d2", ("cp2", "td"), online=True)  # moved to another connection point
    totals = agg.take_dirty()
    # (d2 moved: placed afresh, its figures start again from zero)
    expected_w = sum(0.1 * (s % 7) for s in range(9_900, 10_000) if s != 9_902)
    assert abs(totals["td"]["ActivePowerW"] - expected_w) < 1e-9
    assert totals["td"]["ReactivePowerVar"] == -29.7
    assert (totals["td"]["DerCount"], totals["td"]["OnlineCount"]) == (100, 51)
    assert (totals["cp"]["DerCount"], totals["cp2"]["DerCount"]) == (99, 1)
    for n in range(100):
        agg.remove(f"d{n}")
    assert agg.take_dirty()["td"] == {"ActivePowerW": 0.0, "ReactivePowerVar": 0.0,
                                      "ExportLimitW": 0.0, "ImportLimitW": 0.0,
                                      "DerCount": 0, "OnlineCount": 0}


def test_passwords_are_hashed_and_verified():
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$") and "correct" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("wrong horse", encoded)
    assert not verify_password("x", "garbage")
    account = account_from_doc({"name": "op", "password": "correct horse", "role": "viewer",
                                "ldc_id": "ldc-a"})
    directory = UserDirectory()
    directory.add(account)
    assert directory.authenticate("op", "correct horse") is account
    assert directory.authenticate("op", "correct horse") is account  # the cached path
    assert directory.authenticate("op", "nope") is None
    assert directory.authenticate(None, None) is None
    with pytest.raises(errors.InvalidInput):
        account_from_doc({"name": "op", "password": "short", "role": "viewer", "ldc_id": "x"})
    with pytest.raises(errors.InvalidInput):
        account_from_doc({"name": "op", "password": "long enough", "role": "root",
                          "ldc_id": "x"})


def test_none_policy_needs_dev_mode_and_the_flag():
    assert not Settings.model_validate({"allow_none_policy": True}).allow_none(dev_mode=False)
    assert not Settings.model_validate({}).allow_none(dev_mode=True)
    assert Settings.model_validate({"allow_none_policy": True}).allow_none(dev_mode=True)
    assert len(security_policies(None, allow_none=False)) == 6
    with pytest.raises(ValueError):
        security_policies(["None"], allow_none=False)


@pytest.mark.parametrize(("config", "key"), [
    ({"listen": "http://127.0.0.1:1"}, "listen"),
    ({"flush_intervl_ms": 100}, "flush_intervl_ms"),  # a typo is an error, not ignored
    ({"flush_interval_ms": 5}, "flush_interval_ms"),
    ({"security_policies": ["None"]}, "security_policies"),
    ({"users": [{"name": "op", "role": "root", "ldc_id": "x", "password": "long enough"}]},
     "role"),
    ({"users": [{"name": "op", "role": "viewer", "ldc_id": "x"}]}, "password"),
])
def test_settings_refuse_unknown_keys_and_bad_values_naming_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        Settings.model_validate(config)


def test_session_on_an_untrusted_channel_is_refused(tmp_path):
    """The channel's own certificate is checked even if CreateSession omitted it."""
    DevPki(tmp_path).init()
    trust = TrustList.from_paths([tmp_path / "opcua/ca.pem"])
    directory = UserDirectory()
    directory.add(account_from_doc({"name": "op", "password": "long enough", "role": "viewer",
                                    "ldc_id": "ldc-a"}))
    manager = OperatorUserManager(directory, trust, allow_no_cert=False)
    good = (tmp_path / "opcua/clients/scada-operator.der").read_bytes()
    rogue = issue_certificate("rogue", new_key("rsa"), None, uris=("urn:x",), client=True)
    from cryptography.hazmat.primitives.serialization import Encoding

    assert manager.get_user(None, "op", "long enough", good) is not None
    assert manager.get_user(None, "op", "long enough", rogue.public_bytes(Encoding.DER)) is None
    assert manager.get_user(None, "op", "long enough", None) is None
