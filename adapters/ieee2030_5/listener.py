"""The 2030.5 listener under abuse: TLS only after a ClientHello, time limits, connection caps.

aiohttp's TCPSite hands every accepted socket straight to asyncio's TLS layer, which sets
aside a 256 KiB buffer per connection before a byte arrives and waits 60 s for a handshake:
a thousand idle sockets cost 250 MB. Here the listener accepts sockets itself and

- keeps a socket that has sent nothing as a bare file descriptor: TLS starts (and its
  buffers exist) only once the client's first bytes are there;
- closes a connection whose TLS handshake is not done `handshake_timeout_s` after accept;
- closes a connection whose request headers are not complete `header_timeout_s` after
  their first byte (slowloris);
- caps connections: `max_connections` on the listener, `max_connections_per_client` per
  client certificate (LFDI), refusing what is over;
- answers what aiohttp refuses before a handler runs (a bad request line, an unknown
  Content-Encoding) with a 2030.5 <Error>, not text.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import MEDIA_TYPE, serialize

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    handshake_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_connections: int = 4096
    max_connections_per_client: int = 64


@dataclass(slots=True)
class ListenerStats:
    refused_listener_full: int = 0
    refused_client_full: int = 0
    handshake_failures: int = 0
    idle_dropped: int = 0
    slow_headers: int = 0


class _Handler(RequestHandler):
    """aiohttp's request handler, with a header deadline, a per-client cap and <Error>
    answers for what fails before a handler runs."""

    def __init__(self, listener: GuardedListener, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener = listener
        self._client: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._released = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        client = self._listener.identify(transport)
        if not self._listener.admit_client(client):
            transport.close()
            return
        self._client = client

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if not self._released:
            self._released = True
            self._listener.release(self._client)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._current_request is None and not self._messages:
            if self._head_timer is None:  # the first bytes of a request's head
                self._head_timer = self._loop.call_later(
                    self._listener.limits.header_timeout_s, self._head_overdue)
        else:
            self._disarm()

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._current_request is None and not self._messages and self.transport is not None:
            self._listener.stats.slow_headers += 1
            self.force_close()
            self.transport.close()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; its text body is dropped
        reason = 0 if status < 500 else 1  # invalid request format / values
        response = web.Response(status=status, body=serialize(m.Error(reasonCode=reason)),
                                content_type=MEDIA_TYPE)
        response.force_close()
        return response


class _Server(web.Server):
    def __init__(self, listener: GuardedListener, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener = listener

    def __call__(self) -> RequestHandler:
        return _Handler(self._listener, self, loop=self._loop, **self._kwargs)


class GuardedListener:
    """Serves one aiohttp application over TLS on a socket it accepts itself."""

    def __init__(self, app: web.Application, tls: ssl.SSLContext, limits: Limits,
                 identify: Callable[[asyncio.BaseTransport], str | None],
                 keepalive_timeout_s: float = 75.0) -> None:
        self.app = app
        self.tls = tls
        self.limits = limits
        self.identify = identify
        self.stats = ListenerStats()
        self._keepalive = keepalive_timeout_s
        self._live = 0  # accepted, not yet closed
        self._per_client: Counter[str] = Counter()
        self._waiting: dict[socket.socket, asyncio.TimerHandle] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._server: _Server | None = None
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        return self._live

    async def start(self, host: str, port: int, backlog: int = 512) -> int:
        """Listen; returns the bound port."""
        loop = asyncio.get_running_loop()
        self.app._set_loop(loop)  # (what AppRunner does before serving an application)
        self.app.on_startup.freeze()
        await self.app.startup()
        self.app.freeze()
        self._server = _Server(self, self.app._handle, request_factory=self.app._make_request,
                               loop=loop, keepalive_timeout=self._keepalive, access_log=None)
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.create_task(self._accept(sock), name="ieee2030_5-accept")
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
        loop = asyncio.get_running_loop()
        for conn, timer in list(self._waiting.items()):
            timer.cancel()
            loop.remove_reader(conn.fileno())
            conn.close()
        self._waiting.clear()
        for task in list(self._handshakes):
            task.cancel()
        await asyncio.gather(*self._handshakes, return_exceptions=True)
        if self._server is not None:
            self._server.pre_shutdown()
            await self._server.shutdown(5.0)
        await self.app.shutdown()
        await self.app.cleanup()

    # -- accepting --------------------------------------------------------------------------

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. out of file descriptors: back off, keep serving
                log.warning("2030.5 accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if self._live >= self.limits.max_connections:
                self.stats.refused_listener_full += 1
                conn.close()
                continue
            self._live += 1
            conn.setblocking(False)
            started = loop.time()
            self._waiting[conn] = loop.call_later(self.limits.handshake_timeout_s,
                                                  self._drop_idle, conn)
            loop.add_reader(conn.fileno(), self._hello, conn, started)

    def _drop_idle(self, conn: socket.socket) -> None:
        """Nothing arrived in time: close the bare socket."""
        self._waiting.pop(conn, None)
        asyncio.get_running_loop().remove_reader(conn.fileno())
        conn.close()
        self._live -= 1
        self.stats.idle_dropped += 1

    def _hello(self, conn: socket.socket, started: float) -> None:
        """The client's first bytes are there: now start TLS, within what is left of the
        handshake time."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(conn.fileno())
        timer = self._waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()
        left = max(0.1, self.limits.handshake_timeout_s - (loop.time() - started))
        task = asyncio.create_task(self._handshake(conn, left), name="ieee2030_5-handshake")
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, within_s: float) -> None:
        assert self._server is not None
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                self._server, conn, ssl=self.tls, ssl_handshake_timeout=within_s)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            # A failed or abandoned handshake is the client's affair: counted, not logged
            # as an error (scanners and misconfigured clients do this all day).
            self.stats.handshake_failures += 1
            log.debug("2030.5 TLS handshake failed: %s", exc)
            conn.close()
            self._live -= 1
        # On success the connection is the handler's: release() runs when it closes.

    # -- per-client accounting (called by the handler) ----------------------------------------

    def admit_client(self, client: str | None) -> bool:
        if client is None:
            return True
        if self._per_client[client] >= self.limits.max_connections_per_client:
            self.stats.refused_client_full += 1
            return False
        self._per_client[client] += 1
        return True

    def release(self, client: str | None) -> None:
        self._live -= 1
        if client is not None:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]
