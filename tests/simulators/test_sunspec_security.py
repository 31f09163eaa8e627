"""Modbus/TCP Security on the simulated inverters: mutual TLS, role-checked writes."""

import pytest
from pymodbus.client import AsyncModbusTlsClient

from pki.devpki import DevPki
from pki.tls import client_context
from simulators.der import Rating
from simulators.sunspec.inverter import InverterSpec, SunSpecInverter
from simulators.sunspec.security import security_from_pki
from simulators.sunspec.server import PortServer, role_from_certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    dev = DevPki(root)
    dev.init(devices=(), aggregators=(), opcua_clients=())
    dev.issue_modbus_client("viewer", role="viewer")
    return root


@pytest.fixture
async def secure(pki):
    inverter = SunSpecInverter(InverterSpec("TLS-1", Rating(w_max=10_000.0), ramp_pct_s=0.0))
    server = PortServer("127.0.0.1", 0, {3: inverter}, security_from_pki(pki))
    await server.start()
    try:
        yield server, inverter
    finally:
        await server.stop()


def client(pki, port, name):
    ctx = client_context(pki / "modbus/ca.pem", pki / f"modbus/clients/{name}.pem",
                         pki / f"modbus/clients/{name}.key")
    return AsyncModbusTlsClient("127.0.0.1", port=port, sslctx=ctx, timeout=2, retries=0,
                                reconnect_delay=0)


def wmaxlimpct_address(inv):
    block = inv.image.block(704)
    return inv.image.base + block.start + block.layout.point("WMaxLimPct").offset


def test_role_is_read_from_the_certificate_extension(pki):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    for name, role in (("gateway", "operator"), ("viewer", "viewer")):
        cert = x509.load_pem_x509_certificate((pki / f"modbus/clients/{name}.pem").read_bytes())
        assert role_from_certificate(cert.public_bytes(Encoding.DER)) == role


async def test_operator_writes_viewer_is_refused_with_illegal_function(pki, secure):
    server, inv = secure
    operator = client(pki, server.bound_port, "gateway")
    viewer = client(pki, server.bound_port, "viewer")
    try:
        assert await operator.connect() and await viewer.connect()
        read = await viewer.read_holding_registers(40000, count=2, device_id=3)
        assert read.registers == [0x5375, 0x6E53]  # reading is open to every role
        refused = await viewer.write_registers(wmaxlimpct_address(inv), [5000], device_id=3)
        assert refused.isError() and refused.exception_code == 0x01
        assert inv.image.value(704, "WMaxLimPct") == pytest.approx(100.0)
        ok = await operator.write_registers(wmaxlimpct_address(inv), [5000], device_id=3)
        assert not ok.isError()
        assert inv.image.value(704, "WMaxLimPct") == pytest.approx(50.0)
    finally:
        operator.close()
        viewer.close()


async def test_client_without_certificate_cannot_connect(pki, secure):
    server, _ = secure
    ctx = client_context(pki / "modbus/ca.pem")
    anonymous = AsyncModbusTlsClient("127.0.0.1", port=server.bound_port, sslctx=ctx, timeout=2,
                                     retries=0, reconnect_delay=0)
    try:
        connected = await anonymous.connect()
        if connected:  # TLS 1.3: the refusal arrives with the first read
            reply = None
            with pytest.raises(Exception):  # noqa: B017 - pymodbus raises its own family
                reply = await anonymous.read_holding_registers(40000, count=2, device_id=3)
            assert reply is None
    finally:
        anonymous.close()
