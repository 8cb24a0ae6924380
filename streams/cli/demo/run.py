"""The run of ``streamscore demo``: the whole service on one machine, end to end, then a clean stop.

Starts the embedded broker, trains a demo model on loan applications that behave like
real data (``scoring.offline.synthetic.loan_frame``), starts a worker process, streams events with
some invalid ones mixed in, shows live counts, predictions, dead letters, drift and KPIs
before and after a shift, retrains, deploys and rolls back, says what it left in
``demo-output/`` and how to run the same pieces by hand, and stops everything it started
(on a terminal, after Ctrl-C: the dashboard stays up until then).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
from rich.console import Console

import streams.cli.demo.lifecycle as demo_lifecycle
import streams.cli.demo.show as demo_show
from scoring.errors import StreamscoreError
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import EVENT_TIME_0, events_from_frame, interleave_invalid, loan_frame
from scoring.offline.training import train_bundle
from streams.cli.demo.show import worker_get
from streams.kafka.embedded.broker import Broker, free_port, start_broker
from streams.kafka.producer import produce_payloads
from streams.settings import Settings

DRIFT_WINDOW = 5000
OUT = Path("demo-output")
PIPE_WIDTH = 130  # rich wraps at 80 columns when it is not on a terminal; tables need more
SHIFT = 1.3  # the second half's recorded salaries, against the real ones
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def make_console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


def run_demo(events: int = 20000, invalid: int = 200, rate: float = 8000.0, keep: bool | None = None) -> int:
    console = make_console()
    keep = console.is_terminal if keep is None else keep
    OUT.mkdir(exist_ok=True)
    console.rule("[bold]streamscore demo")
    broker = start_broker(log_path=_fresh(OUT / "broker.log"))
    worker: subprocess.Popen | None = None
    try:
        console.print(f"broker (Tansu, in memory) at [cyan]{broker.bootstrap}[/]")
        bundle = train_demo_model(_fresh(OUT / "bundle"))
        metrics = ", ".join(f"{k} {bundle.metrics[k]:.3f}" for k in ("auc", "accuracy", "log_loss"))
        console.print(f"trained [bold]{bundle.name}[/] v{bundle.version} on 16,000 rows; holdout {metrics}")
        registry = (OUT / "registry").resolve()  # the worker loads only from its registry and sources
        settings, port, worker = _start_worker(broker, bundle, registry)
        console.print(f"worker ready (batch score path); live dashboard on http://127.0.0.1:{port}/dashboard")
        ok = _stream(console, settings, port, events, invalid, rate)
        ok = demo_lifecycle.show_lifecycle(console, settings, port, registry, labelled=events) and ok
        _say_what_is_where(console, port, keep)
        if keep:
            _wait_for_ctrl_c()
        return 0 if ok else 1
    finally:
        _stop(worker, broker)
        console.print("stopped the worker and the broker")


def train_demo_model(out_dir: Path) -> ModelBundle:
    """The demo's loan-approval model, on 20,000 applications (4,000 held out)."""
    return train_bundle(loan_frame(20000, seed=1), "approved", out_dir, name="loan-approval", num_trees=100)


def _fresh(path: Path) -> Path:
    """``path`` with what an earlier demo left there removed."""
    if path.is_dir():
        shutil.rmtree(path)
    path.unlink(missing_ok=True)
    return path


def _start_worker(
    broker: Broker, bundle: ModelBundle, registry: Path
) -> tuple[Settings, int, subprocess.Popen]:
    run = uuid.uuid4().hex[:6]
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        app_id=f"demo-{run}",
        group_id=f"demo-{run}-scorer",
        registry=str(registry),
    )
    port = free_port()
    env = {
        **os.environ,
        "STREAMSCORE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "STREAMSCORE_APP_ID": settings.app_id,
        "STREAMSCORE_GROUP_ID": settings.group_id,
        "STREAMSCORE_WEB_PORT": str(port),
        "STREAMSCORE_DATA_DIR": str(_fresh(OUT / "data")),
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(DRIFT_WINDOW),
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        "STREAMSCORE_SEGMENT_FEATURES": "coapplicant",
        "STREAMSCORE_REGISTRY": str(registry),
    }
    log = open(_fresh(OUT / "worker.log"), "wb")  # noqa: SIM115 - the process holds it; closed on exit
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams", "worker", "--model", str(bundle.path), "-l", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    _wait_ready(port, worker)
    return settings, port, worker


