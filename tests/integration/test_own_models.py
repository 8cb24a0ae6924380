"""A team's own LightGBM models served by a running worker exactly; bundles disagreeing with theirs refused.

The team's model is trained here with ``lgb.train`` (two pandas ``category`` columns, one not in
alphabetical order, a boolean, missing values, early stopping), saved with ``save_model`` and
imported with ``streamscore model import``; a second, an ``LGBMClassifier`` in a scikit-learn
``Pipeline``, is imported with the Python function and deployed through the gate. Each is compared
with the team's own predict on the same 5,000 rows, unseen categories included, through the
``features`` topic, ``score-file`` and the Open Inference Protocol endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from schemas.lifecycle import ModelAlert, ModelRef
from scoring.lifecycle import decisions as lifecycle
from scoring.model.bundle import MODEL_FILE, SPEC_FILE
from scoring.offline.importing import import_model
from scoring.offline.synthetic import events_from_frame
from streams.kafka.producer import event_payloads
from streams.services.shared.model_updates import live_update, publish_update
from streams.settings import Settings
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic
from tests.integration.test_lifecycle import _cli, _wait, refused_model_alert
from tests.own_models import lightgbm_scores, team_pipeline, team_table, train_team_booster, with_unseen
from tests.unit.test_importing import _three_class
from tests.unit.test_lifecycle import _rewrite_manifest

pytestmark = pytest.mark.integration

EVENTS = 5000
TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Both team models, their bundles (v1 from the file by the CLI, v2 from the pipeline), the rows."""
    folder = tmp_path_factory.mktemp("own")
    table, labels = team_table(8000, seed=1)
    booster = train_team_booster(table, labels, folder / "team-model.txt")
    table.assign(approved=labels).to_csv(folder / "reference.csv", index=False)
    done = _cli(
        {},
        *("model", "import", str(folder / "team-model.txt"), "--reference", str(folder / "reference.csv")),
        *("--out", str(folder / "own-1"), "--target", "approved", "--name", "own"),
    )
    assert done.returncode == 0, done.stderr
    pipeline = team_pipeline(table, labels)
    prepared = pipeline[:-1].transform(table.assign(row_id=np.arange(len(table))))
    import_model(
        pipeline[-1],
        prepared.assign(approved=labels),
        out_dir=folder / "own-2",
        target="approved",
        name="own",
        version="2",
    )
    rows = with_unseen(team_table(EVENTS, seed=2)[0], share=0.05, seed=3)
    rows.to_csv(folder / "rows.csv", index=False)
    return {
        "folder": folder,
        "rows": rows,
        "v1": (folder / "own-1", lightgbm_scores(booster, rows)),
        "v2": (folder / "own-2", pipeline.predict_proba(rows.assign(row_id=0))[:, 1]),
        "three": _three_class({"table": table, "labels": labels}, folder / "three.txt"),
    }


@pytest.fixture
def own_env(topic_env, tmp_path) -> dict[str, str]:
    return {**topic_env, "STREAMSCORE_REGISTRY": str(tmp_path / "registry"), "STREAMSCORE_ROLES": "score"}


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k[len("STREAMSCORE_") :].lower(): v for k, v in env.items()})


def _stream_scores(bootstrap: str, env: dict, rows: pd.DataFrame, prefix: str, version: str) -> np.ndarray:
    """Scores the worker published for ``rows`` sent to ``features``, in row order."""
    events = list(events_from_frame(rows, prefix=prefix))
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events)))
    records = read_topic(
        bootstrap,
        env["STREAMSCORE_TOPIC_PREDICTIONS"],
        len(rows),
        counted=lambda r: orjson.loads(r.value)["event_id"].startswith(f"{prefix}-"),
    )
    published = [orjson.loads(r.value) for r in records]
    by_id = {p["event_id"]: p for p in published if p["event_id"].startswith(f"{prefix}-")}
    assert len(by_id) == len(rows), f"{len(by_id)} of {len(rows)} events were scored"
    assert {p["model_version"] for p in by_id.values()} == {version}
    assert all(type(p["score"]) is float for p in by_id.values()), "a score is one number"
    return np.array([by_id[f"{prefix}-{i}"]["score"] for i in range(len(rows))])


def _file_scores(folder: Path, bundle: Path, out: Path) -> np.ndarray:
    done = _cli({}, "score-file", str(folder / "rows.csv"), "--model", str(bundle), "--out", str(out))
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(out, float_precision="round_trip")
    assert scored["event_id"].tolist() == [f"row-{i}" for i in range(EVENTS)], "nothing rejected"
    return scored["score"].to_numpy()


