"""Play a scenario against a gateway: register the topology, start the fleet on its feeder,
play the timeline, watch acknowledgements and outputs, summarise.

Everything reaches the gateway over the network (platform API, 2030.5, OpenADR 3, Modbus
from the gateway's side, OPC UA). Background work runs in one TaskGroup, so an error in any
loop ends the run loudly instead of vanishing.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.feeder import Feeder, FeederConfig, FeederReport
from simulators.ieee2030_5_client.client import ClientConfig, Ieee2030Client
from simulators.scenario import setup
from simulators.scenario.check import compare
from simulators.scenario.console import Console, StepResult, Summary
from simulators.scenario.fleet import SimDer, build_controlled
from simulators.scenario.gateway_proc import Endpoints
from simulators.scenario.platform import Platform
from simulators.scenario.spec import INSTRUCTION_KINDS, FleetSpec, Scenario, Step
from simulators.scenario.tracker import Tracker
from simulators.ven.ven import Ven, VenConfig

ADAPTER_OF = {"ieee2030_5": "ieee2030_5", "openadr3": "openadr3", "modbus": "modbus"}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@dataclass
class RunOptions:
    ack_timeout_s: float = 30.0  # how long a step's acknowledgements may take
    ready_timeout_s: float = 120.0  # how long the fleet may take to connect before the timeline
    settle_s: float = 3.0  # outputs are checked this long after the last acknowledgement
    status_every_s: float = 2.0
    step_s: float = 0.2  # physics step of the 2030.5 and OpenADR DER models
    # How often 2030.5 clients and VENs look at their schedules (a control's start or end,
    # a Response falling due) and for polls due. A control that arrives is applied at once.
    device_tick_s: float = 0.25
    # The connected fleet idles this long before the timeline plays (a bench measures what a
    # fleet at rest costs the gateway).
    rest_s: float = 0.0
    quiet: bool = False


@dataclass
class Run:
    scenario: Scenario
    endpoints: Endpoints
    options: RunOptions = field(default_factory=RunOptions)
    console: Console | None = None

    def __post_init__(self) -> None:
        self.console = self.console or Console(quiet=self.options.quiet)
        self.platform = Platform(self.endpoints.platform, self.endpoints.pki)
        self.tracker = Tracker()
        self.ders: list[SimDer] = []
        self.skipped: dict[str, str] = {}
        self.feeder: Feeder | None = None
        self.reports: list[FeederReport] = []
        self.results: list[StepResult] = []
        self.labels: dict[str, str] = {}  # step label -> instruction id
        self.operators: dict[str, tuple[str, str]] = {}
        self.credentials: dict[str, dict[str, Any]] = {}  # VEN name -> its credential
        self.t0 = time.monotonic()
        self.phases: dict[str, float] = {}  # phase -> seconds since the run began

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        assert self.console is not None
        self.console.say(self.elapsed, text)

    # -- the whole run ---------------------------------------------------------------------

    async def run(self) -> Summary:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.platform.close)
            listeners = await self._listeners()
            await setup.register_parties(self.platform, self.scenario)
            fleets = self._usable_fleets(listeners)
            modbus = await self._start_modbus(stack, [f for f in fleets if f.protocol == "modbus"])
            controlled, clients, vens = build_controlled(
                _only(self.scenario, fleets), self.endpoints.pki)
            self.ders = modbus + controlled
            await setup.register_ders(self.platform, self.ders)
            await self._prepare_protocols(clients, vens, listeners)
            self._attach_feeder()
            self.phases["registered"] = self.elapsed
            self.say(f"{len(self.ders)} DERs registered; starting the fleet")
            async with asyncio.TaskGroup() as group:
                background = self._start_background(group, clients, vens)
                await self._wait_ready(background["ready"], self.options.ready_timeout_s)
                self.phases["connected"] = self.elapsed
                if self.options.rest_s > 0:
                    self.say(f"fleet connected; at rest for {self.options.rest_s:g} s")
                    await asyncio.sleep(self.options.rest_s)
                    self.phases["rested"] = self.elapsed
                self.say("fleet connected; playing the timeline")
                try:
                    await self._play()
                finally:
                    for task in background["tasks"]:
                        task.cancel()
            return self._summary()

    async def _listeners(self) -> dict[str, list[str]]:
        status = await self.platform.ok("admin", "GET", "/v1/status")
        return dict(status.get("listeners", {}))

    def _usable_fleets(self, listeners: dict[str, list[str]]) -> list[FleetSpec]:
        usable = []
        for fleet in self.scenario.fleets:
            adapter = ADAPTER_OF[fleet.protocol]
            if adapter not in listeners:
                self.skipped[fleet.protocol] = f"the gateway runs no {adapter} adapter"
                continue
            usable.append(fleet)
        if self.scenario.scada and "opcua" not in listeners:
            self.skipped["opcua"] = "the gateway runs no opcua adapter"
        return usable

    async def _start_modbus(self, stack: AsyncExitStack, fleets: list[FleetSpec]
                            ) -> list[SimDer]:
        if not fleets:
            return []
        from simulators.sunspec.fleet import FleetConfig, running_fleet

        out: list[SimDer] = []
        for spec in fleets:
            config = FleetConfig(count=spec.count, first_port=0, w_max=spec.w_max,
                                 battery_every=1 if spec.kind == "battery" else 0,
                                 available_pu=spec.available, ramp_pct_s=100.0,
                                 tick_s=max(0.25, self.options.step_s))
            fleet = await stack.enter_async_context(running_fleet(config))
            for n, der_id in enumerate(spec.ids()):
                host, port, unit = fleet.address(n)
                out.append(SimDer(der_id, spec, spec.connection_points[
                    n % len(spec.connection_points)], fleet.inverters[n].model,
                    binding={"host": host, "port": port, "unit_id": unit}))
        return out

    async def _prepare_protocols(self, clients: dict[str, list[SimDer]],
                                 vens: dict[str, list[SimDer]],
                                 listeners: dict[str, list[str]]) -> None:
        """What parties set up before their devices connect: 2030.5 grants and rates, VEN
        credentials (an aggregator provisions them when commissioning its VENs, not as they
        connect), SCADA accounts."""
        rates = self.scenario.rates
        for ven_name, ders in vens.items():
            self.credentials[ven_name] = await setup.provision_ven(
                self.platform, ven_name, ders[0].fleet.aggregator)
        if clients:
            await setup.grant_aggregator_clients(self.platform, clients)
            await setup.set_ieee2030_5_rates(self.platform, rates.ieee2030_5_poll_s,
                                             rates.ieee2030_5_post_s)
        if "opcua" in listeners:
            for s in self.scenario.scada:
                self.operators[s.id] = await setup.provision_operator(self.platform, s.id, s.ldc)

    def _attach_feeder(self) -> None:
        spec = self.scenario.feeder
        if spec is None:
            return
        self.feeder = Feeder(FeederConfig(network=spec.network, source_pu=spec.source_pu,
                                          load_scale=spec.load_scale, band=spec.band,
                                          der_scale=spec.der_scale))
        buses = {c.id: c.bus for c in self.scenario.connection_points}
        for der in self.ders:
            self.feeder.attach(der.id, der.model, buses.get(der.connection_point))

    # -- background work -------------------------------------------------------------------

    def _start_background(self, group: asyncio.TaskGroup, clients: dict[str, list[SimDer]],
                          vens: dict[str, list[SimDer]]) -> dict[str, Any]:
        ready: list[asyncio.Event] = []
        tasks: list[asyncio.Task[Any]] = []

        def launch(coro_factory: Any, name: str) -> None:
            event = asyncio.Event()
            ready.append(event)
            tasks.append(group.create_task(coro_factory(event.set), name=name))

        launch(lambda done: self.platform.follow(self._on_event, done), "events")
        tasks.append(group.create_task(self._step_models(), name="physics"))
        tasks.append(group.create_task(self._status_loop(), name="status"))
        if self.feeder is not None:
            tasks.append(group.create_task(self._feeder_loop(), name="feeder"))
        for name, ders in clients.items():
            client = self._ieee2030_5_client(name, ders)
            launch(client.run, f"2030.5 {name}")
        for ven_name, ders in vens.items():
            launch(lambda done, n=ven_name, d=ders: self._run_ven(n, d, done), f"ven {ven_name}")
        return {"ready": ready, "tasks": tasks}

    def _ieee2030_5_client(self, name: str, ders: list[SimDer]) -> Ieee2030Client:
        fleet = ders[0].fleet
        in_band = fleet.registration == "in_band"
        cps = {d.connection_point for d in ders}
        config = ClientConfig(
            name=name, url=self.endpoints.ieee2030_5, pki=self.endpoints.pki, in_band=in_band,
            connection_point=next(iter(cps)) if in_band else None, subscribe=fleet.subscribe,
            comms_loss_s=max(120.0, 10 * self.scenario.rates.ieee2030_5_poll_s),
            min_poll_s=0.5, connections=4 if len(ders) < 100 else 16,
            discover_timeout_s=self.options.ready_timeout_s, tick_s=self.options.device_tick_s)
        return Ieee2030Client(config, {d.binding["lfdi"]: d.controlled for d in ders
                                       if d.controlled is not None})

    async def _run_ven(self, ven_name: str, ders: list[SimDer], ready: Any) -> None:
        fleet = ders[0].fleet
        cred = self.credentials[ven_name]
        rates = self.scenario.rates
        ven = Ven(VenConfig(ven_name, f"{self.endpoints.openadr3}/openadr3/3.1.0",
                            self.endpoints.pki / "platform/ca.pem", cred["client_id"],
                            cred["client_secret"], subscribe=fleet.subscribe,
                            poll_s=rates.ven_poll_s if not fleet.subscribe else 30.0,
                            report_s=rates.ven_report_s, tick_s=self.options.device_tick_s),
                  {d.id: d.controlled for d in ders if d.controlled is not None})
        await ven.run(ready)

    async def _wait_ready(self, ready: list[asyncio.Event], wait_s: float) -> None:
        async with asyncio.timeout(wait_s):
            await asyncio.gather(*(e.wait() for e in ready))

    async def _on_event(self, topic: str, payload: dict[str, Any]) -> None:
        if topic == "acknowledgement":
            self.tracker.on_ack(payload, time.monotonic())

    async def _step_models(self) -> None:
        models = [d.controlled for d in self.ders if d.controlled is not None]
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.options.step_s)
            now = time.monotonic()
            dt = min(now - last, 5.0)
            last = now
            for m in models:
                m.step(dt)

    async def _feeder_loop(self) -> None:
        assert self.feeder is not None and self.scenario.feeder is not None
        while True:
            self.reports.append(await self.feeder.step())
            await asyncio.sleep(self.scenario.feeder.step_s)

    async def _status_loop(self) -> None:
        assert self.console is not None
        while True:
            await asyncio.sleep(self.options.status_every_s)
            self.console.status(self.elapsed, self.results, self.tracker.ack_count,
                                self.feeder.last if self.feeder else None)

    # -- the timeline ----------------------------------------------------------------------

    async def _play(self) -> None:
        start = time.monotonic()
        for n, step in enumerate(self.scenario.timeline, 1):
            delay = start + step.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.say(f"step {n}/{len(self.scenario.timeline)}: {step.title}")
            result = StepResult(step.title, step.at_s)
            self.results.append(result)
            try:
                await self._execute(step, result)
            except Exception as exc:  # a refused step is a result, not the end of the run
                result.error = str(exc)
                self.say(f"  refused: {exc}")
                continue
            if step.check and result.pending is not None:
                await self._await_step(result)
        rest = start + self.scenario.duration_s - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)

    async def _execute(self, step: Step, result: StepResult) -> None:
        if step.kind in INSTRUCTION_KINDS:
            instruction_id = await self._instruct(step)
        elif step.kind == "scada_limit":
            instruction_id = await self._scada_limit(step)
        elif step.kind == "cancel":
            instruction_id = self.labels[str(step.body["instruction"])]
            await self.platform.ok(step.by, "POST", f"/v1/instructions/{instruction_id}/cancel")
            self.say(f"  cancelled {step.body['instruction']} ({instruction_id})")
            return
        else:  # frequency
            if self.feeder is not None:
                self.feeder.set_frequency(float(step.body["hz"]))
            return
        result.instruction_id = instruction_id
        if step.label:
            self.labels[step.label] = instruction_id
        if step.check:
            expected = await self._in_force(instruction_id)
            result.pending = self.tracker.track(step.title, instruction_id, self._submitted,
                                                expected)
            self.say(f"  {instruction_id}: {len(expected)} DERs affected")

    async def _instruct(self, step: Step) -> str:
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(seconds=1)
        body = {"kind": step.kind, "target": step.target, "start": iso(start),
                "end": iso(start + timedelta(seconds=step.duration_s))
                if step.duration_s else None,
                "reason": step.reason or step.title, **step.body}
        self._submitted = time.monotonic()
        made = await self.platform.ok(step.by, "POST", "/v1/instructions", body)
        return str(made["id"])

    async def _scada_limit(self, step: Step) -> str:
        from simulators.scada.operator import Console as OpcConsole
        from simulators.scada.operator import connect

        if step.by not in self.operators:
            raise RuntimeError(f"{step.by} has no OPC UA account (is the opcua adapter on?)")
        user, password = self.operators[step.by]
        pki = self.endpoints.pki
        console = OpcConsole(url=self.endpoints.opcua,
                             certificate=pki / "opcua/clients/scada-operator.pem",
                             server_certificate=pki / "opcua/server.der", user=user,
                             password=password)
        self._submitted = time.monotonic()
        async with connect(console) as op:
            return str(await op.set_limit(
                step.target["id"], export_w=float(step.body.get("export_w", -1.0)),
                import_w=float(step.body.get("import_w", -1.0)),
                duration_s=int(step.duration_s or 0), reason=step.reason or "SCADA operator"))

    async def _in_force(self, instruction_id: str) -> dict[str, set[str]]:
        """Our DERs whose effective control in force now includes the instruction."""
        ours = {d.platform_id for d in self.ders}
        controls = await self.platform.ok("admin", "GET", "/v1/effective-controls")
        now = datetime.now(UTC)
        out: dict[str, set[str]] = {}
        for control in controls:
            if control["resource_id"] not in ours:
                continue
            interval = _interval_at(control, now)
            if interval is None:
                continue
            ids = {s["instruction_id"] for s in interval.get("sources", ())}
            if instruction_id in ids:
                out[control["resource_id"]] = ids
        return out

    async def _await_step(self, result: StepResult) -> None:
        """Wait for the step's acknowledgements, let outputs settle, then compare them."""
        assert result.pending is not None
        deadline = time.monotonic() + self.options.ack_timeout_s
        while time.monotonic() < deadline:  # acks arrive from the event stream task
            if result.pending.complete:
                break
            await asyncio.sleep(0.1)
        p = result.pending
        lat = p.latencies()
        self.say(f"  {len(p.acked)}/{len(p.expected)} acknowledged"
                 + (f", p50 {lat['p50']:.2f}s max {lat['max']:.2f}s" if lat else ""))
        await asyncio.sleep(self.options.settle_s)
        await self.check_outputs(result)

    async def check_outputs(self, result: StepResult) -> None:
        controls = await self.platform.ok("admin", "GET", "/v1/effective-controls")
        by_id = {c["resource_id"]: c for c in controls}
        now = datetime.now(UTC)
        result.mismatches, result.checked = [], 0
        # Only the DERs this step's instruction affects: a one-DER limit checks one output.
        affected = set(result.pending.expected) if result.pending is not None else None
        for der in self.ders:
            if affected is not None and der.platform_id not in affected:
                continue
            interval = _interval_at(by_id.get(der.platform_id, {}), now)
            if interval is None or not interval.get("sources"):
                continue  # nothing instructed: the DER runs free
            result.checked += 1
            mismatch = compare(der.id, interval, der.model.measurement(), der.model.rating)
            if mismatch is not None:
                result.mismatches.append(mismatch)
        result.feeder = self.feeder.last if self.feeder else None
        if result.mismatches:
            self.say(f"  {len(result.mismatches)} DERs off their control, e.g. "
                     f"{result.mismatches[0].line()}")

    # -- the end ---------------------------------------------------------------------------

    def _summary(self) -> Summary:
        by_protocol: dict[str, int] = {}
        for d in self.ders:
            by_protocol[d.fleet.protocol] = by_protocol.get(d.fleet.protocol, 0) + 1
        if self.scenario.scada and "opcua" not in self.skipped:
            by_protocol["opcua (SCADA)"] = len(self.scenario.scada)
        converged = [r for r in self.reports if r.converged]
        summary = Summary(
            scenario=self.scenario.name, ders=len(self.ders), by_protocol=by_protocol,
            skipped=self.skipped, steps=self.results, acknowledgements=self.tracker.ack_count,
            feeder_band=self.scenario.feeder.band if self.scenario.feeder else None,
            feeder_v_range=(min(r.v_min_pu for r in converged), max(r.v_max_pu for r in converged))
            if converged else None)
        return summary


def _interval_at(control: dict[str, Any], when: datetime) -> dict[str, Any] | None:
    for interval in control.get("intervals", ()):
        start = datetime.fromisoformat(interval["start"].replace("Z", "+00:00"))
        end = interval.get("end")
        if start <= when and (end is None or when < datetime.fromisoformat(
                end.replace("Z", "+00:00"))):
            return dict(interval)
    return None


def _only(scenario: Scenario, fleets: list[FleetSpec]) -> Scenario:
    from dataclasses import replace

    return replace(scenario, fleets=tuple(fleets))
