"""Check TLS to the brokers before a worker or a command starts, and say in one line what is wrong.

``check_tls`` does, in order, and stops at the first problem with a ``TlsError`` naming
the file (or the setting) behind it:

1. every configured file exists and is readable, the CA and certificate files hold
   certificates, and the private key opens (with its password, if encrypted);
2. a TLS handshake with the ``ssl.SSLContext`` that Faust's clients get, then one Kafka
   ApiVersions request over it: under TLS 1.3 a server that requires a client
   certificate refuses a missing or unknown one only after the handshake, on the
   first read;
3. a metadata request by librdkafka with its own configuration, so that a difference
   between what the two clients are given shows here too (and, under SASL_SSL, a
   refused SASL login, as a ``BrokerError``).

A plaintext configuration is not checked. Nothing here logs or returns a password.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import struct
import time
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from scoring.errors import ConfigError
from streams.kafka.config import admin_config, ssl_context
from streams.kafka.errors import BrokerError, BrokerUnreachable, TlsError
from streams.settings import Settings

CAFILE = "STREAMSCORE_KAFKA_SSL_CAFILE"
CERTFILE = "STREAMSCORE_KAFKA_SSL_CERTFILE"
KEYFILE = "STREAMSCORE_KAFKA_SSL_KEYFILE"
KEY_PASSWORD = "STREAMSCORE_KAFKA_SSL_KEY_PASSWORD"

# ApiVersions v0 (api key 18), correlation id 1, client id "streamscore-tls-check"
_CLIENT_ID = b"streamscore-tls-check"
_BODY = struct.pack(">hhih", 18, 0, 1, len(_CLIENT_ID)) + _CLIENT_ID
API_VERSIONS_REQUEST = struct.pack(">i", len(_BODY)) + _BODY

# OpenSSL verify codes of a certificate chain that does not lead to a trusted CA
_UNTRUSTED = {2, 18, 19, 20, 21}
_EXPIRED, _NOT_YET_VALID, _HOSTNAME_MISMATCH = 10, 9, 62


def check_tls(settings: Settings, timeout_s: float = 10.0) -> None:
    """Raise ``TlsError`` (or ``BrokerUnreachable``) unless a TLS client of the brokers gets an answer."""
    if not settings.uses_ssl:
        return
    deadline = time.monotonic() + timeout_s
    _check_files(settings)
    context = _open_context(settings)
    _handshake(settings, context, timeout_s)
    _metadata(settings, max(1.0, deadline - time.monotonic()))


def _check_files(settings: Settings) -> None:
    for path, variable in (
        (settings.kafka_ssl_cafile, CAFILE),
        (settings.kafka_ssl_certfile, CERTFILE),
        (settings.kafka_ssl_keyfile, KEYFILE),
    ):
        if path is None:
            continue
        if not path.is_file():
            raise TlsError(f"{path} ({variable}) does not exist or is not a file", path)
        try:
            with path.open("rb") as file:
                file.read(1)
        except OSError as exc:
            raise TlsError(f"cannot read {path} ({variable}): {exc.strerror}", path) from None
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise TlsError(f"{KEYFILE} is set without {CERTFILE}: set both for a client certificate")


def _holds_certificates(path: Path) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError:
        return False
    return True


def _open_context(settings: Settings) -> ssl.SSLContext:
    for path, variable in ((settings.kafka_ssl_cafile, CAFILE), (settings.kafka_ssl_certfile, CERTFILE)):
        if path is not None and not _holds_certificates(path):
            raise TlsError(f"{path} ({variable}) holds no PEM certificate", path)
    try:
        context = ssl_context(settings)
    except (ssl.SSLError, OSError) as exc:
        raise _key_problem(settings, exc) from None
    assert context is not None  # uses_ssl
    return context


def _key_problem(settings: Settings, exc: Exception) -> TlsError:
    """What is wrong with the private key (the certificates were read already)."""
    key = settings.kafka_ssl_keyfile or settings.kafka_ssl_certfile
    variable = KEYFILE if settings.kafka_ssl_keyfile else CERTFILE
    assert key is not None  # only a client certificate's key can fail to load here
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        cert = settings.kafka_ssl_certfile
        return TlsError(f"the private key {key} ({variable}) is not the key of {cert} ({CERTFILE})", key)
    text = key.read_bytes()
    if b"ENCRYPTED" in text and settings.kafka_ssl_key_password is None:
        return TlsError(f"the private key {key} ({variable}) is encrypted: set {KEY_PASSWORD}", key)
    if b"ENCRYPTED" in text:
        problem = f"cannot decrypt the private key {key} ({variable}) with {KEY_PASSWORD}: wrong password"
        return TlsError(problem, key)
    return TlsError(f"cannot read the private key {key} ({variable}): not a PEM private key", key)


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port`` pairs of a bootstrap list (librdkafka's form: an optional ``SCHEME://``, port 9092)."""
    servers = []
    for item in bootstrap.split(","):
        address = item.strip().split("://")[-1]
        host, colon, port = address.rpartition(":")
        if not colon or "]" in port:
            host, port = address, "9092"
        if not port.isdigit():
            raise ConfigError(f"STREAMSCORE_KAFKA_BOOTSTRAP: {item.strip()!r} is not HOST:PORT")
        servers.append((host.strip("[]"), int(port)))
    return servers


