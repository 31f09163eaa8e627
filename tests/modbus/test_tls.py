"""The adapter over Modbus/TCP Security: mutual TLS, and the device's role check on writes."""

import pytest

from adapters.modbus.settings import Settings
from adapters.modbus.sunspec.pool import DevicePool
from gateway.domain import AckStatus, Quantity
from pki.devpki import DevPki
from pki.tls import client_context
from simulators.sunspec.fleet import FleetConfig, running_fleet
from simulators.sunspec.security import security_from_pki
from tests.modbus.support import RecordingSink, export_limit


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    dev = DevPki(root)
    dev.init(devices=(), aggregators=(), opcua_clients=())
    dev.issue_modbus_client("auditor", role="viewer")
    return root


def pool_as(pki, name, fleet, sink):
    ctx = client_context(pki / "modbus/ca.pem", pki / f"modbus/clients/{name}.pem",
                         pki / f"modbus/clients/{name}.key")
    pool = DevicePool(sink, Settings(timeout_s=2.0), ssl_context=ctx)
    host, port, unit = fleet.address(0)
    pool.upsert("d1", {"host": host, "port": port, "unit_id": unit, "tls": True}, 10_000.0,
                export_limit("d1", 5_000.0, "ins-tls"))
    return pool


async def test_operator_certificate_controls_the_device_over_tls(pki):
    config = FleetConfig(count=1, first_port=0, tick_s=0.1, security=security_from_pki(pki))
    async with running_fleet(config) as fleet:
        sink = RecordingSink()
        [result] = await pool_as(pki, "gateway", fleet, sink).poll_cycle()
        assert result.ok
        [ack] = sink.acks
        assert ack.status == AckStatus.COMPLETED
        assert fleet.inverters[0].image.value(704, "WMaxLimPct") == pytest.approx(50.0)
        assert sink.latest("d1", Quantity.FREQUENCY) == pytest.approx(60.0)


async def test_viewer_certificate_reads_but_its_writes_are_refused(pki):
    config = FleetConfig(count=1, first_port=0, tick_s=0.1, security=security_from_pki(pki))
    async with running_fleet(config) as fleet:
        sink = RecordingSink()
        [result] = await pool_as(pki, "auditor", fleet, sink).poll_cycle()
        assert result.ok  # telemetry works
        [ack] = sink.acks
        assert (ack.status, ack.protocol_status) == (AckStatus.REJECTED, "exception 0x01")
        assert not fleet.inverters[0].model.w_max_lim.enabled


async def test_tls_device_without_a_client_certificate_is_a_clear_error(pki):
    config = FleetConfig(count=1, first_port=0, tick_s=0.1, security=security_from_pki(pki))
    async with running_fleet(config) as fleet:
        sink = RecordingSink()
        pool = DevicePool(sink, Settings(timeout_s=1.0))
        host, port, unit = fleet.address(0)
        pool.upsert("d1", {"host": host, "port": port, "unit_id": unit, "tls": True}, 10_000.0)
        [result] = await pool.poll_cycle()
        assert not result.ok
        assert "no Modbus client certificate" in pool.devices["d1"].last_error
