"""TLS and SASL settings reach both Kafka clients (librdkafka and Faust's aiokafka); secrets never show."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

import faust
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from streams.kafka.config import (
    client_config,
    faust_broker_options,
    group_consumer_config,
    producer_config,
    ssl_context,
)
from streams.settings import Settings

KEY_PASSWORD = "key-pass-7f3a9c"
SASL_PASSWORD = "sasl-pass-2b8e1d"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client certificate it signed whose key is encrypted with KEY_PASSWORD."""
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)

    def certificate(subject: str, key, issuer: str, signer, ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    files = {"ca": folder / "ca.pem", "cert": folder / "client.pem", "key": folder / "client.key"}
    files["ca"].write_bytes(
        certificate("test-ca", ca_key, "test-ca", ca_key, True).public_bytes(serialization.Encoding.PEM)
    )
    files["cert"].write_bytes(
        certificate("scorer", client_key, "test-ca", ca_key, False).public_bytes(serialization.Encoding.PEM)
    )
    files["key"].write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return files


def _tls_settings(tls_files: dict[str, Path], protocol: str, **extra) -> Settings:
    return Settings(
        kafka_bootstrap="b:9093",
        kafka_security_protocol=protocol,
        kafka_ssl_cafile=tls_files["ca"],
        kafka_ssl_certfile=tls_files["cert"],
        kafka_ssl_keyfile=tls_files["key"],
        kafka_ssl_key_password=KEY_PASSWORD,
        **extra,
    )


def test_librdkafka_config_carries_the_tls_files_and_key_password(tls_files) -> None:
    settings = _tls_settings(tls_files, "SSL")

    config = client_config(settings)

    assert config == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SSL",
        "ssl.ca.location": str(tls_files["ca"]),
        "ssl.certificate.location": str(tls_files["cert"]),
        "ssl.key.location": str(tls_files["key"]),
        "ssl.key.password": KEY_PASSWORD,
    }
    # the score path's own clients are built on it
    for built in (group_consumer_config(settings, "g"), producer_config(settings)):
        assert built["ssl.ca.location"] == str(tls_files["ca"])
        assert built["ssl.key.password"] == KEY_PASSWORD


def test_faust_gets_an_ssl_context_with_the_ca_and_the_client_certificate(tls_files) -> None:
    options = faust_broker_options(_tls_settings(tls_files, "SSL"))

    credentials = options["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"
    context = credentials.context
    assert isinstance(context, ssl.SSLContext)
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["test-ca"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_sasl_ssl_gives_faust_sasl_credentials_over_tls(tls_files) -> None:
    settings = _tls_settings(
        tls_files,
        "sasl_ssl",  # any case
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SASL_PASSWORD,
    )

    credentials = faust_broker_options(settings)["broker_credentials"]
    config = client_config(settings)

    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("svc", SASL_PASSWORD)
    assert credentials.ssl_context is not None and credentials.ssl_context.get_ca_certs()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.password"] == SASL_PASSWORD and config["ssl.key.password"] == KEY_PASSWORD


def test_the_key_password_is_what_opens_the_client_key(tls_files) -> None:
    with pytest.raises(ssl.SSLError):
        ssl_context(
            Settings(
                kafka_security_protocol="SSL",
                kafka_ssl_certfile=tls_files["cert"],
                kafka_ssl_keyfile=tls_files["key"],
                kafka_ssl_key_password="wrong",
            )
        )
    assert ssl_context(_tls_settings(tls_files, "SSL")) is not None


def test_plaintext_gives_faust_no_credentials_and_no_tls() -> None:
    settings = Settings(kafka_bootstrap="b:1")
    assert ssl_context(settings) is None
    assert "broker_credentials" not in faust_broker_options(settings)


def test_an_unknown_security_protocol_is_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        Settings(kafka_security_protocol="TLS")


def test_secrets_never_show_in_repr_str_json_or_logs(tls_files, caplog, monkeypatch) -> None:
    monkeypatch.setenv("STREAMSCORE_KAFKA_SSL_KEY_PASSWORD", KEY_PASSWORD)
    monkeypatch.setenv("STREAMSCORE_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("STREAMSCORE_STATE_KEY", "00" * 32)
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="svc",
        kafka_ssl_cafile=tls_files["ca"],
    )
    assert isinstance(settings.kafka_ssl_key_password, SecretStr)
    assert settings.kafka_ssl_key_password.get_secret_value() == KEY_PASSWORD

    log = logging.getLogger("streamscore.test")
    with caplog.at_level(logging.DEBUG):
        log.info("settings %s", settings)
        log.info("settings %r", settings)
        log.info("dump %s", settings.model_dump())
        log.info("faust credentials %r", faust_broker_options(settings)["broker_credentials"])
    shown = [repr(settings), str(settings), settings.model_dump_json(), caplog.text]
    for text in shown:
        assert KEY_PASSWORD not in text and SASL_PASSWORD not in text
        assert "**********" in text or "SASLCredentials" in text
