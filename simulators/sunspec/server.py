"""pymodbus glue: one Modbus TCP (or Modbus/TCP Security) listener serving many unit ids.

pymodbus 3.16 is kept behind this module. Each inverter is a `SimDevice` whose `action`
hook answers from the inverter's own image (reads) or hands the values to the inverter
(writes); refusals become Modbus exception codes. Unknown unit ids answer 0x0B (gateway
target failed to respond).

Modbus/TCP Security: pymodbus has no API for the peer certificate, so the listener uses a
request-handler subclass that reads the certificate from its own transport (the TLS
`ssl_object`) and publishes the connection in a context variable for the duration of each
request; the action hook, awaited in that same task, reads the role from it. A write without
an authorised role gets exception 0x01, as the Modbus/TCP Security specification asks.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field

from cryptography import x509
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.modbus.codec import ModbusRefusal
from simulators.sunspec.inverter import SunSpecInverter

log = logging.getLogger(__name__)

ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
DEFAULT_WRITE_ROLES = frozenset({"operator", "engineer"})


@dataclass
class Connection:
    """What the action hook may know about the connection a request came on."""

    handler: ServerRequestHandler
    role: str | None = None


CURRENT: ContextVar[Connection | None] = ContextVar("modbus_sim_connection", default=None)

# pymodbus's SimAction: (function code, start, address, count, registers, values to set).
Action = Callable[[int, int, int, int, list[int], list[int] | list[bool] | None],
                  Coroutine[None, None, ExcCodes | None]]


@dataclass(frozen=True)
class Security:
    ssl_context: ssl.SSLContext  # must require and verify client certificates
    write_roles: frozenset[str] = DEFAULT_WRITE_ROLES


@dataclass
class Faults:
    """Misbehaviour to inject, for fault tests and field drills; mutable while serving."""

    delay_s: float = 0.0  # answer every request this late
    exception: ExcCodes | None = None  # answer every request with this exception
    drop_after: int | None = None  # close the connection on the n-th request from now
    _requests: int = field(default=0, repr=False)

    def should_drop(self) -> bool:
        if self.drop_after is None:
            return False
        self._requests += 1
        if self._requests >= self.drop_after:
            self.drop_after, self._requests = None, 0
            return True
        return False


def role_from_certificate(der: bytes) -> str | None:
    """The Modbus/TCP Security role (an ASN.1 UTF8String extension), or None."""
    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_oid(ROLE_OID).value
    except x509.ExtensionNotFound:
        return None
    raw = getattr(ext, "value", b"")
    if len(raw) < 2 or raw[0] != 0x0C or raw[1] & 0x80 or raw[1] != len(raw) - 2:
        return None  # not a short-form UTF8String
    return raw[2:].decode("utf-8", errors="replace")


class _Handler(ServerRequestHandler):
    """Publishes this connection (and its certificate role) to the action hook."""

    _connection: Connection | None = None

    def _current(self) -> Connection:
        if self._connection is None:
            ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            self._connection = Connection(self, role_from_certificate(der) if der else None)
        return self._connection

    async def handle_request(self) -> None:
        token = CURRENT.set(self._current())
        try:
            await super().handle_request()  # type: ignore[no-untyped-call]  # pymodbus: unannotated
        finally:
            CURRENT.reset(token)


def _handler(server: ModbusTcpServer) -> _Handler:
    return _Handler(server, server.trace_packet, server.trace_pdu,  # type: ignore[no-untyped-call]
                    server.trace_connect)  # (pymodbus's handler __init__ is unannotated)


class _TcpServer(ModbusTcpServer):
    def callback_new_connection(self) -> _Handler:
        return _handler(self)


class _TlsServer(ModbusTlsServer):
    def callback_new_connection(self) -> _Handler:
        return _handler(self)


def device_action(inverter: SunSpecInverter, faults: Faults, security: Security | None
                  ) -> Action:
    async def action(  # pymodbus's SimAction signature
        function_code: int, start_address: int, address: int, count: int,
        registers: list[int], set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        del function_code
        conn = CURRENT.get()
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        if conn is not None and faults.should_drop():
            transport = conn.handler.transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            return ExcCodes.DEVICE_FAILURE  # never delivered: the connection is gone
        if faults.exception is not None:
            return faults.exception
        try:
            if set_values is not None:
                if security is not None and (conn is None or conn.role not in security.write_roles):
                    return ExcCodes.ILLEGAL_FUNCTION
                inverter.write(address, [int(v) for v in set_values])
                return None  # pymodbus copies the accepted values into its mirror
            offset = address - start_address
            registers[offset : offset + count] = inverter.read(address, count)
        except ModbusRefusal as exc:
            return ExcCodes(int(exc.code))
        return None

    return action


async def _no_such_unit(*_args: object) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


class PortServer:
    """One listening socket serving `inverters` by unit id."""

    def __init__(
        self,
        host: str,
        port: int,
        inverters: dict[int, SunSpecInverter],
        security: Security | None = None,
    ) -> None:
        if not inverters or not all(1 <= unit <= 247 for unit in inverters):
            raise ValueError("unit ids must lie within 1..247")
        self.host, self.port, self.security = host, port, security
        self.inverters = inverters
        self.faults = {unit: Faults() for unit in inverters}
        self.connections = 0
        self._server: ModbusTcpServer | None = None

    def _devices(self) -> list[SimDevice]:
        # Unit id 0 is pymodbus's catch-all: it spans every address, so that any request to
        # an unknown unit reaches the action and gets 0x0B rather than an address error.
        catch_all = SimData(0, count=0xFFFF, values=0, datatype=DataType.REGISTERS)
        devices = [SimDevice(0, simdata=catch_all, action=_no_such_unit)]
        for unit, inv in self.inverters.items():
            data = SimData(inv.image.base, count=len(inv.image.regs), values=0,
                           datatype=DataType.REGISTERS)
            devices.append(SimDevice(unit, simdata=data,
                                     action=device_action(inv, self.faults[unit], self.security)))
        return devices

    def _on_connect(self, connected: bool) -> None:
        self.connections += 1 if connected else -1

    async def start(self) -> None:
        address = (self.host, self.port)
        if self.security is None:
            self._server = _TcpServer(self._devices(), address=address,
                                      trace_connect=self._on_connect)
        else:
            self._server = _TlsServer(self._devices(), sslctx=self.security.ssl_context,
                                      address=address, trace_connect=self._on_connect)
        await self._server.serve_forever(background=True)

    @property
    def bound_port(self) -> int:
        """The port actually listened on (differs from `port` when that was 0)."""
        assert self._server is not None
        listener = self._server.transport  # a listening pymodbus protocol holds its Server
        assert isinstance(listener, asyncio.Server), listener
        port: int = listener.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus: unannotated
            self._server = None
