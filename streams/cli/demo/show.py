"""The demo's tables: predictions, dead letters, drift reports and KPIs, read back from the topics.

Written for a person and for a pipe alike: plain values (no Python reprs), names in full.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

from confluent_kafka import TopicPartition
from rich.console import Console
from rich.table import Table

from streams.kafka.readers import partitions_of, read_until_quiet, reader
from streams.settings import Settings


def worker_get(port: int, path: str) -> dict:
    """A JSON page of the demo's worker (``/stats``, ``/ready``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        return json.loads(response.read())


def read_json(
    settings: Settings,
    topic: str,
    enough: Callable[[list[dict]], bool],
    timeout_s: float = 30,
    start: dict[tuple[str, int], int] | None = None,
) -> list:
    """JSON messages of ``topic`` from the start (or ``start``), until ``enough(messages)`` or the timeout."""
    got: list[dict] = []
    records = read_until_quiet(settings, [topic], timeout_s, start, purpose="demo-peek", deadline_s=timeout_s)
    for message in records:
        got.append(json.loads(message.value()))
        if enough(got):
            break
    return got


def ends(settings: Settings, topic: str) -> dict[tuple[str, int], int]:
    """Each partition's reported end: where to read from for what comes next.

    (The embedded broker can report an end up to a batch short: a few old records more.)
    """
    consumer = reader(settings, "demo-ends")
    try:
        return {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in partitions_of(consumer, topic, settings)
        }
    finally:
        consumer.close()


def show_predictions(console: Console, settings: Settings) -> None:
    table = Table(title=f"a few predictions on '{settings.topic_predictions}'")
    for column in ("event_id", "entity_id", "score", "label", "model", "latency ms"):
        table.add_column(column)
    for p in read_json(settings, settings.topic_predictions, lambda got: len(got) >= 5, timeout_s=20)[:5]:
        label = "" if p["label"] is None else ("approve" if p["label"] else "decline")
        table.add_row(
            p["event_id"],
            p["entity_id"],
            f"{p['score']:.4f}",
            label,
            f"{p['model_name']} v{p['model_version']}",
            str(p["latency_ms"]),
        )
    console.print(table)


def show_dead_letters(console: Console, settings: Settings) -> None:
    table = Table(
        title=f"a few dead letters on '{settings.topic_dlq}' (reason in the headers, bytes untouched)"
    )
    for column in ("stage", "reason", "original bytes (first 60)"):
        table.add_column(column, overflow="fold")
    for shown, message in enumerate(
        read_until_quiet(settings, [settings.topic_dlq], 20, purpose="demo-peek", deadline_s=20), start=1
    ):
        headers = dict(message.headers() or [])
        value = message.value()
        original = "(null)" if value is None else value[:60].decode("utf-8", "backslashreplace")
        table.add_row(
            headers["streamscore.errors.stage"].decode(),
            headers["streamscore.errors.exception.message"].decode()[:90],
            original,
        )
        if shown >= 5:
            break
    console.print(table)


def show_drift(console: Console, settings: Settings, windows: int, window_events: int) -> None:
    """The drift reports of the run: salary shifts in the second half, nothing else does."""

    def reports_in(got: list[dict]) -> list[dict]:
        return [r for r in got if r["type"] == "drift_report"]

    got = read_json(settings, settings.topic_drift, lambda got: len(reports_in(got)) >= windows)
    table = Table(title=f"drift reports on '{settings.topic_drift}' (windows of {window_events:,} events)")
    for column in (
        "window",
        "events",
        "drifted features",
        "largest feature PSI",
        "score PSI",
        "ADWIN/PH changes",
    ):
        table.add_column(column)
    for r in reports_in(got)[:windows]:
        top = max(r["features"], key=lambda f: f["psi"] or 0)
        drifted = ", ".join(
            f"{f['feature']} (PSI {f['psi']:.2f}, mean {f['mean_shift_sd']:+.1f} sd)"
            for f in r["features"]
            if f["drifted"]
        )
        table.add_row(
            str(r["window"]),
            f"{r['events']:,}",
            f"[red]{drifted}[/]" if drifted else "[green]none[/]",
            f"{top['feature']} {top['psi']:.3f}",
            f"{r['prediction']['psi']:.3f}",
            str(len(r["changes"])),
        )
    console.print(table)


def kpi_snapshot(settings: Settings, labelled: int) -> dict | None:
    """The first KPI snapshot on the metrics topic that covers ``labelled`` joined labels."""
    covered = [
        s
        for s in read_json(
            settings, settings.topic_metrics, lambda got: any(g["labels"]["matched"] >= labelled for g in got)
        )
        if s["labels"]["matched"] >= labelled
    ]
    return covered[0] if covered else None


def show_kpis(console: Console, snapshots: list[tuple[str, dict | None]]) -> None:
    """KPIs of the champion and the River challenger at each moment: before and after the shift."""
    table = Table(title="KPIs on 'metrics' from the labels (LightGBM champion, River challenger)")
    for column in ("when", "model", "labelled", "accuracy (last 1,000)", "accuracy (all)", "AUC (all)"):
        table.add_column(column)
    for when, snapshot in snapshots:
        if snapshot is None:
            table.add_row(when, "[red]no KPI snapshot came[/]", "", "", "", "")
            continue
        for row in snapshot["kpis"]:
            if row["segment_feature"] != "all":
                continue
            table.add_row(
                when,
                row["model"],
                f"{row['count']:,}",
                f"{row['rolling']['accuracy']:.3f}",
                f"{row['cumulative']['accuracy']:.3f}",
                f"{row['cumulative']['auc']:.3f}",
            )
    console.print(table)
