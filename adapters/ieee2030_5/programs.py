"""How a DER's effective control is laid out over FunctionSetAssignments and DERPrograms.

The core coordinates every instruction into one effective control per DER, so each part
of it (limits, dispatch, connection, curves, the default control) is carried by exactly one
DERProgram. A client that resolves programs by primacy, mode by mode, can then never arrive
at anything but the coordinated result, while utilities keep the program structure they
certify against (e.g. operating envelopes in one FSA, market dispatch in another).

The default layout is one FSA with one DERProgram carrying everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

from adapters.ieee2030_5.codec import models as m
from gateway.errors import InvalidInput

PARTS = ("limits", "dispatch", "connection", "curves", "default")
MAX_PROGRAMS = 8

# DERControlBase elements by the part of an effective control they express.
_ELEMENTS = {
    "limits": ("opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW", "opModMaxLimW"),
    "dispatch": ("opModFixedW", "opModTargetW"),
    "connection": ("opModConnect", "opModEnergize"),
}


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    index: int  # n in /edev/{id}/derp/{n}
    fsa: int  # n in /edev/{id}/fsa/{n}
    primacy: int
    carries: frozenset[str]
    description: str = "effective controls"


Layout = tuple[ProgramSpec, ...]


def single(primacy: int = 1) -> Layout:
    return (ProgramSpec(1, 1, primacy, frozenset(PARTS)),)


def parse(doc: Any) -> Layout:
    """A layout from its JSON/TOML form: a list of {primacy, carries, fsa?, description?}.

    Programs are numbered in the order given; FSAs are numbered 1.. (default: one FSA per
    program). Every part must be carried by exactly one program.
    """
    if not isinstance(doc, list) or not 1 <= len(doc) <= MAX_PROGRAMS:
        raise InvalidInput(f"programs must be a list of 1..{MAX_PROGRAMS} programs")
    out: list[ProgramSpec] = []
    for n, item in enumerate(doc, 1):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"program {n}: expected an object")
        unknown = set(item) - {"primacy", "carries", "fsa", "description"}
        if unknown:
            raise InvalidInput(f"program {n}: unknown keys {sorted(unknown)}")
        primacy, fsa = item.get("primacy"), item.get("fsa", n)
        carries = item.get("carries")
        if not _is_int(primacy) or not 0 <= primacy <= 255:
            raise InvalidInput(f"program {n}: primacy must be an integer 0..255")
        if not _is_int(fsa) or not 1 <= fsa <= MAX_PROGRAMS:
            raise InvalidInput(f"program {n}: fsa must be an integer 1..{MAX_PROGRAMS}")
        if not isinstance(carries, list) or any(c not in PARTS for c in carries):
            # (an empty list is a program published with nothing in it yet)
            raise InvalidInput(f"program {n}: carries must list some of {list(PARTS)}")
        description = str(item.get("description", "effective controls"))[:32]
        out.append(ProgramSpec(n, fsa, primacy, frozenset(carries), description))
    _check_parts(out)
    fsas = sorted({p.fsa for p in out})
    if fsas != list(range(1, len(fsas) + 1)):
        raise InvalidInput("fsa numbers must run 1, 2, ... without gaps")
    return tuple(out)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_parts(layout: Iterable[ProgramSpec]) -> None:
    seen: dict[str, int] = {}
    for spec in layout:
        for part in spec.carries:
            if part in seen:
                raise InvalidInput(f"{part} is carried by programs {seen[part]} and {spec.index}")
            seen[part] = spec.index
    missing = [p for p in PARTS if p not in seen]
    if missing:
        raise InvalidInput(f"no program carries {missing}")


def to_json(layout: Layout) -> list[dict[str, Any]]:
    return [{"primacy": p.primacy, "fsa": p.fsa, "description": p.description,
             "carries": [c for c in PARTS if c in p.carries]} for p in layout]


def resolve(base: Layout, settings: Mapping[str, Any]) -> Layout:
    """A DER's layout: its own (`programs`) or the configured one; a bare `primacy` in its
    settings sets the first program's primacy."""
    layout = parse(settings["programs"]) if settings.get("programs") else base
    if "primacy" in settings:
        layout = (replace(layout[0], primacy=int(settings["primacy"])), *layout[1:])
    return layout


def carrying(layout: Layout, part: str) -> ProgramSpec:
    return next(p for p in layout if part in p.carries)


def by_index(layout: Layout, index: int) -> ProgramSpec | None:
    return next((p for p in layout if p.index == index), None)


def in_fsa(layout: Layout, fsa: int) -> list[ProgramSpec]:
    return sorted((p for p in layout if p.fsa == fsa), key=lambda p: (p.primacy, p.index))


def fsa_numbers(layout: Layout) -> list[int]:
    return sorted({p.fsa for p in layout})


def current(layout: Layout) -> ProgramSpec:
    """The program a DER answers to first (lowest primacy): its CurrentDERProgram."""
    return min(layout, key=lambda p: (p.primacy, p.index))


def part_of(base: m.DERControlBase, carries: frozenset[str]) -> m.DERControlBase | None:
    """The elements of `base` that a program carrying `carries` publishes (None: none).

    rampTms travels with every part, since it says how fast to move to what the part sets;
    so does opModFreqDroop, a standing 1547 setting that stays in force through any event.
    """
    if carries >= frozenset(_ELEMENTS):
        return base
    out = m.DERControlBase(rampTms=base.rampTms, opModFreqDroop=base.opModFreqDroop)
    found = False
    for part, elements in _ELEMENTS.items():
        if part not in carries:
            continue
        for element in elements:
            value = getattr(base, element)
            if value is not None:
                setattr(out, element, value)
                found = True
    return out if found else None
