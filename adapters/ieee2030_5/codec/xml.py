"""XML (de)serialisation of wire models with lxml, through a hardened parser.

Parsing refuses anything a 2030.5 document never needs: a DOCTYPE, entities, external
resources, oversize bodies, unknown roots, foreign namespaces. Every refusal is a
`DocumentError` carrying the HTTP status and 2030.5 reasonCode the server answers with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from lxml import etree

from adapters.ieee2030_5.codec.fields import FieldSpec, specs
from adapters.ieee2030_5.codec.models import CSIPAUS_NS, INBOUND, SEP_NS
from adapters.ieee2030_5.codec.schema import accept_schema

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{XSI_NS}}}type"
NSMAP = {None: SEP_NS, "csipaus": CSIPAUS_NS}
MEDIA_TYPE = "application/sep+xml"
DEFAULT_MAX_BYTES = 64 * 1024


class DocumentError(ValueError):
    """An incoming document was refused; `status` is the HTTP status to answer."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


# --- serialise --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(element: etree._Element, model: Any) -> None:
    model_type: object = type(model)
    sub = etree.SubElement
    for spec in specs(model_type):
        value = getattr(model, spec.name)
        if value is None:
            continue
        if spec.is_attr:
            element.set(spec.name, _text(value))
            continue
        for item in value if spec.repeated else (value,):
            child = sub(element, spec.tag)  # (Clark notation: no QName object per element)
            if spec.xsi_typed:
                child.set(XSI_TYPE, type(item).__name__)
            if spec.model is not None or spec.xsi_typed:
                _fill(child, item)
            else:
                child.text = _text(item)


def to_element(model: Any) -> etree._Element:
    cls = type(model)
    nsmap: dict[Any, str] = dict(NSMAP)  # (lxml takes None for the default namespace)
    if any(s.xsi_typed for s in specs(cast(object, cls))):
        nsmap["xsi"] = XSI_NS
    root = etree.Element(etree.QName(getattr(cls, "ns", SEP_NS), cls.__name__), nsmap=nsmap)
    _fill(root, model)
    return root


def serialize(model: Any) -> bytes:
    """A wire model as a UTF-8 XML document (no declaration: 2030.5 clients expect none)."""
    data: bytes = etree.tostring(to_element(model), encoding="utf-8")
    return data


# --- parse ------------------------------------------------------------------------------------


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


@dataclass(frozen=True, slots=True)
class Parsed:
    root_name: str
    model: Any


def _convert(spec: FieldSpec, text: str | None) -> Any:
    text = (text or "").strip()
    if spec.python is bool:
        return text in ("true", "1")
    if spec.python is int:
        return int(text)
    return text


def build(cls: type, element: etree._Element) -> Any:
    """A wire model from an (already validated or self-made) element."""
    kwargs: dict[str, Any] = {}
    children: dict[str, list[etree._Element]] = {}
    for child in element:  # one pass over the children, not one search per field
        if isinstance(child.tag, str):
            children.setdefault(child.tag, []).append(child)
    for spec in specs(cls):
        if spec.is_attr:
            raw = element.get(spec.name)
            if raw is not None:
                kwargs[spec.name] = _convert(spec, raw)
            continue
        found = children.get(spec.tag, ())
        values = [
            build(spec.model, c) if spec.model is not None else _convert(spec, c.text)
            for c in found
        ]
        if spec.repeated:
            kwargs[spec.name] = values
        elif values:
            kwargs[spec.name] = values[0]
    return cls(**kwargs)


def parse(
    data: bytes, accept: tuple[str, ...] | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Parsed:
    """Parse, check and validate one incoming document; `accept` limits the root element."""
    if len(data) > max_bytes:
        raise DocumentError(f"document larger than {max_bytes} bytes", 413)
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise DocumentError("DOCTYPE and entity declarations are not accepted")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise DocumentError(f"malformed XML: {exc.msg}") from None
    tree = root.getroottree()
    doctype = getattr(tree.docinfo, "doctype", None)
    if doctype or any(isinstance(n, etree._Entity) for n in root.iter()):
        raise DocumentError("DOCTYPE and entities are not accepted")
    qname = etree.QName(root)
    if qname.namespace not in (SEP_NS, CSIPAUS_NS):
        raise DocumentError(f"unexpected namespace {qname.namespace!r}")
    cls = INBOUND.get(qname.localname)
    if cls is None or getattr(cls, "ns", SEP_NS) != qname.namespace:
        raise DocumentError(f"unexpected document {qname.localname!r}")
    if accept is not None and qname.localname not in accept:
        raise DocumentError(f"expected one of {', '.join(accept)}, got {qname.localname}")
    schema = accept_schema()
    if not schema.validate(root):
        first = getattr(schema.error_log, "last_error", None)
        raise DocumentError(f"invalid {qname.localname}: {first.message if first else '?'}")
    return Parsed(qname.localname, build(cls, root))
