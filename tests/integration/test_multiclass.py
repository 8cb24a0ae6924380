"""Multiclass models served by running workers (issue 28, phase A), on the embedded broker.

A 3-class model with string class names is trained by ``streamscore train --task multiclass`` and
served by a worker with every role: 2,000 events through ``features``; every published prediction
matches the schema, its probabilities equal ``Booster.predict`` (1e-12) and its label is the most
probable class; score-file and /v2 give the same. String labels for those events are joined by the
learn role (its KPIs count them), the drift role reports the windows: nothing is dead-lettered,
nothing crashes. The same model saved with ``save_model`` and brought back with ``model import`` is
deployed and serves the same probabilities. A team's ``multiclassova`` model on the same inputs, its
classes in the team's order, is refused by the gate (other classes than the live model's, at the
command line and in a worker) and served by a worker of its own, equal to the team's own predict.
Phase D: the learn role checks the 4 windows' estimates against the labels (``status`` shows the
last check, ``report --from-topics`` all of them and the confusion matrix of the published
predictions); its River challenger, taught by the same labels, is published as version 4
(``model publish-challenger --shadow``): served beside the champion, its shadow scores and its /v2
probabilities equal the registered bundle's predict (1e-12).
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from sklearn.metrics import confusion_matrix

from schemas.export import export_json_schemas
from schemas.feedback import MetricsSnapshot
from schemas.lifecycle import ModelAlert
from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from streams.kafka.producer import event_payloads
from tests.integration.kafka_tools import Record, WorkerProcess, produce, read_monitor, read_topic
from tests.integration.test_lifecycle import _cli, _wait
from tests.own_models import QUEUE_CODES, team_queue_table, train_team_queues

pytestmark = pytest.mark.integration

EVENTS = 2000
TOLERANCE = 1e-12
CLASSES = ["billing", "fraud", "support"]


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """v1 trained by the CLI; v2 its save_model file imported; v3 a team's multiclassova model; the rows."""
    folder = tmp_path_factory.mktemp("queues")
    multiclass_frame(6000, seed=51).to_csv(folder / "tickets.csv", index=False)
    done = _cli(
        {},
        *("train", str(folder / "tickets.csv"), "--target", MULTICLASS_TARGET, "--task", "multiclass"),
        *("--out", str(folder / "queues-1"), "--name", "queues", "--trees", "40"),
    )
    assert done.returncode == 0, done.stderr
    trained = ModelBundle.load(folder / "queues-1")
    trained.booster.save_model(str(folder / "saved.txt"))
    rows = multiclass_frame(EVENTS, seed=52).drop(columns=[MULTICLASS_TARGET])
    rows.to_csv(folder / "rows.csv", index=False)
    reference = multiclass_frame(3000, seed=53)  # the team's validation rows: channel in the spec's codes
    channel = trained.spec.features[trained.spec.names.index("channel")].categories
    reference["channel"] = pd.Categorical(reference["channel"], categories=channel)
    reference.to_parquet(folder / "reference.parquet")
    done = _cli(
        {},
        *("model", "import", str(folder / "saved.txt"), "--reference", str(folder / "reference.parquet")),
        *(
            "--target",
            MULTICLASS_TARGET,
            "--out",
            str(folder / "queues-2"),
            "--name",
            "queues",
            "--version",
            "2",
        ),
    )
    assert done.returncode == 0, done.stderr
    table, names = team_queue_table(4000, seed=54, channels=channel)  # the live model's inputs
    team = train_team_queues(table, names, folder / "team-ova.txt", objective="multiclassova")
    table.assign(queue=names).to_parquet(folder / "team-reference.parquet")
    team_order = ",".join(sorted(QUEUE_CODES, key=QUEUE_CODES.get))
    done = _cli(
        {},
        *(
            "model",
            "import",
            str(folder / "team-ova.txt"),
            "--reference",
            str(folder / "team-reference.parquet"),
        ),
        *("--target", MULTICLASS_TARGET, "--classes", team_order, "--out", str(folder / "queues-3")),
        *("--name", "queues", "--version", "3"),
    )
    assert done.returncode == 0, done.stderr
    team_rows = rows.assign(
        channel=pd.Categorical(rows["channel"], categories=table["channel"].cat.categories)
    )
    return {
        "folder": folder,
        "rows": rows,
        "expected": trained.booster.predict(trained.spec.encode_frame(rows)),  # Booster.predict, as served
        "team": team.predict(team_rows),  # the team's own predict on its DataFrame
    }


