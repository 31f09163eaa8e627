"""The development PKI: every certificate a full local system needs, made at run time.

Layout under the PKI directory (default ``certs/``; nothing generated is ever committed):

    ieee2030_5/serca.pem              2030.5 root (SERCA), ECDSA P-256
    ieee2030_5/mica.pem               manufacturer/issuing intermediate (MICA)
    ieee2030_5/ca-chain.pem           mica + serca, to verify clients
    ieee2030_5/server.pem|.key        the 2030.5 server (chain in server-chain.pem)
    ieee2030_5/notifier.pem|.key      the gateway as a 2030.5 TLS client (clientAuth), posting
                                      notifications (chain in notifier-chain.pem)
    ieee2030_5/clients/NAME.pem|.key  device and aggregator client certificates (+ NAME-chain.pem)
    platform/ca.pem                   platform CA (platform API and OpenADR VTN)
    platform/server.pem|.key          platform API and VTN server certificate
    platform/clients/NAME.pem|.key    platform client certificates (admin, iso, ldc-..., ...)
    opcua/ca.pem                      OPC UA CA (RSA 2048: the OPC UA policies need RSA)
    opcua/server.der|.pem|.key        OPC UA server application certificate (SAN URI)
    opcua/clients/NAME.der|.pem|.key  OPC UA client application certificates
    modbus/ca.pem, server.*, clients/NAME.*   Modbus/TCP Security (role extension)
    identities.json                   each client's SHA-256, LFDI and SFDI
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from pki.identity import lfdi, sfdi, sha256_hex

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Modbus/TCP Security carries the client's role in this extension (an ASN.1 UTF8String).
MODBUS_ROLE_OID = ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
OPCUA_SERVER_URI = "urn:der-gateway:opcua:server"
DEFAULT_DEVICES = ("device-1", "device-2", "device-3")
DEFAULT_AGGREGATORS = ("aggregator-1",)
DEFAULT_PLATFORM_CLIENTS = ("admin",)
DEFAULT_OPCUA_CLIENTS = ("scada-operator",)
DEFAULT_MODBUS_CLIENTS = ("gateway",)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey
    cert_path: Path
    key_path: Path


def new_key(kind: str = "ec") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, org: str = "der-gateway dev") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )


def issue_certificate(
    cn: str,
    key: PrivateKey,
    issuer: tuple[x509.Certificate, PrivateKey] | None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    days: int = 3650,
    extra: tuple[x509.ExtensionType, ...] = (),
) -> x509.Certificate:
    """Issue a certificate; `issuer=None` makes it self-signed."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    subject = _name(cn)
    issuer_name, signing_key = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=not ca and is_rsa,
            key_encipherment=not ca and is_rsa,
            data_encipherment=not ca and is_rsa,
            key_agreement=not ca and not is_rsa,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def write_pem(path: Path, cert: x509.Certificate, key: PrivateKey | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.with_suffix(".key")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )


