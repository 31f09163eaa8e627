"""The I/O edge: one Modbus TCP (or Modbus/TCP Security) connection per address, and reads
in request-sized pieces. (What is read and written, SunSpec, is in `sunspec/`.)

Devices behind one host and port (unit ids behind a Modbus gateway or a datalogger) share
one connection, as such gateways expect (many accept only one or a few): a pool of 25,000
devices behind 250 gateways holds 250 sockets, not 25,000. pymodbus 3.16 stays behind
`ModbusLink`; its async client is not safe to share between tasks, so every request on a
connection is serialised by a lock, and `turn()` gives one device at a time a whole pass.
Failures surface as this module's `DeviceError` family, each carrying a sentence an
operator can act on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from adapters.modbus.codec import MAX_READ, ExceptionCode

log = logging.getLogger(__name__)

class DeviceError(Exception):
    """A device could not be read or written; `str()` says why, for the operator."""


class DeviceUnreachable(DeviceError):
    """No connection, a dropped connection, or no answer in time."""


class DeviceRefused(DeviceError):
    """The device answered with a Modbus exception code."""

    def __init__(self, code: int, what: str) -> None:
        name = ExceptionCode(code).name if code in ExceptionCode._value2member_map_ else "?"
        super().__init__(f"{what}: Modbus exception 0x{code:02X} {name}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    unit_id: int
    tls: bool = False

    @classmethod
    def from_address(cls, address: Mapping[str, Any]) -> Endpoint:
        """The endpoint of a binding address; ValueError saying what is wrong with it."""
        try:
            host, port, unit = address["host"], address["port"], address["unit_id"]
        except KeyError as exc:
            raise ValueError(f"the binding address has no {exc.args[0]!r}") from None
        if not isinstance(host, str) or not host:
            raise ValueError("the binding address's host must be a name or an IP address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"the binding address's port {port!r} is not 1..65535")
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit <= 247:
            raise ValueError(f"the binding address's unit_id {unit!r} is not 0..247")
        return cls(host, port, unit, bool(address.get("tls", False)))

    def __str__(self) -> str:
        return f"{'modbus+tls' if self.tls else 'modbus'}://{self.host}:{self.port}/{self.unit_id}"


class Connection:
    """One TCP (or TLS) connection to a host and port, used by every device behind it.
    Reconnects lazily; never retries by itself."""

    def __init__(self, endpoint: Endpoint, timeout_s: float,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.endpoint = endpoint  # (its unit id is the first user's: only host and port count)
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self.lock = asyncio.Lock()  # one request at a time
        self.turns = asyncio.Lock()  # one device's pass at a time
        self.users = 0
        self._client: AsyncModbusTcpClient | None = None

    def _new_client(self) -> AsyncModbusTcpClient:
        # retries=0 and reconnect_delay=0: back-off and reconnection are the pool's decision.
        common: dict[str, Any] = {"port": self.endpoint.port, "timeout": self.timeout_s,
                                  "retries": 0, "reconnect_delay": 0}
        if not self.endpoint.tls:
            return AsyncModbusTcpClient(self.endpoint.host, **common)
        if self.ssl_context is None:
            raise DeviceUnreachable(f"{self.endpoint}: TLS requested but the gateway has no "
                                    "Modbus client certificate (pki modbus/clients/...)")
        return AsyncModbusTlsClient(self.endpoint.host, sslctx=self.ssl_context, **common)

    async def connected(self, who: Endpoint) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.reset()
        client = self._new_client()
        try:
            ok = await asyncio.wait_for(client.connect(), self.timeout_s + 0.5)
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise DeviceUnreachable(f"{who}: cannot connect ({exc!r})") from exc
        if not ok:
            client.close()
            raise DeviceUnreachable(f"{who}: cannot connect")
        self._client = client
        return client

    def reset(self) -> None:
        """Close the socket (its state is unknown after a failure): the next request opens
        a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None


class Connections:
    """The connections of a pool, one per (host, port, TLS), counted by their users."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int, bool], Connection] = {}

    def take(self, endpoint: Endpoint, timeout_s: float,
             ssl_context: ssl.SSLContext | None) -> Connection:
        key = (endpoint.host.lower(), endpoint.port, endpoint.tls)
        conn = self._open.get(key)
        if conn is None:
            conn = self._open[key] = Connection(endpoint, timeout_s, ssl_context)
        conn.users += 1
        return conn

    def give_back(self, conn: Connection) -> None:
        conn.users -= 1
        if conn.users <= 0:
            conn.reset()
            key = (conn.endpoint.host.lower(), conn.endpoint.port, conn.endpoint.tls)
            if self._open.get(key) is conn:
                del self._open[key]

    def __len__(self) -> int:
        return len(self._open)


class ModbusLink:
    """One device (a unit id) on a connection: its own, or one shared through `connections`
    with the other devices at the same host and port."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = 2.0,
                 ssl_context: ssl.SSLContext | None = None,
                 connections: Connections | None = None) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._connections = connections
        self._conn = (connections.take(endpoint, timeout_s, ssl_context)
                      if connections is not None
                      else Connection(endpoint, timeout_s, ssl_context))
        self._released = False

    def turn(self) -> asyncio.Lock:
        """Held for a device's whole pass: the devices of one connection take turns."""
        return self._conn.turns

    async def _call(self, what: str, request: Callable[[AsyncModbusTcpClient], Awaitable[Any]]
                    ) -> Any:
        async with self._conn.lock:
            client = await self._conn.connected(self.endpoint)
            try:
                reply = await asyncio.wait_for(request(client), self.timeout_s + 0.5)
            except (TimeoutError, OSError, ModbusException) as exc:
                self._conn.reset()  # the connection's state is unknown: start afresh next time
                timed_out = isinstance(exc, TimeoutError | ModbusIOException)
                reason = f"no answer in time ({exc!r})" if timed_out else repr(exc)
                raise DeviceUnreachable(f"{self.endpoint}: {what}: {reason}") from exc
        if reply.isError():
            code = int(getattr(reply, "exception_code", 0))
            raise DeviceRefused(code, f"{self.endpoint}: {what}")
        return reply

    async def read(self, address: int, count: int) -> list[int]:
        unit = self.endpoint.unit_id
        reply = await self._call(f"read {address}+{count}", lambda c: c.read_holding_registers(
            address, count=count, device_id=unit))
        if len(reply.registers) != count:
            self._conn.reset()
            raise DeviceUnreachable(f"{self.endpoint}: read {address}+{count}: short answer")
        return list(reply.registers)

    async def write(self, address: int, values: Sequence[int]) -> None:
        unit = self.endpoint.unit_id
        await self._call(f"write {address}+{len(values)}", lambda c: c.write_registers(
            address, list(values), device_id=unit))

    def close(self) -> None:
        """After a failure: a connection of this device's own is closed (the next request
        opens a new one); a shared one was reset by the failing request itself, and other
        devices' requests may be on it now."""
        if self._connections is None:
            self._conn.reset()

    def release(self) -> None:
        """The device is no longer polled: its connection closes with its last user."""
        if self._released:
            return
        self._released = True
        if self._connections is None:
            self._conn.reset()
        else:
            self._connections.give_back(self._conn)


async def read_span(link: ModbusLink, address: int, count: int) -> list[int]:
    """`count` registers from `address` on, in as many requests as the protocol needs."""
    out: list[int] = []
    while count > 0:
        n = min(count, MAX_READ)
        out += await link.read(address, n)
        address, count = address + n, count - n
    return out