@pytest.fixture
def env(topic_env, tmp_path) -> dict[str, str]:
    return {
        **topic_env,
        "STREAMSCORE_REGISTRY": str(tmp_path / "registry"),
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": "500",
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
    }


def _predictions(bootstrap: str, env: dict, rows: pd.DataFrame, prefix: str) -> list[Prediction]:
    """What the worker published for ``rows`` sent to ``features``, in row order, each checked against
    the exported JSON schema and the pydantic model."""
    events = list(events_from_frame(rows, prefix=prefix))
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events)))
    records = read_topic(
        bootstrap,
        env["STREAMSCORE_TOPIC_PREDICTIONS"],
        len(rows),
        counted=lambda r: orjson.loads(r.value)["event_id"].startswith(f"{prefix}-"),
    )
    folder = Path(env["STREAMSCORE_DATA_DIR"]).parent / "schemas"
    export_json_schemas(folder)
    schema = Draft202012Validator(json.loads((folder / "prediction.schema.json").read_text()))
    by_id = {}
    for record in records:
        body = orjson.loads(record.value)
        if body["event_id"].startswith(f"{prefix}-"):
            assert schema.is_valid(body), list(schema.iter_errors(body))[:1]
            by_id[body["event_id"]] = Prediction.model_validate_json(record.value)
    assert len(by_id) == len(rows), f"{len(by_id)} of {len(rows)} events were scored"
    return [by_id[f"{prefix}-{i}"] for i in range(len(rows))]


def _check(predictions: list[Prediction], expected: np.ndarray, classes: list[str], where: str) -> None:
    """Every prediction's probabilities against ``expected``, its label the most probable class."""
    probabilities = np.array([list(p.probabilities.values()) for p in predictions])
    worst = float(np.abs(probabilities - expected).max())
    print(f"{where}: {len(predictions):,} predictions, largest difference from Booster.predict {worst:.3g}")
    assert worst <= TOLERANCE
    assert all(p.schema_version == 2 and list(p.probabilities) == classes for p in predictions)
    assert [p.label for p in predictions] == [classes[k] for k in expected.argmax(axis=1)]
    assert all(p.score == p.probabilities[p.label] for p in predictions)


def _file(folder: Path, bundle: Path, out: Path) -> np.ndarray:
    done = _cli({}, "score-file", str(folder / "rows.csv"), "--model", str(bundle), "--out", str(out))
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(out, float_precision="round_trip")
    assert len(scored) == EVENTS
    return scored[[c for c in scored.columns if c.startswith("probability_")]].to_numpy()