def load_pair(cert_path: Path) -> tuple[x509.Certificate, PrivateKey]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(cert_path.with_suffix(".key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return cert, key


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


LOCAL_DNS = ("localhost",)
LOCAL_IPS = ("127.0.0.1", "::1")


class DevPki:
    """Creates (once) and extends the dev PKI under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def exists(self) -> bool:
        return (self.root / "identities.json").exists()

    # -- families ------------------------------------------------------------------------

    def _ca(self, rel: str, cn: str, kind: str, issuer: Path | None = None) -> Path:
        path = self.root / rel
        if not path.exists():
            key = new_key(kind)
            parent = load_pair(issuer) if issuer else None
            cert = issue_certificate(cn, key, parent, ca=True, path_length=0 if issuer else 1)
            write_pem(path, cert, key)
        return path

    def _leaf(self, rel: str, cn: str, issuer: Path, kind: str = "ec", **kw: object) -> Path:
        path = self.root / rel
        if not path.exists():
            key = new_key(kind)
            cert = issue_certificate(cn, key, load_pair(issuer), **kw)  # type: ignore[arg-type]
            write_pem(path, cert, key)
        return path

    def init(
        self,
        *,
        devices: tuple[str, ...] = DEFAULT_DEVICES,
        aggregators: tuple[str, ...] = DEFAULT_AGGREGATORS,
        platform_clients: tuple[str, ...] = DEFAULT_PLATFORM_CLIENTS,
        opcua_clients: tuple[str, ...] = DEFAULT_OPCUA_CLIENTS,
        modbus_clients: tuple[str, ...] = DEFAULT_MODBUS_CLIENTS,
    ) -> dict[str, dict[str, object]]:
        """Create whatever is missing; never replaces an existing key."""
        self.root.mkdir(parents=True, exist_ok=True)
        serca = self._ca("ieee2030_5/serca.pem", "der-gateway dev SERCA", "ec")
        mica = self._ca("ieee2030_5/mica.pem", "der-gateway dev MICA", "ec", serca)
        (self.root / "ieee2030_5/ca-chain.pem").write_bytes(
            _pem(load_pair(mica)[0], load_pair(serca)[0])
        )
        server = self._leaf("ieee2030_5/server.pem", "der-gateway 2030.5 server", mica,
                            server=True, dns=LOCAL_DNS, ips=LOCAL_IPS)
        (self.root / "ieee2030_5/server-chain.pem").write_bytes(
            _pem(load_pair(server)[0], load_pair(mica)[0])
        )
        self.issue_2030_5_notifier()
        for name in (*devices, *aggregators):
            self.issue_2030_5_client(name)

        pca = self._ca("platform/ca.pem", "der-gateway dev platform CA", "ec")
        self._leaf("platform/server.pem", "der-gateway platform", pca, server=True,
                   dns=LOCAL_DNS, ips=LOCAL_IPS)
        for name in platform_clients:
            self.issue_platform_client(name)

        oca = self._ca("opcua/ca.pem", "der-gateway dev OPC UA CA", "rsa")
        self._opcua_leaf("opcua/server.pem", "der-gateway OPC UA server", oca, OPCUA_SERVER_URI,
                         server=True)
        for name in opcua_clients:
            self.issue_opcua_client(name)

        mca = self._ca("modbus/ca.pem", "der-gateway dev Modbus CA", "ec")
        self._leaf("modbus/server.pem", "der-gateway modbus device", mca, server=True,
                   dns=LOCAL_DNS, ips=LOCAL_IPS)
        for name in modbus_clients:
            self.issue_modbus_client(name, role="operator")
        return self.write_identities()

    def issue_2030_5_client(self, name: str) -> Path:
        mica = self.root / "ieee2030_5/mica.pem"
        path = self._leaf(f"ieee2030_5/clients/{name}.pem", name, mica, client=True)
        path.with_name(f"{name}-chain.pem").write_bytes(
            _pem(load_pair(path)[0], load_pair(mica)[0])
        )
        return path

    def issue_2030_5_notifier(self) -> Path:
        """The gateway's own 2030.5 client certificate: when it POSTs a Notification it is the
        TLS client, and a certified client's listener wants a clientAuth certificate from the
        2030.5 PKI (the server certificate is serverAuth only)."""
        mica = self.root / "ieee2030_5/mica.pem"
        path = self._leaf("ieee2030_5/notifier.pem", "der-gateway 2030.5 notifier", mica,
                          client=True)
        chain = path.with_name("notifier-chain.pem")
        if not chain.exists():
            chain.write_bytes(_pem(load_pair(path)[0], load_pair(mica)[0]))
        return path

    def issue_platform_client(self, name: str) -> Path:
        return self._leaf(f"platform/clients/{name}.pem", name, self.root / "platform/ca.pem",
                          client=True)

    def issue_opcua_client(self, name: str) -> Path:
        return self._opcua_leaf(f"opcua/clients/{name}.pem", name, self.root / "opcua/ca.pem",
                                f"urn:der-gateway:opcua:client:{name}", client=True)

    def issue_modbus_client(self, name: str, role: str) -> Path:
        role_ext = x509.UnrecognizedExtension(MODBUS_ROLE_OID, _der_utf8(role))
        return self._leaf(f"modbus/clients/{name}.pem", name, self.root / "modbus/ca.pem",
                          client=True, extra=(role_ext,))

    def _opcua_leaf(self, rel: str, cn: str, issuer: Path, uri: str, **kw: bool) -> Path:
        path = self._leaf(rel, cn, issuer, kind="rsa", uris=(uri,), dns=("localhost",),
                          ips=("127.0.0.1",), server=True, client=True)
        del kw  # OPC UA application instance certificates are both client and server
        der = path.with_suffix(".der")
        if not der.exists():
            der.write_bytes(load_pair(path)[0].public_bytes(serialization.Encoding.DER))
        return path

    def write_identities(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for family in ("ieee2030_5", "platform", "opcua", "modbus"):
            for pem in sorted((self.root / family / "clients").glob("*.pem")):
                if pem.stem.endswith("-chain"):
                    continue
                cert = load_pair(pem)[0]
                entry: dict[str, object] = {"family": family, "sha256": sha256_hex(cert),
                                            "cert": str(pem)}
                if family == "ieee2030_5":
                    entry |= {"lfdi": lfdi(cert), "sfdi": sfdi(cert)}
                out[f"{family}/{pem.stem}"] = entry
        (self.root / "identities.json").write_text(json.dumps(out, indent=2) + "\n")
        return out


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 127:
        raise ValueError("role too long")
    return bytes([0x0C, len(raw)]) + raw
