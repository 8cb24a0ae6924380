"""One readable line per record of the report topics: drift, metrics, model updates, alerts, retraining.

A topic that carries several messages (``drift``: reports, alerts, estimates) is read by its
``type`` field first, then by that message's own schema; like ``lines``, a record that is
none of them raises ``ValueError`` and is shown as undecodable.
"""

from __future__ import annotations

import orjson

from schemas.checkpoint import StateAlert
from schemas.drift import ClassDrift, DriftAlert, DriftReport, FeatureDrift
from schemas.estimation import EstimatedKpiAlert, PerformanceEstimate
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from schemas.lifecycle import ModelAlert, ModelUpdate, RetrainRequest
from streams.cli.tail.lines import Line, RecordView, Undecodable, body, iso

FEATURES_SHOWN = 6  # drifted features listed per report; the rest are counted


def drift_line(record: RecordView) -> Line:
    kind = _type(record)
    if kind == "drift_report":
        return _report(DriftReport.model_validate_json(record.value))
    if kind == "drift_alert":
        return _alert(DriftAlert.model_validate_json(record.value))
    if kind == "performance_estimate":
        return _estimate(PerformanceEstimate.model_validate_json(record.value))
    if kind == "estimated_kpi_alert":
        a = EstimatedKpiAlert.model_validate_json(record.value)
        says = f"estimated {a.metric} {_n(a.estimate)} [{_n(a.lower)}, {_n(a.upper)}], past {a.threshold:g}"
        return _model_line(a.model_name, a.model_version, f"window {a.window}  ALERT {says}")
    if kind == "concept_drift_alert":
        c = ConceptDriftAlert.model_validate_json(record.value)
        return Line(f"{c.model}  CONCEPT DRIFT {c.message}", models=(c.model,))
    raise Undecodable(f"type {kind!r} is not a message of the drift topic")


def _report(r: DriftReport) -> Line:
    span = f"{iso(r.start_event_time)}..{iso(r.end_event_time)}"
    head = f"window {r.window}  {r.events} events  {span}"
    drifted = [f for f in r.features if f.drifted]
    if drifted:
        listed = "; ".join(_feature(f) for f in drifted[:FEATURES_SHOWN])
        more = f"; +{len(drifted) - FEATURES_SHOWN} more" if len(drifted) > FEATURES_SHOWN else ""
        says = f"drifted: {listed}{more}"
    else:
        says = "no feature drifted"
    if r.prediction.drifted:
        says += f"; scores drifted (psi {_n(r.prediction.psi)}, mean {_n(r.prediction.mean)} "
        says += f"vs {_n(r.prediction.reference_mean)})"
    if r.classes is not None and r.classes.drifted_tests():
        says += f"; {_classes(r.classes)}"
    if r.changes:
        says += f"; {len(r.changes)} detector changes"
    return _model_line(r.model_name, r.model_version, f"{head}  {says}")


def _classes(c: ClassDrift) -> str:
    """A multiclass model's drifted outputs: its predicted classes' counts, the classes' probabilities."""
    parts = []
    p = c.predicted
    if p.drifted:
        counts = ", ".join(f"{name} {n}" for name, n in p.counts.items())
        parts.append(f"predicted classes drifted (psi {_n(p.psi)}, chi2 p {_n(p.chi2_p_value)}: {counts})")
    moved = [f"{x.name} (mean {_n(x.mean)} vs {_n(x.reference_mean)})" for x in c.probabilities if x.drifted]
    if moved:
        parts.append(f"probabilities drifted: {', '.join(moved)}")
    return "; ".join(parts)


def _feature(f: FeatureDrift) -> str:
    if f.kind == "numeric":
        test = f"ks {_n(f.ks_statistic)} p {_n(f.ks_p_value)}"
        shift = f" mean {f.mean_shift_sd:+.2f} sd" if f.mean_shift_sd is not None else ""
    else:
        test, shift = f"chi2 {_n(f.chi2_statistic)} p {_n(f.chi2_p_value)}", ""
    return f"{f.feature} (psi {_n(f.psi)}, {test}{shift})"


