"""Every Kafka client's configuration, built from the settings in one place.

``client_config`` is the connection and security part every client shares (librdkafka
names); the functions below add what each kind of client needs. Faust's aiokafka
clients get the same files as an ``ssl.SSLContext`` (``faust_broker_options``).
"""

from __future__ import annotations

import ssl

import faust

from streams.kafka.names import reader_group
from streams.settings import Settings

OUTPUT_MESSAGE_BYTES = 1_048_576  # the services' message.max.bytes: no output may be larger
TRANSACTION_TIMEOUT_MS = 60_000
STATISTICS_INTERVAL_MS = 2_000  # librdkafka's statistics (per-partition lag) this often


def client_config(settings: Settings) -> dict[str, str]:
    """librdkafka (confluent-kafka) connection and security options."""
    config = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    optional = {
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password.get_secret_value()
        if settings.kafka_sasl_password
        else None,
        "ssl.ca.location": settings.kafka_ssl_cafile,
        "ssl.certificate.location": settings.kafka_ssl_certfile,
        "ssl.key.location": settings.kafka_ssl_keyfile,
        "ssl.key.password": (
            settings.kafka_ssl_key_password.get_secret_value() if settings.kafka_ssl_key_password else None
        ),
    }
    config.update({name: str(value) for name, value in optional.items() if value})
    return config


SIDE_PREFETCH_KBYTES = 8_192  # a side role's fetch queue: 8 MiB instead of librdkafka's 64 MiB
# the scorer's: RSS flat over 1M events (+0.9%) at full rate; 16 and 8 MiB cost 20% and 55% of the
# throughput on Tansu (docs/benchmarks.md, "Memory")
SCORE_PREFETCH_KBYTES = 32_768


def group_consumer_config(
    settings: Settings,
    group_id: str,
    fetch_wait_max_ms: int | None = None,
    prefetch_kbytes: int | None = None,
) -> dict:
    """A service's consumer: in a group, committing explicitly, reading committed records only.

    ``prefetch_kbytes`` bounds what librdkafka fetches ahead (``queued.max.messages.kbytes``):
    the side roles keep up with a scorer without 64 MiB of records queued in each of them.
    """
    session_ms = int(settings.session_timeout_s * 1000)
    bounded = {"queued.max.messages.kbytes": prefetch_kbytes} if prefetch_kbytes else {}
    return {
        **bounded,
        **client_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(100, session_ms // 3),
        # how long the broker may hold a fetch with nothing new (the setting's comment says why 100 ms).
        # (queued.min.messages raised to 20000 cost 40% of throughput on Tansu: 28.6k vs 49.6k events/s)
        "fetch.wait.max.ms": settings.fetch_wait_max_ms if fetch_wait_max_ms is None else fetch_wait_max_ms,
        "enable.partition.eof": False,
        # librdkafka's default, stated: input from a transactional producer is read once committed
        "isolation.level": "read_committed",
        # per-partition consumer_lag in the statistics: lag without extra requests to the broker
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
    }


def reader_config(settings: Settings, purpose: str, fetch_wait_max_ms: int = 50) -> dict:
    """A consumer that assigns partitions itself: it never joins its group or commits."""
    return {
        **client_config(settings),
        "group.id": reader_group(purpose),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": fetch_wait_max_ms,
        "enable.partition.eof": False,
        "queued.max.messages.kbytes": 4_096,  # a reader of a whole topic needs no deep prefetch
    }


def producer_config(settings: Settings, transactional: bool = False) -> dict:
    """A service's producer: idempotent, acks from every replica, large batches."""
    config = {
        **client_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "partitioner": "murmur2_random",
        "message.max.bytes": OUTPUT_MESSAGE_BYTES,
        "delivery.report.only.error": True,
    }
    if transactional and settings.exactly_once:
        config["transactional.id"] = settings.transactional_id
        # an instance that dies and is not restarted blocks read_committed readers of its
        # partitions until the broker aborts its open transaction after this long
        config["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
    return config


def command_producer_config(settings: Settings) -> dict:
    """A command's producer (events, model updates): idempotent, quick to give up on a dead broker."""
    return {
        **client_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1_000_000,
        "partitioner": "murmur2_random",
    }


def admin_config(settings: Settings) -> dict:
    # log_level 5 (notice): an admin client destroyed with an event nobody will read (a late
    # connection notice) has librdkafka print "Purging N unserved events from background
    # queue" at info level into the worker's log; harmless, so not shown. Warnings still are.
    return {**client_config(settings), "log_level": 5}


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for Faust's aiokafka clients, from the same files librdkafka is given."""
    if not settings.uses_ssl:
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            # "" rather than None: OpenSSL would ask for an encrypted key's password on the terminal
            password=password.get_secret_value() if password else "",
        )
    return context


def faust_broker_options(settings: Settings) -> dict:
    """The broker options of the worker's ``faust.App`` (its aiokafka consumer and producer)."""
    options: dict = {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": max(0.1, settings.session_timeout_s / 3),
    }
    context = ssl_context(settings)  # None unless the protocol is SSL or SASL_SSL
    if settings.kafka_sasl_mechanism:
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else "",
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options
