"""The demo's model lifecycle: retrain on the labelled events of the topics, deploy, roll back."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from scoring.offline.synthetic import event_payloads_of, loan_frame
from streams.cli.demo.show import ends, read_json, worker_get
from streams.kafka.producer import produce_payloads
from streams.settings import Settings

BATCH = 1000  # events scored after each step


def show_lifecycle(console: Console, settings: Settings, port: int, registry: Path, labelled: int) -> bool:
    """Retrain v2, deploy it, score a batch, roll back to v1, score a batch; True if every event says so."""
    from streams.services.control.commands import retrain_from_topics, run_command

    shutil.rmtree(registry, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="demo-retrain-") as scratch:
        ref, metrics = retrain_from_topics(settings, None, labelled, 50, None, Path(scratch))
    console.print(
        f"retrained [bold]{ref.name}[/] v{ref.version} on the {labelled:,} labelled events read back from "
        f"the topics (holdout AUC {metrics['auc']:.3f}, accuracy {metrics['accuracy']:.3f}); "
        "deploying it through the gate ..."
    )
    table = Table(title="model lifecycle: deploy, score, roll back")
    for column in ("step", "serving", "events scored since", "predictions naming it"):
        table.add_column(column)
    ok = True
    for step, version in (("deploy", ref.version), ("rollback", "1")):
        run_command(settings, step, ref.name, version if step == "deploy" else None, reason="demo")
        _wait(lambda v=version: worker_get(port, "/stats")["model_version"] == v, 30)
        before = worker_get(port, "/stats")["scored"]
        prefix = f"demo-{step}"
        frame = loan_frame(BATCH, seed=100 + len(step)).drop(columns=["approved"])
        start = ends(settings, settings.topic_predictions)
        produce_payloads(settings, list(event_payloads_of(frame, prefix)))
        predictions = read_json(
            settings, settings.topic_predictions, lambda got, p=prefix: _count(got, p) >= BATCH, start=start
        )
        named = [p["model_version"] for p in predictions if p["event_id"].startswith(prefix)]
        # the counters move once the batch's offsets are committed
        _wait(lambda b=before: worker_get(port, "/stats")["scored"] - b >= BATCH, 10)
        scored = worker_get(port, "/stats")["scored"] - before
        ok = ok and named.count(version) == BATCH == scored
        table.add_row(step, f"v{version}", f"{scored:,}", f"{named.count(version):,} of {BATCH:,}")
    console.print(table)
    return ok


def _count(predictions: list[dict], prefix: str) -> int:
    return sum(p["event_id"].startswith(prefix) for p in predictions)


def _wait(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
