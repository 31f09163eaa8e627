"""Targets and object privacy, for both API versions.

3.1.0 targets are strings. 3.0.1 targets are valuesMaps ({type, values}); they are normalised
to "TYPE<US>value" strings so that one matching rule serves both versions. A 3.0.1 query with
targetValues but no targetType matches the values under any type.

Matching is "any": an object matches a set of query terms when it carries at least one of them
(several filter *parameters* combine with AND, as the Definitions require).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SEP = "\x1f"  # ASCII unit separator: between a 3.0.1 target type and one of its values


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def normalise(version: str, targets: list[Any] | None) -> tuple[str, ...]:
    if not targets:
        return ()
    if version == "3.1.0":
        return tuple(dict.fromkeys(str(t) for t in targets))
    out: dict[str, None] = {}
    for vm in targets:
        for value in vm.get("values") or ():
            out[f"{vm['type']}{SEP}{_value_text(value)}"] = None
    return tuple(out)


def query_terms(version: str, targets: list[str], target_type: str | None) -> frozenset[str]:
    """Query terms: 3.1 strings as given; 3.0.1 "TYPE<US>value", or "<US>value" without type."""
    if version == "3.1.0":
        return frozenset(targets)
    return frozenset(f"{target_type or ''}{SEP}{v}" for v in targets)


def matched(object_targets: Iterable[str], terms: frozenset[str]) -> frozenset[str]:
    """The object's targets that some term selects."""
    hits: set[str] = set()
    for target in object_targets:
        if target in terms or (SEP in target and f"{SEP}{target.split(SEP, 1)[1]}" in terms):
            hits.add(target)
    return frozenset(hits)


def hide(version: str, body: dict[str, Any], visible: frozenset[str]) -> dict[str, Any]:
    """3.1 target hiding: show a VEN only the targets it asked for and was granted."""
    targets = body.get("targets")
    if not targets:
        return body
    if version == "3.1.0":
        kept: list[Any] = [t for t in targets if t in visible]
    else:
        kept = []
        for vm in targets:
            values = [v for v in vm["values"] if f"{vm['type']}{SEP}{_value_text(v)}" in visible]
            if values:
                kept.append({"type": vm["type"], "values": values})
    return {**body, "targets": kept}


@dataclass(frozen=True, slots=True)
class Audience:
    """What one VEN may see of targeted objects: None means everything (business logic)."""

    terms: frozenset[str] | None  # targets granted AND requested; None: no restriction
    untargeted: bool  # whether objects without targets are visible

    def visible(self, object_targets: tuple[str, ...]) -> frozenset[str] | None:
        """Targets to show when the object is visible, else None."""
        if not object_targets:
            return frozenset() if self.untargeted else None
        if self.terms is None:
            return frozenset(object_targets)
        hits = matched(object_targets, self.terms)
        return hits or None


def audience_for_ven(
    version: str, granted: frozenset[str], requested: frozenset[str] | None
) -> Audience:
    """Definitions §Object Privacy: AND of requested and granted targets.

    3.1.0 (read_targets): a VEN sees a targeted object only when its query names a granted
    target the object carries; without a targets query it sees untargeted objects only.
    3.0.1 has no read_targets: without a query a VEN sees what it was granted.
    """
    if requested is None:
        if version == "3.1.0":
            return Audience(terms=frozenset(), untargeted=True)
        return Audience(terms=granted, untargeted=True)
    if requested is granted:  # a subscription without targets: everything granted
        return Audience(terms=granted, untargeted=False)
    allowed = granted & requested
    if any(term.startswith(SEP) for term in requested):  # 3.0.1 values with no type
        allowed |= matched(granted - allowed, requested)
    return Audience(terms=allowed, untargeted=False)


def audience_for_bl(requested: frozenset[str] | None) -> Audience:
    if requested is None:
        return Audience(terms=None, untargeted=True)
    return Audience(terms=requested, untargeted=False)
