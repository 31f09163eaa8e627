"""The I/O edge: one Modbus TCP (or Modbus/TCP Security) connection per device, and reads in
request-sized pieces. (What is read and written, SunSpec, is in `sunspec/`.)

pymodbus 3.16 stays behind `ModbusLink`; its async client is not safe to share between
tasks, so every request on a link is serialised by a lock. Failures surface as this module's
`DeviceError` family, each carrying a sentence an operator can act on.
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


class ModbusLink:
    """One connection to one device. Reconnects lazily; never retries by itself."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = 2.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()

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

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        client = self._new_client()
        try:
            ok = await asyncio.wait_for(client.connect(), self.timeout_s + 0.5)
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise DeviceUnreachable(f"{self.endpoint}: cannot connect ({exc!r})") from exc
        if not ok:
            client.close()
            raise DeviceUnreachable(f"{self.endpoint}: cannot connect")
        self._client = client
        return client

    async def _call(self, what: str, request: Callable[[AsyncModbusTcpClient], Awaitable[Any]]
                    ) -> Any:
        async with self._lock:
            client = await self._connected()
            try:
                reply = await asyncio.wait_for(request(client), self.timeout_s + 0.5)
            except (TimeoutError, OSError, ModbusException) as exc:
                self.close()  # the connection's state is unknown: start afresh next time
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
            self.close()
            raise DeviceUnreachable(f"{self.endpoint}: read {address}+{count}: short answer")
        return list(reply.registers)

    async def write(self, address: int, values: Sequence[int]) -> None:
        unit = self.endpoint.unit_id
        await self._call(f"write {address}+{len(values)}", lambda c: c.write_registers(
            address, list(values), device_id=unit))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


async def read_span(link: ModbusLink, address: int, count: int) -> list[int]:
    """`count` registers from `address` on, in as many requests as the protocol needs."""
    out: list[int] = []
    while count > 0:
        n = min(count, MAX_READ)
        out += await link.read(address, n)
        address, count = address + n, count - n
    return out
