"""A multiclass model's drift and its performance estimated before labels (issue 28, phase C).

The statistics of its outputs (predicted classes: chi-square fit and PSI; each class's probability:
PSI and KS) against scipy's and the existing helpers; the estimator of accuracy, macro F1 and macro
OvR AUC against the realized KPIs of synthetic windows; the merge of partials carrying the class
probabilities, bit for bit the report and estimate one monitor gives; absurd partials refused.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator
from scipy import stats

from schemas.drift import PREDICTED_CLASS, DriftReport, PartitionSpan, probability_test
from schemas.export import export_json_schemas
from schemas.monitor import MonitorColumns
from scoring.drift import DriftMonitor, PartialRejected, PartitionWindows, WindowCloser, merge_window
from scoring.drift.alerts import alert_for
from scoring.drift.bounds import report_problem
from scoring.drift.classes import ClassBaseline, compare_classes
from scoring.drift.compare import DriftThresholds, NumericBaseline
from scoring.drift.compare import test_count as count_tests
from scoring.drift.partial import WindowPartial
from scoring.drift.stats import chi_square_fit, ks_test, psi
from scoring.estimation import PerformanceEstimator
from scoring.estimation.ledger import EstimateLedger
from scoring.estimation.multiclass import multiclass_estimates
from scoring.metrics.holdout import multiclass_metrics
from scoring.model.bundle import ModelBundle
from scoring.model.calibration import fit_class_calibration
from scoring.model.reference import bin_counts
from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame
from scoring.offline.training import train_bundle
from streams.cli.tail.lines import RecordView
from streams.cli.tail.reports import drift_line

WINDOW = 2_000
SHIFT = {"messages": 3}  # every ticket with 3 messages: fewer tell fraud from support


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """Three queues from three inputs, trained on 10,000 tickets (2,000 held out for the calibrators)."""
    frame = multiclass_frame(10_000, seed=3)[["messages", "x0", "channel", MULTICLASS_TARGET]]
    out = tmp_path_factory.mktemp("mc") / "queues"
    train_bundle(frame, MULTICLASS_TARGET, out, task="multiclass", name="queues", num_trees=60)
    return ModelBundle.load(out)


def windows_of(bundle: ModelBundle, n_windows: int, seed: int, fixed: dict | None = None):
    """``n_windows`` windows of tickets: each one's probabilities and the labels' class indices."""
    frame = multiclass_frame(n_windows * WINDOW, seed=seed, fixed=fixed)
    rows = bundle.spec.encode_frame(frame.drop(columns=MULTICLASS_TARGET))
    p = bundle.predict(rows)
    y = np.array([bundle.class_index(v) for v in frame[MULTICLASS_TARGET]])
    return [(rows[s], p[s], y[s]) for s in (slice(i * WINDOW, (i + 1) * WINDOW) for i in range(n_windows))]


# ------------------------------------------------------------------ the statistics


def test_the_predicted_class_test_is_scipys_chisquare_against_the_holdouts_shares() -> None:
    reference, window = np.array([300, 500, 200]), np.array([80, 60, 60])

    fit = chi_square_fit(reference, window)

    expected = stats.chisquare(window, reference / reference.sum() * window.sum())
    assert fit.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert fit.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert chi_square_fit(reference, reference * 3).statistic == pytest.approx(0.0, abs=1e-9)
    unseen = chi_square_fit(np.array([500, 500, 0]), np.array([40, 40, 20]))
    assert np.isfinite(unseen.statistic) and unseen.p_value < 1e-12, "a class the holdout never predicted"


def test_each_class_probability_is_compared_as_a_numeric_feature_and_the_counts_as_predicted(
    bundle: ModelBundle,
) -> None:
    [(_, p, _)] = windows_of(bundle, 1, seed=21)
    baseline = ClassBaseline.of(bundle.reference, bundle.class_names)
    assert baseline is not None and baseline.tests == 4

    drift = compare_classes(baseline, p)

    counts = np.bincount(p.argmax(axis=1), minlength=3)
    assert list(drift.predicted.counts.values()) == counts.tolist()
    assert list(drift.predicted.reference_counts.values()) == list(
        bundle.reference.predicted.frequencies.values()
    )
    assert drift.predicted.psi == pytest.approx(psi(baseline.predicted, counts), rel=1e-12)
    assert drift.predicted.chi2_p_value == pytest.approx(chi_square_fit(baseline.predicted, counts).p_value)
    for k, name in enumerate(bundle.class_names):
        ref = NumericBaseline.of(bundle.reference.probabilities[name])
        c = drift.probabilities[k]
        assert c.name == name
        assert c.psi == pytest.approx(psi(ref.counts, bin_counts(p[:, k], ref.edges)), rel=1e-12)
        ks = ks_test(ref.sample, p[:, k])
        assert (c.ks_statistic, c.ks_p_value) == pytest.approx((ks.statistic, ks.p_value), rel=1e-12)
        assert c.mean == pytest.approx(p[:, k].mean())


def test_a_shift_flags_the_predicted_classes_and_probabilities_in_the_windows_family(
    bundle: ModelBundle,
) -> None:
    closer = WindowCloser(bundle, DriftThresholds())
    monitor = DriftMonitor(window_events=WINDOW)
    monitor.register(bundle)
    steady = windows_of(bundle, 2, seed=22)
    shifted = windows_of(bundle, 1, seed=23, fixed=SHIFT)

    reports = [
        w.report
        for rows, p, _ in steady + shifted
        for w in monitor.observe_windows(columns_of(bundle, rows, p, 0, 0))
    ]

    assert closer.tests == count_tests(bundle.spec, 3) == 3 + 1 + 1 + 3
    assert [r.schema_version for r in reports] == [3, 3, 3]
    assert [r.thresholds.tests for r in reports] == [8, 8, 8]
    assert not reports[0].drifted and not reports[1].drifted, [r.classes.drifted_tests() for r in reports[:2]]
    last = reports[2]
    assert last.drifted_features == ["messages"] and last.classes is not None
    assert last.classes.predicted.drifted and last.classes.predicted.p_value_threshold is not None
    alert = alert_for(last)
    assert alert is not None and PREDICTED_CLASS in [f.feature for f in alert.features]
    drifted = last.classes.drifted_tests()
    assert set(drifted) <= {PREDICTED_CLASS, *(probability_test(n) for n in bundle.class_names)}
    assert report_problem(last) is None
    back = DriftReport.model_validate_json(last.model_dump_json())
    assert back == last
    line = drift_line(RecordView(0, 2, 1, b"queues:1", last.model_dump_json().encode())).text
    assert "predicted classes drifted" in line and "billing" in line, line


def test_a_binary_models_report_is_written_as_before(bundle: ModelBundle) -> None:
    report = DriftReport.model_validate({**_report_fields(), "schema_version": 2})
    assert "classes" not in report.model_dump_json() and report.schema_version == 2
    with pytest.raises(ValueError, match="schema_version 3"):
        DriftReport.model_validate({**_report_fields(), "schema_version": 3})


# ------------------------------------------------------------------ the estimator


def test_on_a_stationary_stream_the_estimates_hold_the_realized_kpis_in_their_band(
    bundle: ModelBundle,
) -> None:
    estimator = PerformanceEstimator.from_bundle(bundle)
    assert estimator is not None and estimator.holdout_rows == 2_000
    inside = {"accuracy": 0, "f1_macro": 0, "auc_macro_ovr": 0}

    for rows, p, y in windows_of(bundle, 10, seed=24):
        estimate = estimator.estimate(p.max(axis=1), rows, p, window=0)
        realized = multiclass_metrics(y, p)
        assert estimate.task == "multiclass" and estimate.events == WINDOW
        for m in estimate.metrics:
            inside[m.metric] += m.lower <= realized[m.metric] <= m.upper

    assert inside["accuracy"] >= 9, inside
    assert inside["f1_macro"] >= 9 and inside["auc_macro_ovr"] >= 9, inside


def test_under_a_shift_that_lowers_accuracy_the_estimate_falls(bundle: ModelBundle) -> None:
    estimator = PerformanceEstimator.from_bundle(bundle)
    assert estimator is not None

    def accuracy(windows) -> tuple[float, float]:
        rows, p, y = (np.concatenate(parts) for parts in zip(*windows, strict=True))
        estimate = estimator.estimate(p.max(axis=1), rows, p).metric("accuracy")
        return estimate.estimate, float(np.mean(p.argmax(axis=1) == y))

    (steady, steady_real), (shifted, shifted_real) = (
        accuracy(windows_of(bundle, 2, seed=25)),
        accuracy(windows_of(bundle, 2, seed=25, fixed=SHIFT)),
    )

    assert shifted_real < steady_real - 0.03, "the shift lowers the realized accuracy"
    assert shifted < steady - 0.03, (steady, shifted)
    assert abs(shifted - shifted_real) < 0.03, "the estimate follows the covariate shift"


def test_the_macro_f1_std_is_the_spread_of_realized_macro_f1_under_the_calibrated_labels() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 1.5, (800, 3))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    estimated = {e.metric: e for e in multiclass_estimates(p, p)}

    predicted = p.argmax(axis=1)
    draws = [(rng.random(800)[:, None] > np.cumsum(p, axis=1)).sum(axis=1) for _ in range(2_000)]
    realized = np.array([_accuracy_and_macro_f1(y, predicted) for y in draws])
    assert realized[0] == pytest.approx(
        [multiclass_metrics(draws[0], p)[m] for m in ("accuracy", "f1_macro")], rel=1e-12
    )

    assert estimated["accuracy"].value == pytest.approx(realized[:, 0].mean(), abs=0.002)
    assert estimated["accuracy"].std == pytest.approx(realized[:, 0].std(), rel=0.1)
    assert estimated["f1_macro"].value == pytest.approx(realized[:, 1].mean(), abs=0.003)
    assert estimated["f1_macro"].std == pytest.approx(realized[:, 1].std(), rel=0.1)


def _accuracy_and_macro_f1(y: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """What ``multiclass_metrics`` gives for labels ``y``, without its AUC and log loss (fast)."""
    hits = np.bincount(y[y == predicted], minlength=3)
    both = np.bincount(y, minlength=3) + np.bincount(predicted, minlength=3)
    return float(np.mean(y == predicted)), float(np.mean(2 * hits[both > 0] / both[both > 0]))


def test_a_class_the_holdout_barely_has_fits_no_calibrators() -> None:
    p = np.full((200, 3), 1 / 3)
    y = np.r_[np.zeros(100), np.ones(97), np.full(3, 2)]

    assert fit_class_calibration(p, y, ("a", "b", "c")) is None
    assert fit_class_calibration(p, np.r_[np.zeros(100), np.ones(90), np.full(10, 2)], ("a", "b", "c"))


# ------------------------------------------------------------------ the merge and its bounds


def columns_of(bundle: ModelBundle, rows: np.ndarray, p: np.ndarray, partition: int, first: int):
    n = len(rows)
    return MonitorColumns(
        bundle.name,
        bundle.version,
        "features",
        partition,
        range(first, first + n),
        [f"p{partition}e{first + i}" for i in range(n)],
        range(1_700_000_000_000 + first, 1_700_000_000_000 + first + n),
        p.max(axis=1),
        rows,
        classes=bundle.class_names,
        probabilities=p,
    )


def test_merged_partials_carry_the_class_statistics_and_estimate_exactly(bundle: ModelBundle) -> None:
    ((rows, p, _),) = windows_of(bundle, 1, seed=26)
    partials = []
    for part in range(4):
        windows = PartitionWindows(part, 4, WINDOW)
        windows.register(bundle)
        s = slice(part * 500, (part + 1) * 500)
        [partial] = windows.observe(columns_of(bundle, rows[s], p[s], part, 0))
        partials.append(WindowPartial.from_bytes(partial.to_bytes()))
    monitor = DriftMonitor(window_events=WINDOW)
    monitor.register(bundle)
    closed = []
    for part in range(4):  # one monitor fed the partitions' windows one after the other
        s = slice(part * 500, (part + 1) * 500)
        closed += monitor.observe_windows(columns_of(bundle, rows[s], p[s], part, 0))
    [alone] = closed

    merged = merge_window(partials[::-1], WindowCloser(bundle, DriftThresholds()), alone.report.created_at)

    assert np.array_equal(partials[1].probabilities, p[500:1000])
    assert merged.report.classes == alone.report.classes and merged.report == alone.report
    assert merged.estimate is not None and alone.estimate is not None
    assert merged.estimate.metrics == alone.estimate.metrics


def test_partials_claiming_absurd_classes_or_probabilities_are_refused(bundle: ModelBundle) -> None:
    ((rows, p, _),) = windows_of(bundle, 1, seed=27)
    windows = PartitionWindows(0, 1, 200)
    windows.register(bundle)
    partial = windows.observe(columns_of(bundle, rows[:200], p[:200], 0, 0))[0]
    closer = WindowCloser(bundle, DriftThresholds())

    wide = dataclasses.replace(partial, probabilities=np.tile(partial.probabilities, (1, 2)) / 2)
    with pytest.raises(ValueError, match="width 6 for 3 classes"):
        merge_window([WindowPartial.from_bytes(wide.to_bytes())], closer)
    absurd = _resealed(partial.to_bytes(), b'"classes":3', b'"classes":2000000')
    with pytest.raises(PartialRejected, match="classes"):
        WindowPartial.from_bytes(absurd)
    above = partial.probabilities.copy()
    above[7, 1] = 1.5
    with pytest.raises(PartialRejected, match=r"within \[0, 1\]"):
        WindowPartial.from_bytes(dataclasses.replace(partial, probabilities=above).to_bytes())
    none = dataclasses.replace(partial, probabilities=None)
    with pytest.raises(ValueError, match="no class probabilities"):
        merge_window([WindowPartial.from_bytes(none.to_bytes())], closer)
    report = merge_window([partial], closer).report
    assert report_problem(report) is None
    assert report.classes is not None
    predicted = report.classes.predicted.model_copy(update={"counts": {"billing": 10**12, "fraud": 0}})
    lying = report.model_copy(update={"classes": report.classes.model_copy(update={"predicted": predicted})})
    assert "predicted-class counts" in (report_problem(lying) or "")


def _resealed(data: bytes, old: bytes, new: bytes) -> bytes:
    """A partial's bytes with ``old`` replaced by ``new`` in its header and a fresh checksum (a forger's,
    or a bug's): only the header's claim is wrong."""
    magic, version, length, _ = struct.unpack_from("<4sBII", data)
    header = data[13 : 13 + length].replace(old, new)
    rest = header + data[13 + length :]
    crc = zlib.crc32(rest, zlib.crc32(len(header).to_bytes(4, "little")))
    return struct.pack("<4sBII", magic, version, len(header), crc) + rest


def _report_fields() -> dict:
    return {
        "model_name": "m",
        "model_version": "1",
        "window": 0,
        "events": 10,
        "closed_by": "events",
        "start_event_time": 0,
        "end_event_time": 1,
        "spans": [],
        "features": [],
        "prediction": {
            "psi": 0.0,
            "ks_statistic": 0.0,
            "ks_p_value": 1.0,
            "mean": 0.5,
            "reference_mean": 0.5,
            "drifted": False,
        },
        "thresholds": {"psi": 0.2, "p_value": 0.001, "p_value_per_test": 0.001, "tests": 1},
        "drifted_features": [],
        "drifted": False,
        "created_at": 0,
    }


def test_the_learn_paths_ledger_keeps_a_multiclass_estimate_until_its_labels_can_no_longer_come(
    bundle: ModelBundle,
) -> None:
    """Phase D checks it against its labels (tests/unit/test_multiclass_estimate_checks.py); with none,
    it settles unlabelled."""
    estimator = PerformanceEstimator.from_bundle(bundle)
    assert estimator is not None
    [(rows, p, _)] = windows_of(bundle, 1, seed=28)
    span = PartitionSpan(topic="features", partition=0, first_offset=0, last_offset=WINDOW - 1)
    estimate = estimator.estimate(p.max(axis=1), rows, p, window=0, end_event_time=0)
    ledger = EstimateLedger()

    ledger.add(estimate.model_copy(update={"spans": [span]}))

    assert len(ledger.windows) == 1 and ledger.settle(1_000, 2_000) == []
    assert ledger.settle(2**62, 0) == [] and ledger.windows == [] and ledger.unlabelled == 1


def test_the_exported_schema_takes_both_report_versions(tmp_path) -> None:
    export_json_schemas(tmp_path)
    schema = Draft202012Validator(orjson.loads((tmp_path / "drift_report.schema.json").read_bytes()))
    classes = {
        "predicted": {
            "counts": {"a": 6, "b": 4},
            "reference_counts": {"a": 50, "b": 50},
            "psi": 0.04,
            "chi2_statistic": 0.4,
            "chi2_p_value": 0.53,
            "drifted": False,
        },
        "probabilities": [
            {"name": n, "psi": 0.1, "ks_statistic": 0.2, "ks_p_value": 0.3, "mean": 0.5,
             "reference_mean": 0.5, "drifted": False}
            for n in ("a", "b")
        ],
    }  # fmt: skip
    multiclass = DriftReport.model_validate({**_report_fields(), "schema_version": 3, "classes": classes})
    binary = DriftReport.model_validate(_report_fields())

    for report in (multiclass, binary):
        body = orjson.loads(report.model_dump_json())
        assert schema.is_valid(body), list(schema.iter_errors(body))[:1]
    assert "classes" not in orjson.loads(binary.model_dump_json())