def _alert(a: DriftAlert) -> Line:
    """What crossed a threshold, from the alert's fields (its message repeats the model and window)."""
    moved = [f"{f.feature} (psi {_n(f.psi)}, p {_n(f.p_value)})" for f in a.features]
    if a.prediction_drifted:
        moved.append("the scores")
    if a.changes:
        moved.append(f"{len(a.changes)} detector changes")
    says = f"drift in {', '.join(moved)}" if moved else a.message
    return _model_line(a.model_name, a.model_version, f"window {a.window}  ALERT {says}")


def _estimate(e: PerformanceEstimate) -> Line:
    shown = ", ".join(f"{m.metric} {_n(m.estimate)} [{_n(m.lower)}, {_n(m.upper)}]" for m in e.metrics)
    return _model_line(e.model_name, e.model_version, f"window {e.window}  estimated {shown}")


MULTICLASS_SHOWN = ("f1_macro", "log_loss")  # beside accuracy, over every label


def metrics_line(record: RecordView) -> Line:
    """The join's counts, then each model's primary KPI: over the last window and over all labels."""
    s = MetricsSnapshot.model_validate_json(body(record))
    j, kpi = s.labels, s.primary_metric
    text = (
        f"labels matched {j.matched}, waiting {j.pending_events} events / {j.pending_labels} labels, "
        f"expired {j.expired_events}, unmatched {j.unmatched_labels}"
    )
    models = []
    for row in s.kpis:
        if row.segment_feature != "all":
            continue
        role = (
            " (champion)" if row.model == s.champion else " (challenger)" if row.model == s.challenger else ""
        )
        rolling, overall = _n(row.rolling.get(kpi)), _n(row.cumulative.get(kpi))
        text += f" | {row.model}{role} {kpi} {overall} over {row.count}, last {s.window}: {rolling}"
        if s.task == "multiclass":  # the two that say what accuracy hides: rare classes, confidence
            text += "".join(f", {m} {_n(row.cumulative.get(m))}" for m in MULTICLASS_SHOWN)
        models.append(row.model)
    if s.task == "multiclass" and not s.kpis:
        text += " | a multiclass model: no labelled events yet"
    if s.estimate_checks:
        disagree = sum(c.disagree for c in s.estimate_checks)
        text += f" | {len(s.estimate_checks)} estimate checks, {disagree} outside the band"
    return Line(text, models=tuple(models))


def update_line(record: RecordView) -> Line:
    if record.value is None:
        return Line(f"{record.key_text}  serving state deleted (a tombstone)", models=(record.key_text,))
    u = ModelUpdate.model_validate_json(record.value)
    champion = f"{u.champion.name}:{u.champion.version}"
    text, models = f"{u.action}  champion {champion}", [champion]
    if u.challenger is not None:
        challenger = f"{u.challenger.name}:{u.challenger.version}"
        share = f" {u.challenger_share:.0%}" if u.mode == "split" else ""
        text += f", challenger {challenger} ({u.mode}{share})"
        models.append(challenger)
    return Line(text + (f"  reason: {u.reason}" if u.reason else ""), models=tuple(models))


def alert_line(record: RecordView) -> Line:
    kind = _type(record)
    if kind == "model_alert":
        a = ModelAlert.model_validate_json(record.value)
        check = f" ({a.check.value})" if a.check.value else ""
        text = f"{a.outcome}{check} version {a.version}: {a.reason}; serving {a.serving} on {a.worker}"
        return Line(text, models=(a.serving,))
    if kind == "state_alert":
        a = StateAlert.model_validate_json(record.value)
        return Line(f"{a.role} state on {a.worker}: {a.problem}; {a.action}")
    raise Undecodable(f"type {kind!r} is not a message of the alerts topic")


def retrain_line(record: RecordView) -> Line:
    r = RetrainRequest.model_validate_json(body(record))
    return Line(f"{r.model}  retrain ({r.trigger}): {r.reason}", models=(r.model,))


def _type(record: RecordView) -> object:
    message = orjson.loads(body(record))
    if not isinstance(message, dict):
        raise Undecodable(f"a JSON {type(message).__name__}, not a message")
    return message.get("type")


def _model_line(name: str, version: str, text: str) -> Line:
    model = f"{name}:{version}"
    return Line(f"{model}  {text}", models=(model,))


def _n(value: float | None) -> str:
    """A statistic in 3 significant digits; null as n/a."""
    return "n/a" if value is None else f"{value:.3g}"
