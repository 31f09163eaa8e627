"""The I/O edge: one Modbus TCP (or Modbus/TCP Security) connection per device, SunSpec
discovery, and model reads/writes in request-sized pieces.

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
from sunspec2.mdef import ModelDefinitionError

from adapters.modbus.codec import (
    BASE_ADDRESSES,
    END_MODEL_ID,
    MAX_READ,
    MAX_WRITE,
    CodecError,
    ExceptionCode,
    ModelLayout,
    build_layout,
    count_points,
    has_marker,
    layout_from_registers,
)

log = logging.getLogger(__name__)

MAX_MODELS = 64  # a model chain longer than this is not a device we understand


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


class NotSunSpec(DeviceError):
    """No "SunS" marker at any base address, or a broken model chain."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    unit_id: int
    tls: bool = False

    @classmethod
    def from_address(cls, address: Mapping[str, Any]) -> Endpoint:
        return cls(str(address["host"]), int(address["port"]), int(address["unit_id"]),
                   bool(address.get("tls", False)))

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
        if self.endpoint.tls:
            return AsyncModbusTlsClient(self.endpoint.host, sslctx=self.ssl_context, **common)
        return AsyncModbusTcpClient(self.endpoint.host, **common)

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        if self.endpoint.tls and self.ssl_context is None:
            raise DeviceUnreachable(f"{self.endpoint}: TLS requested but the gateway has no "
                                    "Modbus client certificate (pki modbus/clients/...)")
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


# -- SunSpec over a link -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelRef:
    model_id: int
    address: int  # of the model's ID register
    layout: ModelLayout


@dataclass(frozen=True, slots=True)
class DeviceMap:
    base: int
    models: Mapping[int, ModelRef]  # the first instance of each model id

    def has(self, model_id: int) -> bool:
        return model_id in self.models


async def read_span(link: ModbusLink, address: int, count: int) -> list[int]:
    out: list[int] = []
    while count > 0:
        n = min(count, MAX_READ)
        out += await link.read(address, n)
        address, count = address + n, count - n
    return out


async def discover(link: ModbusLink) -> DeviceMap:
    """Find the SunSpec base (40000, 0, 50000) and walk the model chain to its end."""
    for base in BASE_ADDRESSES:
        try:
            if has_marker(await link.read(base, 2)):
                break
        except DeviceRefused:
            continue
    else:
        raise NotSunSpec(f"{link.endpoint}: no SunSpec marker at {BASE_ADDRESSES}")
    models: dict[int, ModelRef] = {}
    address = base + 2
    for _ in range(MAX_MODELS):
        model_id, length = await link.read(address, 2)
        if model_id == END_MODEL_ID:
            return DeviceMap(base, models)
        layout = await _layout_at(link, model_id, address, length)
        if layout is not None:
            models.setdefault(model_id, ModelRef(model_id, address, layout))
        address += 2 + length
    raise NotSunSpec(f"{link.endpoint}: model chain longer than {MAX_MODELS} models")


async def _layout_at(link: ModbusLink, model_id: int, address: int, length: int
                     ) -> ModelLayout | None:
    """The model's layout; None for a model pysunspec2 does not define (it is skipped)."""
    try:
        if not count_points(model_id):
            layout = build_layout(model_id)
        else:  # repeated groups: their counts are in the model's own registers
            regs = [model_id, length, *await read_span(link, address + 2, length)]
            layout = layout_from_registers(model_id, regs)
    except ModelDefinitionError:
        log.info("%s: model %s at %s is not defined by pysunspec2; skipped",
                 link.endpoint, model_id, address)
        return None
    except CodecError as exc:
        raise NotSunSpec(f"{link.endpoint}: model {model_id}: {exc}") from exc
    if layout.length != length:
        raise NotSunSpec(f"{link.endpoint}: model {model_id}: L={length}, "
                         f"definition says {layout.length}")
    return layout


async def read_model(link: ModbusLink, ref: ModelRef, size: int | None = None) -> list[int]:
    """The model's registers from its ID on (`size` registers, default the whole model)."""
    return await read_span(link, ref.address, size or ref.layout.size)


def write_runs(layout: ModelLayout, regs: Sequence[int], paths: Sequence[str]
               ) -> list[tuple[int, list[int]]]:
    """Contiguous runs (model offset, registers) covering `paths`, each at most MAX_WRITE."""
    specs = sorted((layout.point(p) for p in paths), key=lambda s: s.offset)
    runs: list[tuple[int, list[int]]] = []
    for spec in specs:
        chunk = list(regs[spec.offset : spec.offset + spec.size])
        if runs and runs[-1][0] + len(runs[-1][1]) == spec.offset and (
                len(runs[-1][1]) + spec.size <= MAX_WRITE):
            runs[-1][1].extend(chunk)
        else:
            runs.append((spec.offset, chunk))
    return runs
