"""A worker with every role on a labelled stream whose truth is known: what it alerts, and its series.

The stream: events of 20 standard-normal features drawn as the model's training data, on
4 partitions (event ``i`` on partition ``i % 4``, so each partition's drift windows of
2,500 events hold events ``10,000 k`` to ``10,000 k + 9,999``: the merged windows start where
the stream's do), and a label per event made from the model's own decision: wrong with
probability ``error`` (the error stream is exactly as stationary as asked). A shifted
run raises that probability by ``error_rise`` and moves feature ``f05`` by ``shift_sd`` from
event ``change`` on. The events are produced as fast as the producer goes, and the labels
once the events are scored; the worker reads the backlog.

While it runs, ``/metrics`` is scraped every second: ``promtool_series`` turns the samples
into the input series of a ``promtool test rules`` file, so the shipped rules are evaluated
on the series the run produced.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from schemas import headers as h
from schemas.drift import DriftAlert, DriftReport
from schemas.estimation import EstimatedKpiAlert
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from schemas.lifecycle import RetrainRequest
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import numeric_frame
from scoring.offline.training import train_bundle
from tests.deploy_files import referenced_metrics
from tests.integration.kafka_tools import Record, WorkerProcess, read_topic

PARTITIONS, WINDOW = 4, 10_000
BASE_MS = 1_700_000_000_000
SHIFTED_FEATURE = "f05"


@dataclass(frozen=True)
class Scenario:
    events: int
    error: float = 0.10
    error_rise: float = 0.0
    shift_sd: float = 0.0
    change: int | None = None  # the event the rise and the shift start at
    seed: int = 77

    def settings(self) -> dict[str, str]:
        return {
            "STREAMSCORE_PARTITIONS": str(PARTITIONS),
            "STREAMSCORE_DRIFT_WINDOWS": "partitions",
            "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
            # a snapshot and checkpoint every 5 s, not every 1,000 labels: 15 s less per run
            "STREAMSCORE_METRICS_INTERVAL_S": "5",
            "STREAMSCORE_METRICS_EVERY_LABELS": "50000",
            "STREAMSCORE_LAG_INTERVAL_S": "1",
            # labels are preloaded: most wait for their event in the join, none may be pushed out
            "STREAMSCORE_LABEL_JOIN_MAX": str(2 * self.events),
        }


def alert_model(folder: Path) -> ModelBundle:
    """A model of 20 features (it uses f00 to f03), trained on the distribution the stream is drawn from."""
    frame = numeric_frame(20_000, n_features=20, seed=11).round(4)
    return train_bundle(frame, "y", folder / "alerts", name="alerts", num_trees=40)


def stream(bundle: ModelBundle, scenario: Scenario) -> tuple[list[bytes], list[bytes]]:
    """The events and labels of ``scenario`` as JSON payloads, in order."""
    frame = numeric_frame(scenario.events, n_features=20, seed=scenario.seed).drop(columns=["y"]).round(4)
    rng = np.random.default_rng(scenario.seed + 1)
    error = np.full(scenario.events, scenario.error)
    if scenario.change is not None:
        error[scenario.change :] += scenario.error_rise
        frame.loc[scenario.change :, SHIFTED_FEATURE] += scenario.shift_sd  # the features' sd is 1
    decision = bundle.predict(bundle.spec.encode_frame(frame)) >= bundle.metadata.threshold
    labels = (decision ^ (rng.random(scenario.events) < error)).astype(float).tolist()
    names = list(frame.columns)
    events, label_payloads = [], []
    for i, values in enumerate(frame.itertuples(index=False, name=None)):
        event_id = f"a-{i}"
        body = {
            "event_id": event_id,
            "entity_id": f"cust-{i % 1000}",
            "event_time": BASE_MS + i,
            "features": dict(zip(names, values, strict=True)),
        }
        events.append(orjson.dumps(body))
        label_payloads.append(
            orjson.dumps({"event_id": event_id, "label": labels[i], "label_time": BASE_MS + i + 2_000})
        )
    return events, label_payloads


def produce_all(bootstrap: str, topic: str, payloads: list[bytes]) -> float:
    """Payload ``i`` on partition ``i % 4`` of ``topic`` (key ``a-i``), as fast as it goes; seconds."""
    started = time.monotonic()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
        }
    )
    for i, value in enumerate(payloads):
        while True:
            try:
                producer.produce(topic, value, f"a-{i}".encode(), partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0, f"not every record was delivered to {topic}"
    return time.monotonic() - started


class Scraper(threading.Thread):
    """``/metrics`` of a worker every ``interval_s``: (seconds since start, exposition text)."""

    def __init__(self, worker: WorkerProcess, interval_s: float = 1.0) -> None:
        super().__init__(name="scraper", daemon=True)
        self.worker = worker
        self.interval_s = interval_s
        self.samples: list[tuple[float, str | None]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self._halt.is_set():
            at = len(self.samples) * self.interval_s
            try:
                text = self.worker.get_text("/metrics")
            except OSError:
                text = None  # a failed scrape: up is 0
            self.samples.append((at, text))
            self._halt.wait(max(0.0, started + at + self.interval_s - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def promtool_series(samples: list[tuple[float, str | None]]) -> list[dict]:
    """The samples as ``input_series`` of a promtool test: a value per scrape, ``_`` where a series is absent.

    Only the series the rules and the dashboard read (``referenced_metrics``) and ``up``, with
    the labels a scrape adds (``job``, ``instance``).
    """
    wanted = referenced_metrics()
    series: dict[str, list[str]] = {}
    scrape_labels = 'instance="worker", job="streamscore"'
    up = f"up{{{scrape_labels}}}"
    series[up] = []
    for index, (_, text) in enumerate(samples):
        series[up].append("1" if text is not None else "0")
        for family in text_string_to_metric_families(text or ""):
            for sample in family.samples:
                if sample.name not in wanted and not any(sample.name.startswith(w) for w in wanted):
                    continue
                labels = ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
                name = f"{sample.name}{{{', '.join(filter(None, [labels, scrape_labels]))}}}"
                values = series.setdefault(name, ["_"] * index)
                values.extend(["_"] * (index - len(values)))
                values.append(_value(sample.value))
    for values in series.values():
        values.extend(["_"] * (len(samples) - len(values)))
    return [{"series": name, "values": " ".join(values)} for name, values in series.items()]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class RunResult:
    """What a run sent, by kind, and what it took."""

    reports: list[DriftReport] = field(default_factory=list)
    drift_alerts: list[DriftAlert] = field(default_factory=list)
    concept_alerts: list[ConceptDriftAlert] = field(default_factory=list)
    estimate_alerts: list[EstimatedKpiAlert] = field(default_factory=list)
    retrain: list[RetrainRequest] = field(default_factory=list)
    samples: list[tuple[float, str | None]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    preload_s: float = 0.0
    run_s: float = 0.0


def wait_for(
    what: str,
    holds: Callable[[], bool],
    timeout_s: float,
    worker: WorkerProcess,
    state: Callable[[], object] = lambda: None,
) -> None:
    """Poll ``holds`` until it is true; a dead worker or the deadline fails with ``state()`` and the log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"the worker exited waiting for {what}:\n{worker.log_tail()}")
        try:
            if holds():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{what} not within {timeout_s} s: {state()}\n{worker.log_tail()}")


