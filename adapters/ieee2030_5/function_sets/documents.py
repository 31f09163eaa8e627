"""Wire documents for one EndDevice's resource tree: hrefs and links in one place, and each
published control as the DERControl a client reads (pure functions)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import build
from adapters.ieee2030_5.function_sets import programs
from adapters.ieee2030_5.function_sets.programs import Layout, ProgramSpec
from adapters.ieee2030_5.state import ControlRecord, EndDeviceRecord

# EventStatus currentStatus values; LIVE is the stored status of a control still in force
# (scheduled or active by time).
SCHEDULED, ACTIVE, CANCELLED, CANCELLED_RANDOM, SUPERSEDED = 0, 1, 2, 3, 4
LIVE = 0

DER_DOCS = {"dercap": "DERCapability", "derg": "DERSettings", "ders": "DERStatus",
            "dera": "DERAvailability"}
RESPONSE_SET = 1


@dataclass(frozen=True, slots=True)
class Hrefs:
    """Every href of one EndDevice's tree."""

    edev: int

    @property
    def root(self) -> str:
        return f"/edev/{self.edev}"

    def path(self, *parts: object) -> str:
        return "/".join([self.root, *map(str, parts)])

    def program(self, index: int, *parts: object) -> str:
        return self.path("derp", index, *parts)

    def fsa_programs(self, fsa: int) -> str:
        """The DERProgramList of one FunctionSetAssignments."""
        return self.path("fsa", fsa, "derp")


def poll(rates: dict[str, dict[str, int]], name: str, default: int) -> int:
    return int(rates.get("poll", {}).get(name, default))


def device_capability(edevs: int, mups: int, rates: dict[str, dict[str, int]]
                      ) -> m.DeviceCapability:
    """No SelfDeviceLink: the SelfDevice is the device hosting the server, which offers no
    function sets of its own; a client finds its own EndDevice in the EndDeviceList."""
    return m.DeviceCapability(
        href="/dcap", pollRate=poll(rates, "DeviceCapability", 300),
        ResponseSetListLink=m.ListLink(href="/rsps", all=1),
        TimeLink=m.Link(href="/tm"),
        EndDeviceListLink=m.ListLink(href="/edev", all=edevs),
        MirrorUsagePointListLink=m.ListLink(href="/mup", all=mups),
    )


def time_doc(rates: dict[str, dict[str, int]]) -> m.Time:
    now = int(time.time())
    return m.Time(href="/tm", pollRate=poll(rates, "Time", 900), currentTime=now, dstEndTime=0,
                  dstOffset=0, dstStartTime=0, localTime=now, quality=7, tzOffset=0)


def end_device(r: EndDeviceRecord, holds_subscriptions: bool = True, fsas: int = 1
               ) -> m.EndDevice:
    """`holds_subscriptions`: only the EndDevice where the viewing client keeps its
    subscriptions links a SubscriptionList (an aggregator's own, a device's itself)."""
    h = Hrefs(r.id)
    is_der = r.resource_id is not None or r.inband
    return m.EndDevice(
        href=h.root, subscribable=0,
        DERListLink=m.ListLink(href=h.path("der"), all=1) if is_der else None,
        lFDI=r.lfdi, LogEventListLink=m.ListLink(href=h.path("lel")),
        sFDI=r.sfdi, changedTime=r.changed_time, enabled=r.enabled,
        FunctionSetAssignmentsListLink=m.ListLink(href=h.path("fsa"), all=fsas)
        if is_der else None,
        postRate=r.post_rate,
        RegistrationLink=m.Link(href=h.path("rg")),
        SubscriptionListLink=m.ListLink(href=h.path("sub")) if holds_subscriptions else None,
        ConnectionPointLink=m.Link(href=h.path("cp")) if is_der else None,
    )


def registration(r: EndDeviceRecord, rates: dict[str, dict[str, int]]) -> m.Registration:
    return m.Registration(href=Hrefs(r.id).path("rg"), pollRate=poll(rates, "Registration", 900),
                          dateTimeRegistered=r.registered_time, pIN=r.pin)