def _v2(
    worker: WorkerProcess, rows: pd.DataFrame, chunk: int = 500, version: str = ""
) -> tuple[np.ndarray, list[str]]:
    """(probabilities, labels) from POST /v2/models/queues[/versions/V]/infer, one tensor per input."""
    path = f"/v2/models/queues/versions/{version}/infer" if version else "/v2/models/queues/infer"
    probabilities, labels = [], []
    for start in range(0, len(rows), chunk):
        part = rows.iloc[start : start + chunk]
        inputs = []
        for name in part.columns:
            column = part[name]
            if pd.api.types.is_bool_dtype(column):
                data, datatype = ["true" if v else "false" for v in column], "BYTES"
            elif pd.api.types.is_numeric_dtype(column):
                data, datatype = [float(v) for v in column], "FP64"
            else:
                data, datatype = [str(v) for v in column], "BYTES"
            inputs.append({"name": name, "datatype": datatype, "shape": [len(part)], "data": data})
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}{path}",
            data=json.dumps({"inputs": inputs}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            outputs = {o["name"]: o for o in json.loads(response.read())["outputs"]}
        shape = outputs["probabilities"]["shape"]
        probabilities.append(np.asarray(outputs["probabilities"]["data"]).reshape(shape))
        labels += outputs["label"]["data"]
    return np.concatenate(probabilities), labels


def _refused(worker: WorkerProcess, topic: str) -> float:
    """``streamscore_records_refused_total`` of ``topic``, every reason, from /metrics."""
    total = 0.0
    for line in worker.get_text("/metrics").splitlines():
        if line.startswith("streamscore_records_refused_total{") and f'topic="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_trained_and_an_imported_multiclass_model_serve_booster_predict_on_every_path(
    bootstrap, env, queues, tmp_path, workers
) -> None:
    folder, rows, expected = queues["folder"], queues["rows"], queues["expected"]
    for version in ("1", "2", "3"):
        assert _cli(env, "model", "register", str(folder / f"queues-{version}")).returncode == 0
    worker = WorkerProcess(env, folder / "queues-1", tmp_path / "worker.log")  # every role
    workers.append(worker)
    worker.wait_ready()

    predictions = _predictions(bootstrap, env, rows, "v1")
    _check(predictions, expected, CLASSES, "version 1 (train --task multiclass) via features")
    labels = [
        (p.entity_id.encode(), orjson.dumps({"event_id": p.event_id, "label": y, "label_time": p.event_time}))
        for p, y in zip(predictions, multiclass_frame(EVENTS, seed=52)[MULTICLASS_TARGET], strict=True)
    ]
    produce(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], labels)
    file_probabilities = _file(folder, folder / "queues-1", tmp_path / "scored-1.csv")
    v2_probabilities, v2_labels = _v2(worker, rows)
    for path, probabilities in (("score-file", file_probabilities), ("/v2", v2_probabilities)):
        worst = float(np.abs(probabilities - expected).max())
        print(f"version 1 via {path}: largest difference from Booster.predict {worst:.3g}")
        assert worst <= TOLERANCE
    assert v2_labels == [p.label for p in predictions]
    explained = _post(worker, "/explain?class=fraud", orjson.dumps(next(events_from_frame(rows.iloc[:1]))))
    assert explained["explanation"]["class_name"] == "fraud" and list(explained["probabilities"]) == CLASSES

    # the learn role joins the string labels; the drift role reports the windows; nothing refused
    _wait(lambda: worker.get("/stats")["learn"]["matched"] == EVENTS, 90, "labels")
    snapshots = read_topic(
        bootstrap,
        env["STREAMSCORE_TOPIC_METRICS"],
        1,
        counted=lambda r: MetricsSnapshot.model_validate_json(r.value).labels.matched == EVENTS,
    )
    snapshot = MetricsSnapshot.model_validate_json(snapshots[-1].value)
    assert snapshot.task == "multiclass" and snapshot.champion == "queues:1"
    assert snapshot.overall("queues:1").count == EVENTS  # the KPIs themselves: test_multiclass_kpis.py
    _wait(lambda: worker.get("/stats")["drift"]["reports"] >= EVENTS // 500, 60, "drift reports")
    drift = worker.get("/stats")["drift"]
    assert drift["unreadable"] == 0 and drift["windows_without_estimate"] == 0  # estimated (phase C)
    for topic in ("STREAMSCORE_TOPIC_MONITOR", "STREAMSCORE_TOPIC_LABELS"):
        assert _refused(worker, env[topic]) == 0, f"records on {env[topic]} refused"
    _estimates_checked_and_reported(env, folder, tmp_path, worker, predictions)
    _river_challenger_in_shadow(bootstrap, env, worker, snapshot, rows)

    # the same model, saved with save_model and imported, deployed through the gate
    assert _cli(env, "model", "deploy", "2", "--reason", "the saved model").returncode == 0
    _wait(lambda: worker.get("/stats")["model_version"] == "2", 60, "version 2 serving")
    _check(
        _predictions(bootstrap, env, rows, "v2"), expected, CLASSES, "version 2 (model import) via features"
    )
    worst = float(np.abs(_file(folder, folder / "queues-2", tmp_path / "scored-2.csv") - expected).max())
    assert worst <= TOLERANCE and float(np.abs(_v2(worker, rows)[0] - expected).max()) <= TOLERANCE

    # the team's model names its classes in another order: the gate of the command line refuses it
    refused = _cli(env, "model", "deploy", "3")
    assert refused.returncode == 1 and "are not the live model's" in refused.stderr
    assert worker.alive() and worker.get("/stats")["model_version"] == "2"


def _estimates_checked_and_reported(env: dict, folder: Path, tmp_path: Path, worker, predictions) -> None:
    """Phase D: the learn role checks every window's estimate against its labels; ``status`` shows the
    last check, ``report --from-topics`` every check and the confusion matrix of the labelled events."""
    windows = EVENTS // 500
    _wait(lambda: worker.get("/stats")["learn"]["estimate_checks"]["checks"] >= windows, 90, "checks")
    status = _cli(env, "status")
    line = re.search(r"queues:1 window \d+ checked on ([\d,]+) of \1 labels: (.*)", status.stdout)
    assert status.returncode == 0 and line is not None, status.stdout
    kpis = re.findall(r"(\w+) [\d.]+ vs [\d.]+ \[", line.group(2))
    assert kpis == ["accuracy", "f1_macro", "auc_macro_ovr"], line.group(0)
    page = tmp_path / "report.html"
    model = str(folder / "queues-1")
    done = _cli(env, "report", "--model", model, "--from-topics", str(EVENTS), "--out", str(page))
    assert done.returncode == 0 and f"report on {EVENTS:,} labelled rows" in done.stdout, done.stderr
    html = page.read_text()
    assert f"<p>{windows} windows checked; in " in html
    checked = re.findall(r"<tr(?: class=\"flag\")?><td>\d+</td><td>[\d,]+</td><td>(\w+)</td>", html)
    assert sorted(checked) == sorted(["accuracy", "f1_macro", "auc_macro_ovr"] * windows), checked
    truth = multiclass_frame(EVENTS, seed=52)[MULTICLASS_TARGET]
    by_class = {name: k for k, name in enumerate(CLASSES)}
    expected = confusion_matrix(
        [by_class[y] for y in truth], [by_class[p.label] for p in predictions], labels=[0, 1, 2]
    )
    table = re.search(r'<table id="confusion">(.*?)</table>', html).group(1)
    cells = [[int(v) for v in re.findall(r"<td>(\d+)</td>", row)] for row in table.split("</tr>")[1:4]]
    assert [row[:3] for row in cells] == expected.tolist(), "the confusion matrix of what was published"


def _river_challenger_in_shadow(bootstrap: str, env: dict, worker: WorkerProcess, snapshot, rows) -> None:
    """The River challenger the labels taught, published as version 4 and served in shadow, then cleared."""
    challenger = snapshot.overall(snapshot.challenger)
    assert challenger is not None and challenger.count > 0, "progressive validation (one shard's labels)"
    accuracy = challenger.cumulative["accuracy"]
    print(f"River challenger: progressive accuracy {accuracy:.4f} on {challenger.count:,} labels")
    done = _cli(env, "model", "publish-challenger", "--shadow")
    assert done.returncode == 0, done.stderr
    assert "registered the River challenger as queues version 4" in done.stdout
    published = ModelBundle.load(Path(env["STREAMSCORE_REGISTRY"]) / "queues" / "4")
    assert published.metadata.model_kind == "linear" and list(published.class_names) == CLASSES
    _wait(lambda: worker.get("/stats").get("challenger", {}).get("model_version") == "4", 60, "shadow v4")

    _predictions(bootstrap, env, rows.iloc[:1000], "shadow")
    shadowed = read_monitor(
        bootstrap,
        env["STREAMSCORE_TOPIC_MONITOR"],
        1000,
        where=lambda b: b.get("shadow_model_version") == "4",
    )
    matrix, scores = [], []
    for body in shadowed:
        if body.get("shadow_model_version") == "4":
            matrix += body["rows"]
            scores += body["shadow_scores"]
    matrix = np.asarray([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    assert len(scores) == 1000
    worst = float(np.abs(np.asarray(scores) - published.predict(matrix).max(axis=1)).max())
    v2 = _v2(worker, rows.iloc[:1000], version="4")[0]
    worst_v2 = float(np.abs(v2 - published.predict(published.spec.encode_frame(rows.iloc[:1000]))).max())
    print(f"River challenger v4 in shadow: most difference from its bundle {worst:.3g}, /v2 {worst_v2:.3g}")
    assert worst <= TOLERANCE and worst_v2 <= TOLERANCE
    assert _cli(env, "model", "clear-challenger").returncode == 0
    _wait(lambda: "challenger" not in worker.get("/stats"), 60, "the challenger cleared")


def _post(worker: WorkerProcess, path: str, body: bytes) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_an_imported_multiclassova_model_serves_the_teams_own_predict(
    bootstrap, env, queues, tmp_path, workers
) -> None:
    folder, rows = queues["folder"], queues["rows"]
    team_classes = sorted(QUEUE_CODES, key=QUEUE_CODES.get)
    bundle = ModelBundle.load(folder / "queues-3")
    assert bundle.classes == tuple(team_classes) and (bundle.metadata.origin.objective or "").startswith(
        "multiclassova"
    )
    worker = WorkerProcess({**env, "STREAMSCORE_ROLES": "score"}, folder / "queues-3", tmp_path / "ova.log")
    workers.append(worker)
    worker.wait_ready()

    predictions = _predictions(bootstrap, env, rows, "ova")

    _check(predictions, queues["team"], team_classes, "multiclassova (model import) via features")
    sums = np.array([sum(p.probabilities.values()) for p in predictions])
    assert not np.allclose(sums, 1.0), "one sigmoid per class: they need not sum to 1"
    worst = float(
        np.abs(_file(folder, folder / "queues-3", tmp_path / "scored-3.csv") - queues["team"]).max()
    )
    assert worst <= TOLERANCE
    probabilities, labels = _v2(worker, rows)
    assert float(np.abs(probabilities - queues["team"]).max()) <= TOLERANCE
    assert labels == [p.label for p in predictions]
    metadata = worker.get("/v2/models/queues")
    assert metadata["parameters"]["classes"] == team_classes


def test_a_deploy_of_other_classes_reaching_the_topic_is_refused_by_the_worker(
    bootstrap, env, queues, tmp_path, workers
) -> None:
    """The gate of the worker itself, for an update another tool wrote: a ModelAlert, v1 serving on."""
    from schemas.lifecycle import ModelRef
    from scoring.lifecycle import decisions as lifecycle
    from streams.services.shared.model_updates import live_update, publish_update
    from tests.integration.test_own_models import _settings

    folder = queues["folder"]
    assert _cli(env, "model", "register", str(folder / "queues-3")).returncode == 0
    worker = WorkerProcess({**env, "STREAMSCORE_ROLES": "score"}, folder / "queues-1", tmp_path / "w.log")
    workers.append(worker)
    worker.wait_ready()
    settings = _settings(env)
    _wait(lambda: live_update(settings, "queues")[0] is not None, 30, "the worker's record")
    recorded = live_update(settings, "queues")[0]

    uri = str(Path(env["STREAMSCORE_REGISTRY"]) / "queues" / "3")
    publish_update(settings, lifecycle.deploy(recorded, ModelRef(name="queues", version="3", uri=uri)))

    def about_v3(record: Record) -> bool:  # the worker's own start (v1 applied) is a model alert too
        value = record.value or b""
        return b"model_alert" in value and ModelAlert.model_validate_json(value).version == "3"

    record = read_topic(bootstrap, env["STREAMSCORE_TOPIC_ALERTS"], 1, counted=about_v3)[-1]
    alert = ModelAlert.model_validate_json(record.value)
    print(f"{alert.outcome} {alert.version}: {alert.check}: {alert.reason}")
    assert (alert.outcome, alert.check, alert.serving) == ("refused", "task", "queues:1")
    assert re.search(r"classes \('support', 'billing', 'fraud'\) are not the live model's", alert.reason)
    assert worker.alive() and worker.get("/stats")["model_version"] == "1"
