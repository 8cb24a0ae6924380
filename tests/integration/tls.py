"""The TLS tests' world: a throwaway PKI and the embedded broker behind stunnel.

Tansu advertises one address, so there are two brokers: one behind a TLS service
(the server is authenticated) and one behind a mutual-TLS service (the client must
present a certificate the CA signed). A third service in front of the first broker
presents an expired certificate. Clients are given only stunnel's ports, never a
broker's plaintext one, so whatever they do goes through a real TLS handshake.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from streams.kafka.embedded.broker import Broker, free_port, start_broker
from streams.kafka.embedded.tls_broker import Issued, Stunnel, TlsService, issue, make_ca

KEY_PASSWORD = "tls-key-pass-5e1b7c"  # the mutual-TLS client key's: it must never show in a log
MODES = ("tls", "mtls")


@dataclass(frozen=True)
class Pki:
    ca: Issued
    other_ca: Issued  # a CA that signed neither the brokers' nor the client's certificates
    server: Issued
    expired_server: Issued  # signed by ``ca``, expired yesterday
    client: Issued  # signed by ``ca``, key encrypted with KEY_PASSWORD
    stranger: Issued  # a client certificate signed by ``other_ca``
    not_a_key: Path  # a PEM-looking file that holds no key


def make_pki(folder: Path) -> Pki:
    ca, other_ca = make_ca(folder, "ca"), make_ca(folder, "other-ca")
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    not_a_key = folder / "not-a-key.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    return Pki(
        ca=ca,
        other_ca=other_ca,
        server=issue(ca, folder, "server", server=True),
        expired_server=issue(ca, folder, "expired-server", server=True, not_after=yesterday),
        client=issue(ca, folder, "client", server=False, key_password=KEY_PASSWORD),
        stranger=issue(other_ca, folder, "stranger", server=False),
        not_a_key=not_a_key,
    )


@dataclass
class TlsCluster:
    pki: Pki
    ports: dict[str, int]  # stunnel's: "tls", "mtls", "expired"
    brokers: list[Broker]
    stunnel: Stunnel

    def bootstrap(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def env(self, mode: str) -> dict[str, str]:
        """``STREAMSCORE_KAFKA_*`` of a client in ``mode`` (tls or mtls)."""
        env = {
            "STREAMSCORE_KAFKA_BOOTSTRAP": self.bootstrap(mode),
            "STREAMSCORE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "STREAMSCORE_KAFKA_SSL_CAFILE": str(self.pki.ca.cert),
        }
        if mode == "mtls":
            env |= {
                "STREAMSCORE_KAFKA_SSL_CERTFILE": str(self.pki.client.cert),
                "STREAMSCORE_KAFKA_SSL_KEYFILE": str(self.pki.client.key),
                "STREAMSCORE_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
            }
        return env

    def client(self, mode: str) -> dict[str, str]:
        """The librdkafka options of a test's own client in ``mode``."""
        config = {
            "bootstrap.servers": self.bootstrap(mode),
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.pki.ca.cert),
        }
        if mode == "mtls":
            config |= {
                "ssl.certificate.location": str(self.pki.client.cert),
                "ssl.key.location": str(self.pki.client.key),
                "ssl.key.password": KEY_PASSWORD,
            }
        return config

    def stop(self) -> None:
        self.stunnel.stop()
        for broker in self.brokers:
            broker.stop()


def start_tls_cluster(folder: Path) -> TlsCluster:
    pki = make_pki(folder)
    ports = {name: free_port() for name in ("tls", "mtls", "expired")}
    brokers = [
        start_broker(advertised_port=ports["tls"], log_path=folder / "broker-tls.log"),
        start_broker(advertised_port=ports["mtls"], log_path=folder / "broker-mtls.log"),
    ]
    services = [
        TlsService("tls", ports["tls"], brokers[0].port, pki.server),
        TlsService("mtls", ports["mtls"], brokers[1].port, pki.server, client_ca=pki.ca.cert),
        TlsService("expired", ports["expired"], brokers[0].port, pki.expired_server),
    ]
    try:
        stunnel = Stunnel(folder, services).start()
    except Exception:
        for broker in brokers:
            broker.stop()
        raise
    return TlsCluster(pki, ports, brokers, stunnel)
