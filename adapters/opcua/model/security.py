"""Who may connect and what they may do: policies, the trust list, operators and their rights.

asyncua accepts any client certificate unless told otherwise, and its certificate validator
runs only when the client repeats its certificate in CreateSession. So the trust list is
checked twice: by the validator at CreateSession (with the application URI), and again on the
secure channel's own peer certificate when the session is activated.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification

from adapters.opcua.model.access import AreaAccess, AreaView, serve_allowed
from adapters.opcua.model.sessions import AreaMonitoredItems
from adapters.opcua.model.users import OperatorAccount, OperatorRole, UserDirectory
from adapters.opcua.model.wire import node_id, status

log = logging.getLogger(__name__)

SECURE_POLICIES: dict[str, ua.SecurityPolicyType] = {
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes128Sha256RsaOaep_Sign": ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    "Aes128Sha256RsaOaep_SignAndEncrypt": ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    "Aes256Sha256RsaPss_Sign": ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    "Aes256Sha256RsaPss_SignAndEncrypt": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}


def security_policies(names: Iterable[str] | None, *, allow_none: bool) -> list[Any]:
    """The endpoint policies to offer. `allow_none` must already include the dev-mode check."""
    chosen = list(SECURE_POLICIES) if names is None else list(names)
    unknown = [n for n in chosen if n not in SECURE_POLICIES]
    if unknown or not chosen:
        raise ValueError(f"opcua: unknown or empty security_policies {unknown or chosen}; "
                         f"choose from {sorted(SECURE_POLICIES)}")
    policies = [SECURE_POLICIES[n] for n in chosen]
    if allow_none:
        policies.append(ua.SecurityPolicyType.NoSecurity)
    return policies


class TrustList:
    """CA certificates and pinned client certificates that may open a session."""

    def __init__(self, certificates: list[x509.Certificate]) -> None:
        if not certificates:
            raise ValueError("opcua: the trust list is empty; no client could connect")
        self._store = verification.Store(certificates)
        self._pinned = {c.fingerprint(hashes.SHA256()) for c in certificates
                        if not _is_ca(c)}
        self._policy = verification.PolicyBuilder().store(self._store).extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> TrustList:
        """Blocking file reads: call at start-up (in a thread), not per connection."""
        certs: list[x509.Certificate] = []
        for path in paths:
            files = sorted(path.glob("*")) if path.is_dir() else [path]
            for file in files:
                if file.suffix.lower() in {".pem", ".crt"}:
                    certs.extend(x509.load_pem_x509_certificates(file.read_bytes()))
                elif file.suffix.lower() == ".der":
                    certs.append(x509.load_der_x509_certificate(file.read_bytes()))
        return cls(certs)

    def trusts(self, cert: x509.Certificate) -> bool:
        if cert.fingerprint(hashes.SHA256()) in self._pinned:
            return True
        try:
            self._policy.build_client_verifier().verify(cert, [])
        except verification.VerificationError:
            return False
        return True

    def trusts_der(self, der: bytes | None) -> bool:
        if not der:
            return False
        try:
            return self.trusts(x509.load_der_x509_certificate(der))
        except ValueError:
            return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


class ClientCertificateValidator:
    """asyncua's checks (validity, application URI = SAN URI, key usage) plus our trust list."""

    def __init__(self, trust: TrustList) -> None:
        self._trust = trust
        self._checks = CertificateValidator(
            CertificateValidatorOptions.EXT_VALIDATION | CertificateValidatorOptions.PEER_CLIENT)

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        await self._checks.validate(cert, app)
        if not self._trust.trusts(cert):
            log.warning("opcua: refused untrusted client certificate %s",
                        cert.subject.rfc4514_string())
            raise ServiceError(StatusCodes.BadCertificateUntrusted)


@dataclass
class Operator(User):
    """An authenticated OPC UA user, with the platform identity it acts for.

    `account` follows the user directory while the session is open (`sessions.AreaFollower`):
    None once the user is removed, which refuses every further request."""

    account: OperatorAccount | None = None


