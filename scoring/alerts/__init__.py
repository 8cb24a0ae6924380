"""Alerts worth waking up for: when an alert fires, merges, cools down and resolves.

The statistics that raise them are elsewhere (``scoring.drift`` for windows and the error
CUSUM, ``scoring.estimation`` for estimated KPIs); this room decides what of it is sent:

- ``gate``: ``AlertGate``, the firing/resolved state and the cool-down per alert kind and
  model version.
- ``drift``: ``DriftAlerting``, a drift window's report into a firing or resolved ``DriftAlert``.
- ``concept``: ``ConceptAlerting``, every learn shard's detections of one change merged into
  one ``ConceptDriftAlert``, resolved when the rolling error is back.

Times are event times (epoch ms) wherever the data carries them, so a replay of a day
raises the alerts the day raised.
"""

from scoring.alerts.concept import ConceptAlerting
from scoring.alerts.drift import DriftAlerting
from scoring.alerts.gate import AlertGate

__all__ = ["AlertGate", "ConceptAlerting", "DriftAlerting"]
