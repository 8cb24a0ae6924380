"""Every alert's false-alarm rate on stationary streams and its delay to a change of a stated size.

In process, no broker: the service's own statistics and decisions (``scoring``) on
synthetic streams whose truth is known, millions of values in seconds.

- concept drift, per detector (the error CUSUM, river's ADWIN and PageHinkley at their
  defaults) on error streams of binary models at several error rates and of regression
  models: values per false alarm, and the delay to a 10-point rise of the error rate
  (binary) or a 0.25-sd rise of the mean absolute error (regression);
- feature and prediction drift, per rule (the rule before issue 33 and the rule now): windows
  of 20 features of several distributions and a score, against references drawn as
  training draws them: false alarms per 1,000 windows, and whether a 0.25-sd shift of one
  feature is flagged in the first window it fills;
- estimated-KPI alerts (the drift path's ``EstimateWatch``) on a trained model's windows,
  and the KPI retrain requests (``KpiWatch``);
- the Prometheus rules of deploy/prometheus/rules.yml, evaluated by ``promtool test rules``
  on the series a stationary run of these windows would put on /metrics;
- ``--live N``: a worker with every role on the embedded broker, N stationary labelled
  events (tests/integration/alert_runs.py, the integration test's run): the alerts it sends.

    .venv/bin/python bench/alerts.py [--quick] [--values 1e8] [--windows 1000] [--live 500000]

docs/alerts.md holds the table of one run and the targets the defaults were chosen for.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from river import drift as river_drift
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from schemas.drift import FeatureDrift, PredictionDrift
from schemas.estimation import PerformanceEstimate
from schemas.feedback import JoinCounts, KpiRow, MetricsSnapshot
from scoring.drift.compare import (
    DriftThresholds,
    NumericBaseline,
    compare_categorical,
    compare_numeric,
    compare_scores,
    decide,
)
from scoring.drift.cusum import DEFAULT_SHIFT, ErrorCusum
from scoring.estimation import PerformanceEstimator
from scoring.lifecycle.retrain import EstimateWatch, KpiWatch
from scoring.model.reference import CategoricalReference, numeric_reference
from scoring.offline.synthetic import logistic_frame
from scoring.offline.training import train_bundle
from streams.settings import Settings

DEFAULTS = Settings()
NOW = DriftThresholds(
    psi=DEFAULTS.drift_psi_threshold,
    p_value=DEFAULTS.drift_p_value,
    psi_floor=DEFAULTS.drift_psi_floor,
    correction=DEFAULTS.drift_correction,
)
BEFORE = {"psi": 0.2, "p_value": 0.01}  # the rule before issue 33: PSI >= 0.2 or p < 0.01 / tests
ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- streams


def error_stream(kind: str, n: int, rng: np.random.Generator, rise: float = 0.0) -> np.ndarray:
    """``n`` errors of a stationary stream of ``kind``, raised by ``rise`` (points, or sd) if given.

    ``binary:P``: 0/1 errors at rate P; ``abs-normal``: |N(0, 1)|, the absolute error of a
    regression with normal residuals; ``lognormal``: a heavy-tailed error.
    """
    if kind.startswith("binary:"):
        return (rng.random(n) < float(kind.partition(":")[2]) + rise).astype(float)
    if kind == "abs-normal":
        return np.abs(rng.standard_normal(n)) + rise * math.sqrt(1 - 2 / math.pi)
    if kind == "lognormal":
        return rng.lognormal(0.0, 1.0, n) + rise * math.sqrt((math.e - 1) * math.e)
    raise ValueError(kind)


def detector_kind(stream: str) -> str:
    return "binary" if stream.startswith("binary:") else "continuous"


def river_alarms(detector, values: np.ndarray) -> list[int]:
    hits, update = [], detector.update
    for i, value in enumerate(values.tolist()):
        update(value)
        if detector.drift_detected:
            hits.append(i)
    return hits


def alarms_of(name: str, stream: str) -> Callable[[np.ndarray], list[int]]:
    """A fresh detector of ``name`` for ``stream``: values in, alarm indices out."""
    if name.startswith("cusum"):
        threshold = float(name.partition("@")[2] or DEFAULTS.concept_threshold)
        kind = detector_kind(stream)
        shift = DEFAULTS.concept_shift_rate if kind == "binary" else DEFAULTS.concept_shift_sd
        return lambda values: (
            ErrorCusum(kind, shift, threshold, DEFAULTS.concept_warmup).scan(values).tolist()
        )
    if name == "adwin":
        return lambda values: river_alarms(river_drift.ADWIN(), values)
    return lambda values: river_alarms(river_drift.PageHinkley(), values)


def arl_bound(values: int, alarms: int) -> float:
    """Values per false alarm at the 95% lower confidence bound (Poisson, one-sided)."""
    return values / (stats.chi2.ppf(0.95, 2 * alarms + 2) / 2)


# ---------------------------------------------------------------- concept drift


def concept_rows(args: argparse.Namespace) -> list[dict]:
    """False alarms on long stationary streams and the delay to a change, per detector and stream."""
    streams = ["binary:0.05", "binary:0.1", "binary:0.2", "binary:0.5", "abs-normal", "lognormal"]
    budgets = {"cusum": args.values, "adwin": args.river_values, "page_hinkley": args.river_values / 5}
    rows = []
    for stream in streams:
        for name in ("cusum", "adwin", "page_hinkley"):
            rng = np.random.default_rng(zlib.crc32(f"{stream} {name}".encode()))
            started = time.perf_counter()
            total, alarms, chunk = int(budgets[name]), 0, 5_000_000
            for start in range(
                0, total, chunk
            ):  # independent streams of 5M values, each from a fresh detector
                alarms += len(alarms_of(name, stream)(error_stream(stream, min(chunk, total - start), rng)))
            delays, early, missed = change_delays(name, stream, args.trials, rng)
            rows.append(
                {
                    "stream": stream,
                    "detector": name,
                    "values": total,
                    "alarms": alarms,
                    "arl0": total / alarms if alarms else math.inf,
                    "arl0_low": arl_bound(total, alarms),
                    "delays": delays,
                    "early": early,
                    "missed": missed,
                    "trials": args.trials,
                    "seconds": time.perf_counter() - started,
                }
            )
            print(
                f"  {stream} {name}: {alarms} alarms in {total:,}; {time.perf_counter() - started:.1f} s",
                flush=True,
            )
    return rows


PRE_CHANGE, HORIZON = 50_000, 20_000


def change_delays(
    name: str, stream: str, trials: int, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """Delays (values after the change to the first alarm after it) over ``trials`` streams that change
    after ``PRE_CHANGE`` values: +0.10 error rate (binary) or +0.25 sd (regression). Also how many
    alarmed before the change (``early``) and how many did not alarm within ``HORIZON`` (``missed``)."""
    rise = 0.10 if stream.startswith("binary:") else 0.25
    delays, early, missed = [], 0, 0
    for _ in range(trials):
        values = np.concatenate(
            [error_stream(stream, PRE_CHANGE, rng), error_stream(stream, HORIZON, rng, rise)]
        )
        hits = np.asarray(alarms_of(name, stream)(values))
        early += bool((hits < PRE_CHANGE).any())
        after = hits[hits >= PRE_CHANGE]
        if after.size:
            delays.append(int(after[0]) - PRE_CHANGE + 1)
        else:
            missed += 1
    return np.asarray(delays), early, missed


def threshold_sweep(args: argparse.Namespace) -> list[dict]:
    """The CUSUM's threshold against its false alarms (worst of the binary streams) and delay (20 -> 30%)."""
    rows = []
    for threshold in (11, 13, 15, 17):
        name = f"cusum@{threshold}"
        worst = None
        for stream in ("binary:0.05", "binary:0.2", "binary:0.5"):
            rng = np.random.default_rng(threshold * 7 + len(stream))
            total = int(args.values / 4)
            alarms = sum(
                len(alarms_of(name, stream)(error_stream(stream, 5_000_000, rng)))
                for _ in range(total // 5_000_000)
            )
            arl = total / alarms if alarms else math.inf
            worst = arl if worst is None else min(worst, arl)
        delays, _, _ = change_delays(name, "binary:0.2", args.trials, np.random.default_rng(threshold))
        rows.append({"threshold": threshold, "worst_arl0": worst, "values": total, "delays": delays})
    return rows


# ---------------------------------------------------------------- feature and prediction drift

KINDS = ["normal"] * 5 + ["lognormal"] * 4 + ["uniform"] * 4 + ["poisson"] * 4 + ["categorical"] * 3
SD = {
    "normal": 1.0,
    "lognormal": math.sqrt((math.e - 1) * math.e),
    "uniform": math.sqrt(1 / 12),
    "poisson": 3**0.5,
}
CATEGORIES = ["a", "b", "c", "d", "e"]
SHARES = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
WEIGHTS = np.r_[0.8, -0.6, 0.4, np.zeros(17)]  # the score depends on three normal features


def feature_matrix(n: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    """``n`` rows of the 20 features of ``KINDS`` (categories as codes); feature 0 moved by ``shift`` sd."""
    columns = []
    for kind in KINDS:
        if kind == "normal":
            columns.append(rng.standard_normal(n))
        elif kind == "lognormal":
            columns.append(rng.lognormal(0.0, 1.0, n))
        elif kind == "uniform":
            columns.append(rng.random(n))
        elif kind == "poisson":
            columns.append(rng.poisson(3.0, n).astype(float))
        else:
            columns.append(rng.choice(len(CATEGORIES), size=n, p=SHARES).astype(float))
    matrix = np.column_stack(columns)
    matrix[:, 0] += shift * SD[KINDS[0]]
    return matrix


def scores_of(matrix: np.ndarray) -> np.ndarray:
    """A model's score: a logistic function of three of the features."""
    return 1 / (1 + np.exp(-(matrix @ WEIGHTS)))


class Reference:
    """A reference as a bundle carries it: training bins and sample per feature, holdout scores."""

    def __init__(self, rng: np.random.Generator, train_rows: int, holdout_rows: int) -> None:
        train = feature_matrix(train_rows, rng)
        self.baselines = []
        for j, kind in enumerate(KINDS):
            if kind == "categorical":
                counts = np.bincount(train[:, j].astype(int), minlength=len(CATEGORIES))
                self.baselines.append(
                    CategoricalReference(
                        frequencies={c: int(k) for c, k in zip(CATEGORIES, counts, strict=True)},
                        missing=0,
                        total=train_rows,
                    )
                )
            else:
                self.baselines.append(NumericBaseline.of(numeric_reference(train[:, j], seed=j)))
        self.score = NumericBaseline.of(numeric_reference(scores_of(feature_matrix(holdout_rows, rng))))

    def window(self, matrix: np.ndarray) -> tuple[list[FeatureDrift], PredictionDrift]:
        features = []
        for j, (kind, base) in enumerate(zip(KINDS, self.baselines, strict=True)):
            if kind == "categorical":
                features.append(compare_categorical(f"x{j:02d}", base, CATEGORIES, matrix[:, j]))
            else:
                features.append(compare_numeric(f"x{j:02d}", base, matrix[:, j]))
        return features, compare_scores(self.score, scores_of(matrix))


def flags_before(features: list[FeatureDrift], prediction: PredictionDrift) -> tuple[list[bool], bool]:
    """The rule before issue 33: PSI >= 0.2, or a p-value below 0.01 / tests (Bonferroni)."""
    level = BEFORE["p_value"] / (len(features) + 1)

    def flag(psi: float | None, p: float | None) -> bool:
        return (psi is not None and psi >= BEFORE["psi"]) or (p is not None and p < level)

    return (
        [flag(f.psi, f.ks_p_value if f.kind == "numeric" else f.chi2_p_value) for f in features],
        flag(prediction.psi, prediction.ks_p_value),
    )


def flags_now(features: list[FeatureDrift], prediction: PredictionDrift) -> tuple[list[bool], bool]:
    flagged, score = decide(features, prediction, NOW)
    return [f.drifted for f in flagged], score.drifted


RULES = {"before": flags_before, "now": flags_now}


def drift_rows(args: argparse.Namespace) -> tuple[list[dict], list[tuple[list[bool], bool]]]:
    """Per window size and rule: stationary windows with a flag, per 1,000; a 0.25-sd shift of feature 0.

    Windows are spread over ``args.references`` references (a bundle's reference is one draw
    of training: windows compared with the same one are not independent of each other).
    Also returns the first reference's stationary windows' flags under the rule now (for the
    Prometheus rules)."""
    rows, series = [], []
    for size in args.window_sizes:
        per_ref = max(1, args.windows // args.references)
        counts = {
            rule: {"windows": 0, "any": 0, "score": 0, "worst": 0.0, "hit": 0, "others": 0} for rule in RULES
        }
        started = time.perf_counter()
        for r in range(args.references):
            rng = np.random.default_rng(1000 + r)
            reference = Reference(rng, args.train_rows, args.holdout_rows)
            alarms = dict.fromkeys(RULES, 0)
            for _ in range(per_ref):
                features, prediction = reference.window(feature_matrix(size, rng))
                for rule, flags in RULES.items():
                    flagged, score = flags(features, prediction)
                    counts[rule]["windows"] += 1
                    counts[rule]["any"] += any(flagged) or score
                    counts[rule]["score"] += score
                    alarms[rule] += any(flagged) or score
                    if rule == "now" and r == 0 and size == args.window_sizes[0]:
                        series.append((flagged, score))
            for rule in RULES:
                counts[rule]["worst"] = max(counts[rule]["worst"], alarms[rule] / per_ref)
            shifted = max(1, args.shifted // args.references)
            for _ in range(shifted):
                features, prediction = reference.window(feature_matrix(size, rng, shift=0.25))
                for rule, flags in RULES.items():
                    flagged, _ = flags(features, prediction)
                    counts[rule]["hit"] += flagged[0]
                    counts[rule]["others"] += any(flagged[1:])
        for rule, c in counts.items():
            rows.append(
                {
                    "size": size,
                    "rule": rule,
                    "shifted": args.references * max(1, args.shifted // args.references),
                    **c,
                }
            )
        print(f"  windows of {size:,}: {time.perf_counter() - started:.1f} s", flush=True)
    return rows, series


# ---------------------------------------------------------------- estimated KPIs and KPI requests


def estimate_rows(args: argparse.Namespace) -> tuple[list[dict], list[float]]:
    """``EstimateWatch`` on a trained model's windows: stationary, and squeezed towards the boundary."""
    bundle = train_bundle(logistic_frame(20_000, seed=1), "y", name="bench", num_trees=40)
    estimator = PerformanceEstimator.from_bundle(bundle)
    names = [f"x{i}" for i in range(6)]

    def windows(scale: float, count: int, seed: int) -> list[PerformanceEstimate]:
        out = []
        for w in range(count):
            frame = logistic_frame(10_000, seed=seed + w, scale=scale)
            rows = bundle.spec.encode_frame(frame[names])
            e = estimator.estimate(bundle.predict(rows), rows, window=w, start_event_time=w, end_event_time=w)
            accuracy = float(((bundle.predict(rows) >= bundle.metadata.threshold) == frame["y"]).mean())
            out.append((e, accuracy))
        return out

    stationary = windows(1.0, args.estimate_windows, 10_000)
    accuracy = float(np.mean([a for _, a in stationary]))
    estimates = [e.metric("accuracy").estimate for e, _ in stationary]
    rows = []
    for threshold in (DEFAULTS.alert_kpi_min, round(accuracy - 0.05, 3), round(accuracy - 0.02, 3)):
        watch = EstimateWatch("accuracy", threshold)
        alerts = [watch.check(e) for e, _ in stationary]
        rows.append(
            {
                "threshold": threshold,
                "windows": len(stationary),
                "firing": sum(a is not None and a.status == "firing" for a in alerts),
            }
        )
    # a covariate shift that costs the model about 10 points of accuracy: x0 squeezed to 0.35 of its sd
    shifted = windows(0.35, 5, 90_000)
    shifted_accuracy = float(np.mean([a for _, a in shifted]))
    for row in rows:
        watch = EstimateWatch("accuracy", row["threshold"])
        fired = [watch.check(e) for e, _ in shifted]
        first = next((i for i, a in enumerate(fired) if a is not None), None)
        row.update(accuracy=accuracy, shifted_accuracy=shifted_accuracy, first_window=first)
    return rows, estimates


def kpi_request_rows(args: argparse.Namespace) -> list[dict]:
    """``KpiWatch`` (STREAMSCORE_RETRAIN_KPI_THRESHOLD, off by default) on stationary labelled streams:
    a snapshot every 1,000 labels with the rolling accuracy of the last 1,000 (the default KPI window)."""
    rows = []
    rng = np.random.default_rng(5)
    for error, threshold in ((0.1, 0.85), (0.2, 0.75), (0.2, 0.7)):
        watch, requests = KpiWatch(threshold, "binary"), 0
        total = int(args.values / 10)
        for start in range(0, total, 5_000_000):
            rolling = 1 - (rng.random(min(5_000_000, total - start)) < error).reshape(-1, 1000).mean(axis=1)
            for value in rolling.tolist():
                requests += watch.check(_snapshot(value)) is not None
        rows.append({"error": error, "threshold": threshold, "labels": total, "requests": requests})
    return rows


def _snapshot(accuracy: float) -> MetricsSnapshot:
    row = KpiRow(
        model="bench:1",
        segment_feature="all",
        segment_value="all",
        count=1000,
        rolling={"accuracy": accuracy},
        cumulative={},
        gap_to_overall=None,
        flagged=False,
    )
    counts = JoinCounts(matched=0, pending_events=0, pending_labels=0, expired_events=0, unmatched_labels=0)
    return MetricsSnapshot.model_construct(
        task="binary",
        window=1000,
        primary_metric="accuracy",
        champion="bench:1",
        challenger="",
        labels=counts,
        kpis=[row],
        changes=[],
        estimate_checks=[],
        created_at=0,
    )


# ---------------------------------------------------------------- Prometheus rules


def prometheus_rows(drift_series: list[tuple[list[bool], bool]], estimates: list[float]) -> dict:
    """The shipped rules under ``promtool test rules`` on the series of a stationary run, one window a minute:
    each rule is expected quiet at every minute; the failures are the rules that fired."""
    minutes = min(len(drift_series), 600)
    labels = 'instance="worker:6066", job="streamscore", model_name="bench", model_version="1"'
    series = []
    for j in range(len(KINDS)):
        values = " ".join(str(int(drift_series[m][0][j])) for m in range(minutes))
        series.append(
            {"series": f'streamscore_drift_drifted{{{labels}, feature="x{j:02d}"}}', "values": values}
        )
    values = " ".join(str(int(drift_series[m][1])) for m in range(minutes))
    series.append({"series": f"streamscore_prediction_drift_drifted{{{labels}}}", "values": values})
    values = " ".join(f"{estimates[m % len(estimates)]:.4f}" for m in range(minutes))
    series.append({"series": f'streamscore_estimated_kpi{{{labels}, metric="accuracy"}}', "values": values})
    for status in ("firing", "resolved"):
        for severity in ("warning", "critical"):
            series.append(
                {
                    "series": "streamscore_concept_drift_alerts_total"
                    f'{{instance="worker:6066", job="streamscore", '
                    f'model_version="1", status="{status}", severity="{severity}"}}',
                    "values": f"0x{minutes - 1}",
                }
            )
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    cases = [{"eval_time": f"{m}m", "alertname": n, "exp_alerts": []} for m in range(minutes) for n in names]
    with tempfile.TemporaryDirectory() as tmp:
        test = Path(tmp) / "stationary_test.yml"
        test.write_text(
            yaml.safe_dump(
                {
                    "rule_files": [str(ROOT / "deploy/prometheus/rules.yml")],
                    "evaluation_interval": "1m",
                    "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
                }
            )
        )
        done = subprocess.run(
            ["promtool", "test", "rules", str(test)], capture_output=True, text=True, check=False
        )
    fired = done.stdout.count("alertname:") + done.stderr.count("alertname:")
    return {
        "minutes": minutes,
        "rules": len(names),
        "cases": len(cases),
        "fired": fired,
        "ok": done.returncode == 0,
    }


# ---------------------------------------------------------------- the table


def _delay(delays: np.ndarray) -> str:
    if not delays.size:
        return "n/a"
    return f"{np.median(delays):,.0f} / {np.percentile(delays, 90):,.0f} / {delays.max():,}"


def _arl(row: dict) -> str:
    if row["alarms"] == 0:
        return f"none in {row['values']:,} (>= {row['arl0_low']:,.0f})"
    return f"{row['arl0']:,.0f} (>= {row['arl0_low']:,.0f})"


def print_tables(args: argparse.Namespace, figures: dict) -> None:
    print("\n### Concept drift: the error stream of a serving model (per learn shard)\n")
    print(
        "| stream | detector | false alarms / values | values per false alarm (95% lower bound) | "
        "delay to the change, values: median / p90 / max | alarms before it | missed |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in figures.get("concept", []):
        change = "+10 points" if row["stream"].startswith("binary") else "+0.25 sd"
        print(
            f"| {row['stream']} ({change}) | {row['detector']} | {row['alarms']} / {row['values']:,} "
            f"| {_arl(row)} | "
            f"{_delay(row['delays'])} | {row['early']} of {row['trials']} | {row['missed']} |"
        )
    if figures.get("sweep"):
        print("\n### The CUSUM's threshold (binary errors)\n")
        print(
            "| threshold | values per false alarm, worst of 5%, 20%, 50% "
            "| delay 20 -> 30%: median / p90 / max |"
        )
        print("| --- | --- | --- |")
        for row in figures["sweep"]:
            arl = (
                f"{row['worst_arl0']:,.0f}"
                if math.isfinite(row["worst_arl0"])
                else f"none in {row['values']:,}"
            )
            print(f"| {row['threshold']} | {arl} | {_delay(row['delays'])} |")
    if figures.get("drift"):
        print("\n### Feature and prediction drift: windows of 20 features and the score\n")
        print(
            "| window | rule | stationary windows flagged per 1,000 (score alone) "
            "| worst reference, per 1,000 | "
            "0.25-sd shift of one feature: flagged in its first window | other features flagged |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for row in figures["drift"]:
            per = 1000 / row["windows"]
            print(
                f"| {row['size']:,} | {row['rule']} | {row['any'] * per:.1f} of {row['windows']:,} "
                f"({row['score'] * per:.1f}) "
                f"| {row['worst'] * 1000:.0f} | {row['hit']} of {row['shifted']} | {row['others']} |"
            )
    if figures.get("estimates"):
        print("\n### Estimated-KPI alerts (accuracy, windows of 10,000)\n")
        print(
            "| alert threshold | stationary windows (accuracy) | firing alerts "
            "| after a shift to accuracy | first alert |"
        )
        print("| --- | --- | --- | --- | --- |")
        for row in figures["estimates"]:
            first = (
                "none in 5 windows" if row["first_window"] is None else f"window {row['first_window'] + 1}"
            )
            print(
                f"| {row['threshold']} | {row['windows']:,} ({row['accuracy']:.3f}) | {row['firing']} | "
                f"{row['shifted_accuracy']:.3f} | {first} |"
            )
    if figures.get("kpi"):
        print("\n### KPI retrain requests (STREAMSCORE_RETRAIN_KPI_THRESHOLD, off by default)\n")
        print("| error rate | threshold | labels | requests |")
        print("| --- | --- | --- | --- |")
        for row in figures["kpi"]:
            print(f"| {row['error']:.0%} | {row['threshold']} | {row['labels']:,} | {row['requests']} |")
    if figures.get("prometheus"):
        p = figures["prometheus"]
        print(
            f"\nPrometheus rules (promtool test rules): {p['rules']} rules x {p['minutes']} minutes "
            "of a stationary "
            f"run (one window a minute) = {p['cases']} evaluations; alerts fired: {p['fired']}"
        )
    if figures.get("live"):
        print("\n### A live worker, every role, 4 partitions\n")
        print(figures["live"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the values and windows")
    parser.add_argument("--values", type=float, default=1e8, help="values per stationary stream (CUSUM)")
    parser.add_argument(
        "--river-values", type=float, default=1e7, help="values per stream for ADWIN (PH: a fifth)"
    )
    parser.add_argument("--trials", type=int, default=200, help="changes per stream for the delay")
    parser.add_argument("--windows", type=int, default=1000, help="stationary windows per window size")
    parser.add_argument("--shifted", type=int, default=200, help="windows with a 0.25-sd shift per size")
    parser.add_argument("--references", type=int, default=20, help="references the windows are spread over")
    parser.add_argument("--window-sizes", type=int, nargs="+", default=[10_000, 1_000, 100])
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--holdout-rows", type=int, default=4_000)
    parser.add_argument("--estimate-windows", type=int, default=200)
    parser.add_argument(
        "--only", nargs="+", choices=["concept", "sweep", "drift", "estimates", "kpi", "prometheus"]
    )
    parser.add_argument("--live", type=int, default=0, help="also run a live worker on this many events")
    args = parser.parse_args()
    if args.quick:
        args.values, args.river_values, args.trials = (
            args.values / 10,
            args.river_values / 10,
            args.trials // 4,
        )
        args.windows, args.shifted, args.estimate_windows = args.windows // 10, args.shifted // 5, 40
        args.references = min(args.references, 5)
    only = set(args.only or ["concept", "sweep", "drift", "estimates", "kpi", "prometheus"])
    print(f"defaults: {DEFAULT_SHIFT=} threshold {DEFAULTS.concept_threshold}, drift {NOW}", flush=True)
    figures: dict = {}
    started = time.perf_counter()
    if "concept" in only:
        figures["concept"] = concept_rows(args)
    if "sweep" in only:
        figures["sweep"] = threshold_sweep(args)
    series: list = []
    if "drift" in only or "prometheus" in only:
        figures["drift"], series = drift_rows(args)
    estimates: list[float] = []
    if "estimates" in only or "prometheus" in only:
        figures["estimates"], estimates = estimate_rows(args)
    if "kpi" in only:
        figures["kpi"] = kpi_request_rows(args)
    if "prometheus" in only:
        figures["prometheus"] = prometheus_rows(series, estimates)
    if args.live:
        from tests.integration.alert_runs import live_count

        figures["live"] = live_count(args.live)
    print(f"\n(in {time.perf_counter() - started:.0f} s)")
    print_tables(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