class OperatorUserManager:
    """Username/password only; the secure channel's certificate must be trusted too."""

    def __init__(self, directory: UserDirectory, trust: TrustList, *, allow_no_cert: bool) -> None:
        self._directory = directory
        self._trust = trust
        self._allow_no_cert = allow_no_cert  # only with the dev-mode None policy

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        del iserver
        if certificate is None and not self._allow_no_cert:
            return None
        if certificate is not None and not self._trust.trusts_der(bytes(certificate)):
            log.warning("opcua: refused a session on an untrusted secure channel")
            return None
        account = self._directory.authenticate(username, password)
        if account is None:
            log.info("opcua: refused login for user %r", username)
            return None
        return Operator(role=UserRole.User, name=account.name, account=account)


def _ids(*names: str) -> frozenset[ua.NodeId]:
    return frozenset(node_id(getattr(ObjectIds, f"{n}Request_Encoding_DefaultBinary"))
                     for n in names)


_VIEW = _ids("CreateSession", "CloseSession", "ActivateSession", "Read", "Browse", "BrowseNext",
             "GetEndpoints", "FindServers", "TranslateBrowsePathsToNodeIds", "CreateSubscription",
             "ModifySubscription", "DeleteSubscriptions", "TransferSubscriptions",
             "CreateMonitoredItems", "ModifyMonitoredItems", "DeleteMonitoredItems", "Publish",
             "Republish", "CloseSecureChannel", "SetMonitoringMode", "SetPublishingMode",
             "RegisterNodes", "UnregisterNodes")
# Call is a right of both: a viewer may call ConditionRefresh (to see the alarms), while the
# control methods and Acknowledge check for a controller themselves (OperatorSession.call).
RIGHTS: dict[OperatorRole, frozenset[ua.NodeId]] = {
    OperatorRole.VIEWER: _VIEW | _ids("Call"),
    OperatorRole.CONTROLLER: _VIEW | _ids("Call"),
}


class OperatorRuleset(PermissionRuleset):
    """Service-level rights per operator role; nobody writes attributes or edits the model."""

    def check_validity(self, user: Any, action_type_id: ua.NodeId, body: Any) -> bool:
        del body
        account = getattr(user, "account", None)
        if account is None:
            return False
        return action_type_id in RIGHTS[account.role]


ConditionMethod = Callable[["OperatorSession", ua.CallMethodRequest],
                           Awaitable[ua.CallMethodResult]]

# The operator whose CallRequest is being served (method callbacks get no session).
CURRENT_OPERATOR: contextvars.ContextVar[OperatorAccount | None] = contextvars.ContextVar(
    "opcua_current_operator", default=None)


