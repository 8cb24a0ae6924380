"""The embedded broker behind real TLS, for development and tests: a throwaway CA and stunnel.

Tansu accepts ``tls://`` listeners but still speaks plaintext (FIELD-NOTES), so TLS is
terminated in front of it by Debian's ``stunnel`` (package ``stunnel4``): stunnel
accepts TLS on one port and forwards to the broker's plaintext port, and the broker
advertises the stunnel port, so clients that bootstrap over TLS stay on TLS. A
service with ``client_ca`` requires a client certificate signed by that CA (mutual TLS).

Certificates are made with ``cryptography`` (a development dependency, like the
broker itself): ECDSA P-256, the server's valid for ``127.0.0.1`` and ``localhost``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from streams.kafka.embedded.broker import Broker, free_port, start_broker, stop_process

DAY = dt.timedelta(days=1)
NAMES = ("ca", "server", "client")  # the files start_tls_broker writes: NAME.pem and NAME.key


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM files; ``key`` may be encrypted."""

    cert: Path
    key: Path


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path, password: str | None) -> None:
    from cryptography.hazmat.primitives import serialization

    encryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.write_bytes(pem)
    path.chmod(0o600)


def make_ca(folder: Path, name: str) -> Issued:
    """A self-signed CA: ``folder/name.pem`` and ``folder/name.key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    issued = Issued(folder / f"{name}.pem", folder / f"{name}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, issued.key, None)
    return issued


def issue(
    ca: Issued,
    folder: Path,
    name: str,
    server: bool,
    key_password: str | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A leaf certificate signed by ``ca``: a server's (for 127.0.0.1 and localhost) or a client's."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = not_after or now + 30 * DAY
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, not_after) - DAY)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    issued = Issued(folder / f"{name}.pem", folder / f"{name}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, issued.key, key_password)
    return issued


@dataclass(frozen=True)
class TlsService:
    """One stunnel service: TLS on ``port`` with ``server``'s certificate, forwarded to ``upstream_port``.

    With ``client_ca`` the client must present a certificate that CA signed.
    """

    name: str
    port: int
    upstream_port: int
    server: Issued
    client_ca: Path | None = None

    def config(self) -> str:
        lines = [
            f"[{self.name}]",
            f"accept = 127.0.0.1:{self.port}",
            f"connect = 127.0.0.1:{self.upstream_port}",
            f"cert = {self.server.cert}",
            f"key = {self.server.key}",
        ]
        if self.client_ca is not None:
            lines += [f"CAfile = {self.client_ca}", "verifyChain = yes", "requireCert = yes"]
        return "\n".join(lines)


def stunnel_binary() -> str:
    found = shutil.which("stunnel") or shutil.which("stunnel4")
    if found is None:
        raise FileNotFoundError("stunnel is not installed: `apt-get install stunnel4` (`make test` does)")
    return found


@dataclass
class Stunnel:
    """A foreground stunnel process serving ``services``; its log is ``folder/stunnel.log``."""

    folder: Path
    services: list[TlsService]
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self, timeout_s: float = 10.0) -> Stunnel:
        conf = self.folder / "stunnel.conf"
        log = self.folder / "stunnel.log"
        head = ["foreground = yes", "pid =", f"output = {log}", "debug = notice", ""]
        conf.write_text("\n".join(head + [s.config() + "\n" for s in self.services]))
        self.process = subprocess.Popen(
            [stunnel_binary(), str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        for service in self.services:
            while not _accepts(service.port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"stunnel did not listen on {service.port}:\n{tail}")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        stop_process(self.process)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class TlsBroker:
    """Tansu behind stunnel with mutual TLS; ``files`` are what a client needs."""

    broker: Broker
    stunnel: Stunnel
    port: int
    files: dict[str, Path]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The ``STREAMSCORE_KAFKA_*`` variables of a client of this broker."""
        return {
            "STREAMSCORE_KAFKA_BOOTSTRAP": self.bootstrap,
            "STREAMSCORE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "STREAMSCORE_KAFKA_SSL_CAFILE": str(self.files["ca"]),
            "STREAMSCORE_KAFKA_SSL_CERTFILE": str(self.files["cert"]),
            "STREAMSCORE_KAFKA_SSL_KEYFILE": str(self.files["key"]),
        }

    def stop(self) -> None:
        self.stunnel.stop()
        self.broker.stop()


def start_tls_broker(folder: Path, port: int | None = None) -> TlsBroker:
    """Make (or reuse) a CA, a server and a client certificate in ``folder``; run Tansu behind stunnel.

    Clients must present the client certificate (mutual TLS). The files are kept, so
    clients configured once keep working across restarts of the broker.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca, server, client = (Issued(folder / f"{n}.pem", folder / f"{n}.key") for n in NAMES)
    if not all(p.exists() for issued in (ca, server, client) for p in (issued.cert, issued.key)):
        ca = make_ca(folder, "ca")
        server = issue(ca, folder, "server", server=True)
        client = issue(ca, folder, "client", server=False)
    port = port or free_port()
    broker = start_broker(advertised_port=port, log_path=folder / "broker.log")
    service = TlsService("kafka", port, broker.port, server, client_ca=ca.cert)
    try:
        stunnel = Stunnel(folder, [service]).start()
    except Exception:
        broker.stop()
        raise
    files = {"ca": ca.cert, "cert": client.cert, "key": client.key}
    return TlsBroker(broker, stunnel, port, files)
