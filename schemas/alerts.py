"""What every alert carries beside its own evidence: whether it fires or resolves, and how bad it is.

An alert is sent when its condition starts (``firing``) and again when it clears
(``resolved``), never for every window or detection in between; a cool-down per alert
kind and model version holds back a new firing too soon after the last
(docs/alerts.md). ``severity`` says what the evidence amounts to: ``critical`` for
what should wake someone, ``warning`` for what a look in working hours can settle.

Alert messages that carry these fields are at ``ALERT_SCHEMA_VERSION`` 2; every field of
version 1 is still there with its meaning.
"""

from __future__ import annotations

from typing import Literal

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["warning", "critical"]

ALERT_SCHEMA_VERSION = 2
"""2: status, severity and the evidence (statistic, threshold, window, shards) added (issue 33)."""
