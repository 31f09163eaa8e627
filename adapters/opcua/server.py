"""The I/O edge: one asyncua server, secured (policies, trust list, operators, rights)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from asyncua import ua
from asyncua.server.server import Server
from cryptography import x509

from adapters.opcua.model.nodes import NAMESPACE_URI
from adapters.opcua.model.security import (
    ClientCertificateValidator,
    OperatorInternalServer,
    OperatorRuleset,
    OperatorUserManager,
    TrustList,
    security_policies,
)
from adapters.opcua.model.users import UserDirectory
from adapters.opcua.settings import Settings

log = logging.getLogger(__name__)


def _certificate_uris(pem: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


class OpcUaServer:
    """Builds the asyncua server from the settings; `serving()` opens the listener."""

    def __init__(self, settings: Settings, pki_root: Path, users: UserDirectory, *,
                 dev_mode: bool) -> None:
        self._settings = settings
        self._certificate = settings.certificate_path(pki_root)
        self._trust = settings.trust_paths(pki_root)
        self._allow_none = settings.allow_none(dev_mode)
        self._users = users
        self.server: Server | None = None
        self.ns = 0

    def _load_pki(self) -> tuple[TrustList, list[str]]:
        """Blocking file reads; run in a thread."""
        return TrustList.from_paths(self._trust), _certificate_uris(self._certificate)

    async def build(self) -> tuple[Server, OperatorInternalServer]:
        """The server, configured and with the model's namespace registered; not listening."""
        trust, uris = await asyncio.to_thread(self._load_pki)
        uri = self._settings.application_uri
        if uri not in uris:
            raise ValueError(f"opcua: application URI {uri!r} is not in the server "
                             f"certificate's SAN URIs {uris}")
        manager = OperatorUserManager(self._users, trust, allow_no_cert=self._allow_none)
        iserver = OperatorInternalServer(user_manager=manager)
        server = Server(iserver=iserver)
        await server.init()
        server.set_endpoint(self._settings.listen)
        server.set_server_name("der-gateway OPC UA server")
        await server.set_application_uri(uri)
        server.allow_remote_admin(False)
        server.set_identity_tokens([ua.UserNameIdentityToken])  # no anonymous, no admin
        server.set_security_policy(
            security_policies(self._settings.security_policies, allow_none=self._allow_none),
            permission_ruleset=OperatorRuleset())  # type: ignore[arg-type]  # asyncua's hint is too narrow
        await server.load_certificate(str(self._certificate.with_suffix(".der")))
        await server.load_private_key(str(self._certificate.with_suffix(".key")), format="pem")
        server.set_certificate_validator(ClientCertificateValidator(trust))
        if self._allow_none:
            log.warning("opcua: the None security policy is enabled (dev mode)")
        self.ns = await server.register_namespace(NAMESPACE_URI)
        self.server = server
        return server, iserver

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        assert self.server is not None, "build() first"
        await self.server.start()
        log.info("opcua: serving %s (namespace %s)", self._settings.listen, NAMESPACE_URI)
        try:
            yield
        finally:
            await self.server.stop()
