"""Node identifiers: strings in the model's namespace, made from platform ids (used verbatim),
so that a SCADA engineer can configure a tag once and find it again after a restart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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


# --- reading an identifier back ---------------------------------------------------------------
#
# Platform ids may themselves contain "." or "/", so an identifier is read from its end, and
# each reading is checked against what exists (`known`): the first that names something wins,
# the object itself before its members.

TD_FOLDER = "/TdNodes"


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What an identifier names: an object (`kind` "fleet", "ldc", "tdfolder", "td", "cp",
    "der") and, below it, `member` (a property or group) and `name` (a group's variable)."""

    kind: str
    key: str  # the platform id (a td node: "<ldc>/TdNodes/<node>", see `td_key`)
    member: str = ""
    name: str = ""


class Known(Protocol):
    """Which platform objects exist (the model's fleet)."""

    def has_der(self, resource_id: str) -> bool: ...
    def has_cp(self, cp_id: str) -> bool: ...
    def has_ldc(self, ldc_id: str) -> bool: ...
    def has_td(self, ldc_id: str, td_node: str) -> bool: ...


def td_key(ldc_id: str, name: str) -> str:
    return td_node(ldc_id, name)[4:]


def split_td_key(key: str) -> tuple[str, str]:
    ldc_id, _, name = key.partition(TD_FOLDER + "/")
    return ldc_id, name


def parse(ident: str, known: Known) -> NodeRef | None:
    """The object, member and variable an identifier names, or None if nothing exists."""
    if ident == FLEET:
        return NodeRef("fleet", "")
    kind, sep, rest = ident.partition("/")
    if not sep:
        return None
    exists = _EXISTS.get(kind)
    if exists is None:
        return None
    if exists(known, rest):
        return _ldc_ref(rest) if kind == "ldc" else NodeRef(kind, rest)
    head, _, name = rest.rpartition(".")
    if head and exists(known, head):
        return NodeRef(_object_kind(kind, head), head, name)
    head2, _, member = head.rpartition(".")
    if head2 and exists(known, head2):
        return NodeRef(_object_kind(kind, head2), head2, member, name)
    return None


def _ldc_ref(rest: str) -> NodeRef:
    ldc_id, sep, name = rest.partition(TD_FOLDER)
    if sep and not name:
        return NodeRef("tdfolder", ldc_id)
    if sep and name.startswith("/"):
        return NodeRef("td", rest)
    return NodeRef("ldc", rest)


def _object_kind(prefix: str, key: str) -> str:
    if prefix != "ldc":
        return prefix
    _, sep, name = key.partition(TD_FOLDER)
    return ("td" if name else "tdfolder") if sep else "ldc"


def _ldc_exists(known: Known, rest: str) -> bool:
    ldc_id, sep, name = rest.partition(TD_FOLDER)
    if not sep:
        return known.has_ldc(rest)
    if not name:
        return known.has_ldc(ldc_id)
    return name.startswith("/") and known.has_td(ldc_id, name[1:])


_EXISTS: dict[str, Callable[[Known, str], bool]] = {
    "der": lambda known, key: known.has_der(key),
    "cp": lambda known, key: known.has_cp(key),
    "ldc": _ldc_exists,
}
