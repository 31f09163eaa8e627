"""Prometheus metrics: one registry per gateway process, exposed at `/metrics`.

- `http_middleware(adapter)`: requests and latency per adapter and route, for the platform
  API and any adapter's aiohttp server (the route label is the route's pattern, never the
  raw path, so ids do not become label values);
- `watch_database(db)`: the time of every write transaction (SQLAlchemy engine events);
- `loop_lag()`: how late the event loop wakes a timer;
- `render(...)`: the figures read at scrape time (deliveries, outbox, acknowledgements,
  connected clients), then the exposition text.

Who may read `/metrics` is decided in gateway.api.app (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from gateway.background import background
from gateway.domain import Role
from gateway.errors import Forbidden
from gateway.health import HealthSnapshot, connected_clients, snapshot
from gateway.store.engine import Database

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "dergw"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOP_INTERVAL_S = 0.25
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The matched route's pattern (`/v1/resources/{resource_id}`), or "unmatched"."""
    info = request.match_info
    resource = info.route.resource if info is not None and info.route is not None else None
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical


class _StateCollector(Collector):
    """Figures read from the store at scrape time: the store is the truth, so a restarted
    process reports the same totals (counters of stored rows only ever grow)."""

    def __init__(self) -> None:
        self.health = HealthSnapshot()
        self.connected: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        pending = GaugeMetricFamily(f"{PREFIX}_deliveries_pending",
                                    "Outbound notifications waiting to be delivered",
                                    labels=["adapter"])
        failed = GaugeMetricFamily(f"{PREFIX}_deliveries_failed",
                                   "Outbound notifications that gave up after every retry",
                                   labels=["adapter"])
        delivered = CounterMetricFamily(f"{PREFIX}_deliveries_delivered",
                                        "Outbound notifications delivered",
                                        labels=["adapter"])
        oldest = GaugeMetricFamily(f"{PREFIX}_deliveries_oldest_pending_seconds",
                                   "Age of the oldest delivery still waiting",
                                   labels=["adapter"])
        for adapter, fig in self.health.deliveries.items():
            pending.add_metric([adapter], fig.pending)
            failed.add_metric([adapter], fig.failed)
            delivered.add_metric([adapter], fig.delivered)
            oldest.add_metric([adapter], fig.oldest_pending_s)
        acks = CounterMetricFamily(f"{PREFIX}_acknowledgements",
                                   "Acknowledgements stored, by protocol and canonical status",
                                   labels=["protocol", "status"])
        for (protocol, status), count in sorted(self.health.acknowledgements.items()):
            acks.add_metric([protocol, status], count)
        outbox_pending = GaugeMetricFamily(f"{PREFIX}_outbox_pending",
                                           "Committed events not yet published to the bus")
        outbox_pending.add_metric([], self.health.outbox_pending)
        outbox_lag = GaugeMetricFamily(f"{PREFIX}_outbox_lag_seconds",
                                       "Age of the oldest unpublished event (0: none waiting)")
        outbox_lag.add_metric([], self.health.outbox_lag_s)
        clients = GaugeMetricFamily(f"{PREFIX}_connected_clients",
                                    "Established connections to each listener",
                                    labels=["protocol"])
        for protocol, count in sorted(self.connected.items()):
            clients.add_metric([protocol], count)
        return [pending, failed, delivered, oldest, acks, outbox_pending, outbox_lag, clients]


