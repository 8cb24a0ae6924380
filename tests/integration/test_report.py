"""The model report on demand from labelled events on the topics, rendered by headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import events_from_frame, loan_frame
from scoring.report import SECTIONS
from streams.cli.demo.run import train_demo_model
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration

OUTPUT = Path(__file__).resolve().parents[1] / "output"  # kept with the test output, not committed


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return train_demo_model(tmp_path_factory.mktemp("demo") / "bundle")


def test_report_on_the_demo_model_from_the_topics_renders_in_chromium(
    bootstrap, topic_env, demo_model: ModelBundle, tmp_path, workers
):
    bundle_dir = demo_model.path
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed: `make test` installs it"
    n = 6000
    labelled = loan_frame(n, seed=61)
    events = list(events_from_frame(labelled.drop(columns=["approved"]), prefix="rp"))
    worker = WorkerProcess({**topic_env, "STREAMSCORE_ROLES": "score"}, bundle_dir, tmp_path / "w.log")
    workers.append(worker)
    worker.wait_ready()
    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), orjson.dumps(e)) for e in events],
    )
    labels = [
        (
            e["event_id"].encode(),
            orjson.dumps({"event_id": e["event_id"], "label": float(y), "label_time": 0}),
        )
        for e, y in zip(events, labelled["approved"], strict=True)
    ]
    produce(bootstrap, topic_env["STREAMSCORE_TOPIC_LABELS"], labels)
    assert len(read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], n)) == n

    page = tmp_path / "report.html"
    cli = [
        *(sys.executable, "-m", "streams", "report", "--model", str(bundle_dir)),
        *("--from-topics", "5000", "--segment", "elevel", "--sensitive", "car", "--out", str(page)),
    ]
    done = subprocess.run(
        cli, capture_output=True, text=True, timeout=180, check=False, env={**os.environ, **topic_env}
    )
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert "5,000 labelled rows" in html
    for section in SECTIONS:
        assert f'<section id="{section}">' in html

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "model-report.png"
    shot.unlink(missing_ok=True)
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1200,4000", f"--screenshot={shot}", page.as_uri()]  # fmt: skip
    subprocess.run(browser, capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 50_000, "chromium rendered no screenshot"
    dom = subprocess.run(
        [*browser[:5], "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert all(f'id="{s}"' in dom.stdout for s in SECTIONS), "a section is missing from the rendered page"
    print(f"screenshot of the report: {shot}")
