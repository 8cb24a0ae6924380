"""One concept-drift alert per change, however many learn shards saw it, and a resolved one when it clears.

Every learn shard runs its own detectors on its partition's error stream, so one change
of the whole stream is detected once per shard, at about the same event time. The
reporter hands each shard's detections here (``add``; a detection seen before is
skipped, so shards may resend their recent ones). Detections of one model version within
``merge_interval_ms`` of event time of the first are one change: its alert goes out
(``due``) once every shard has detected it, or once the interval has passed in event time
or in wall-clock time since the first arrived, naming the shards. Detections after that
within the interval join the change without a message.

Severity: ``critical`` when at least half of the shards saw the change (the whole stream
moved), ``warning`` when fewer did (a share of the entities, or a false alarm of one
shard). A change fires subject to the cool-down per model version (``AlertGate``); it
resolves (``resolved``) when the rolling error of the labelled events since the alert,
a full KPI window of them, is back below the midpoint of the levels before and after.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from schemas.drift import DetectorChange
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from scoring.alerts.gate import AlertGate

KIND = "concept"
SEEN_MAX = 4096  # detections remembered to skip the ones a shard resends


@dataclass
class _Change:
    model: str
    first_time: int  # event time of the first detection, epoch ms
    opened_at: float  # wall clock, seconds
    detections: dict[int, DetectorChange] = field(default_factory=dict)  # partition -> its first
    sent: bool = False


@dataclass
class _Firing:
    alert: ConceptDriftAlert
    matched_at: int  # labels joined when it fired


class ConceptAlerting:
    """Shard detections in; merged concept-drift alerts (firing, resolved) out."""

    def __init__(self, partitions: int, merge_interval_ms: int, cooldown_ms: int, task: str) -> None:
        self.partitions = max(1, partitions)
        self.merge_interval_ms = merge_interval_ms
        self.task = task
        self.gate = AlertGate(cooldown_ms)
        self._changes: dict[str, _Change] = {}  # model -> the change being merged or last sent
        self._firing: dict[str, _Firing] = {}
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self.detections = 0  # every shard's detection, once each

    # -- in

    def add(self, model: str, change: DetectorChange, now_s: float | None = None) -> bool:
        """A shard's detection; False if it was seen before (a shard resends its recent ones)."""
        key = (change.partition, change.detector, change.model_version, change.offset, change.position)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        self.detections += 1
        now_s = time.monotonic() if now_s is None else now_s
        current = self._changes.get(model)
        if current is None or change.event_time - current.first_time > self.merge_interval_ms:
            current = self._changes[model] = _Change(model, change.event_time, now_s)
        current.detections.setdefault(change.partition, change)
        return True

    # -- out

    def due(self, clock_ms: int, matched: int, now_s: float | None = None) -> list[ConceptDriftAlert]:
        """The alerts of the changes whose merge is over at event time ``clock_ms`` (``matched``: labels
        joined so far, from which the resolution counts)."""
        now_s = time.monotonic() if now_s is None else now_s
        out = []
        for change in self._changes.values():
            if change.sent:
                continue
            complete = len(change.detections) >= self.partitions
            waited = clock_ms - change.first_time >= self.merge_interval_ms
            if not (complete or waited or now_s - change.opened_at >= self.merge_interval_ms / 1000):
                continue
            change.sent = True
            alert = self._firing_alert(change)
            if self.gate.fire(KIND, change.model, change.first_time, again=True):
                out.append(alert)
                self._firing[change.model] = _Firing(alert, matched)
        return out

    def resolved(self, snapshot: MetricsSnapshot) -> list[ConceptDriftAlert]:
        """Resolved alerts of the firing ones whose rolling error, over labels since, is back down."""
        out = []
        for model, firing in list(self._firing.items()):
            alert, row = firing.alert, snapshot.overall(model)
            if row is None or alert.error_before is None or alert.error_after is None:
                continue
            if snapshot.labels.matched - firing.matched_at < snapshot.window:
                continue
            error = self._rolling_error(row.rolling.get(snapshot.primary_metric))
            if error is None or error > (alert.error_before + alert.error_after) / 2:
                continue
            del self._firing[model]
            if self.gate.resolve(KIND, model):
                out.append(_resolution(alert, error, snapshot))
        return out

    def _rolling_error(self, value: float | None) -> float | None:
        if value is None or value != value:
            return None
        return 1 - value if self.task != "regression" else value  # accuracy (binary, multiclass), or MAE

    def _firing_alert(self, change: _Change) -> ConceptDriftAlert:
        detections = [change.detections[p] for p in sorted(change.detections)]
        first = min(detections, key=lambda d: (d.event_time, d.partition))
        before = _weighted([(d.mean_before, d.baseline) for d in detections])
        after = _weighted([(d.mean_after, d.since_change) for d in detections])
        statistics = [d.statistic for d in detections if d.statistic is not None]
        shards = sorted(change.detections)
        levels = f" from {self._level(before)} to {self._level(after)}" if before is not None else ""
        evidence = ""
        if statistics and first.threshold is not None:
            evidence = f"{first.detector} {max(statistics):.1f} > {first.threshold:g}; "
        return ConceptDriftAlert(
            model=change.model,
            change=first,
            message=f"{change.model}: the {self._what()} rose{levels} ({evidence}{len(shards)} of "
            f"{self.partitions} shards within {self.merge_interval_ms / 1000:g} s: partitions "
            f"{', '.join(map(str, shards))}); first at event {first.event_id} "
            f"({first.source_topic} [{first.partition}] @{first.offset})",
            created_at=int(time.time() * 1000),
            severity="critical" if 2 * len(shards) >= self.partitions else "warning",
            detections=detections,
            shards=shards,
            partitions=self.partitions,
            merge_interval_ms=self.merge_interval_ms,
            statistic=max(statistics) if statistics else None,
            threshold=first.threshold,
            error_before=before,
            error_after=after,
        )

    def _what(self) -> str:
        return "error rate" if self.task != "regression" else "mean absolute error"

    def _level(self, value: float) -> str:
        return f"{value:.1%}" if self.task != "regression" else f"{value:.4g}"

    # -- checkpoint

    def state(self) -> dict:
        """JSON-ready: the gate, the firing alerts and the detections seen (a restarted reporter re-reads
        the shards' recent detections and must know them)."""
        return {
            "gate": self.gate.state(),
            "firing": {m: [f.alert.model_dump(mode="json"), f.matched_at] for m, f in self._firing.items()},
            "seen": [list(k) for k in self._seen],
        }

    def restore(self, state: object) -> None:
        """Back to ``state()``; malformed parts are left out (a checkpoint is input)."""
        if not isinstance(state, dict):
            return
        gate = state.get("gate")
        if isinstance(gate, dict):
            self.gate.restore(gate)
        for model, entry in (state.get("firing") or {}).items():
            try:
                alert, matched_at = entry
                self._firing[str(model)] = _Firing(ConceptDriftAlert.model_validate(alert), int(matched_at))
            except (TypeError, ValueError):
                continue
        for key in state.get("seen") or []:
            if isinstance(key, list) and len(key) == 5:
                self._seen[tuple(key)] = None


def _weighted(pairs: list[tuple[float | None, int | None]]) -> float | None:
    known = [(v, n) for v, n in pairs if v is not None and n]
    total = sum(n for _, n in known)
    return sum(v * n for v, n in known) / total if total else None


def _resolution(alert: ConceptDriftAlert, error: float, snapshot: MetricsSnapshot) -> ConceptDriftAlert:
    return alert.model_copy(
        update={
            "status": "resolved",
            "error_after": error,
            "created_at": int(time.time() * 1000),
            "message": f"{alert.model}: resolved; the rolling {snapshot.primary_metric} over the last "
            f"{snapshot.window:,} labelled events puts the error at {error:.4g}, back below the midpoint "
            f"of {alert.error_before:.4g} before and {alert.error_after:.4g} after the change",
        }
    )
