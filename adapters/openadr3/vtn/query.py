"""Search query parameters -> SearchQuery, checked as the specification types them (400)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from multidict import MultiMapping

from adapters.openadr3.codec.common import INT32_MAX
from adapters.openadr3.vtn.problems import bad_request
from adapters.openadr3.vtn.service import MAX_LIMIT, SearchQuery
from adapters.openadr3.vtn.targeting import query_terms

_OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
OBJECT_TYPES = frozenset({"PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"})

V31 = {
    "program": ("targets",),
    "event": ("programID", "targets", "active"),
    "report": ("programID", "eventID", "clientName"),
    "subscription": ("programID", "clientName", "objects"),
    "ven": ("venName", "targets"),
    "resource": ("resourceName", "venID", "targets"),
}
V301 = {
    "program": ("targetType", "targetValues"),
    "event": ("programID", "targetType", "targetValues"),
    "report": ("programID", "eventID", "clientName"),
    "subscription": ("programID", "clientName", "targetType", "targetValues", "objects"),
    "ven": ("venName", "targetType", "targetValues"),
    "resource": ("resourceName", "targetType", "targetValues"),
}
PARAMS = {"3.1.0": V31, "3.0.1": V301}


def _object_id(name: str, value: str) -> str:
    if not _OBJECT_ID.match(value):
        raise bad_request(f"{name} must be an objectID")
    return value


def _name(name: str, value: str) -> str:
    if not 1 <= len(value) <= 128:
        raise bad_request(f"{name} must be 1 to 128 characters")
    return value


def _any(_name: str, value: str) -> str:
    return value


SCALARS: dict[str, Callable[[str, str], str]] = {
    "programID": _object_id,
    "eventID": _object_id,
    "venID": _object_id,
    "clientName": _name,
    "venName": _name,
    "resourceName": _name,
    "targetType": _any,
}


def _integer(raw: str, name: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[+-]?\d{1,12}", raw):
        raise bad_request(f"{name} must be an integer")
    value = int(raw)
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


def _single(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise bad_request(f"{name} may be given once")
    return values[0] if values else None


def parse_query(version: str, kind: str, query: MultiMapping[str]) -> SearchQuery:
    allowed = PARAMS[version][kind]
    skip = _single(query, "skip")
    limit = _single(query, "limit")
    filters: dict[str, str] = {}
    for name in allowed:
        if name in SCALARS and (value := _single(query, name)) is not None:
            # 3.0.1 types the name parameters as plain strings (no length limits).
            check = _any if version == "3.0.1" and SCALARS[name] is _name else SCALARS[name]
            filters[name] = check(name, value)
    extra: dict[str, Any] = {}
    if "targets" in allowed and "targets" in query:
        values = [_name("targets", v) for v in query.getall("targets")]
        extra["targets"] = query_terms(version, values, None)
    if "targetValues" in allowed and "targetValues" in query:
        extra["targets"] = query_terms(
            version, list(query.getall("targetValues")), filters.pop("targetType", None)
        )
    filters.pop("targetType", None)
    if "objects" in allowed and "objects" in query:
        objects = frozenset(query.getall("objects"))
        if not objects <= OBJECT_TYPES:
            raise bad_request("objects must be object types")
        extra["objects"] = objects
    if "active" in allowed and (active := _single(query, "active")) is not None:
        if active not in ("true", "false"):
            raise bad_request("active must be true or false")
        extra["active"] = active == "true"
    return SearchQuery(
        skip=0 if skip is None else _integer(skip, "skip", 0, INT32_MAX),
        limit=MAX_LIMIT if limit is None else _integer(limit, "limit", 0, MAX_LIMIT),
        filters=filters,
        **extra,
    )
