"""Helpers for integration tests: run a worker process, produce, read a topic to a count or to its end.

Every wait here is on a condition (``tests/conditions.py``): a read that times out fails
naming how many records it got, a wait on a worker fails with what ``/stats`` said last.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from scoring.offline.synthetic import events_from_frame
from streams.kafka.embedded.broker import free_port
from streams.kafka.names import groups
from streams.settings import ScorePath, Settings
from tests.conditions import ConditionNotMet, budget, time_scale, wait_for

T = TypeVar("T")
END_MARKER = "streamscore.test.end"  # header of the records ``read_to_end`` writes to find a topic's end


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int
    timestamp: int = -1  # the broker timestamp (epoch ms), -1 if it has none


def names_env(run_id: str, folder: Path) -> dict[str, str]:
    """Topic, group and data-dir settings of their own (suffix ``run_id``), without the broker's address."""
    return {
        "STREAMSCORE_APP_ID": f"app-{run_id}",
        "STREAMSCORE_GROUP_ID": f"scorer-{run_id}",
        "STREAMSCORE_TOPIC_FEATURES": f"features-{run_id}",
        "STREAMSCORE_TOPIC_PREDICTIONS": f"predictions-{run_id}",
        "STREAMSCORE_TOPIC_DLQ": f"features.dlq-{run_id}",
        "STREAMSCORE_TOPIC_MONITOR": f"monitor-{run_id}",
        "STREAMSCORE_TOPIC_LABELS": f"labels-{run_id}",
        "STREAMSCORE_TOPIC_LABELS_DLQ": f"labels.dlq-{run_id}",
        "STREAMSCORE_TOPIC_MONITOR_DLQ": f"monitor.dlq-{run_id}",
        "STREAMSCORE_TOPIC_DRIFT": f"drift-{run_id}",
        "STREAMSCORE_TOPIC_METRICS": f"metrics-{run_id}",
        "STREAMSCORE_TOPIC_MODEL_UPDATES": f"model-updates-{run_id}",
        "STREAMSCORE_TOPIC_CHECKPOINTS": f"checkpoints-{run_id}",
        "STREAMSCORE_TOPIC_DRIFT_PARTIALS": f"drift-partials-{run_id}",
        "STREAMSCORE_TOPIC_ALERTS": f"alerts-{run_id}",
        "STREAMSCORE_TOPIC_RETRAIN": f"retrain-requests-{run_id}",
        "STREAMSCORE_DATA_DIR": str(folder / "data"),
    }


class WorkerProcess:
    """A ``streamscore worker`` subprocess with its own web port and log file."""

    def __init__(self, env: dict[str, str], model_dir: Path, log_path: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        full_env = {**os.environ, **env, "STREAMSCORE_WEB_PORT": str(self.port)}
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--model", str(model_dir), "-l", "info", *extra_args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> dict:
        return json.loads(self.get_text(path))

    def get_text(self, path: str) -> str:
        # a busy machine can hold an answer back for seconds: this is a client's patience, not a bound
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
            return response.read().decode()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        self.wait(
            lambda: self.get("/ready"), lambda ready: ready.get("ready"), "the worker to be ready", timeout_s
        )

    def wait(
        self, probe: Callable[[], T], until: Callable[[T], bool], what: str, timeout_s: float, interval_s=0.1
    ) -> T:
        """``conditions.wait_for`` on this worker: fails at once if it exits, with its log's tail."""
        return wait_for(
            probe, until, timeout_s=timeout_s, what=what, interval_s=interval_s, alive=self.alive,
            context=self.log_tail,
        )  # fmt: skip

    def wait_stats(self, until: Callable[[dict], bool], what: str, timeout_s: float) -> dict:
        """``/stats`` once ``until`` holds for it."""
        return self.wait(lambda: self.get("/stats"), until, what, timeout_s)

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout_s: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def produce(
    bootstrap: str,
    topic: str,
    payloads: list[tuple[bytes | None, bytes | None]],
    client: dict | None = None,
) -> None:
    """``client``: librdkafka options merged in (a TLS client's), in every helper here."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 10, "partitioner": "murmur2_random", **(client or {})}
    )
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0, "not every test event was delivered"


def produce_with_labels(
    bootstrap: str,
    env: dict[str, str],
    frame,
    labels,
    delay: int,
    prefix: str,
    base_ms: int,
    labels_by: str = "event_id",
) -> None:
    """Event i of ``frame`` (keyed by its entity), then the label of event i - ``delay``; the last
    ``delay`` labels at the end. Labels are keyed by ``labels_by``: the event id, or ``"entity_id"``,
    which puts each on its event's partition number (the same partitioner as the worker's)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "partitioner": "murmur2_random"})
    features, label_topic = env["STREAMSCORE_TOPIC_FEATURES"], env["STREAMSCORE_TOPIC_LABELS"]
    events = list(events_from_frame(frame, prefix=prefix, start_ms=base_ms))

    def send(topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value, key.encode())
                return
            except BufferError:
                producer.poll(0.05)

    def label(i: int) -> None:
        body = {
            "event_id": events[i]["event_id"],
            "label": labels[i] if isinstance(labels[i], str) else float(labels[i]),  # class name or number
            "label_time": base_ms + i + delay,
        }
        send(label_topic, events[i][labels_by], orjson.dumps(body))

    for i, event in enumerate(events):
        send(features, event["entity_id"], orjson.dumps(event))
        if i >= delay:
            label(i - delay)
    for i in range(max(0, len(events) - delay), len(events)):
        label(i)
    assert producer.flush(60) == 0


