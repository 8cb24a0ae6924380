"""Traffic split by entity: a stable hash of ``entity_id`` picks champion or challenger.

Stable across workers, restarts and Python processes (CRC-32, not ``hash()``), so one
entity always sees the same model while the split stands, and the share of entities
sent to the challenger is the configured share up to sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from zlib import crc32

import numpy as np

BUCKETS = 10_000
_SALT = b"streamscore-split:"  # keeps the split independent of the explanation sample (by event_id)


def bucket(entity_id: str) -> int:
    return crc32(_SALT + entity_id.encode()) % BUCKETS


def to_challenger(entity_ids: Sequence[str], share: float) -> np.ndarray:
    """A boolean per entity: True when its bucket falls in the challenger's share."""
    cut = round(share * BUCKETS)
    return np.fromiter((bucket(e) < cut for e in entity_ids), dtype=bool, count=len(entity_ids))
