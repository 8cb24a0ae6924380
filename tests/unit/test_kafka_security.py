"""TLS and SASL settings reach both Kafka clients (librdkafka and Faust's aiokafka); secrets never show."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr, ValidationError

from scoring.errors import ConfigError, StreamscoreError
from streams.kafka.config import (
    admin_config,
    client_config,
    command_producer_config,
    faust_broker_options,
    group_consumer_config,
    producer_config,
    reader_config,
    ssl_context,
)
from streams.kafka.embedded.tls_broker import issue, make_ca
from streams.kafka.errors import BrokerError, BrokerUnreachable, TlsError
from streams.kafka.tls import check_tls
from streams.settings import Settings

KEY_PASSWORD = "key-pass-7f3a9c"
SASL_PASSWORD = "sasl-pass-2b8e1d"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client certificate it signed whose key is encrypted with KEY_PASSWORD."""
    folder = tmp_path_factory.mktemp("tls")
    ca = make_ca(folder, "test-ca")
    client = issue(ca, folder, "scorer", server=False, key_password=KEY_PASSWORD)
    other = issue(ca, folder, "other", server=False)
    plain = issue(ca, folder, "plain", server=False)
    server = issue(ca, folder, "server", server=True)
    not_a_key = folder / "not-a-key.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    return {
        "ca": ca.cert,
        "cert": client.cert,
        "key": client.key,
        "other_key": other.key,
        "plain_cert": plain.cert,
        "plain_key": plain.key,
        "server_cert": server.cert,
        "server_key": server.key,
        "not_a_key": not_a_key,
    }


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


def test_sasl_plaintext_reaches_every_librdkafka_client_and_faust_without_tls() -> None:
    settings = Settings(
        kafka_bootstrap="b:9094",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="svc",
        kafka_sasl_password=SASL_PASSWORD,
        processing_guarantee="exactly_once",
        instance_id="a",
    )
    sasl = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "svc",
        "sasl.password": SASL_PASSWORD,
    }
    built = [
        client_config(settings),
        admin_config(settings),
        group_consumer_config(settings, "g"),
        reader_config(settings, "status"),
        producer_config(settings, transactional=True),
        command_producer_config(settings),
    ]
    for config in built:
        assert {k: config.get(k) for k in sasl} == sasl
        assert not any(k.startswith("ssl.") for k in config), "no TLS options under SASL_PLAINTEXT"

    credentials = faust_broker_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT" and credentials.ssl_context is None
    assert (credentials.mechanism.value, credentials.username) == ("PLAIN", "svc")


def test_an_empty_file_variable_means_no_file(monkeypatch) -> None:
    for name in ("CAFILE", "CERTFILE", "KEYFILE"):
        monkeypatch.setenv(f"STREAMSCORE_KAFKA_SSL_{name}", "")
    settings = Settings(kafka_security_protocol="SSL")
    assert (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) == (None,) * 3


def _client_certificate_seen_by_a_server(client: ssl.SSLContext, tls_files: dict[str, Path]) -> dict:
    """Handshake in memory with a server that requires a client certificate signed by the test CA;
    the certificate the server received."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    server.load_verify_locations(tls_files["ca"])
    server.verify_mode = ssl.CERT_REQUIRED
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname="localhost")
    server_end = server.wrap_bio(to_server, to_client, server_side=True)
    done = set()
    for _ in range(10):  # a TLS 1.3 handshake takes two round trips
        for end in (client_end, server_end):
            try:
                end.do_handshake()
                done.add(end)
            except ssl.SSLWantReadError:
                pass
        if len(done) == 2:
            return server_end.getpeercert()
    raise AssertionError("the in-memory handshake did not finish")


def test_an_unencrypted_key_opens_without_a_password(tls_files) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tls_files["ca"],
        kafka_ssl_certfile=tls_files["plain_cert"],
        kafka_ssl_keyfile=tls_files["plain_key"],
    )
    context = ssl_context(settings)
    assert context is not None
    seen = _client_certificate_seen_by_a_server(context, tls_files)
    assert dict(item for rdn in seen["subject"] for item in rdn) == {"commonName": "plain"}


def test_check_tls_does_nothing_on_plaintext() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        check_tls(Settings(kafka_bootstrap=f"127.0.0.1:{port}"), timeout_s=0.5)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected: plaintext is not checked
        tls = Settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_security_protocol="SSL")
        with pytest.raises(StreamscoreError):  # the same call under TLS connects (and hears nothing)
            check_tls(tls, timeout_s=0.5)
        listener.accept()[0].close()


def test_check_tls_says_no_broker_answered_and_reads_librdkafka_bootstrap_forms(tls_files) -> None:
    settings = Settings(
        kafka_bootstrap="SSL://127.0.0.1:1, [::1]:1",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tls_files["ca"],
    )
    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:1: .*; ::1:1: "):
        check_tls(settings, timeout_s=2)
    with pytest.raises(ConfigError, match="STREAMSCORE_KAFKA_BOOTSTRAP: 'b:x' is not HOST:PORT"):
        check_tls(settings.model_copy(update={"kafka_bootstrap": "b:x"}), timeout_s=2)


# what check_tls says about the files before it connects anywhere: (settings changed, file named, phrase)
FILE_PROBLEMS = {
    "wrong key password": ({"kafka_ssl_key_password": "wrong-93c1"}, "key", "wrong password"),
    "encrypted key, no password": ({"kafka_ssl_key_password": None}, "key", "is encrypted: set"),
    "key file that holds no key": ({"kafka_ssl_keyfile": "not_a_key"}, "not_a_key", "not a PEM private key"),
    "key of another certificate": (
        {"kafka_ssl_keyfile": "other_key", "kafka_ssl_key_password": None},
        "other_key",
        "is not the key of",
    ),
    "CA file that holds no certificate": (
        {"kafka_ssl_cafile": "not_a_key"},
        "not_a_key",
        "holds no PEM certificate",
    ),
    "certificate file missing": ({"kafka_ssl_certfile": "gone"}, "gone", "does not exist"),
    "key without a certificate": ({"kafka_ssl_certfile": None}, None, "is set without"),
}


@pytest.mark.parametrize("case", sorted(FILE_PROBLEMS))
def test_check_tls_names_the_file_before_connecting(case: str, tls_files, caplog) -> None:
    changes, named, phrase = FILE_PROBLEMS[case]
    files = {**tls_files, "gone": tls_files["ca"].parent / "gone.pem"}
    fields = {
        "kafka_bootstrap": "127.0.0.1:1",  # nothing listens: every case must stop before connecting
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": tls_files["ca"],
        "kafka_ssl_certfile": tls_files["cert"],
        "kafka_ssl_keyfile": tls_files["key"],
        "kafka_ssl_key_password": KEY_PASSWORD,
    }
    for field, value in changes.items():
        fields[field] = files.get(value, value) if isinstance(value, str) and "file" in field else value

    with caplog.at_level(logging.DEBUG), pytest.raises(TlsError) as raised:
        check_tls(Settings(**fields), timeout_s=2)

    message = str(raised.value)
    print(f"{case}: {message}")
    assert isinstance(raised.value, BrokerError) and isinstance(raised.value, StreamscoreError)
    assert message.startswith("TLS: ") and phrase in message and "\n" not in message
    if named is not None:
        assert str(files[named]) in message and raised.value.path == files[named]
    for secret in (KEY_PASSWORD, "wrong-93c1"):
        assert secret not in message and secret not in caplog.text
