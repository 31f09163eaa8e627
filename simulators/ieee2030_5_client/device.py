"""One EndDevice as its DER sees it: programs and controls fetched, schedule applied, Responses
and mirrored readings posted."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from adapters.ieee2030_5.codec import models as m
from simulators.feeder.envelope import ControlledDer, Envelope
from simulators.ieee2030_5_client import control, readings
from simulators.ieee2030_5_client.events import Due, Event, Schedule
from simulators.ieee2030_5_client.http import Sep

log = logging.getLogger(__name__)
UNSENT_READINGS = 100  # readings kept while the server is away (one post each)


@dataclass(slots=True)
class Program:
    primacy: int
    controls_href: str | None
    default_href: str | None


@dataclass
class DeviceAgent:
    edev_href: str
    lfdi: str
    der: ControlledDer
    programs: list[Program] = field(default_factory=list)
    schedule: Schedule = field(init=False)
    default: Envelope = field(default_factory=Envelope)
    poll_s: float = 300.0
    next_poll: float = 0.0
    last_ok: float = field(default_factory=time.monotonic)
    mup_href: str | None = None
    post_s: float = 60.0
    next_post: float = 0.0
    applied: Envelope = field(default_factory=Envelope)
    active_mrid: str | None = None
    responses: dict[str, list[int]] = field(default_factory=dict)  # mRID -> statuses posted
    # Readings not posted yet (the server was away): sent first next time, newest kept.
    unsent: list[m.MirrorMeterReadingList] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.schedule = Schedule(self.lfdi)

    @property
    def rating_w(self) -> float:
        return self.der.model.rating.w_max

    # -- discovery -----------------------------------------------------------------------

    async def discover(self, sep: Sep) -> None:
        """EndDevice -> FunctionSetAssignments -> DERPrograms (primacy and links)."""
        edev = await sep.get(self.edev_href, m.EndDevice)
        programs: list[Program] = []
        if edev.FunctionSetAssignmentsListLink is None:
            self.programs = programs
            return
        for fsa in await sep.get_all(edev.FunctionSetAssignmentsListLink.href,
                                     m.FunctionSetAssignmentsList, "FunctionSetAssignments"):
            if fsa.DERProgramListLink is None:
                continue
            first, listed = await sep.get_list(fsa.DERProgramListLink.href, m.DERProgramList,
                                               "DERProgram")
            self.poll_s = float(first.pollRate or self.poll_s)
            for p in listed:
                programs.append(Program(
                    p.primacy, p.DERControlListLink.href if p.DERControlListLink else None,
                    p.DefaultDERControlLink.href if p.DefaultDERControlLink else None))
        self.programs = sorted(programs, key=lambda p: p.primacy)

    # -- controls ------------------------------------------------------------------------

    async def poll(self, sep: Sep) -> None:
        events: list[Event] = []
        default: Envelope | None = None
        for program in self.programs:
            if program.controls_href:
                controls = await sep.get_all(program.controls_href, m.DERControlList,
                                             "DERControl")
                events += [Event.of(c, program.primacy) for c in controls]
            if program.default_href and default is None:
                dderc = await sep.get(program.default_href, m.DefaultDERControl)
                default = control.default_envelope(dderc, self.rating_w)
        self.schedule.update(events)
        self.default = default or Envelope()
        self.last_ok = time.monotonic()

    def take_controls(self, primacy: int, controls: list[m.DERControl]) -> None:
        """A notified DERControlList replaces what the schedule knows of that program."""
        others = [e for e in self.schedule.events() if e.primacy != primacy]
        self.schedule.update(others + [Event.of(c, primacy) for c in controls])
        self.last_ok = time.monotonic()

    def take_default(self, dderc: m.DefaultDERControl) -> None:
        self.default = control.default_envelope(dderc, self.rating_w)

    def tick(self, now: int, comms_loss_s: float) -> list[Due]:
        """Apply what is in force now; the Responses that became due."""
        active, due = self.schedule.tick(now)
        if time.monotonic() - self.last_ok > comms_loss_s:
            envelope, self.active_mrid = self.default, None  # failsafe: DefaultDERControl
        else:
            self.active_mrid = active.mrid if active else None
            envelope = control.merged(control.layered(
                [e.base for e in self.schedule.in_force], self.rating_w), self.default)
        if envelope != self.applied:
            self.der.apply(envelope)
            self.applied = envelope
        return due

    async def respond(self, sep: Sep, due: Due) -> None:
        doc = m.DERControlResponse(createdDateTime=int(time.time()), endDeviceLFDI=self.lfdi,
                                   status=due.status, subject=due.mrid)
        await sep.send("POST", due.reply_to, doc)
        self.responses.setdefault(due.mrid, []).append(due.status)

    # -- readings ------------------------------------------------------------------------

    async def post_readings(self, sep: Sep) -> None:
        now = int(time.time())
        measurement = self.der.measurement()
        if self.mup_href is None:
            location = await sep.send("POST", "/mup", readings.usage_point(
                self.lfdi, measurement, now, int(self.post_s)))
            self.mup_href = location
            if location:
                mup = await sep.get(location, m.MirrorUsagePoint)
                self.post_s = float(mup.postRate or self.post_s)
            return
        self.unsent.append(m.MirrorMeterReadingList(
            MirrorMeterReading=readings.meter_readings(self.lfdi, measurement, now,
                                                       int(self.post_s))))
        del self.unsent[:-UNSENT_READINGS]
        while self.unsent:  # oldest first; what fails stays for the next round
            await sep.send("POST", self.mup_href, self.unsent[0])
            self.unsent.pop(0)
