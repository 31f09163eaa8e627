"""The pluggable sharing rules: group caps (rule 5) and disaggregation (rule 6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

# weights: DER id -> weight (nameplate in the cap's direction); returns DER id -> share
GroupCapRule = Callable[[float, Mapping[str, float]], dict[str, float]]
# headrooms: DER id -> headroom (>= 0) in the dispatch direction; returns DER id -> allocation
DisaggregationRule = Callable[[float, Mapping[str, float]], dict[str, float]]


def share_by_weight(cap: float, weights: Mapping[str, float]) -> dict[str, float]:
    """Default group-cap rule: in proportion to nameplate."""
    total = sum(weights.values())
    if total <= 0:
        return dict.fromkeys(weights, cap / len(weights)) if weights else {}
    return {rid: cap * w / total for rid, w in weights.items()}


def share_equally(cap: float, weights: Mapping[str, float]) -> dict[str, float]:
    return dict.fromkeys(weights, cap / len(weights)) if weights else {}


def allocate_by_headroom(amount: float, headrooms: Mapping[str, float]) -> dict[str, float]:
    """Default disaggregation: pro rata to headroom, never above any DER's headroom.

    Pro rata to headroom fills every DER to the same fraction of its headroom, so no DER is
    ever asked for more than it has while the total fits; beyond the total, all are full.
    """
    total = sum(headrooms.values())
    if total <= 0:
        return dict.fromkeys(headrooms, 0.0)
    fraction = min(1.0, amount / total)
    return {rid: h * fraction for rid, h in headrooms.items()}


def allocate_equally(amount: float, headrooms: Mapping[str, float]) -> dict[str, float]:
    """Equal shares, water-filled: a DER whose headroom is reached passes the rest on."""
    out = dict.fromkeys(headrooms, 0.0)
    open_ids = [rid for rid, h in headrooms.items() if h > 0]
    remaining = amount
    while open_ids and remaining > 1e-9:
        share = remaining / len(open_ids)
        still_open = []
        for rid in open_ids:
            give = min(share, headrooms[rid] - out[rid])
            out[rid] += give
            remaining -= give
            if headrooms[rid] - out[rid] > 1e-9:
                still_open.append(rid)
        if len(still_open) == len(open_ids):
            break
        open_ids = still_open
    return out


GROUP_CAP_RULES: Mapping[str, GroupCapRule] = {
    "nameplate": share_by_weight,
    "equal": share_equally,
}
DISAGGREGATION_RULES: Mapping[str, DisaggregationRule] = {
    "headroom": allocate_by_headroom,
    "equal": allocate_equally,
}