class OperatorSession(InternalSession):
    """A client's session: every node it reads, browses, monitors or calls a method on must
    lie in its operator's area (`access.AreaAccess`); the rest does not exist for it."""

    iserver: OperatorInternalServer

    @property
    def account(self) -> OperatorAccount | None:
        return self.user.account if isinstance(self.user, Operator) else None

    def operator_changed(self, account: OperatorAccount | None) -> None:
        """The operator's account was replaced (None: removed) while the session is open."""
        if isinstance(self.user, Operator):
            self.user.account = account

    async def _view(self) -> tuple[AreaAccess, AreaView] | None:
        """The area filter for this session, or None when nothing is filtered."""
        access = self.iserver.access
        if not self.external:
            return None  # the server's own session
        if access is None:  # no model yet: only shared nodes exist
            return None
        return access, await access.view(self.account)

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        scope = await self._view()
        if scope is None:
            return await super().read(params)
        access, view = scope
        return await access.read(view, params, super().read)

    async def browse(self, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        results = await super().browse(params)
        scope = await self._view()
        return results if scope is None else scope[0].browse(scope[1], params, results)

    async def translate_browsepaths_to_nodeids(
        self, params: list[ua.BrowsePath]
    ) -> list[ua.BrowsePathResult]:
        results = await super().translate_browsepaths_to_nodeids(params)
        scope = await self._view()
        return results if scope is None else scope[0].translate(scope[1], params, results)

    # -- subscriptions: asyncua keeps them server-wide and lets any session use any id ------

    def _own(self, subscription_id: int) -> None:
        """Refuse another session's subscription, as if it did not exist (spec: ids are per
        session); otherwise its items could be changed, or its notifications republished."""
        sub = self.subscription_service.subscriptions.get(int(subscription_id))
        if self.external and (sub is None or sub.session_id != self.session_id):
            raise ServiceError(StatusCodes.BadSubscriptionIdInvalid)

    def _owned(self, ids: list[int]) -> list[bool]:
        subs = self.subscription_service.subscriptions
        return [not self.external or (int(i) in subs and subs[int(i)].session_id ==
                                      self.session_id) for i in ids]

    async def create_subscription(self, params: ua.CreateSubscriptionParameters,
                                  callback: Any, request_callback: Any = None
                                  ) -> ua.CreateSubscriptionResult:
        result = await super().create_subscription(params, callback, request_callback)
        isub = self.subscription_service.subscriptions[result.SubscriptionId]
        iserver = self.iserver
        isub.monitored_item_srv = AreaMonitoredItems(  # no items yet: nothing to carry over
            isub, self.aspace, lambda: iserver.area_of_session(isub.session_id))
        owners, live = self.iserver.subscription_owners, self.subscription_service.subscriptions
        for gone in [i for i in owners if i not in live]:  # bounded by live subscriptions
            del owners[gone]
        account = self.account
        owners[int(result.SubscriptionId)] = account.name if account else None
        return result

    async def create_monitored_items(
        self, params: ua.CreateMonitoredItemsParameters
    ) -> list[ua.MonitoredItemCreateResult]:
        self._own(params.SubscriptionId)
        scope = await self._view()
        if scope is None:
            return await super().create_monitored_items(params)
        access, view = scope
        return await access.create_monitored_items(view, params, super().create_monitored_items)

    async def modify_monitored_items(
        self, params: ua.ModifyMonitoredItemsParameters
    ) -> list[ua.MonitoredItemModifyResult]:
        self._own(params.SubscriptionId)
        return await super().modify_monitored_items(params)

    async def delete_monitored_items(
        self, params: ua.DeleteMonitoredItemsParameters
    ) -> list[ua.StatusCode]:
        self._own(params.SubscriptionId)
        return await super().delete_monitored_items(params)

    async def set_monitoring_mode(self, params: ua.SetMonitoringModeParameters
                                  ) -> list[ua.StatusCode]:
        self._own(params.SubscriptionId)
        return await super().set_monitoring_mode(params)

    def modify_subscription(self, params: ua.ModifySubscriptionParameters
                            ) -> ua.ModifySubscriptionResult:
        self._own(params.SubscriptionId)
        return super().modify_subscription(params)

    def republish(self, params: ua.RepublishParameters) -> ua.NotificationMessage:
        self._own(params.SubscriptionId)
        return super().republish(params)

    async def set_publishing_mode(self, params: ua.SetPublishingModeParameters
                                  ) -> list[ua.StatusCode]:
        serve = super().set_publishing_mode
        return await serve_allowed(
            self._owned(params.SubscriptionIds), params.SubscriptionIds,
            lambda ids: serve(dataclasses.replace(params, SubscriptionIds=ids)),
            lambda: status(StatusCodes.BadSubscriptionIdInvalid))

    async def delete_subscriptions(self, ids: list[int]) -> list[ua.StatusCode]:
        return await serve_allowed(
            self._owned(ids), ids, super().delete_subscriptions,
            lambda: status(StatusCodes.BadSubscriptionIdInvalid))

    async def transfer_subscriptions(  # type: ignore[override]
        self, params: ua.TransferSubscriptionsParameters, callback: Any
    ) -> list[ua.TransferResult]:
        """Only the same user's subscriptions (OPC UA Part 4, 5.13.7): Bad_UserAccessDenied."""
        account = self.account
        allowed = [not self.external or (account is not None and
                                         self.iserver.subscription_owners.get(int(i)) ==
                                         account.name) for i in params.SubscriptionIds]
        serve = super().transfer_subscriptions
        return await serve_allowed(
            allowed, params.SubscriptionIds,
            lambda ids: serve(dataclasses.replace(params, SubscriptionIds=ids), callback),
            lambda: ua.TransferResult(StatusCode=status(StatusCodes.BadUserAccessDenied)))

    def monitored_items(self) -> list[AreaMonitoredItems]:
        """The monitored items of this session's subscriptions, per subscription."""
        return [sub.monitored_item_srv for sub in self.subscription_service.subscriptions.values()
                if sub.session_id == self.session_id
                and isinstance(sub.monitored_item_srv, AreaMonitoredItems)]

    def owns(self, subscription_id: int) -> bool:
        """Whether a subscription is this session's own."""
        return self._owned([subscription_id])[0]

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        """Condition methods go to the alarms; the rest (the control methods) needs a
        controller and a node in the operator's area."""
        conditions = self.iserver.condition_methods
        is_condition = [r.MethodId in conditions for r in params]
        results = await serve_allowed(
            [not c for c in is_condition], params, self._call_methods,
            lambda: ua.CallMethodResult())  # placeholders, replaced below
        for index, request in enumerate(params):
            if is_condition[index]:
                results[index] = await conditions[request.MethodId](self, request)
        return results

    async def _call_methods(self, params: list[ua.CallMethodRequest]
                            ) -> list[ua.CallMethodResult]:
        account = self.account
        if self.external and (account is None or account.role is not OperatorRole.CONTROLLER):
            return [_refused(StatusCodes.BadUserAccessDenied) for _ in params]
        token = CURRENT_OPERATOR.set(account)
        try:
            scope = await self._view()
            if scope is None:
                return await super().call(params)
            access, view = scope
            return await access.call(view, params, super().call)
        finally:
            CURRENT_OPERATOR.reset(token)


def _refused(code: int) -> ua.CallMethodResult:
    result = ua.CallMethodResult()
    result.StatusCode = status(code)
    return result


class OperatorInternalServer(InternalServer):
    """Creates sessions that make the calling operator known to method callbacks and that
    show each operator only its area (`access` is set once the model exists)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access: AreaAccess | None = None  # set once the model exists
        # MethodId -> handler, for the Part 9 condition methods (Acknowledge, ConditionRefresh)
        self.condition_methods: Mapping[ua.NodeId, ConditionMethod] = {}
        self.subscription_owners: dict[int, str | None] = {}  # id -> user who created it
        self._sessions: dict[ua.NodeId, OperatorSession] = {}  # open external sessions by id

    def register_external_session(self, session: InternalSession) -> None:
        super().register_external_session(session)
        if isinstance(session, OperatorSession):
            self._sessions[session.session_id] = session

    def unregister_external_session(self, session: InternalSession) -> None:
        super().unregister_external_session(session)
        self._sessions.pop(session.session_id, None)

    def all_sessions(self) -> list[OperatorSession]:
        return list(self._sessions.values())

    def sessions_of(self, user_name: str) -> list[OperatorSession]:
        return [s for s in self._sessions.values()
                if isinstance(s.user, Operator) and s.user.name == user_name]

    def area_of_session(self, session_id: ua.NodeId) -> tuple[AreaAccess, AreaView] | None:
        """The area filter for notifications of a subscription owned by `session_id` (None:
        nothing to filter, e.g. a subscription waiting to be transferred)."""
        session = self._sessions.get(session_id)
        if self.access is None or session is None:
            return None
        return self.access, self.access.cached_view(session.account)

    def create_session(self, name: str, user: User | None = None,
                       external: bool = False) -> InternalSession:
        return OperatorSession(self, self.aspace, self.subscription_service, name,
                               user=user or User(role=UserRole.Anonymous), external=external)
