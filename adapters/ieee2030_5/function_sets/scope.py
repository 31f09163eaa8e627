"""Certificate -> identity -> typed scope: the only thing routes pass below the edge."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from pki.identity import fingerprint, lfdi_from_fingerprint, sfdi_from_fingerprint
from pki.tls import peer_certificate_der


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    lfdi: str  # uppercase, 40 hex characters
    sfdi: int


@dataclass(frozen=True, slots=True)
class ClientScope:
    """Who is asking: a device client, or an aggregator client acting for its aggregator."""

    lfdi: str
    sfdi: int
    aggregator_id: str | None = None

    @property
    def is_aggregator(self) -> bool:
        return self.aggregator_id is not None


def identity_from_der(cert_der: bytes) -> ClientIdentity:
    fp = fingerprint(cert_der)
    return ClientIdentity(lfdi_from_fingerprint(fp), sfdi_from_fingerprint(fp))


# Per TLS connection (its SSLObject): the peer's certificate cannot change on a connection,
# and every request of a keep-alive connection asked for it, hashed it and derived the SFDI.
_BY_CONNECTION: weakref.WeakKeyDictionary[object, ClientIdentity] = weakref.WeakKeyDictionary()


def identity_of(transport: object) -> ClientIdentity | None:
    """The identity of a connection's verified client certificate (None: no certificate)."""
    get = getattr(transport, "get_extra_info", None)
    ssl_object = get("ssl_object") if get is not None else None
    if ssl_object is None:
        return None
    known = _BY_CONNECTION.get(ssl_object)
    if known is None:
        cert = peer_certificate_der(transport)
        if cert is None:
            return None
        known = _BY_CONNECTION[ssl_object] = identity_from_der(cert)
    return known


def scope_for(identity: ClientIdentity, aggregator_clients: dict[str, str]) -> ClientScope:
    return ClientScope(identity.lfdi, identity.sfdi, aggregator_clients.get(identity.lfdi))
