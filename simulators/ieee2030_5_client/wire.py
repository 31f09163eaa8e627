"""Server documents as wire models: the adapter's codec models, read through a hardened parser.

The codec's own `parse` accepts only what a server receives; a client reads what a server
sends, so it looks the root element up here and builds the model with the codec's `build`.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import MEDIA_TYPE, XSI_NS, build, serialize

__all__ = ["MEDIA_TYPE", "WireError", "read", "read_notification", "serialize"]

MAX_BYTES = 4 * 1024 * 1024

# Root element -> model, for everything a 2030.5 server sends a DER client.
OUTBOUND: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        m.DeviceCapability, m.Time, m.EndDevice, m.EndDeviceList, m.Registration,
        m.ConnectionPoint, m.FunctionSetAssignments, m.FunctionSetAssignmentsList, m.DERProgram,
        m.DERProgramList, m.DERControl, m.DERControlList, m.DefaultDERControl, m.DERCurve,
        m.DERCurveList, m.DER, m.DERList, m.MirrorUsagePoint, m.MirrorUsagePointList,
        m.ResponseSetList, m.ResponseSet, m.Subscription, m.SubscriptionList, m.Error,
    )
}


class WireError(ValueError):
    """A server document the client cannot use."""


def _root(data: bytes) -> etree._Element:
    if len(data) > MAX_BYTES:
        raise WireError("document too large")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise WireError("DOCTYPE and entity declarations are not accepted")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise WireError(f"malformed XML: {exc.msg}") from None


def _model(element: etree._Element) -> Any:
    name = etree.QName(element).localname
    cls = OUTBOUND.get(name)
    if cls is None:
        raise WireError(f"unexpected document {name!r}")
    try:
        return build(cls, element)
    except (TypeError, ValueError) as exc:
        raise WireError(f"invalid {name}: {exc}") from None


def read(data: bytes, expect: type | None = None) -> Any:
    """One server document as a wire model; `expect` checks its type."""
    model = _model(_root(data))
    if expect is not None and not isinstance(model, expect):
        raise WireError(f"expected {expect.__name__}, got {type(model).__name__}")
    return model


def read_notification(data: bytes) -> tuple[str, Any]:
    """(subscribedResource, the carried resource or None) of a Notification."""
    root = _root(data)
    if etree.QName(root).localname != "Notification":
        raise WireError("expected a Notification")
    subscribed = root.findtext(f"{{{m.SEP_NS}}}subscribedResource")
    if not subscribed:
        raise WireError("Notification without subscribedResource")
    carried = root.find(f"{{{m.SEP_NS}}}Resource")
    if carried is None:
        return subscribed, None
    kind = (carried.get(f"{{{XSI_NS}}}type") or "").split(":")[-1]
    cls = OUTBOUND.get(kind)
    if cls is None:
        raise WireError(f"Notification carries an unexpected {kind!r}")
    return subscribed, build(cls, carried)
