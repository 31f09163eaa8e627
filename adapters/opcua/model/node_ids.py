"""Node identifiers: strings in the model's namespace, made from platform ids (used verbatim),
so that a SCADA engineer can configure a tag once and find it again after a restart."""

from __future__ import annotations

FLEET = "fleet"


def object_type(name: str) -> str:
    return f"type/{name}"


def method(name: str) -> str:
    return f"type/DerType/{name}"


def ldc(ldc_id: str) -> str:
    return f"ldc/{ldc_id}"


def td_folder(ldc_id: str) -> str:
    return f"ldc/{ldc_id}/TdNodes"


def td_node(ldc_id: str, name: str) -> str:
    return f"ldc/{ldc_id}/TdNodes/{name}"


def cp(cp_id: str) -> str:
    return f"cp/{cp_id}"


def der(resource_id: str) -> str:
    return f"der/{resource_id}"


def member(parent: str, name: str) -> str:
    """A variable, property or group object below `parent`."""
    return f"{parent}.{name}"
