"""Certificate -> identity -> typed scope: the only thing routes pass below the edge."""

from __future__ import annotations

from dataclasses import dataclass

from pki.identity import fingerprint, lfdi_from_fingerprint, sfdi_from_fingerprint


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


def scope_for(identity: ClientIdentity, aggregator_clients: dict[str, str]) -> ClientScope:
    return ClientScope(identity.lfdi, identity.sfdi, aggregator_clients.get(identity.lfdi))