def fsa(r: EndDeviceRecord, number: int, layout: Layout, mrid: str
        ) -> m.FunctionSetAssignments:
    h = Hrefs(r.id)
    return m.FunctionSetAssignments(
        href=h.path("fsa", number), subscribable=0,
        DERProgramListLink=m.ListLink(href=h.fsa_programs(number),
                                      all=len(programs.in_fsa(layout, number))),
        ResponseSetListLink=m.ListLink(href="/rsps", all=1),
        TimeLink=m.Link(href="/tm"), mRID=mrid, description="DER programs")


def der_program(r: EndDeviceRecord, spec: ProgramSpec, mrid: str, controls: int,
                curves: int) -> m.DERProgram:
    """Links only to what this program carries (DefaultDERControl, DERCurves)."""
    h = Hrefs(r.id)
    n = spec.index
    return m.DERProgram(
        href=h.program(n), subscribable=0, mRID=mrid, description=spec.description,
        ActiveDERControlListLink=m.ListLink(href=h.program(n, "actderc"), all=None),
        DefaultDERControlLink=m.Link(href=h.program(n, "dderc"))
        if "default" in spec.carries else None,
        DERControlListLink=m.ListLink(href=h.program(n, "derc"), all=controls),
        DERCurveListLink=m.ListLink(href=h.program(n, "dc"), all=curves)
        if "curves" in spec.carries else None,
        primacy=spec.primacy)


def der(r: EndDeviceRecord, layout: Layout) -> m.DER:
    h = Hrefs(r.id)
    return m.DER(
        href=h.path("der", 1), subscribable=0,
        AssociatedDERProgramListLink=m.ListLink(href=h.path("derp"), all=len(layout)),
        CurrentDERProgramLink=m.Link(href=h.program(programs.current(layout).index)),
        DERAvailabilityLink=m.Link(href=h.path("der", 1, "dera")),
        DERCapabilityLink=m.Link(href=h.path("der", 1, "dercap")),
        DERSettingsLink=m.Link(href=h.path("der", 1, "derg")),
        DERStatusLink=m.Link(href=h.path("der", 1, "ders")),
    )


# --- DERControls ---------------------------------------------------------------------------


def live_status(control: ControlRecord, now: int) -> int:
    if control.status != LIVE:
        return control.status
    return ACTIVE if control.start <= now else SCHEDULED


def listed(control: ControlRecord, now: int) -> bool:
    """Whether a DERControlList shows the control: until it ends if in force; a cancelled or
    superseded one while retained, but not past a minute after its window."""
    end = control.start + control.duration
    if control.status == LIVE:
        return end > now
    return end > now - 60


@lru_cache(maxsize=4096)
def control_base(base_xml: str) -> m.DERControlBase:
    """A stored DERControlBase, parsed once: the DERs of one coordination class share it (it
    was a parse per DER of every fan-out). Shared: never modified."""
    base: m.DERControlBase = build(m.DERControlBase, etree.fromstring(base_xml.encode()))
    return base


def der_control(c: ControlRecord, href: str, reply_to: str, now: int) -> m.DERControl:
    status = live_status(c, now)
    return m.DERControl(
        href=href, replyTo=reply_to, responseRequired="03", subscribable=0,
        mRID=c.mrid, description="effective control", version=0, creationTime=c.created,
        EventStatus=m.EventStatus(currentStatus=status,
                                  dateTime=c.status_time if c.status != LIVE else c.created,
                                  potentiallySuperseded=False),
        interval=m.DateTimeInterval(duration=c.duration, start=c.start),
        randomizeStart=c.randomize_start,
        DERControlBase=control_base(c.base_xml),
    )


def sort_key(c: ControlRecord) -> tuple[int, int, str]:
    """DERControlList order: start ascending, then newest creation, then mRID descending."""
    return (c.start, -c.created, "".join(chr(255 - ord(x)) for x in c.mrid))