class ReadShort(ConditionNotMet):
    """A read that ran out of time before the records it waited for arrived."""


def _record(message) -> Record:
    return Record(
        message.key(),
        message.value(),
        dict(message.headers() or []),
        message.partition(),
        message.offset(),
        message.timestamp()[1],
    )


def read_topic(
    bootstrap: str,
    topic: str,
    count: int,
    timeout_s: float = 120.0,
    idle_s: float = 0.0,
    counted: Callable[[Record], bool] | None = None,
    client: dict | None = None,
) -> list[Record]:
    """Read from the start until ``count`` records arrived (then ``idle_s`` more); returns all it read.

    Without ``idle_s`` the read ends at the record that reached ``count``: ``[-1]`` is the last
    counted record, never one that happened to share its fetch.

    Only records that ``counted`` accepts count toward ``count``. Past ``timeout_s`` (scaled by
    ``STREAMSCORE_TEST_TIME_SCALE``) it fails with ``ReadShort`` naming how many it got.
    Counts what it reads: the embedded broker's end offsets can lag (Tansu 0.6.0 reports the
    start of a partition's last record batch as its end); ``read_to_end`` reads a whole topic.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            **(client or {}),
        }
    )
    consumer.subscribe([topic])
    records: list[Record] = []
    seen = 0
    limit_s = timeout_s * time_scale()
    started = time.monotonic()
    idle_until = None
    try:
        while True:
            if seen >= count:
                idle_until = time.monotonic() + idle_s if idle_until is None else idle_until
                if time.monotonic() >= idle_until:
                    break
            elif time.monotonic() - started >= limit_s:
                kind = "records" if counted is None else "counted records"
                raise ReadShort(
                    f"read {seen:,} of {count:,} {kind} from {topic} in {limit_s:.0f} s "
                    f"({len(records):,} records in all)"
                )
            for message in consumer.consume(5000, 0.5):
                if message.error():
                    continue
                record = _record(message)
                records.append(record)
                seen += counted is None or bool(counted(record))
                if seen >= count and idle_s == 0:
                    break  # the last record returned is the one that reached the count
    finally:
        consumer.close()
    return records


def read_monitor(
    bootstrap: str,
    topic: str,
    rows: int,
    where: Callable[[dict], bool] = lambda _: True,
    timeout_s: float = 120.0,
) -> list[dict]:
    """Monitoring records, decoded, from the start until those ``where`` accepts hold ``rows`` events.

    A monitoring record holds a batch of events: counting records would stop at the first.
    """
    held = 0

    def enough(record: Record) -> bool:
        nonlocal held
        body = orjson.loads(record.value)
        held += len(body["event_ids"]) if where(body) else 0
        return held >= rows

    return [orjson.loads(r.value) for r in read_topic(bootstrap, topic, 1, timeout_s, counted=enough)]


def read_to_end(
    bootstrap: str,
    topic: str,
    timeout_s: float = 120.0,
    client: dict | None = None,
    isolation: str = "read_uncommitted",
) -> list[Record]:
    """Every record of ``topic`` written before this call: no wait for silence, no count to guess.

    Writes a marker record (header ``END_MARKER``) to each partition and reads from the start
    until every marker came back; returns the records before them. Whatever a writer had
    acknowledged before the call is in the result, so a test first waits for the writer to be
    done (a worker's group committed every input, a command exited). Markers stay on the topic:
    read it with this, or filter ``END_MARKER``, afterwards.
    """
    token = f"{topic}-{time.monotonic_ns()}".encode()
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"end-{token.decode()}", "enable.auto.commit": False,
         "isolation.level": isolation, **(client or {})}
    )  # fmt: skip
    partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    assert partitions, f"topic {topic} has no partitions"
    producer = Producer({"bootstrap.servers": bootstrap, **(client or {})})
    for partition in partitions:
        producer.produce(topic, b"", b"", partition=partition, headers={END_MARKER: token})
    assert producer.flush(30) == 0, f"the end markers did not reach {topic}"
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[Record] = []
    waiting = set(partitions)
    limit_s = timeout_s * time_scale()
    started = time.monotonic()
    try:
        while waiting:
            if time.monotonic() - started >= limit_s:
                raise ReadShort(
                    f"read {len(records):,} records from {topic} in {limit_s:.0f} s without reaching the end "
                    f"of partitions {sorted(waiting)}"
                )
            for message in consumer.consume(5000, 0.5):
                if message.error() or message.partition() not in waiting:
                    continue
                record = _record(message)
                if record.headers.get(END_MARKER) == token:
                    waiting.discard(record.partition)
                elif END_MARKER not in record.headers:
                    records.append(record)
    finally:
        consumer.close()
    return records


def settings_of(env: dict[str, str]) -> Settings:
    """The ``Settings`` a worker started with ``env`` reads (``STREAMSCORE_*`` names)."""
    return Settings(
        **{k.removeprefix("STREAMSCORE_").lower(): v for k, v in env.items() if k.startswith("STREAMSCORE_")}
    )


def score_group(env: dict[str, str]) -> str:
    """The consumer group that scores ``features`` in a worker started with ``env`` (either score path)."""
    settings = settings_of(env)
    names = groups(settings)
    return names.score if settings.score_path is ScorePath.batch else names.faust


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets over ``topic``'s partitions: what it consumed for good."""
    return sum(committed_offsets(bootstrap, group, topic).values())


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """``group``'s committed offset per partition of ``topic`` (0 where it committed nothing).

    Reads the committed offsets only (OffsetFetch): it does not join the group.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in committed}


def loan_stream(
    n: int, invalid: int, prefix: str, seed: int = 5
) -> tuple[list[tuple[bytes, bytes | None]], list]:
    """``n`` Agrawal loan events (the second half earning 30% more: drift) with ``invalid`` bad ones mixed
    in, as ``(key, value)`` payloads; and a label payload per valid event."""
    from scoring.offline.synthetic import EVENT_TIME_0, agrawal_frame, events_from_frame, interleave_invalid

    labelled = agrawal_frame(n, seed=seed, classification_function=2)
    frame = labelled.drop(columns=["approved"])
    frame.loc[n // 2 :, "salary"] *= 1.3
    mixed = interleave_invalid(list(events_from_frame(frame, prefix=prefix)), invalid, "salary", seed=seed)
    payloads = [(str(e["entity_id"]).encode(), p) for _, e, p in mixed]
    labels = [
        (
            f"{prefix}-{i}".encode(),
            json.dumps(
                {"event_id": f"{prefix}-{i}", "label": float(y), "label_time": EVENT_TIME_0 + i}
            ).encode(),
        )
        for i, y in enumerate(labelled["approved"])
    ]
    return payloads, labels


def feature_events(n: int, seed: int, prefix: str) -> list[tuple[bytes, bytes]]:
    """``n`` valid loan events as (key, value) pairs; event ids are ``{prefix}-{i}``."""
    from scoring.offline.synthetic import agrawal_frame, events_from_frame

    frame = agrawal_frame(n, seed=seed, classification_function=2).drop(columns=["approved"])
    return [(e["entity_id"].encode(), orjson.dumps(e)) for e in events_from_frame(frame, prefix=prefix)]


def event_id_of(record: Record) -> str:
    return orjson.loads(record.value)["event_id"]


def distinct_event_ids() -> Callable[[Record], bool]:
    """A ``read_topic`` ``counted`` filter, True the first time an event_id is seen: counts distinct ids."""
    seen: set[str] = set()

    def first_time(record: Record) -> bool:
        event_id = event_id_of(record)
        if event_id in seen:
            return False
        seen.add(event_id)
        return True

    return first_time


def duplicates(ids: Counter) -> int:
    """Records beyond one per event_id."""
    return sum(count - 1 for count in ids.values())


def wait_scored(worker: WorkerProcess, at_least: int, timeout_s: float | None = None) -> int:
    """Poll ``/stats`` (every 10 ms: a kill that follows lands close) until the worker scored ``at_least``
    events; returns what it had scored. The deadline is ``budget(at_least)`` unless given."""
    stats = worker.wait(
        lambda: worker.get("/stats"),
        lambda s: s["scored"] >= at_least,
        f"{at_least:,} events scored",
        budget(at_least) if timeout_s is None else timeout_s,
        interval_s=0.01,
    )
    return stats["scored"]


class TopicWatcher(threading.Thread):
    """Reads a topic from the start on a thread: how often each event_id came, and when first (monotonic).

    Partitions are assigned, not subscribed: a group member would lose its session when
    the broker pauses and read everything again from its (uncommitted) start.
    """

    def __init__(
        self, bootstrap: str, topic: str, isolation: str = "read_uncommitted", client: dict | None = None
    ) -> None:
        super().__init__(name=f"watch-{topic}", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"watcher-{topic}-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                **(client or {}),
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assert partitions, f"topic {topic} has no partitions yet"
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.topic = topic
        self.counts: Counter[str] = Counter()
        self.first_seen: dict[str, float] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                for message in self.consumer.consume(5000, 0.2):
                    if message.error():
                        continue
                    event_id = orjson.loads(message.value())["event_id"]
                    if event_id not in self.counts:
                        self.first_seen[event_id] = time.monotonic()
                    self.counts[event_id] += 1
        finally:
            self.consumer.close()

    def wait_for(
        self, event_ids: Iterable[str], timeout_s: float, context: Callable[[], str] | None = None
    ) -> None:
        """Return once every one of ``event_ids`` was seen; past ``timeout_s`` fail naming how many were."""
        wanted = set(event_ids)
        wait_for(
            lambda: len(wanted - self.first_seen.keys()),
            lambda missing: missing == 0,
            timeout_s=timeout_s,
            what=f"{len(wanted):,} event ids on {self.topic} (the value: how many are still missing)",
            context=context,
        )

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)

    def __enter__(self) -> TopicWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PacedProducer(threading.Thread):
    """Produces (key, value) pairs at ``rate`` per second on a thread; ``sent`` counts those handed over.

    ``payloads`` may be a generator that decides while it runs when to stop."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        payloads: Iterable[tuple[bytes, bytes]],
        rate: float,
        client: dict | None = None,
    ) -> None:
        super().__init__(name=f"produce-{topic}", daemon=True)
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 300_000, **(client or {})}
        )
        self.topic, self.payloads, self.rate = topic, payloads, rate
        self.sent = 0
        self.undelivered: int | None = None

    def run(self) -> None:
        started = time.monotonic()
        for key, value in self.payloads:
            while True:
                try:
                    self.producer.produce(self.topic, value, key)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.sent += 1
            if self.sent % 100 == 0:
                self.producer.poll(0)
                ahead = self.sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        self.undelivered = self.producer.flush(120)


class ProduceStallProxy:
    """A TCP proxy in front of a broker that can hold back Produce requests (Kafka API key 0).

    Everything else (fetches, heartbeats, commits, metadata) passes, so a client's
    output path stalls while its input path keeps working. Start the broker with
    ``advertised_port`` = this proxy's port so that clients stay behind it.
    """

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.held = 0  # Produce requests waiting now
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._open.set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="produce-stall-proxy", daemon=True)

    def start(self) -> ProduceStallProxy:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._open.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def stop(self) -> None:
        """Close the listener, end every connection, then the loop: nothing left pending."""
        self.release()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def requests() -> None:
            while True:
                size = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(size, "big"))
                if int.from_bytes(body[:2], "big") == 0 and not self._open.is_set():
                    self.held += 1
                    await self._open.wait()
                    self.held -= 1
                up_writer.write(size + body)
                await up_writer.drain()

        async def responses() -> None:
            while data := await up_reader.read(1 << 16):
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.exception()  # a peer that closed: retrieved, not reported
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                w.close()
