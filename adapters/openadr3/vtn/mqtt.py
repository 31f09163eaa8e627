"""MQTT notifications (the OpenADR 3.1 MQTT notifier binding) next to webhooks.

- Topics are those the 3.1 documents name: `programs/create`, `events/programs/{id}/update`,
  `events/vens/{venID}/delete`, ... (`topic_names`). All-object and program-scoped topics are
  for business logic; a VEN reads its VEN-scoped topics (`*/vens/{venID}/*`, `vens/{venID}/*`).
- Privacy is kept by the broker: through Mosquitto's dynamic-security control topic the VTN
  gives each client a broker login (user name = its clientID, password = the OAuth token it
  asked `GET /notifiers` with) and a role that may subscribe to its own VENs' topics only
  (`BrokerAccess`). BL clients may subscribe to everything.
- Publishing is durable like webhooks: a change's publications are written to the adapter's
  records (kind `mqtt.out`) with the change, and `MqttPublisher` sends them at QoS 1 and
  deletes each once the broker acknowledged it. A broker that is down costs retries with a
  back-off, never a write: the VTN keeps answering; what is pending is sent on reconnect
  (publications older than `max_age_s` are dropped, like webhooks that ran out of tries).
- With several gateway processes every one connects (each sets broker logins for the
  clients it serves), and one publishes: the holder of the adapter's MQTT lease, which the
  adapter signals with `publishing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.ports import RecordsPort

log = logging.getLogger(__name__)

OUTBOX = "mqtt.out"  # records kind of pending publications
CONTROL = "$CONTROL/dynamic-security/v1"
OPERATIONS = {"CREATE": "create", "UPDATE": "update", "DELETE": "delete"}
# What a VEN may subscribe to, per ven object it owns (its VEN-scoped topics).
VEN_PATTERNS = ("events/vens/{v}/#", "programs/vens/{v}/#", "resources/vens/{v}/#", "vens/{v}/#")
_TOLERATED = ("already exists", "not found")  # idempotent dynsec commands


@dataclass(frozen=True, slots=True)
class MqttConfig:
    url: str  # mqtt://host:port or mqtts://host:port (the VTN's own connection)
    username: str | None = None
    password: str | None = None
    public_uris: tuple[str, ...] = ()  # advertised in GET /notifiers (default: url)
    ca_file: str | None = None  # trust store for an mqtts broker
    max_age_s: float = 3600.0

    @property
    def advertised(self) -> list[str]:
        return list(self.public_uris or (self.url,))


def topic_names(base: str, *, create: bool = True) -> dict[str, str]:
    """The notifierOperationsTopics object for one topic base (no CREATE for one object)."""
    names = {"UPDATE": f"{base}/update", "DELETE": f"{base}/delete", "ALL": f"{base}/+"}
    if create:
        names = {"CREATE": f"{base}/create", **names}
    return names


@dataclass(frozen=True, slots=True)
class Publication:
    topic: str
    payload: dict[str, Any]


class _Keys:
    """Record keys in publication order: time, then a process counter, then uniqueness."""

    def __init__(self) -> None:
        self._counter = 0
        self._node = uuid.uuid4().hex[:8]

    def next(self) -> str:
        self._counter += 1
        return f"{time.time_ns():020d}-{self._counter:09d}-{self._node}"


def outbox_docs(publications: list[Publication], keys: _Keys) -> dict[str, dict[str, Any]]:
    now = time.time()
    return {
        keys.next(): {"topic": p.topic, "payload": json.dumps(p.payload), "at": now}
        for p in publications
    }


class MqttPublisher:
    """The VTN's connection to the broker: sends the durable publications, and carries the
    broker-access commands (`command`), whose answers come back on the control topic."""

    def __init__(self, config: MqttConfig, records: RecordsPort,
                 publishing: asyncio.Event | None = None) -> None:
        self.config = config
        self._records = records
        # Set while this process sends the pending publications (None: always).
        if publishing is None:
            publishing = asyncio.Event()
            publishing.set()
        self.publishing = publishing
        self._keys = _Keys()
        self._wake = asyncio.Event()
        self._client: Any = None  # aiomqtt.Client while connected
        self._connected = asyncio.Event()
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.backoff_s = 1.0
        self.max_backoff_s = 30.0
        self.command_timeout_s = 5.0
        self.published = 0  # publications acknowledged by the broker (for tests and bench)

    # -- writing ------------------------------------------------------------------------

    def docs(self, publications: list[Publication]) -> dict[str, dict[str, Any]]:
        """Outbox documents for publications, to commit with the change they announce."""
        return outbox_docs(publications, self._keys)

    def wake(self) -> None:
        self._wake.set()

    # -- the connection -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect, send what is pending, wait for more; reconnect after a failure."""
        import aiomqtt  # only a configured broker needs the library loaded

        delay = self.backoff_s
        while True:
            try:
                async with self._connect(aiomqtt) as client:
                    self._client = client
                    self._connected.set()
                    delay = self.backoff_s
                    await client.subscribe(f"{CONTROL}/response", qos=1)
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._read_answers(client))
                        tasks.create_task(self._drain_forever(client))
            except* (aiomqtt.MqttError, OSError) as failed:
                log.warning("MQTT broker %s unavailable (%s); retrying in %.0f s",
                            _where(self.config.url), failed.exceptions[0], delay)
            except* Exception:  # a bug must not stop publishing for good: logged, retried
                log.exception("MQTT publisher failed; reconnecting in %.0f s", delay)
            finally:
                _retrieve_disconnect(self._client)
                self._client = None
                self._connected.clear()
                for answer in self._answers.values():
                    if not answer.done():
                        answer.set_exception(ConnectionError("MQTT broker connection lost"))
            await asyncio.sleep(delay)
            delay = min(self.max_backoff_s, delay * 2)

    def _connect(self, aiomqtt: Any) -> Any:
        parts = urlsplit(self.config.url)
        secure = parts.scheme == "mqtts"
        tls = ssl.create_default_context(cafile=self.config.ca_file) if secure else None
        return aiomqtt.Client(
            parts.hostname or "127.0.0.1", parts.port or (8883 if secure else 1883),
            username=self.config.username, password=self.config.password,
            identifier=f"der-gateway-vtn-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5, tls_context=tls, timeout=10,
            max_queued_outgoing_messages=10_000,
        )

    async def _drain_forever(self, client: Any) -> None:
        while True:
            await self.publishing.wait()
            self._wake.clear()
            sent = await self._drain(client)
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=5.0)

    async def _drain(self, client: Any) -> int:
        """Publish every pending publication in order; delete each once acknowledged."""
        pending = await self._records.list(OUTBOX)
        oldest = time.time() - self.config.max_age_s
        for start in range(0, len(pending), 500):
            batch = pending[start:start + 500]
            live = [(k, d) for k, d in batch if d.get("at", 0) >= oldest]
            if len(live) < len(batch):
                log.warning("dropping %d MQTT publications older than %.0f s",
                            len(batch) - len(live), self.config.max_age_s)
            await asyncio.gather(*(
                client.publish(d["topic"], d["payload"], qos=1) for _k, d in live))
            self.published += len(live)
            await asyncio.gather(*(self._records.delete(OUTBOX, k) for k, _d in batch))
        return len(pending)

    async def _read_answers(self, client: Any) -> None:
        async for message in client.messages:
            try:
                answer = json.loads(bytes(message.payload))
            except (TypeError, ValueError):
                continue
            for response in answer.get("responses", ()):
                future = self._answers.get(str(response.get("correlationData")))
                if future is not None and not future.done():
                    future.set_result(response)

    async def command(self, commands: list[dict[str, Any]]) -> None:
        """Send dynamic-security commands; raise unless each succeeded (or was a no-op).
        Bounded by `command_timeout_s`: a request must not hang on a missing broker."""
        timeout = self.command_timeout_s
        await asyncio.wait_for(self._connected.wait(), timeout)
        client = self._client
        if client is None:
            raise ConnectionError("MQTT broker not connected")
        loop = asyncio.get_running_loop()
        futures = []
        for cmd in commands:
            tag = uuid.uuid4().hex
            self._answers[tag] = loop.create_future()
            futures.append((tag, cmd))
            cmd["correlationData"] = tag
        try:
            await client.publish(CONTROL, json.dumps({"commands": commands}), qos=1)
            for tag, cmd in futures:
                response = await asyncio.wait_for(self._answers[tag], timeout)
                error = str(response.get("error") or "")
                if error and not any(t in error.lower() for t in _TOLERATED):
                    raise RuntimeError(f"broker refused {cmd['command']}: {error}")
        finally:
            for tag, _cmd in futures:
                self._answers.pop(tag, None)


