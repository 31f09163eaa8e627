"""The pluggable sharing rules: group caps (rule 5) and disaggregation (rule 6)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

# weights: DER id -> weight (nameplate in the cap's direction); returns DER id -> share
GroupCapRule = Callable[[float, Mapping[str, float]], dict[str, float]]
# headrooms: class -> (headroom per DER (>= 0) in the dispatch direction, number of DERs);
# returns class -> allocation per DER. DERs with equal headroom always get equal allocations,
# so a rule sees each class of equal DERs once, with its multiplicity.
DisaggregationRule = Callable[[float, Mapping[Any, tuple[float, int]]], dict[Any, float]]


def share_by_weight(cap: float, weights: Mapping[str, float]) -> dict[str, float]:
    """Default group-cap rule: in proportion to nameplate."""
    total = sum(weights.values())
    if total <= 0:
        return dict.fromkeys(weights, cap / len(weights)) if weights else {}
    return {rid: cap * w / total for rid, w in weights.items()}


def share_equally(cap: float, weights: Mapping[str, float]) -> dict[str, float]:
    return dict.fromkeys(weights, cap / len(weights)) if weights else {}


def allocate_by_headroom[K: Hashable](
    amount: float, headrooms: Mapping[K, tuple[float, int]]
) -> dict[K, float]:
    """Default disaggregation: pro rata to headroom, never above any DER's headroom.

    Pro rata to headroom fills every DER to the same fraction of its headroom, so no DER is
    ever asked for more than it has while the total fits; beyond the total, all are full.
    """
    total = sum(h * n for h, n in headrooms.values())
    if total <= 0:
        return dict.fromkeys(headrooms, 0.0)
    fraction = min(1.0, amount / total)
    return {key: h * fraction for key, (h, _n) in headrooms.items()}


def allocate_equally[K: Hashable](
    amount: float, headrooms: Mapping[K, tuple[float, int]]
) -> dict[K, float]:
    """Equal shares, water-filled: every DER gets the same level L or its whole headroom if
    that is less, with L chosen so that the allocations add up to `amount` (or all is full)."""
    out: dict[K, float] = {}
    remaining, open_ders = amount, sum(n for _h, n in headrooms.values())
    ordered = sorted(headrooms.items(), key=lambda kv: kv[1][0])
    for position, (key, (room, n)) in enumerate(ordered):
        level = remaining / open_ders if open_ders else 0.0
        if room <= level:
            out[key] = room
            remaining -= room * n
            open_ders -= n
            continue
        for rest_key, _ in ordered[position:]:
            out[rest_key] = level
        break
    return out


GROUP_CAP_RULES: Mapping[str, GroupCapRule] = {
    "nameplate": share_by_weight,
    "equal": share_equally,
}
DISAGGREGATION_RULES: Mapping[str, DisaggregationRule] = {
    "headroom": allocate_by_headroom,
    "equal": allocate_equally,
}
