"""The run of ``streamscore demo``: the whole service on one machine, end to end, then a clean stop.

Starts the embedded broker, trains a demo model on river's Agrawal loan data made
in the run, starts a worker process, streams events with some invalid ones mixed
in, shows live counts, prints a few predictions and dead letters, and stops
everything it started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from scoring.bundle import ModelBundle
from scoring.synthetic import EVENT_TIME_0, agrawal_frame, events_from_frame, interleave_invalid
from scoring.training import train_bundle
from streams.kafka.broker import free_port, start_broker
from streams.kafka.producer import produce_payloads
from streams.kafka.readers import read_until_quiet
from streams.settings import Settings

DRIFT_WINDOW = 5000
OUT = Path("demo-output")


def run_demo(events: int = 20000, invalid: int = 200, rate: float = 8000.0) -> int:
    console = Console()
    OUT.mkdir(exist_ok=True)
    console.rule("[bold]streamscore demo")
    broker = start_broker(log_path=OUT / "broker.log")
    worker: subprocess.Popen | None = None
    try:
        console.print(f"broker (Tansu, in memory) at [cyan]{broker.bootstrap}[/]")
        bundle_dir = OUT / "bundle"
        shutil.rmtree(bundle_dir, ignore_errors=True)
        bundle = train_demo_model(bundle_dir)
        metrics = ", ".join(f"{k} {bundle.metrics[k]:.4f}" for k in ("auc", "accuracy", "log_loss"))
        console.print(f"trained [bold]{bundle.name}[/] v{bundle.version} on 16,000 rows; holdout {metrics}")

        run = uuid.uuid4().hex[:6]
        settings = Settings(
            kafka_bootstrap=broker.bootstrap, app_id=f"demo-{run}", group_id=f"demo-{run}-scorer"
        )
        port = free_port()
        env = {
            **os.environ,
            "STREAMSCORE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STREAMSCORE_APP_ID": settings.app_id,
            "STREAMSCORE_GROUP_ID": settings.group_id,
            "STREAMSCORE_WEB_PORT": str(port),
            "STREAMSCORE_DATA_DIR": str(OUT / "data"),
            "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(DRIFT_WINDOW),
            "STREAMSCORE_METRICS_INTERVAL_S": "1",
            "STREAMSCORE_SEGMENT_FEATURES": "elevel",
        }
        log = open(OUT / "worker.log", "wb")  # noqa: SIM115 - closed with the process below
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--model", str(bundle_dir), "-l", "warn"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_ready(port, worker)
        console.print(f"worker ready (batch score path); live dashboard on http://127.0.0.1:{port}/dashboard")

        labelled = agrawal_frame(events, seed=99, classification_function=2)
        stream = labelled.drop(columns=["approved"])
        # the second half of the applicants earn 30% more than anyone the model was trained on
        stream.loc[events // 2 :, "salary"] *= 1.3
        mixed = interleave_invalid(list(events_from_frame(stream, prefix="demo")), invalid, "salary", seed=3)
        payloads = [(str(e["entity_id"]).encode(), p) for _, e, p in mixed]
        console.print(f"producing {events:,} loan applications (+{invalid} invalid) at {rate:,.0f}/s ...")
        producer = threading.Thread(target=produce_payloads, args=(settings, payloads, rate), daemon=True)
        producer.start()
        stats = _show_live(console, port, len(payloads))
        producer.join(30)
        # ground truth arrives later: a label for every application, after all of them
        labels = [
            (
                f"demo-{i}".encode(),
                orjson.dumps({"event_id": f"demo-{i}", "label": float(y), "label_time": EVENT_TIME_0 + i}),
            )
            for i, y in enumerate(labelled["approved"])
        ]
        produce_payloads(settings, labels, topic=settings.topic_labels)

        _show_predictions(console, settings)
        _show_drift(console, settings, windows=events // DRIFT_WINDOW)
        _show_kpis(console, settings, labelled=events)
        ok = stats["scored"] == events and stats["dead_letters_total"] == invalid
        ok = _show_lifecycle(console, settings, port) and ok
        verdict = "[green]all events accounted for[/]" if ok else "[red]counts do not add up[/]"
        console.print(
            f"{stats['scored']:,} predictions, {stats['dead_letters_total']} dead letters "
            f"{stats['dead_letters']}: {verdict}"
        )
        return 0 if ok else 1
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        broker.stop()
        console.print("stopped the worker and the broker")


def _show_lifecycle(console: Console, settings: Settings, port: int) -> bool:
    """Retrain on the labelled events of the topics, deploy through the gate, score, roll back."""
    from streams.services.model_commands import retrain_from_topics, run_command

    settings = settings.model_copy(update={"registry": str(OUT / "registry")})
    shutil.rmtree(OUT / "registry", ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="demo-retrain-") as scratch:
        ref, metrics = retrain_from_topics(settings, None, 20_000, 50, None, Path(scratch))
    console.print(
        f"retrained [bold]{ref.name}[/] v{ref.version} on the 20,000 labelled events read back from the "
        f"topics (holdout accuracy {metrics['accuracy']:.4f}); deploying it through the gate ..."
    )
    table = Table(title="model lifecycle: deploy, score, roll back")
    for column in ("step", "serving", "events scored since", "predictions naming it"):
        table.add_column(column)
    ok = True
    for step, action, version in (("deploy", "deploy", ref.version), ("rollback", "rollback", "1")):
        run_command(settings, action, ref.name, version if action == "deploy" else None, reason="demo")
        deadline = time.monotonic() + 30
        while _get(port, "/stats")["model_version"] != version and time.monotonic() < deadline:
            time.sleep(0.1)
        before = _get(port, "/stats")["scored"]
        prefix = f"demo-{step}"
        frame = agrawal_frame(1000, seed=100 + len(step), classification_function=2)
        batch = list(events_from_frame(frame.drop(columns=["approved"]), prefix=prefix))
        produce_payloads(settings, [(str(e["entity_id"]).encode(), orjson.dumps(e)) for e in batch])
        predictions = _read(settings, settings.topic_predictions, _has_all(prefix, len(batch)))
        named = [p["model_version"] for p in predictions if p["event_id"].startswith(prefix)]
        deadline = time.monotonic() + 10  # the counters move once the batch's offsets are committed
        scored = _get(port, "/stats")["scored"] - before
        while scored < len(batch) and time.monotonic() < deadline:
            time.sleep(0.1)
            scored = _get(port, "/stats")["scored"] - before
        ok = ok and named.count(version) == len(batch) == scored
        table.add_row(step, f"v{version}", f"{scored:,}", f"{named.count(version):,} of {len(batch):,}")
    console.print(table)
    return ok


def _has_all(prefix: str, count: int):
    return lambda got: sum(p["event_id"].startswith(prefix) for p in got) >= count


def train_demo_model(out_dir: Path) -> ModelBundle:
    """The demo's loan-approval model: river's Agrawal loans, classification function 2."""
    frame = agrawal_frame(20000, seed=1, classification_function=2)
    return train_bundle(frame, "approved", out_dir, name="loan-approval", num_trees=100)


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        return json.loads(response.read())


def _wait_ready(port: int, worker: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited; see {OUT / 'worker.log'}")
        try:
            if _get(port, "/ready")["ready"]:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready; see {OUT / 'worker.log'}")


def _show_live(console: Console, port: int, total: int, timeout_s: float = 120) -> dict:
    """Print counts once a second until every produced event is accounted for."""
    deadline = time.monotonic() + timeout_s
    last, last_t = 0, time.monotonic()
    while True:
        time.sleep(1.0)
        stats = _get(port, "/stats")
        now = time.monotonic()
        rate = (stats["consumed"] - last) / (now - last_t)
        last, last_t = stats["consumed"], now
        console.print(
            f"  events in {stats['consumed']:>7,}   predictions out {stats['scored']:>7,}   "
            f"dead letters {stats['dead_letters_total']:>4}   rate {rate:>8,.0f}/s"
        )
        if stats["consumed"] >= total or now > deadline:
            return stats


def _show_predictions(console: Console, settings: Settings) -> None:

    def first(topic: str, n: int) -> list:
        got = []
        for message in read_until_quiet(settings, [topic], idle_s=20, purpose="demo-peek", deadline_s=20):
            got.append(message)
            if len(got) >= n:
                break
        return got

    table = Table(title=f"a few predictions on '{settings.topic_predictions}'")
    for column in ("event_id", "entity_id", "score", "label", "model", "latency ms"):
        table.add_column(column)
    for message in first(settings.topic_predictions, 5):
        p = json.loads(message.value())
        table.add_row(
            p["event_id"],
            p["entity_id"],
            f"{p['score']:.4f}",
            str(p["label"]),
            f"{p['model_name']} v{p['model_version']}",
            str(p["latency_ms"]),
        )
    console.print(table)
    table = Table(title=f"a few dead letters on '{settings.topic_dlq}'")
    for column in ("stage", "reason", "original bytes"):
        table.add_column(column, overflow="fold")
    for message in first(settings.topic_dlq, 5):
        headers = dict(message.headers() or [])
        table.add_row(
            headers["streamscore.errors.stage"].decode(),
            headers["streamscore.errors.exception.message"].decode()[:70],
            repr((message.value() or b"")[:50]),
        )
    console.print(table)


def _show_drift(console: Console, settings: Settings, windows: int) -> None:
    """The drift reports of the run: salary shifts in the second half, nothing else does."""

    def reports_in(got: list[dict]) -> list[dict]:
        return [r for r in got if r["type"] == "drift_report"]

    reports = reports_in(_read(settings, settings.topic_drift, lambda got: len(reports_in(got)) >= windows))
    table = Table(title=f"drift reports on '{settings.topic_drift}' (windows of {DRIFT_WINDOW:,} events)")
    for column in (
        "window",
        "events",
        "drifted features",
        "largest feature PSI",
        "score PSI",
        "ADWIN/PH changes",
    ):
        table.add_column(column)
    for r in reports[:windows]:
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


def _read(settings: Settings, topic: str, enough, timeout_s: float = 30) -> list[dict]:
    """JSON messages of ``topic`` from the start, until ``enough(messages)`` or the timeout."""
    got: list[dict] = []
    for message in read_until_quiet(settings, [topic], timeout_s, purpose="demo-peek", deadline_s=timeout_s):
        got.append(json.loads(message.value()))
        if enough(got):
            break
    return got


def _show_kpis(console: Console, settings: Settings, labelled: int) -> None:
    """The last KPI snapshot: LightGBM (champion) against the River challenger."""
    snapshots = [
        s
        for s in _read(
            settings,
            settings.topic_metrics,
            lambda got: any(g["labels"]["matched"] >= labelled for g in got),
        )
        if s["labels"]["matched"] >= labelled
    ]
    if not snapshots:
        console.print("[red]no KPI snapshot covering every label[/]")
        return
    last = snapshots[-1]
    table = Table(title=f"KPIs on '{settings.topic_metrics}' after {last['labels']['matched']:,} labels")
    for column in ("model", "segment", "labelled", "accuracy (last 1,000)", "accuracy (all)", "AUC (all)"):
        table.add_column(column)
    for row in last["kpis"]:
        if row["segment_feature"] != "all" and not row["flagged"]:
            continue
        segment = (
            "all"
            if row["segment_feature"] == "all"
            else f"{row['segment_feature']}={row['segment_value']} [red]flagged[/]"
        )
        table.add_row(
            row["model"],
            segment,
            f"{row['count']:,}",
            f"{row['rolling']['accuracy']:.3f}",
            f"{row['cumulative']['accuracy']:.3f}",
            f"{row['cumulative']['auc']:.3f}",
        )
    console.print(table)
