"""The 2030.5 listener under abuse (issue 12, finding 10): idle sockets cost little and are
closed, slow request heads are cut off, connections are capped per listener and per client
certificate; the listener keeps serving everyone else."""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl

import pytest

from adapters.ieee2030_5.listener import Limits
from pki.tls import client_context
from tests.ieee2030_5.conftest import listening

IDLE = 600


async def until(probe, within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if probe():
                return
            await asyncio.sleep(0.05)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def tls(pki, name: str = "device-1") -> ssl.SSLContext:
    base = pki / "ieee2030_5"
    return client_context(base / "ca-chain.pem", base / f"clients/{name}-chain.pem",
                          base / f"clients/{name}.key", ieee2030_5=True)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            return await reader.read(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


async def get_dcap(port: int, ctx: ssl.SSLContext) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"GET /dcap HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


async def test_idle_connections_cost_little_and_are_closed(server):
    """Sockets that never send a ClientHello: no TLS buffers set aside for them (before,
    ~256 KiB each), closed when the handshake time is up, and nobody else is held up."""
    loop = asyncio.get_running_loop()
    async with listening(server.service, server.pki, Limits(handshake_timeout_s=2.0)) as (
            port, listener):
        await get_dcap(port, tls(server.pki))  # warm up (first TLS context use, imports)
        before = rss_bytes()
        socks = []
        for _ in range(IDLE):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            socks.append(sock)
        await until(lambda: not (listener.connections < IDLE), 5)
        grown = rss_bytes() - before
        assert grown / IDLE < 32 * 1024, f"{grown / IDLE / 1024:.0f} KiB per idle connection"
        assert await get_dcap(port, tls(server.pki)) == 200  # still serving
        await until(lambda: not (listener.connections > 0), 10)
        assert listener.stats.idle_dropped == IDLE
        for sock in socks:
            assert await loop.sock_recv(sock, 1) == b""  # the server closed it
            sock.close()


async def test_a_stalled_handshake_is_closed(server):
    """A client that starts TLS and stops half-way is cut off at the handshake deadline."""
    async with listening(server.service, server.pki, Limits(handshake_timeout_s=1.0)) as (
            port, listener):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x00\xff\x01\x00")  # the start of a ClientHello, no more
        assert await closed_by_server(reader, within=5)
        writer.close()
        assert listener.stats.handshake_failures == 1


async def test_slow_request_headers_are_timed_out(server):
    """An authenticated client that sends its request head a byte at a time is closed at
    the header deadline; a prompt one on another connection is served meanwhile."""
    async with listening(server.service, server.pki, Limits(header_timeout_s=1.0)) as (
            port, listener):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls(server.pki))
        head = b"GET /dcap HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100

        async def trickle() -> None:
            for byte in head:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        try:
            assert await get_dcap(port, tls(server.pki)) == 200
            assert await closed_by_server(reader, within=5)
        finally:
            trickling.cancel()
            await asyncio.gather(trickling, return_exceptions=True)
            writer.close()
        assert listener.stats.slow_headers == 1


async def test_connections_are_capped_per_client_certificate(server):
    async with listening(server.service, server.pki, Limits(max_connections_per_client=2)) as (
            port, listener):
        held = [await asyncio.open_connection("127.0.0.1", port, ssl=tls(server.pki))
                for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls(server.pki))
        assert await closed_by_server(reader, within=5)
        writer.close()
        assert listener.stats.refused_client_full == 1
        assert await get_dcap(port, tls(server.pki, "device-2")) == 200  # another client
        for _, w in held:
            w.close()
        await until(lambda: not (listener.connections > 0), 5)
        assert await get_dcap(port, tls(server.pki)) == 200  # room again


async def test_connections_are_capped_per_listener(server):
    async with listening(server.service, server.pki, Limits(max_connections=3)) as (
            port, listener):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await until(lambda: not (listener.connections < 3), 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader, within=5)
        writer.close()
        assert listener.stats.refused_listener_full == 1
        for _, w in held:
            w.close()
        await until(lambda: not (listener.connections > 0), 5)
        assert await get_dcap(port, tls(server.pki)) == 200


@pytest.mark.parametrize("line", [b"BREW /dcap HTCPCP/1.0\r\n\r\n", b"\x00\x01garbage\r\n\r\n"])
async def test_a_bad_request_line_gets_an_error_document(server, line):
    async with listening(server.service, server.pki) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls(server.pki))
        writer.write(line)
        data = await reader.read()
        writer.close()
    assert data.split(b" ", 2)[1] == b"400"
    assert b"application/sep+xml" in data and b"<Error" in data
