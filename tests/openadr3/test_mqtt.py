"""MQTT notifications (OpenADR 3.1 MQTT binding) through a real Mosquitto broker.

A VEN learns the broker from `GET /notifiers`, its topics from the topic endpoints, logs in
with its clientID and token, receives the event a platform limit renders for its DER, and
cannot subscribe to another VEN's topics. Publications are durable: a broker that is down
delays them, loses none, and does not slow the VTN down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from adapters.openadr3.vtn.mqtt import OUTBOX
from tests.openadr3.conftest import CORE_WARNINGS, Vtn, oadr_der, until
from tests.openadr3.test_integration import submit_limit
from tests.support.gateway import free_port, gateway_in_process
from tests.support.mosquitto import Broker, mosquitto_broker
from tests.support.seed import seed_platform

pytestmark = CORE_WARNINGS


@pytest.fixture
def broker() -> Iterator[Broker]:
    with mosquitto_broker() as running:
        yield running


def mqtt_config(listen: str, url: str, broker: Broker | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"listen": listen, "mqtt_url": url}
    if broker is not None:
        config.update(mqtt_username=broker.username, mqtt_password=broker.password)
    return config


@pytest.fixture
async def mqtt_vtn(tmp_path: Path, broker: Broker) -> AsyncIterator[Vtn]:
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, openadr3=mqtt_config(listen, broker.url, broker)) \
            as gw:
        clients = await seed_platform(gw, resources=[
            oadr_der("o1", "ven-x", "bat-1"),
            oadr_der("o3", "ven-y", "bat-1", cp="cp-c1", agg="agg-y"),
        ])
        yield Vtn(gw, listen, clients)


def ven_client(broker: Broker, client_id: str, token: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, username=client_id, password=token,
                          protocol=aiomqtt.ProtocolVersion.V5, timeout=10)


async def test_a_ven_gets_its_event_over_mqtt_and_cannot_read_another_vens(mqtt_vtn, broker):
    vtn = mqtt_vtn
    x = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    y = await vtn.provision("agg-y", {"role": "ven", "ven_name": "ven-y"})
    tx, ty = await vtn.token(x), await vtn.token(y)

    status, notifiers = await vtn.call("GET", "/notifiers", tx)
    assert status == 200 and notifiers["WEBHOOK"] is True
    binding = notifiers["MQTT"]
    assert binding["URIS"] == [broker.url] and binding["serialization"] == "JSON"
    assert binding["authentication"] == {"method": "OAUTH2_BEARER_TOKEN",
                                         "username": "{clientID}"}
    assert (await vtn.call("GET", "/notifiers", ty))[0] == 200

    status, mine = await vtn.call("GET", f"/notifiers/mqtt/topics/vens/{x['ven_id']}/events", tx)
    assert status == 200
    assert mine["topics"] == {
        "CREATE": f"events/vens/{x['ven_id']}/create",
        "UPDATE": f"events/vens/{x['ven_id']}/update",
        "DELETE": f"events/vens/{x['ven_id']}/delete",
        "ALL": f"events/vens/{x['ven_id']}/+",
    }
    # Another VEN's topic names, and the all-events topics, are not for ven-x.
    assert (await vtn.call("GET", f"/notifiers/mqtt/topics/vens/{y['ven_id']}/events", tx))[0] \
        == 404
    assert (await vtn.call("GET", "/notifiers/mqtt/topics/events", tx))[0] == 403

    async with ven_client(broker, x["client_id"], tx) as cx, \
            ven_client(broker, y["client_id"], ty) as cy:
        granted = await cx.subscribe(mine["topics"]["ALL"], qos=1)
        assert not granted[0].is_failure
        for foreign in (f"events/vens/{y['ven_id']}/+", "events/+", "#", "events/vens/+/+"):
            refused = await cx.subscribe(foreign, qos=1)
            assert refused[0].is_failure, foreign
        await cy.subscribe(f"events/vens/{y['ven_id']}/+", qos=1)

        await submit_limit(vtn, 3_300)
        async with asyncio.timeout(15):
            async for message in cx.messages:
                note = json.loads(bytes(message.payload))
                assert note["objectType"] == "EVENT"
                if note["object"]["targets"] == ["ven-x/bat-1"]:
                    break
        assert str(message.topic).startswith(f"events/vens/{x['ven_id']}/")
        assert note["operation"] in ("CREATE", "UPDATE")
        payloads = [p for iv in note["object"]["intervals"] for p in iv["payloads"]]
        assert {"type": "EXPORT_CAPACITY_LIMIT", "values": [3.3]} in payloads
        # ven-y hears nothing of ven-x's event.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                async for leaked in cy.messages:
                    raise AssertionError(f"ven-y received {leaked.topic}")

    # A VEN cannot log in as another client, nor with another client's token.
    with pytest.raises(aiomqtt.MqttError):
        async with ven_client(broker, x["client_id"], ty):
            pass


async def test_publications_wait_for_a_broker_that_is_down(tmp_path):
    port = free_port()
    listen = f"https://127.0.0.1:{free_port()}"
    # The broker is not running yet: the VTN must answer as fast, and lose nothing.
    with mosquitto_broker(port=port) as later_broker:
        pass
    config = mqtt_config(listen, f"mqtt://127.0.0.1:{port}", later_broker)
    async with gateway_in_process(tmp_path, openadr3=config) as gw:
        vtn = Vtn(gw, listen, await seed_platform(gw, resources=[]))
        token = await vtn.token(await vtn.provision(
            "admin", {"role": "bl", "participant_id": "ldc-a"}))
        status, notifiers = await vtn.call("GET", "/notifiers", token)
        assert status == 200 and "MQTT" not in notifiers  # no login could be set up
        started = time.monotonic()
        for n in range(3):
            status, _ = await vtn.call("POST", "/programs", token, {"programName": f"p{n}"})
            assert status == 201
        assert time.monotonic() - started < 2.0
        adapter = gw.gateway.adapters["openadr3"]
        pending = await adapter.ctx.records.list(OUTBOX)
        assert len(pending) == 3 * 1  # programs/create for each program
        adapter.publisher.wake()
        adapter.publisher.max_backoff_s = 1.0
        with mosquitto_broker(port=port, password=later_broker.password):
            async def drained():
                return not await adapter.ctx.records.list(OUTBOX)

            await until(drained, within=20)
            assert adapter.publisher.published >= 3
