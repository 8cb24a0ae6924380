"""The alert a closed window raises: the drifted features, how far each moved, and the score's drift.

``alert_for`` gives the firing alert of one report with its evidence: each drifted test's
statistic, p-value and the corrected level it was held to, PSI, the window's size and
thresholds. A multiclass model's drifted outputs join ``features`` under the names
``(predicted class)`` and ``(probability NAME)`` (no feature is named so: names in parentheses
are the model's outputs, as ``(prediction)`` in the episodes of ``scoring.alerts.drift``).
Severity: ``critical`` when a drifted test's PSI reaches ``thresholds.psi``
(a shift large by the industry's rule of thumb), else ``warning``. Whether it is sent
(once per episode, cool-down, resolved) is ``scoring.alerts.drift``.
"""

from __future__ import annotations

from schemas.drift import PREDICTED_CLASS, DriftAlert, DriftReport, FeatureShift, probability_test


def alert_for(report: DriftReport) -> DriftAlert | None:
    """The alert a report raises, or None when no test was flagged."""
    if not report.drifted:
        return None
    shifts = [
        FeatureShift(
            feature=f.feature,
            psi=f.psi,
            p_value=f.ks_p_value if f.kind == "numeric" else f.chi2_p_value,
            statistic=f.ks_statistic if f.kind == "numeric" else f.chi2_statistic,
            mean_shift_sd=f.mean_shift_sd,
            missing_rate_change=f.missing_rate_change,
            reasons=f.reasons,
            p_value_threshold=f.p_value_threshold,
        )
        for f in report.features
        if f.drifted
    ] + _output_shifts(report)
    parts = [f"{s.feature} ({'; '.join(s.reasons)})" for s in shifts]
    if report.prediction.drifted:
        parts.append(f"prediction ({'; '.join(report.prediction.reasons)})")
    psis = [s.psi for s in shifts] + ([report.prediction.psi] if report.prediction.drifted else [])
    critical = any(p is not None and p >= report.thresholds.psi for p in psis)
    return DriftAlert(
        model_name=report.model_name,
        model_version=report.model_version,
        window=report.window,
        start_event_time=report.start_event_time,
        end_event_time=report.end_event_time,
        features=shifts,
        prediction_drifted=report.prediction.drifted,
        changes=report.changes,
        message=f"{report.model_name} {report.model_version} window {report.window} "
        f"({report.events:,} events): drift in " + ", ".join(parts),
        created_at=report.created_at,
        severity="critical" if critical else "warning",
        events=report.events,
        thresholds=report.thresholds,
        since_window=report.window,
    )


def _output_shifts(report: DriftReport) -> list[FeatureShift]:
    """A multiclass model's drifted outputs: its predicted classes, each class's probability."""
    if report.classes is None:
        return []
    out = []
    predicted = report.classes.predicted
    if predicted.drifted:
        out.append(
            FeatureShift(
                feature=PREDICTED_CLASS,
                psi=predicted.psi,
                p_value=predicted.chi2_p_value,
                statistic=predicted.chi2_statistic,
                mean_shift_sd=None,
                missing_rate_change=0.0,
                reasons=predicted.reasons,
                p_value_threshold=predicted.p_value_threshold,
            )
        )
    for c in report.classes.probabilities:
        if c.drifted:
            out.append(
                FeatureShift(
                    feature=probability_test(c.name),
                    psi=c.psi,
                    p_value=c.ks_p_value,
                    statistic=c.ks_statistic,
                    mean_shift_sd=None,
                    missing_rate_change=0.0,
                    reasons=c.reasons,
                    p_value_threshold=c.p_value_threshold,
                )
            )
    return out