def _handshake(settings: Settings, context: ssl.SSLContext, timeout_s: float) -> None:
    """Handshake with the first bootstrap server that accepts a connection, and one request over it."""
    failures = []
    for host, port in _servers(settings.kafka_bootstrap):
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            failures.append(f"{host}:{port}: {exc.strerror or exc}")
            continue
        with sock:
            _speak_tls(settings, context, sock, host, port)
        return
    raise BrokerUnreachable(settings.kafka_bootstrap, "; ".join(failures))


def _speak_tls(
    settings: Settings, context: ssl.SSLContext, sock: socket.socket, host: str, port: int
) -> None:
    address = f"{host}:{port}"
    try:
        tls = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise _server_refused(settings, address, host, exc) from None
    except ssl.SSLError as exc:
        raise _client_refused(settings, address, exc) from None
    except TimeoutError:
        raise TlsError(f"no TLS answer from {address} in time: is it the broker's TLS port?") from None
    except OSError as exc:
        raise TlsError(f"the TLS handshake with {address} failed: {exc.strerror or exc}") from None
    with tls:
        try:
            tls.sendall(API_VERSIONS_REQUEST)
            answer = tls.recv(8)
        except ssl.SSLError as exc:  # an alert (TLS 1.3 refuses a client certificate after the handshake)
            if "alert" in str(exc.reason).lower():
                raise _client_refused(settings, address, exc) from None
            answer = b""
        except (ConnectionError, TimeoutError):
            answer = b""
    if not answer:
        raise _closed_after_handshake(settings, context, host, port)


def _closed_after_handshake(settings: Settings, context: ssl.SSLContext, host: str, port: int) -> TlsError:
    """The server hung up before answering. Its alert can be lost when our request crossed it (a reset):
    connect again and only listen, to hear the alert; without one the cause is a guess."""
    address = f"{host}:{port}"
    try:
        with (
            socket.create_connection((host, port), timeout=2) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            tls.recv(8)
    except ssl.SSLError as exc:
        if "alert" in str(exc.reason).lower():
            return _client_refused(settings, address, exc)
    except OSError:
        pass
    cert = settings.kafka_ssl_certfile
    closed = f"the broker at {address} closed the connection after the TLS handshake"
    if cert is None:
        return TlsError(
            f"{closed}: it requires a client certificate, most likely; set {CERTFILE} and {KEYFILE}"
        )
    return TlsError(f"{closed}: it refused the client certificate {cert} ({CERTFILE}), most likely", cert)


def _server_refused(
    settings: Settings, address: str, host: str, exc: ssl.SSLCertVerificationError
) -> TlsError:
    ca = settings.kafka_ssl_cafile
    trusted = f"the CA in {ca} ({CAFILE})" if ca else f"a CA of the system ({CAFILE} is not set)"
    code, theirs = exc.verify_code, f"the broker's certificate at {address}"
    if code in _UNTRUSTED:
        problem = f"{theirs} is not signed by {trusted}"
    elif code == _EXPIRED:  # OpenSSL reports the dates only of a chain that reached a trusted CA
        problem = f"{theirs} has expired; it is signed by {trusted}: the broker needs a new certificate"
    elif code == _NOT_YET_VALID:
        problem = f"{theirs} is not valid yet (check the clocks); it is signed by {trusted}"
    elif code == _HOSTNAME_MISMATCH:
        problem = f"{theirs} is not made out to {host}; it is signed by {trusted}"
    else:
        problem = f"{theirs} was refused: {exc.verify_message}; checked against {trusted}"
    return TlsError(problem, ca)


def _client_refused(settings: Settings, address: str, exc: ssl.SSLError) -> TlsError:
    reason = (exc.reason or str(exc)).lower().replace("_", " ")
    cert = settings.kafka_ssl_certfile
    if "alert" not in reason:
        return TlsError(f"the TLS handshake with {address} failed: {reason}")
    if cert is None:
        return TlsError(
            f"the broker at {address} requires a client certificate ({reason}): set {CERTFILE} and {KEYFILE}"
        )
    problem = f"the broker at {address} refused the client certificate {cert} ({CERTFILE}): {reason}"
    return TlsError(problem, cert)


_LOCATIONS = {"ssl.ca.location": CAFILE, "ssl.certificate.location": CERTFILE, "ssl.key.location": KEYFILE}


def _metadata(settings: Settings, timeout_s: float) -> None:
    """One metadata request by librdkafka; its TLS errors (``_SSL``, or ``_TRANSPORT`` naming SSL) raised."""
    quiet = logging.getLogger("streamscore.tls.probe")  # librdkafka's own log lines would repeat the error
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    errors: list[KafkaError] = []
    try:
        admin = AdminClient({**admin_config(settings), "error_cb": errors.append, "logger": quiet})
    except KafkaException as exc:
        text = exc.args[0].str()
        named = ", ".join(variable for option, variable in _LOCATIONS.items() if option in text)
        raise TlsError(f"librdkafka cannot use the TLS files ({named or 'settings'}): {text}") from None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=0.5)
            return
        except KafkaException:
            pass
        admin.poll(0)
        for error in errors:
            text = re.sub(r" \(after \d+ms.*\)$", "", error.str())
            if error.code() == KafkaError._SSL or "SSL" in error.str():
                raise TlsError(f"librdkafka's TLS connection to {settings.kafka_bootstrap} failed: {text}")
            if error.code() == KafkaError._AUTHENTICATION:  # SASL_SSL (untested here: no broker speaks SASL)
                raise BrokerError(f"SASL authentication at {settings.kafka_bootstrap} failed: {text}")
        if time.monotonic() > deadline:
            raise BrokerUnreachable(settings.kafka_bootstrap, "no answer to a metadata request over TLS")