def _v2_scores(worker: WorkerProcess, rows: pd.DataFrame, version: str, chunk: int = 1000) -> np.ndarray:
    """Scores from POST /v2/models/own/versions/V/infer, one tensor per feature, as JSON."""
    out = []
    for start in range(0, len(rows), chunk):
        part = rows.iloc[start : start + chunk]
        inputs = []
        for name in part.columns:
            column = part[name]
            if pd.api.types.is_bool_dtype(column):
                data, datatype = ["true" if v else "false" for v in column], "BYTES"
            elif isinstance(column.dtype, pd.CategoricalDtype):
                data, datatype = [None if v != v else str(v) for v in column.astype(object)], "BYTES"
            else:
                data, datatype = [None if v != v else float(v) for v in column], "FP64"
            inputs.append({"name": name, "datatype": datatype, "shape": [len(part)], "data": data})
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}/v2/models/own/versions/{version}/infer",
            data=json.dumps({"inputs": inputs}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        score = next(o for o in answer["outputs"] if o["name"] == "score")
        out.extend(score["data"])
    return np.asarray(out, dtype=np.float64)


def test_imported_models_serve_the_teams_own_scores_through_the_stream_score_file_and_v2(
    bootstrap, own_env, team, tmp_path, workers
) -> None:
    env, rows, folder = own_env, team["rows"], team["folder"]
    for version in ("v1", "v2"):
        assert _cli(env, "model", "register", str(team[version][0])).returncode == 0
    worker = WorkerProcess(env, team["v1"][0], tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()

    for version, key in (("1", "v1"), ("2", "v2")):
        bundle, expected = team[key]
        if version == "2":  # the pipeline's model, deployed through the gate to the running worker
            assert _cli(env, "model", "deploy", "2", "--reason", "the team's pipeline").returncode == 0
            _wait(lambda: worker.get("/stats")["model_version"] == "2", 60, "version 2 serving")
        paths = {
            "stream": _stream_scores(bootstrap, env, rows, f"own{version}", version),
            "score-file": _file_scores(folder, bundle, tmp_path / f"scored-{version}.csv"),
            "/v2": _v2_scores(worker, rows, version),
        }
        unseen = (rows["colour"] == "purple") | (rows["city"] == "Paris")
        for path, scores in paths.items():
            worst = float(np.abs(scores - expected).max())
            print(f"version {version} via {path}: {len(scores):,} scores, {int(unseen.sum())} with unseen "
                  f"categories, largest difference from the team's own predict {worst:.3g}")  # fmt: skip
            assert worst <= TOLERANCE, f"{path} differs from the team's predict by {worst}"
    assert worker.alive()


def _worker_refuses(env: dict, bundle: Path, tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker", "--model", str(bundle)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **env},
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    print(f"$ streamscore worker --model {bundle.name}  -> exit {done.returncode}\n{done.stderr}")
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr
    return lines[0]


def test_bundles_that_disagree_with_their_model_are_refused_by_worker_score_file_and_deploy(
    bootstrap, own_env, team, tmp_path, workers
) -> None:
    env, good = own_env, team["v1"][0]
    registry = Path(env["STREAMSCORE_REGISTRY"])
    sorted_cats = Path(shutil.copytree(good, registry / "own" / "sorted-categories"))
    spec = json.loads((sorted_cats / SPEC_FILE).read_text())
    for feature in spec["features"]:
        if feature["name"] == "colour":
            feature["categories"] = sorted(feature["categories"])  # codes by sorted name
    (sorted_cats / SPEC_FILE).write_text(json.dumps(spec))
    three_class = Path(shutil.copytree(good, registry / "own" / "three-class"))
    shutil.copyfile(team["three"], three_class / MODEL_FILE)  # a 3-class booster, the bundle says binary
    for bundle in (sorted_cats, three_class):
        _rewrite_manifest(bundle)
    reasons = {
        sorted_cats: "colour: the spec's categories ['amber', 'blue', 'green', 'red'] are not model.txt's",
        three_class: "model.txt is a 3-class model (objective multiclass num_class:3), the bundle says binary",  # noqa: E501
    }

    for bundle, reason in reasons.items():
        assert reason in _worker_refuses(env, bundle, tmp_path)
        out = tmp_path / f"{bundle.name}.csv"
        done = _cli(
            {}, "score-file", str(team["folder"] / "rows.csv"), "--model", str(bundle), "--out", str(out)
        )
        assert done.returncode == 2 and reason in done.stderr and not out.exists()

    worker = WorkerProcess(env, good, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    settings = _settings(env)
    _wait(lambda: live_update(settings, "own")[0] is not None, 30, "the first worker's record")
    recorded = live_update(settings, "own")[0]
    for bundle, reason in reasons.items():  # the command line refuses before publishing anything
        done = _cli(env, "model", "deploy", bundle.name)
        assert done.returncode == 1 and reason in done.stderr
        assert live_update(settings, "own")[0] == recorded
    for bundle in reasons:  # a worker checks whatever reaches the topic itself
        ref = ModelRef(name="own", version=bundle.name, uri=str(bundle))
        publish_update(settings, lifecycle.deploy(recorded, ref))
    alerts_topic = env["STREAMSCORE_TOPIC_ALERTS"]
    records = read_topic(bootstrap, alerts_topic, len(reasons), counted=refused_model_alert)
    refusals = [ModelAlert.model_validate_json(r.value) for r in records if refused_model_alert(r)]
    alerts = {a.version: a for a in refusals}
    for bundle, reason in reasons.items():
        alert = alerts[bundle.name]
        print(f"{alert.outcome} {alert.version}: {alert.check}: {alert.reason}")
        assert (alert.outcome, alert.check, alert.serving) == ("refused", "load", "own:1")
        assert reason in alert.reason

    scores = _stream_scores(bootstrap, env, team["rows"].iloc[:500], "after", "1")
    assert np.abs(scores - team["v1"][1][:500]).max() <= TOLERANCE
