"""Drift of a model version's inputs and scores against its training reference, window by window.

One concept per module:

- ``compare``: one closed window against the reference, feature by feature and for the
  score (PSI, KS, chi-square, missing rate; the statistics are in ``scoring.drift.stats``),
  and ``decide``, the rule that flags a window's tests together (Holm, a PSI floor).
- ``classes``: a multiclass model's outputs against its holdout's: the predicted classes
  (chi-square fit, PSI) and each class's probability (PSI, KS), tests of the same family.
- ``cusum``: ``ErrorCusum``, the CUSUM that watches a model's error stream for a rise.
- ``detectors``: ``StreamDetectors``, the detectors of a stream of values: river's ADWIN
  and PageHinkley on scores here, the CUSUM on errors in ``scoring.feedback.loop``.
- ``closing``: ``WindowCloser``, a closed window's events into its ``DriftReport`` and
  estimate: the one code path for a monitor's windows and for merged ones.
- ``windows``: ``DriftMonitor``, tumbling windows per model version closed by count or
  event time, each giving a ``DriftReport`` and, where the bundle can estimate, a
  ``PerformanceEstimate`` (``scoring.estimation``).
- ``partitions``: ``PartitionWindows``, windows cut per partition by its own count of
  events, so several workers cut the same windows; each closed one is a ``WindowPartial``
  (``partial``: its events, and its bytes for a topic).
- ``merge``: ``WindowMerger`` and ``merge_window``, the partials of every partition of a
  window closed as one window, the report one monitor gives for the same events.
- ``alerts``: ``alert_for``, the ``DriftAlert`` a report raises (what of it is sent, and
  when: ``scoring.alerts``).

What they read is ``MonitorColumns``: the scored events of one monitoring message in
columns, from the ``monitor`` topic's codec (``schemas.monitor``), re-exported here.
"""

from schemas.monitor import MonitorColumns
from scoring.drift.alerts import alert_for
from scoring.drift.closing import WindowCloser, WindowEvents
from scoring.drift.compare import (
    DriftThresholds,
    NumericBaseline,
    compare_categorical,
    compare_numeric,
    compare_scores,
    test_count,
)
from scoring.drift.detectors import StreamDetectors
from scoring.drift.merge import WindowMerger, merge_window
from scoring.drift.partial import PartialRejected, WindowPartial
from scoring.drift.partitions import PartitionWindows, partition_quota
from scoring.drift.windows import ClosedWindow, DriftMonitor, DriftWindow, VersionMonitor

__all__ = [
    "ClosedWindow",
    "DriftMonitor",
    "DriftThresholds",
    "DriftWindow",
    "MonitorColumns",
    "NumericBaseline",
    "PartialRejected",
    "PartitionWindows",
    "StreamDetectors",
    "VersionMonitor",
    "WindowCloser",
    "WindowEvents",
    "WindowMerger",
    "WindowPartial",
    "alert_for",
    "compare_categorical",
    "compare_numeric",
    "compare_scores",
    "merge_window",
    "partition_quota",
    "test_count",
]
