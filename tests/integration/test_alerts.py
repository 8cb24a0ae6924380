"""Alerts worth waking up for, on a live worker with every role and 4 partitions (issue 33).

Half a million labelled events drawn as in training, with the model wrong on 10% of them
(``alert_runs.py`` says how the stream is made and read): a stationary run raises no
concept-drift alert, no drift alert, no estimated-KPI alert and no retrain request, and
the shipped Prometheus rules, evaluated by ``promtool test rules`` on the series the run
put on /metrics, fire nothing. The same stream with the error rate ten points higher and
feature f05 moved by 0.25 sd from the middle on: exactly one concept-drift alert, naming
the four shards that detected the change, each within the delay docs/alerts.md states;
f05 flagged from the window the shift starts in and no other feature in any window; and
the rules fire the drift and the concept alerts. The consumer-lag rules are evaluated
and printed but not held: a run replays a backlog, and whether it lasts past their
``for:`` is the machine's speed, not the data's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scoring.model.bundle import ModelBundle
from tests.deploy_files import RULES, rules, tool
from tests.integration.alert_runs import (
    PARTITIONS,
    SHIFTED_FEATURE,
    WINDOW,
    RunResult,
    Scenario,
    alert_model,
    promtool_series,
    run,
)
from tests.integration.conftest import topics_for

pytestmark = pytest.mark.integration

N = 500_000
CHANGE = N // 2  # the first event of window 25
DELAY_PER_SHARD = (
    1_500  # labels of a shard after the change; docs/alerts.md: 10% -> 20%, max 612 in 200 trials
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return alert_model(tmp_path_factory.mktemp("alerts"))


def _env(bootstrap: str, tmp_path: Path, name: str) -> dict[str, str]:
    return topics_for(bootstrap, f"{name}-{tmp_path.name[-6:]}", str(tmp_path / name))


def _summary(result: RunResult) -> str:
    drifted = {r.window: r.drifted_features for r in result.reports if r.drifted_features}
    return (
        f"{len(result.reports)} windows (drifted features {drifted}), preloaded in {result.preload_s:.0f} s, "
        f"read in {result.run_s:.0f} s; alerts: concept "
        f"{[(a.status, a.shards) for a in result.concept_alerts]}, "
        f"drift {[(a.status, a.window, [f.feature for f in a.features]) for a in result.drift_alerts]}, "
        f"estimated {len(result.estimate_alerts)}, retrain {[r.trigger for r in result.retrain]}"
    )


# A run replays a backlog: these rules are there to say so when it lasts past their `for:` (2 minutes and
# more), which depends on how busy the machine is, not on the data. They are evaluated and printed, not held.
LAG_RULES = {"StreamscoreConsumerLagHigh", "StreamscoreConsumerLagOld", "StreamscoreConsumerLagGrowing"}


def _promtool(
    result: RunResult, folder: Path, expected: dict[str, list[dict]], held: bool = True
) -> subprocess.CompletedProcess:
    """``promtool test rules`` on the run's series: every rule quiet at every 5th second, except at the last
    scrape, where ``expected`` (alert name -> alerts) fire and every other rule is quiet. ``held``: the
    lag rules left out; else only they are tested (quiet)."""
    last = len(result.samples) - 1
    names = [r["alert"] for r in rules() if (r["alert"] in LAG_RULES) != held]
    cases = [
        {"eval_time": f"{t}s", "alertname": name, "exp_alerts": []}
        for t in range(0, last, 5)
        for name in names
        if name not in expected
    ]
    cases += [
        {"eval_time": f"{last}s", "alertname": name, "exp_alerts": expected.get(name, [])} for name in names
    ]
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1s",
        "tests": [
            {"interval": "1s", "input_series": promtool_series(result.samples), "alert_rule_test": cases}
        ],
    }
    path = folder / f"run_test_{'held' if held else 'lag'}.yml"
    path.write_text(yaml.safe_dump(test, width=1 << 20))
    return subprocess.run(
        [tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


def _last_sample(result: RunResult, name: str) -> float:
    text = next(text for _, text in reversed(result.samples) if text is not None)
    return sum(
        s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    )


def test_a_stationary_stream_of_half_a_million_labelled_events_raises_no_alert(
    bootstrap: str, model: ModelBundle, tmp_path: Path
) -> None:
    result = run(bootstrap, _env(bootstrap, tmp_path, "quiet"), model, Scenario(N), tmp_path / "worker.log")
    print(_summary(result))

    assert [r.window for r in result.reports] == list(range(N // WINDOW)), "every window once"
    assert all(r.events == WINDOW for r in result.reports)
    assert result.stats["learn"]["matched"] == N
    assert result.concept_alerts == []
    assert result.drift_alerts == [] and [r.window for r in result.reports if r.drifted] == []
    assert result.estimate_alerts == []
    assert result.retrain == []
    assert _last_sample(result, "streamscore_concept_drift_changes_total") == 0, "no shard detected anything"

    done, lag = _promtool(result, tmp_path, {}), _promtool(result, tmp_path, {}, held=False)
    print(f"promtool test rules on {len(result.samples)} scrapes: {done.stdout.strip()}; "
          f"the lag rules quiet: {lag.returncode == 0}")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_a_ten_point_error_rise_is_one_alert_and_a_quarter_sd_shift_flags_its_feature_alone(
    bootstrap: str, model: ModelBundle, tmp_path: Path
) -> None:
    scenario = Scenario(N, error_rise=0.10, shift_sd=0.25, change=CHANGE)
    result = run(bootstrap, _env(bootstrap, tmp_path, "shifted"), model, scenario, tmp_path / "worker.log")
    print(_summary(result))
    assert [r.window for r in result.reports] == list(range(N // WINDOW))

    # concept drift: one alert for the change, naming every shard, each shard within the stated delay
    firing = [a for a in result.concept_alerts if a.status == "firing"]
    assert len(firing) == 1, result.concept_alerts
    (alert,) = firing
    assert alert.shards == list(range(PARTITIONS)) and alert.severity == "critical", alert.message
    delays = {}
    for detection in alert.detections:
        event = int(detection.event_id.removeprefix("a-"))
        assert event >= CHANGE, f"shard {detection.partition} alarmed before the change: {detection}"
        delays[detection.partition] = (event - CHANGE) // PARTITIONS  # the shard's labels since the change
    print(f"{alert.message}; labels after the change per shard: {delays}")
    assert max(delays.values()) <= DELAY_PER_SHARD, delays
    assert 0.08 < alert.error_before < 0.12 and 0.15 < alert.error_after < 0.3, alert
    assert alert.statistic > alert.threshold == 15.0
    assert _last_sample(result, "streamscore_concept_drift_changes_total") == len(alert.detections), (
        "every shard's detection counted once on /metrics"
    )

    # feature drift: f05 from the window the shift starts in, nothing else anywhere
    first_shifted = CHANGE // WINDOW
    for report in result.reports:
        expected = [SHIFTED_FEATURE] if report.window >= first_shifted else []
        assert report.drifted_features == expected, (report.window, report.drifted_features)
    firing_drift = [a for a in result.drift_alerts if a.status == "firing"]
    assert [(a.window, [f.feature for f in a.features]) for a in firing_drift] == [(first_shifted, ["f05"])]
    assert [r.trigger for r in result.retrain] == ["drift"], "one request, from the one drift episode"
    assert result.estimate_alerts == []

    labels = {"model_name": model.name, "model_version": model.version}
    expected = {
        "StreamscoreFeatureDrift": [
            {
                "exp_labels": {"severity": "warning", **labels, "feature": SHIFTED_FEATURE},
                "exp_annotations": {
                    "summary": f"{SHIFTED_FEATURE} drifted for {model.name} {model.version} "
                    "in its last window (see the DriftAlert on drift)"
                },
            }
        ],
        "StreamscoreConceptDrift": [
            {
                "exp_labels": {"severity": "critical", "model_version": model.version},
                "exp_annotations": {
                    "summary": f"the error rate of version {model.version} rose "
                    "(see the ConceptDriftAlert on drift)"
                },
            }
        ],
    }
    if result.reports[-1].prediction.drifted:  # the score may move with f05: then its rule fires too
        expected["StreamscorePredictionDrift"] = [
            {
                "exp_labels": {"severity": "warning", **labels},
                "exp_annotations": {
                    "summary": f"the score distribution of {model.name} {model.version} "
                    "drifted in its last window"
                },
            }
        ]
    done, lag = _promtool(result, tmp_path, expected), _promtool(result, tmp_path, {}, held=False)
    print(f"the lag rules quiet: {lag.returncode == 0}")
    print(
        f"promtool test rules on {len(result.samples)} scrapes, firing {sorted(expected)}: "
        f"{done.stdout.strip()}"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
