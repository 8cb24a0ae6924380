"""Drift alerts per episode: one when a model version's windows start drifting, one when they stop.

A window that drifts opens an episode and fires its alert (``alert_for``: the evidence and
severity), unless the model version's last drift alert is within the cool-down
(``AlertGate``, in event time: the window's last event); the next windows that drift on
the same tests send nothing; a window in which a further test drifts, or the drift
becomes critical, sends the alert again if the episode's first was sent (tests only join
an episode, so each can add one message at most); the first clean window resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.drift import DriftAlert, DriftReport
from scoring.alerts.gate import AlertGate
from scoring.drift.alerts import alert_for

KIND = "drift"
PREDICTION = "(prediction)"


@dataclass
class _Episode:
    since_window: int
    tests: set[str] = field(default_factory=set)
    critical: bool = False


class DriftAlerting:
    """Reports in, the drift alerts worth sending out (firing or resolved)."""

    def __init__(self, cooldown_ms: int) -> None:
        self.gate = AlertGate(cooldown_ms)
        self._episodes: dict[str, _Episode] = {}

    def on_report(self, report: DriftReport) -> DriftAlert | None:
        model = f"{report.model_name}:{report.model_version}"
        alert, at = alert_for(report), report.end_event_time
        episode = self._episodes.get(model)
        if alert is None:
            if episode is None:
                return None
            del self._episodes[model]
            return _resolved(report, episode) if self.gate.resolve(KIND, model) else None
        tests = {f.feature for f in alert.features} | ({PREDICTION} if alert.prediction_drifted else set())
        critical = alert.severity == "critical"
        if episode is None:
            self._episodes[model] = _Episode(report.window, tests, critical)
            send = self.gate.fire(KIND, model, at)
        elif tests - episode.tests or (critical and not episode.critical):
            # news within the episode: sent whatever the cool-down (tests only join: once each at most)
            episode.tests |= tests
            episode.critical |= critical
            send = self.gate.firing(KIND, model)
        else:
            return None
        since = self._episodes[model].since_window
        return alert.model_copy(update={"since_window": since}) if send else None


def _resolved(report: DriftReport, episode: _Episode) -> DriftAlert:
    return DriftAlert(
        model_name=report.model_name,
        model_version=report.model_version,
        window=report.window,
        start_event_time=report.start_event_time,
        end_event_time=report.end_event_time,
        features=[],
        prediction_drifted=False,
        message=f"{report.model_name} {report.model_version} window {report.window} ({report.events:,} "
        f"events): no drift; resolved (drift in {', '.join(sorted(episode.tests))} since window "
        f"{episode.since_window})",
        created_at=report.created_at,
        status="resolved",
        severity="critical" if episode.critical else "warning",
        events=report.events,
        thresholds=report.thresholds,
        since_window=episode.since_window,
    )
