"""The lifecycle of a multiclass model (issue 28, phase D1), on the embedded broker.

One worker with every role serves a weak 3-class champion (v1) with a better challenger (v2) in
split mode. 2,000 events with their class-name labels: each version serves its share of entities
and the learn role measures each version's KPIs. ``model compare --promote`` (the two-proportion
z-test on accuracy, right meaning the served class is the label's) names v2 the winner with the
figures computed offline from the published predictions, and promotes it; every later prediction
is v2's and equals v2's ``Booster.predict`` (1e-12). ``retrain --from-topics`` trains v3 on the
labelled events of the topics with the live model's classes in its order, and the gate admits it
as a shadow challenger: 1,000 more labelled events, the learn role measures v3 on them from its
probabilities on ``monitor``, ``model compare`` (McNemar on the paired events) names it the winner;
500 more, and the learn role (``STREAMSCORE_AUTO_PROMOTE``, at least 1,200 pairs) promotes it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.metrics import f1_score, log_loss

from schemas.feedback import MetricsSnapshot
from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from scoring.offline.training import train_bundle
from streams.kafka.producer import event_payloads
from tests.integration.kafka_tools import WorkerProcess, produce, produce_with_labels, read_topic
from tests.integration.test_lifecycle import _cli, _wait

pytestmark = pytest.mark.integration

N, AFTER, SHADOW, MORE = 2000, 500, 1000, 500
BASE_MS = 1_700_000_000_000
CLASSES = ["billing", "fraud", "support"]
TOLERANCE = 1e-12


@pytest.fixture
def versions(tmp_path) -> dict[str, Path]:
    """v1: two boosting rounds on 600 rows (accuracy ~0.57 on fresh rows); v2: three on 400 (~0.69)."""
    out = {}
    for version, rows, rounds, seed in (("1", 600, 2, 60), ("2", 400, 3, 60)):
        path = tmp_path / f"queues-{version}"
        train_bundle(
            multiclass_frame(rows, seed=seed), MULTICLASS_TARGET, path, task="multiclass", name="queues",
            version=version, num_trees=rounds,
        )  # fmt: skip
        out[version] = path
    return out


def _published(bootstrap: str, env: dict, count: int, prefix: str) -> dict[str, Prediction]:
    records = read_topic(
        bootstrap,
        env["STREAMSCORE_TOPIC_PREDICTIONS"],
        count,
        counted=lambda r: orjson.loads(r.value)["event_id"].startswith(f"{prefix}-"),
    )
    by_id = {}
    for record in records:
        prediction = Prediction.model_validate_json(record.value)
        if prediction.event_id.startswith(f"{prefix}-"):
            by_id[prediction.event_id] = prediction
    assert len(by_id) == count, f"{len(by_id)} of {count} events published"
    return by_id


def _snapshot(bootstrap: str, env: dict, wanted) -> MetricsSnapshot:
    """The first ``metrics`` snapshot ``wanted`` accepts (a read returns what came with it too)."""
    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_METRICS"], 1, counted=wanted)
    return MetricsSnapshot.model_validate_json(next(r for r in records if wanted(r)).value)


def _figures(predictions: list[Prediction], truth: list[str]) -> dict[str, float]:
    """Accuracy, macro F1 and log loss of published predictions against their labels (scikit-learn)."""
    served = [p.label for p in predictions]
    probabilities = np.array([[p.probabilities[c] for c in CLASSES] for p in predictions])
    return {
        "accuracy": float(np.mean(np.array(served) == np.array(truth))),
        "f1_macro": float(f1_score(truth, served, average="macro", labels=CLASSES)),
        "log_loss": float(log_loss(truth, probabilities, labels=CLASSES)),
    }


def test_a_multiclass_challenger_in_split_mode_is_compared_promoted_and_retrained(
    bootstrap, topic_env, versions, tmp_path, workers
) -> None:
    env = {
        **topic_env,
        "STREAMSCORE_REGISTRY": str(tmp_path / "registry"),
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        "STREAMSCORE_AUTO_PROMOTE": "true",  # the learn role: a shadow challenger winning McNemar
        "STREAMSCORE_PROMOTE_MIN_PAIRS": str(SHADOW + MORE // 2),
    }
    for path in versions.values():
        assert _cli(env, "model", "register", str(path)).returncode == 0
    worker = WorkerProcess(env, versions["1"], tmp_path / "worker.log")  # every role
    workers.append(worker)
    worker.wait_ready()
    assert _cli(env, "model", "challenger", "2", "--share", "0.5").returncode == 0
    _wait(lambda: worker.get("/stats").get("challenger", {}).get("model_version") == "2", what="split v2")

    frame = multiclass_frame(N, seed=62)
    truth = frame.pop(MULTICLASS_TARGET).tolist()
    produce_with_labels(bootstrap, env, frame, truth, 200, "split", BASE_MS)
    published = _published(bootstrap, env, N, "split")
    by_version: dict[str, list[int]] = {"1": [], "2": []}
    for i in range(N):
        by_version[published[f"split-{i}"].model_version].append(i)
    print(f"split: v1 served {len(by_version['1']):,}, v2 {len(by_version['2']):,} events")
    assert min(map(len, by_version.values())) > N // 3, "each version serves its share of entities"
    figures = {
        v: _figures([published[f"split-{i}"] for i in idx], [truth[i] for i in idx])
        for v, idx in by_version.items()
    }

    # the learn role measures each version on the labels of the events it served
    def measured(record) -> bool:
        return MetricsSnapshot.model_validate_json(record.value).labels.matched >= N

    snapshot = _snapshot(bootstrap, env, measured)
    for version, idx in by_version.items():
        row = snapshot.overall(f"queues:{version}")
        rows = sorted((r.model, r.segment_feature, r.count) for r in snapshot.kpis)
        assert row is not None and row.count == len(idx), (
            f"KPIs of version {version}: {rows}, {snapshot.labels}"
        )
        for name, value in figures[version].items():
            assert row.cumulative[name] == pytest.approx(value, abs=1e-9), (version, name)

    done = _cli(env, "model", "compare", "--promote")
    assert done.returncode == 0, done.stderr
    one, two = figures["1"], figures["2"]
    print(f"offline from the published predictions: v1 {one}, v2 {two}")
    assert "queues:1 (champion) vs queues:2 (challenger): unpaired, split traffic" in done.stdout
    assert f"labelled events: {len(by_version['1']):,} / {len(by_version['2']):,}" in done.stdout
    for name in ("accuracy", "f1_macro", "log_loss"):
        assert f"  {name:<13} {one[name]:10.4f} {two[name]:10.4f}" in done.stdout, name
    assert "two-proportion z-test on accuracy" in done.stdout
    assert "winner at alpha 0.01: challenger" in done.stdout and "promoted 2" in done.stdout
    _wait(lambda: worker.get("/stats")["model_version"] == "2", what="the promoted version serving")
    assert "challenger" not in worker.get("/stats")

    # every later prediction is v2's, equal to its Booster.predict
    after = multiclass_frame(AFTER, seed=63).drop(columns=[MULTICLASS_TARGET])
    produce(
        bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events_from_frame(after, "after")))
    )
    later = _published(bootstrap, env, AFTER, "after")
    v2 = ModelBundle.load(versions["2"])
    expected = v2.booster.predict(v2.spec.encode_frame(after))
    served = np.array([[later[f"after-{i}"].probabilities[c] for c in CLASSES] for i in range(AFTER)])
    assert {p.model_version for p in later.values()} == {"2"}
    worst = float(np.abs(served - expected).max())
    print(
        f"after the promotion: {AFTER} predictions of v2, largest difference from Booster.predict {worst:.3g}"
    )
    assert worst <= TOLERANCE

    # retrain from the topics: a multiclass v3 with the live model's classes, admitted by the gate
    done = _cli(env, "retrain", "--from-topics", str(N), "--trees", "60", "--shadow")
    assert done.returncode == 0, done.stderr
    assert "registered queues version 3" in done.stdout and "3 scores in shadow" in done.stdout
    v3 = ModelBundle.load(Path(env["STREAMSCORE_REGISTRY"]) / "queues" / "3")
    assert v3.task.value == "multiclass" and list(v3.classes) == CLASSES
    assert v3.metrics["holdout_rows"] + v3.metrics["train_rows"] == N
    _wait(lambda: worker.get("/stats").get("challenger", {}).get("model_version") == "3", what="shadow v3")
    assert worker.alive() and worker.get("/stats")["model_version"] == "2"

    # shadow: v2 serves, v3 scores every event too; the learn role measures v3 on the labels
    frame = multiclass_frame(SHADOW, seed=64)
    truth = frame.pop(MULTICLASS_TARGET).tolist()
    produce_with_labels(bootstrap, env, frame, truth, 200, "shadow", BASE_MS + N)
    shadowed = _published(bootstrap, env, SHADOW, "shadow")
    assert {p.model_version for p in shadowed.values()} == {"2"}, "a shadow challenger is never published"
    matrix = v3.spec.encode_frame(frame)
    v3_probabilities = v3.booster.predict(matrix)
    v3_served = [CLASSES[k] for k in v3_probabilities.argmax(axis=1)]
    v3_figures = {"accuracy": float(np.mean(np.array(v3_served) == np.array(truth)))}
    v3_figures["log_loss"] = float(log_loss(truth, v3_probabilities, labels=CLASSES))
    v2_figures = _figures([shadowed[f"shadow-{i}"] for i in range(SHADOW)], truth)

    def shadow_measured(record) -> bool:
        row = MetricsSnapshot.model_validate_json(record.value).overall("queues:3")
        return row is not None and row.count >= SHADOW

    snapshot = _snapshot(bootstrap, env, shadow_measured)
    row = snapshot.overall("queues:3")
    print(
        f"shadow v3 measured by the learn role: {row.count:,} labels, {row.cumulative}; offline {v3_figures}"
    )
    assert row.count == SHADOW
    for name, value in v3_figures.items():
        assert row.cumulative[name] == pytest.approx(value, abs=1e-9), name

    done = _cli({**env, "STREAMSCORE_AUTO_PROMOTE": "false"}, "model", "compare")
    assert done.returncode == 0, done.stderr
    assert "queues:2 (champion) vs queues:3 (challenger): paired, the same events" in done.stdout
    assert f"labelled events: {SHADOW:,} / {SHADOW:,}" in done.stdout
    assert f"  {'accuracy':<13} {v2_figures['accuracy']:10.4f} {v3_figures['accuracy']:10.4f}" in done.stdout
    assert "McNemar on the served class right or wrong" in done.stdout
    assert "winner at alpha 0.01: challenger" in done.stdout and "promoted" not in done.stdout

    # more labelled events: the learn role's McNemar counts pass the minimum, it promotes v3
    more = multiclass_frame(MORE, seed=65)
    produce_with_labels(
        bootstrap, env, more, more.pop(MULTICLASS_TARGET).tolist(), 100, "more", BASE_MS + 2 * N
    )
    _wait(
        lambda: worker.get("/stats")["model_version"] == "3",
        timeout_s=120,
        what="v3 promoted by the learn role",
    )
    records = read_topic(
        bootstrap, env["STREAMSCORE_TOPIC_MODEL_UPDATES"], 1, counted=lambda r: b"paired labelled" in r.value
    )
    promotion = next(orjson.loads(r.value) for r in records if b"paired labelled" in r.value)
    print(f"promoted by the learn role: {promotion['reason']}")
    won, lost, pairs = map(int, re.match(r"won (\d+) to (\d+) of (\d+) paired", promotion["reason"]).groups())
    assert promotion["action"] == "promote" and promotion["champion"]["version"] == "3"
    assert won > lost and SHADOW + MORE // 2 <= pairs <= SHADOW + MORE
