"""The I/O edge: one asyncua server, secured, serving the DER model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from asyncua import Server, ua
from cryptography import x509

from adapters.opcua.access import AreaAccess
from adapters.opcua.addressspace import AddressSpace
from adapters.opcua.codec import NAMESPACE_URI
from adapters.opcua.config import OpcUaConfig
from adapters.opcua.methods import ControlMethods
from adapters.opcua.security import (
    ClientCertificateValidator,
    OperatorInternalServer,
    OperatorRuleset,
    OperatorUserManager,
    TrustList,
    security_policies,
)
from adapters.opcua.service import ModelService
from adapters.opcua.sessions import AreaFollower
from adapters.opcua.users import UserDirectory
from gateway.adapters import AdapterContext

log = logging.getLogger(__name__)


def _certificate_uris(pem: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _load_pki(config: OpcUaConfig) -> tuple[TrustList, list[str]]:
    """Blocking file reads; run in a thread."""
    return TrustList.from_paths(config.trust), _certificate_uris(config.certificate)


class OpcUaServer:
    def __init__(self, ctx: AdapterContext, config: OpcUaConfig, users: UserDirectory) -> None:
        self.ctx = ctx
        self.config = config
        self.users = users
        self.server: Server | None = None
        self.service: ModelService | None = None
        self.ns = 0

    async def _build(self) -> Server:
        trust, uris = await asyncio.to_thread(_load_pki, self.config)
        if self.config.application_uri not in uris:
            raise ValueError(f"opcua: application URI {self.config.application_uri!r} is not in "
                             f"the server certificate's SAN URIs {uris}")
        manager = OperatorUserManager(self.users, trust, allow_no_cert=self.config.allow_none)
        server = Server(iserver=OperatorInternalServer(user_manager=manager))  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(self.config.listen)
        server.set_server_name("der-gateway OPC UA server")
        await server.set_application_uri(self.config.application_uri)
        server.allow_remote_admin(False)
        server.set_identity_tokens([ua.UserNameIdentityToken])  # no anonymous, no admin
        server.set_security_policy(
            security_policies(self.config.security_policies, allow_none=self.config.allow_none),
            permission_ruleset=OperatorRuleset())
        await server.load_certificate(str(self.config.certificate.with_suffix(".der")))
        await server.load_private_key(str(self.config.certificate.with_suffix(".key")),
                                      format="pem")
        server.set_certificate_validator(ClientCertificateValidator(trust))
        if self.config.allow_none:
            log.warning("opcua: the None security policy is enabled (dev mode)")
        return server

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        server = await self._build()
        self.ns = await server.register_namespace(NAMESPACE_URI)
        space = AddressSpace(server, self.ns)
        iserver = server.iserver
        assert isinstance(iserver, OperatorInternalServer)
        iserver.access = AreaAccess(self.ctx.gateway, space)  # before any client connects
        areas = AreaFollower(self.ctx.gateway, iserver, self.users)
        service = ModelService(self.ctx, space, flush_interval=self.config.flush_interval,
                               restore_window_s=self.config.restore_window_s,
                               on_topology=areas.topology_changed)
        methods = ControlMethods(self.ctx.gateway, self.ns, service.resource_of_node)
        await space.build_base(methods.handlers())
        self.server, self.service = server, service
        # the model is loaded before clients can connect; open sessions follow its changes
        async with areas.running(), service.running():
            await server.start()
            log.info("opcua: serving %s (namespace %s)", self.config.listen, NAMESPACE_URI)
            try:
                yield
            finally:
                await server.stop()
