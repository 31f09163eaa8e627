"""The DER's own event schedule: which DERControl is in force, and which Responses are due.

Pure and clock-driven (`tick(now)`), so that tests can walk through time:
- each control's window is shifted by its randomizeStart / randomizeDuration, with a
  per-device, per-event random draw (seeded, so a run is reproducible);
- the server's EventStatus wins: cancelled (2, 3) and superseded (4) end an event;
- within one primacy a newer overlapping event supersedes an older one locally as well;
- in force are the newest running event of each primacy (programs apply mode by mode, the
  lowest primacy first: see `in_force`); the "active" one is that of the lowest primacy;
- Responses (1 received, 2 started, 3 completed, 6 cancelled, 7 superseded) are sent once
  each, when the control asks for them (responseRequired).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from adapters.ieee2030_5.codec import models as m

RECEIVED, STARTED, COMPLETED, CANCELLED, SUPERSEDED = 1, 2, 3, 6, 7
SERVER_CANCELLED = frozenset({2, 3})
SERVER_SUPERSEDED = 4
WANTS_RECEIPT, WANTS_EVENT_RESPONSES = 0x01, 0x02


@dataclass(frozen=True, slots=True)
class Event:
    mrid: str
    primacy: int
    created: int
    start: int
    duration: int
    status: int
    base: m.DERControlBase
    reply_to: str | None = None
    response_required: int = 0
    randomize_start: int = 0
    randomize_duration: int = 0

    @classmethod
    def of(cls, control: m.DERControl, primacy: int) -> Event:
        return cls(
            mrid=control.mRID.upper(), primacy=primacy, created=control.creationTime,
            start=control.interval.start, duration=control.interval.duration,
            status=control.EventStatus.currentStatus, base=control.DERControlBase,
            reply_to=control.replyTo, response_required=int(control.responseRequired or "0", 16),
            randomize_start=control.randomizeStart or 0,
            randomize_duration=control.randomizeDuration or 0)


@dataclass(frozen=True, slots=True)
class Due:
    """A Response the DER owes: POST it to `reply_to`."""

    mrid: str
    reply_to: str
    status: int


def _draw(rng: random.Random, bound: int) -> int:
    return rng.randint(min(0, bound), max(0, bound)) if bound else 0


class Schedule:
    def __init__(self, seed: str) -> None:
        self.seed = seed
        self._events: dict[str, Event] = {}
        self._windows: dict[str, tuple[int, int]] = {}
        self._sent: dict[str, set[int]] = {}
        self._done: set[str] = set()
        self.in_force: list[Event] = []  # by primacy, lowest first; set by tick()

    def update(self, events: Iterable[Event]) -> None:
        """What the server lists now, for every program; a control it dropped is forgotten."""
        fresh = {e.mrid: e for e in events}
        self._events = fresh
        for mrid in [k for k in self._windows if k not in fresh]:
            del self._windows[mrid]

    def events(self) -> list[Event]:
        return list(self._events.values())

    def window(self, event: Event) -> tuple[int, int]:
        if event.mrid not in self._windows:
            rng = random.Random(f"{self.seed}|{event.mrid}")
            start = event.start + _draw(rng, event.randomize_start)
            end = start + max(0, event.duration + _draw(rng, event.randomize_duration))
            self._windows[event.mrid] = (start, end)
        return self._windows[event.mrid]

    def sent(self, mrid: str) -> set[int]:
        return set(self._sent.get(mrid, ()))

    def _say(self, event: Event, status: int, due: list[Due]) -> None:
        wanted = WANTS_RECEIPT if status == RECEIVED else WANTS_EVENT_RESPONSES
        sent = self._sent.setdefault(event.mrid, set())
        if status in sent:
            return
        sent.add(status)
        if event.reply_to and event.response_required & wanted:
            due.append(Due(event.mrid, event.reply_to, status))

    def _end(self, event: Event, status: int | None, due: list[Due]) -> None:
        if status is not None:
            self._say(event, status, due)
        self._done.add(event.mrid)

    def tick(self, now: int) -> tuple[Event | None, list[Due]]:
        """The event in force at `now` (or None) and the Responses due."""
        due: list[Due] = []
        live: list[Event] = []
        for e in sorted(self._events.values(), key=lambda e: (e.created, e.mrid)):
            if e.mrid in self._done:
                continue
            self._say(e, RECEIVED, due)
            if e.status in SERVER_CANCELLED:
                self._end(e, CANCELLED, due)
            elif e.status == SERVER_SUPERSEDED:
                self._end(e, SUPERSEDED, due)
            elif now >= self.window(e)[1]:
                self._end(e, COMPLETED if STARTED in self.sent(e.mrid) else None, due)
            else:
                live.append(e)
        for e in list(live):
            if any(self._supersedes(f, e) for f in live):
                self._end(e, SUPERSEDED, due)
                live.remove(e)
        running = [e for e in live if self.window(e)[0] <= now]
        newest: dict[int, Event] = {}
        for e in sorted(running, key=lambda e: e.created):
            newest[e.primacy] = e
        self.in_force = [newest[p] for p in sorted(newest)]
        for e in self.in_force:
            self._say(e, STARTED, due)
        return (self.in_force[0] if self.in_force else None), due

    def _supersedes(self, newer: Event, older: Event) -> bool:
        if newer is older or newer.primacy != older.primacy or newer.created <= older.created:
            return False
        a0, a1 = self.window(newer)
        b0, b1 = self.window(older)
        return a0 < b1 and b0 < a1