class GatewayMetrics:
    """The process's metrics. Not a module-level registry: tests and several gateways in one
    process each get their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered",
                                ["adapter", "route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_http_request_duration_seconds",
                                 "Time to answer an HTTP request (streams: to the first byte)",
                                 ["adapter", "route", "method"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.transactions = Histogram(f"{PREFIX}_db_transaction_seconds",
                                      "Committed transactions, begin to commit",
                                      buckets=LATENCY_BUCKETS, registry=self.registry)
        self.loop_lag_s = Gauge(f"{PREFIX}_event_loop_lag_seconds",
                                "How late the event loop woke the last timer",
                                registry=self.registry)
        self.loop_lags = Histogram(f"{PREFIX}_event_loop_lag_distribution_seconds",
                                  "How late the event loop wakes timers",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._state = _StateCollector()
        self.registry.register(self._state)

    # -- HTTP ------------------------------------------------------------------------------

    def http_middleware(self, adapter: str) -> Any:
        """An aiohttp middleware counting requests and latency under `adapter`. Put it first
        (outermost) so that error answers made by inner middlewares are counted too."""
        requests, latency = self.requests, self.latency

        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                route = route_label(request)
                requests.labels(adapter, route, request.method, str(status)).inc()
                latency.labels(adapter, route, request.method).observe(
                    time.perf_counter() - started)

        return measure

    # -- the store -------------------------------------------------------------------------

    def watch_database(self, db: Database) -> None:
        """Time committed transactions, BEGIN to COMMIT, on the engine's connections. Reads
        end in a rollback (nothing to keep), so counting commits counts the writes; a write
        that fails and rolls back is not timed (its error is logged where it happened)."""
        sync_engine = db.engine.sync_engine
        histogram = self.transactions

        def begin(conn: Any) -> None:
            conn.info["dergw_tx_started"] = time.perf_counter()

        def commit(conn: Any) -> None:
            started = conn.info.pop("dergw_tx_started", None)
            if started is not None:
                histogram.observe(time.perf_counter() - started)

        def forget(conn: Any) -> None:
            # A rollback hook must never raise: on a connection invalidated by a cancelled
            # read, `conn.info` raises, replacing the cancellation (the relay then never
            # stopped and shutdown hung).
            with suppress(SQLAlchemyError):
                conn.info.pop("dergw_tx_started", None)

        event.listen(sync_engine, "begin", begin)
        event.listen(sync_engine, "commit", commit)
        event.listen(sync_engine, "rollback", forget)

    # -- the event loop --------------------------------------------------------------------

    @asynccontextmanager
    async def measuring_loop_lag(self, interval_s: float = LOOP_INTERVAL_S) -> AsyncIterator[None]:
        """Measure, while entered, how late `asyncio.sleep(interval_s)` returns."""
        async with background(self._measure_loop(interval_s), "metrics-loop-lag"):
            yield

    async def _measure_loop(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(interval_s)
            lag = max(0.0, loop.time() - before - interval_s)
            self.loop_lag_s.set(lag)
            self.loop_lags.observe(lag)

    # -- exposition ------------------------------------------------------------------------

    async def render(self, db: Database, listeners: Mapping[str, list[str]]) -> bytes:
        """Read the store's figures, then the exposition text of every metric."""
        self._state.health = await snapshot(db)
        self._state.connected = connected_clients(listeners)
        return generate_latest(self.registry)


# --- who may read ------------------------------------------------------------------------------

Authenticate = Callable[[web.Request], Awaitable[Any]]


def _from_loopback(request: web.Request) -> bool:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return False
    return bool(ipaddress.ip_address(str(peer[0]).split("%", 1)[0]).is_loopback)


def metrics_handler(metrics: GatewayMetrics, db: Database,
                    listeners: Callable[[], Mapping[str, list[str]]], *,
                    authenticate: Authenticate, allow_loopback: bool = False) -> Handler:
    """GET /metrics for the admin (certificate or token); with `allow_loopback`, also for an
    unauthenticated scraper on the gateway's own host. Anyone else: 401/403, as problem JSON
    (the caller's middleware renders the raised error)."""

    async def serve_metrics(request: web.Request) -> web.Response:
        if not (allow_loopback and _from_loopback(request)):
            who = await authenticate(request)
            if who.role is not Role.ADMIN:
                raise Forbidden("/metrics is for the gateway's admin (or a loopback scraper "
                                "when metrics_allow_loopback is set)")
        body = await metrics.render(db, listeners())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                                "Cache-Control": "no-store"})

    return serve_metrics
