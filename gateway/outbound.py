"""The one outbound guard: where the gateway may connect when a party gives it a URL.

Every callback (2030.5 notificationURI, OpenADR webhook, anything later) is checked twice
by the same rules: when it is registered (`check`, answered in the protocol's own 4xx) and
when a connection is made (`refusal_for_address` on every address the connection would use,
IP literals included), so a name that re-resolves to an internal address later (DNS
rebinding) is still refused.

Rules:
- schemes: https; plus http to loopback in development mode only;
- no user:password in the URL, no empty host, no IPv6 zone ids;
- an IP literal in any notation the platform's resolver would accept is parsed as the
  address it means: `167772161`, `0x0a000001`, `012.0.0.1` (octal), `10.1` (short form),
  `[::ffff:10.0.0.1]` (mapped) all mean 10.0.0.1; a host that looks numeric but is not a
  valid address in any notation is refused rather than sent to a resolver;
- production refuses every address that is not globally routable - loopback, private,
  shared (100.64/10), link-local (169.254/16, cloud metadata), multicast, reserved,
  documentation, unspecified - unless a deployment allows a network explicitly
  (`outbound_allow`, e.g. an aggregator reached over a private link);
- development mode allows loopback too, but never the gateway's own listeners.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Hosts made only of these are IPv4 literals to a C resolver (inet_aton), never names.
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")
_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")
MAX_URL_LENGTH = 2048
PASSED_CACHE = 10_000  # URLs whose syntax check passed, kept


def _inet_aton_parts(host: str) -> int | None:
    """The 32-bit value of a legacy IPv4 notation (1 to 4 parts, each decimal, octal with a
    leading 0, or hex with 0x; the last part fills the remaining bytes), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_PART.match(p) for p in parts):
        return None
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif part.startswith("0") and len(part) > 1:
            values.append(int(part[1:], 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, v in enumerate(head):
        value += v << (8 * (3 - index))
    return value


def literal_address(host: str) -> IPAddress | None:
    """The address an IP-literal host means, in any notation; None for a name.

    Raises InvalidInput for a host that is numeric-looking but no valid address (it must not
    be handed to a resolver that might read it some other way)."""
    bare = host.strip("[]")
    if "%" in bare:
        raise InvalidInput("callback hosts may not carry an IPv6 zone id")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not _NUMERIC_HOST.match(bare):
        return None
    if not any(c.isdigit() for c in bare.split(".")[-1]) and "x" not in bare.lower():
        return None  # e.g. "cafe.bad": hex-letter labels are names, not numbers
    value = _inet_aton_parts(bare)
    if value is None:
        if all(p.isalpha() for p in bare.split(".") if p):
            return None
        raise InvalidInput(f"callback host {host!r} is neither a name nor a valid address")
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64: the last 32 bits
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass
class OutboundGuard:
    """The deployment's outbound policy; one instance for the whole gateway."""

    dev_mode: bool = False
    allow: tuple[IPNetwork, ...] = ()
    own_endpoints: set[tuple[str, int]] = field(default_factory=set)
    _passed: dict[str, tuple[str, IPAddress | None, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, *, dev_mode: bool, allow: Iterable[str] = ()) -> OutboundGuard:
        return cls(dev_mode, tuple(ipaddress.ip_network(n, strict=False) for n in allow))

    def add_own_listeners(self, urls: Iterable[str]) -> None:
        """The gateway's own listening addresses (called at start-up, once listeners are
        known): never a callback's destination, even in development mode."""
        for url in urls:
            parts = urlsplit(url)
            try:
                port = parts.port
            except ValueError:
                continue
            if port is not None:
                self.own_endpoints.add((parts.hostname or "", port))
        self._passed.clear()  # (what passed may now name one of them)

    def refusal_for_address(self, ip: IPAddress, port: int | None = None) -> str | None:
        """Why the gateway may not connect to `ip` (None: it may)."""
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = self.refusal_for_address(inner, port)
            if reason:
                return reason
        if any(ip in net for net in self.allow if net.version == ip.version):
            return None
        if ip.is_loopback:
            if not self.dev_mode:
                return "loopback addresses are allowed only in development mode"
            if port is not None and self._is_own(ip, port):
                return "the gateway does not call its own listeners"
            return None
        if ip.is_unspecified:
            return "the unspecified address is not a destination"
        if ip.is_multicast:
            return "multicast addresses are not allowed"
        if ip.is_link_local:
            return "link-local addresses (such as cloud metadata) are not allowed"
        if ip.is_private or not ip.is_global:
            return "private, shared and reserved addresses are not allowed"
        return None

    def _is_own(self, ip: IPAddress, port: int) -> bool:
        """Whether loopback `ip`:`port` is one of the gateway's own listeners (those on a
        wildcard or loopback address answer on every loopback address)."""
        return any(p == port and (_answers_on_loopback(h) or h == str(ip))
                   for h, p in self.own_endpoints)

    def check_syntax(self, url: str) -> tuple[str, IPAddress | None, int]:
        """Checks that need no resolver; returns (host, literal address or None, port).
        What a URL passed is kept (bounded): every delivery is checked again before its
        POST, and a fan-out sends thousands to the same few receivers."""
        passed = self._passed.get(url)
        if passed is not None:
            return passed
        passed = self._check_syntax(url)
        if len(self._passed) >= PASSED_CACHE:
            self._passed.clear()
        self._passed[url] = passed
        return passed

    def _check_syntax(self, url: str) -> tuple[str, IPAddress | None, int]:
        if len(url) > MAX_URL_LENGTH:
            raise InvalidInput(f"callback URLs are limited to {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidInput(f"callback is not a valid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in {"https", "http"}:
            raise InvalidInput("callback must be an https URL")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise InvalidInput("callback must not carry credentials (user:password@)")
        host = parts.hostname
        if not host:
            raise InvalidInput("callback must name a host")
        address = literal_address(host)
        if scheme == "http":
            loopback = (address is not None and address.is_loopback) or host == "localhost"
            if not (self.dev_mode and loopback):
                raise InvalidInput("callbacks must use https (plain http only to loopback "
                                   "in development mode)")
        effective_port = port or (443 if scheme == "https" else 80)
        if address is not None:
            reason = self.refusal_for_address(address, effective_port)
            if reason:
                raise InvalidInput(f"callback refused: {reason}")
        return host, address, effective_port

    async def check(self, url: str) -> None:
        """Registration-time check of a callback URL; InvalidInput says why it is refused."""
        host, address, port = self.check_syntax(url)
        if address is not None:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError as exc:
            raise InvalidInput(f"callback host does not resolve: {host}") from exc
        for info in infos:
            reason = self.refusal_for_address(ipaddress.ip_address(info[4][0]), port)
            if reason:
                raise InvalidInput(f"callback refused: {host} resolves to an address where "
                                   f"{reason[0].lower()}{reason[1:]}")


def _answers_on_loopback(host: str) -> bool:
    if host in {"", "0.0.0.0", "::", "localhost"}:  # noqa: S104 - compared, not bound
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