def run(
    bootstrap: str,
    env: dict[str, str],
    bundle: ModelBundle,
    scenario: Scenario,
    log: Path,
    timeout_s: float = 600,
) -> RunResult:
    """Start a worker with every role, preload the scenario, wait until every label is joined and every
    window merged and the final snapshot is out; return what it sent on ``drift`` and ``retrain-requests``."""
    events, labels = stream(bundle, scenario)
    worker = WorkerProcess({**env, **scenario.settings()}, bundle.path, log)
    result = RunResult()
    try:
        worker.wait_ready(timeout_s=120)
        scraper = Scraper(worker)
        scraper.start()
        started = time.monotonic()
        # the events first, the labels once the events are scored: labels come after their events, as in
        # production (labels read long before their event all wait in the join, and every checkpoint
        # rewrites them; waiting events are checkpointed in segments, each once)
        result.preload_s = produce_all(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], events)
        wait_for(
            "the events scored", lambda: worker.get("/stats")["scored"] >= scenario.events, timeout_s, worker
        )
        result.preload_s += produce_all(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], labels)
        windows = scenario.events // WINDOW

        def done() -> bool:
            stats = result.stats = worker.get("/stats")
            return stats["learn"]["matched"] >= scenario.events and stats["drift"]["merged"] >= windows

        wait_for(
            f"{scenario.events:,} labels joined and {windows} windows merged",
            done,
            timeout_s,
            worker,
            lambda: {k: result.stats.get(k) for k in ("learn", "drift", "scored")},
        )
        _final_snapshot(bootstrap, env, scenario.events)  # its report also sent what the last labels raised
        result.run_s = time.monotonic() - started
        time.sleep(2)  # two more scrapes: the series after the last window and snapshot
        scraper.stop()
        result.samples = scraper.samples
    finally:
        worker.terminate()  # a stop flushes what the roles still hold
    _read_outputs(bootstrap, env, result)
    return result