def _stream(console: Console, settings: Settings, port: int, events: int, invalid: int, rate: float) -> bool:
    """Events (the second half with inflated salaries), then labels in two halves; True if all add up."""
    labelled = loan_frame(events, seed=99)
    stream = labelled.drop(columns=["approved"])
    # from the second half on, an upstream system records salaries 30% above the real ones
    # (gross for net): the model sees inflated salaries, approvals still follow the real ones
    half = events // 2
    stream["salary"] = [round(s * SHIFT) if i >= half else s for i, s in enumerate(stream["salary"])]
    mixed = interleave_invalid(list(events_from_frame(stream, prefix="demo")), invalid, "salary", seed=3)
    payloads = [(str(e["entity_id"]).encode(), p) for _, e, p in mixed]
    console.print(
        f"producing {events:,} loan applications (+{invalid} invalid) at {rate:,.0f}/s;\n"
        f"from event {half + 1:,} on, salaries are recorded {SHIFT - 1:.0%} too high ..."
    )
    producer = threading.Thread(target=produce_payloads, args=(settings, payloads, rate), daemon=True)
    producer.start()
    stats = _show_live(console, port, len(payloads))
    producer.join(30)
    demo_show.show_predictions(console, settings)
    demo_show.show_dead_letters(console, settings)
    demo_show.show_drift(console, settings, windows=events // DRIFT_WINDOW, window_events=DRIFT_WINDOW)
    # ground truth comes later: labels for the first half, then for the second
    labels = [_label(f"demo-{i}", y, EVENT_TIME_0 + i) for i, y in enumerate(labelled["approved"])]
    produce_payloads(settings, labels[:half], topic=settings.topic_labels)
    before = demo_show.kpi_snapshot(settings, half)
    produce_payloads(settings, labels[half:], topic=settings.topic_labels)
    after = demo_show.kpi_snapshot(settings, events)
    demo_show.show_kpis(
        console, [(f"after {half:,} labels, before the shift", before), (f"after all {events:,}", after)]
    )
    stages = ", ".join(f"{n} at {stage}" for stage, n in sorted(stats["dead_letters"].items()))
    ok = stats["scored"] == events and stats["dead_letters_total"] == invalid
    verdict = "[green]all events accounted for[/]" if ok else "[red]counts do not add up[/]"
    console.print(
        f"{stats['scored']:,} predictions, {stats['dead_letters_total']} dead letters ({stages}): {verdict}"
    )
    return ok


def _label(event_id: str, label: float, at_ms: int) -> tuple[bytes, bytes]:
    return event_id.encode(), orjson.dumps({"event_id": event_id, "label": float(label), "label_time": at_ms})


def _say_what_is_where(console: Console, port: int, keep: bool) -> None:
    console.print(
        "\n[bold]demo-output/[/] holds what the run made:\n"
        "  bundle/      model v1: LightGBM model, feature spec, training reference\n"
        "  registry/    v2, retrained from the topics (deploy and rollback used it)\n"
        "  data/        the worker's state (checkpoint signing key, Faust's files)\n"
        "  worker.log   the worker's log; its first lines: model, broker, topics, web\n"
        "  broker.log   the broker's log\n"
        "\n[bold]The same pieces by hand[/] (README, 'Run it yourself'), one terminal each:\n"
        "  streamscore broker --port 9092\n"
        "  streamscore train examples/loans.csv --target approved --out models/loans\n"
        "  streamscore worker --model models/loans\n"
        "  streamscore produce examples/loans.csv --drop approved\n"
        "and watch http://127.0.0.1:6066/dashboard"
    )
    if keep:
        console.print(
            f"\nthe dashboard stays up at [cyan]http://127.0.0.1:{port}/dashboard[/]\n"
            "Ctrl-C stops the worker and the broker (--no-keep: stop at once)"
        )


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _stop(worker: subprocess.Popen | None, broker: Broker) -> None:
    """The worker first (it closes its clients), then the broker, then the broker's log made plain."""
    if worker is not None:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
    broker.stop()
    clean_broker_log(OUT / "broker.log")


def clean_broker_log(path: Path) -> None:
    """Tansu's log without terminal codes, and without the ERROR it logs for a client that hangs up.

    Tansu colours its log even into a file, and logs ``Broken pipe`` as an ERROR whenever a
    client closes its connection before a response is written (a reader done with a topic,
    a worker stopping): the normal end of a connection, not a broker fault.
    """
    if not path.exists():
        return
    lines = _ANSI.sub("", path.read_text(errors="replace")).splitlines()
    path.write_text("".join(f"{line}\n" for line in lines if "kind: BrokenPipe" not in line))


def _wait_ready(port: int, worker: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise StreamscoreError(f"the demo's worker exited; its log: {OUT / 'worker.log'}")
        try:
            if worker_get(port, "/ready")["ready"]:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise StreamscoreError(
        f"the demo's worker was not ready in {timeout_s:.0f} s; its log: {OUT / 'worker.log'}"
    )


def _show_live(console: Console, port: int, total: int, timeout_s: float = 120) -> dict:
    """Print counts once a second until every produced event is accounted for."""
    deadline = time.monotonic() + timeout_s
    last, last_t = 0, time.monotonic()
    while True:
        time.sleep(1.0)
        stats = worker_get(port, "/stats")
        now = time.monotonic()
        rate = (stats["consumed"] - last) / (now - last_t)
        last, last_t = stats["consumed"], now
        console.print(
            f"  events in {stats['consumed']:>7,}   predictions out {stats['scored']:>7,}   "
            f"dead letters {stats['dead_letters_total']:>4}   rate {rate:>8,.0f}/s"
        )
        if stats["consumed"] >= total or now > deadline:
            return stats
