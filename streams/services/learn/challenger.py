"""What the learn service does for challengers: export the River one, promote a winner in shadow."""

from __future__ import annotations

import logging

from schemas.checkpoint import ChallengerExport
from schemas.feedback import MetricsSnapshot
from schemas.keys import ModelKey
from scoring.feedback.compare import PairedTally
from scoring.feedback.loop import Learner
from scoring.lifecycle.decisions import promote
from scoring.model.linear_model import linear_from_river
from streams.kafka.records import Emit
from streams.services.shared.checkpoints import challenger_key
from streams.services.shared.model_updates import live_update, publish_update
from streams.settings import Settings

log = logging.getLogger(__name__)


class ChallengerDuties:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._export_refused = False

    def export(self, learner: Learner, snapshot: MetricsSnapshot, emit: Emit) -> None:
        """The challenger as weights in JSON (no pickle), for ``streamscore model publish-challenger``."""
        if learner.challenger is None:  # a shard that does not train it
            return
        try:
            model = linear_from_river(learner.challenger, learner.spec, learner.classes)
        except ValueError as exc:
            if not self._export_refused:
                log.info("the challenger is not exported as a bundle: %s", exc)
            self._export_refused = True
            return
        row = snapshot.overall(snapshot.challenger)
        export = ChallengerExport(
            model=model.model_dump(mode="json"),
            metrics={k: v for k, v in (row.cumulative if row else {}).items() if v is not None},
            labels=row.count if row else 0,
            created_at=snapshot.created_at,
        )
        emit(
            self.settings.topic_checkpoints,
            challenger_key(self.settings),
            export.model_dump_json().encode(),
            None,
        )

    def promote_winners(self, tallies: dict[str, PairedTally]) -> None:
        """Promote a shadow challenger that beats the champion on the same labelled events."""
        s = self.settings
        for tally in tallies.values():
            if tally.promoted or not tally.challenger_wins(s.promote_min_pairs, s.promote_p_value):
                continue
            name, version = ModelKey.parse(tally.challenger)
            current, _ = live_update(s, name)
            if current is None or current.challenger is None or current.challenger.version != version:
                continue  # no longer the challenger
            reason = (
                f"won {tally.only_challenger_right} to {tally.only_champion_right} of {tally.pairs} "
                f"paired labelled events (McNemar p {tally.p_value():.2g})"
            )
            publish_update(s, promote(current, reason=reason))
            tally.promoted = True
            log.warning("promoted %s: %s", tally.challenger, reason)