def _final_snapshot(bootstrap: str, env: dict[str, str], events: int) -> MetricsSnapshot:
    def complete(record) -> bool:
        return MetricsSnapshot.model_validate_json(record.value).labels.matched >= events

    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_METRICS"], 1, 120, counted=complete)
    done = [
        s for r in records if (s := MetricsSnapshot.model_validate_json(r.value)).labels.matched >= events
    ]
    assert done, f"no snapshot on metrics counted all {events:,} labels"
    return done[0]


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Record]:
    """Every record of ``topic``, read from the start of each partition to its end (partitions assigned, no
    group to join: a topic nothing was written to is read as empty at once)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"alerts-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records, ended, deadline = [], set(), time.monotonic() + timeout_s
    try:
        while len(ended) < len(partitions) and time.monotonic() < deadline:
            for message in consumer.consume(5000, 0.5):
                if message.error() is None:
                    headers = dict(message.headers() or [])
                    records.append(
                        Record(message.key(), message.value(), headers, message.partition(), message.offset())
                    )
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(message.partition())
    finally:
        consumer.close()
    assert len(ended) == len(partitions), f"{topic} not read to its end within {timeout_s} s"
    return records


def _read_outputs(bootstrap: str, env: dict[str, str], result: RunResult) -> None:
    for record in read_to_end(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"]):
        kind = record.headers.get(h.CE_TYPE, b"").decode()
        if kind == h.DRIFT_REPORT_CE_TYPE:
            result.reports.append(DriftReport.model_validate_json(record.value))
        elif kind == h.DRIFT_ALERT_CE_TYPE:
            result.drift_alerts.append(DriftAlert.model_validate_json(record.value))
        elif kind == h.CONCEPT_ALERT_CE_TYPE:
            result.concept_alerts.append(ConceptDriftAlert.model_validate_json(record.value))
        elif kind == h.ESTIMATE_ALERT_CE_TYPE:
            result.estimate_alerts.append(EstimatedKpiAlert.model_validate_json(record.value))
    retrain = read_to_end(bootstrap, env["STREAMSCORE_TOPIC_RETRAIN"])
    result.retrain = [RetrainRequest.model_validate_json(r.value) for r in retrain]
    result.reports.sort(key=lambda r: r.window)


def live_count(events: int) -> str:
    """``bench/alerts.py --live``: one stationary run on the embedded broker; the alerts, as text."""
    import tempfile
    import uuid

    from streams.kafka.embedded.broker import start_broker
    from tests.integration.conftest import topics_for

    broker = start_broker()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            bundle = alert_model(folder)
            env = topics_for(broker.bootstrap, uuid.uuid4().hex[:10], str(folder / "data"))
            result = run(broker.bootstrap, env, bundle, Scenario(events), folder / "worker.log")
    finally:
        broker.stop()
    return (
        f"{events:,} stationary labelled events (error rate 10%), produced in {result.preload_s:.0f} s, "
        f"read in {result.run_s:.0f} s: {len(result.reports)} windows; concept-drift alerts "
        f"{len(result.concept_alerts)}, drift alerts {len(result.drift_alerts)}, estimated-KPI alerts "
        f"{len(result.estimate_alerts)}, retrain requests {len(result.retrain)}"
    )