class BrokerAccess:
    """Per-client broker logins and topic ACLs through Mosquitto's dynamic security."""

    def __init__(self, publisher: MqttPublisher) -> None:
        self._publisher = publisher

    async def grant(self, client_id: str, password: str, ven_ids: list[str] | None) -> None:
        """Let `client_id` log in with `password`; a VEN (ven_ids given) may subscribe to
        its VENs' topics only, business logic (None) to every notification topic."""
        role = f"oadr-{client_id}"
        patterns = ["#"] if ven_ids is None else [
            p.format(v=v) for v in ven_ids for p in VEN_PATTERNS]
        acls = [{"acltype": "subscribePattern", "topic": t, "priority": 0, "allow": True}
                for t in patterns]
        commands: list[dict[str, Any]] = [{"command": "createRole", "rolename": role}]
        commands += [{"command": "addRoleACL", "rolename": role, **a} for a in acls]
        commands += [
            {"command": "createClient", "username": client_id, "password": password,
             "roles": [{"rolename": role}]},
            {"command": "setClientPassword", "username": client_id, "password": password},
            {"command": "enableClient", "username": client_id},
        ]
        await self._publisher.command(commands)

    async def forget_ven(self, client_id: str, ven_id: str) -> None:
        role = f"oadr-{client_id}"
        await self._publisher.command([
            {"command": "removeRoleACL", "rolename": role, "acltype": "subscribePattern",
             "topic": p.format(v=ven_id)} for p in VEN_PATTERNS])

    async def revoke(self, client_id: str) -> None:
        """No more logins for this client; a connected session is closed by the broker."""
        await self._publisher.command([{"command": "deleteClient", "username": client_id}])


def _retrieve_disconnect(client: Any) -> None:
    """aiomqtt keeps a lost connection's error in a future nobody awaits once the client
    context has failed: read it here (it was logged above), or asyncio reports it at exit."""
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
