"""The state of each alert: firing or not, when it was last sent, and the cool-down between sendings.

An alert is keyed by its kind and model version. ``fire`` says whether a firing message
goes out: not when it is firing already (a condition that holds window after window is
one alert), not within ``cooldown_ms`` of the last one sent for that key (a condition
that flaps is one alert per cool-down). ``resolve`` says whether a resolved message goes
out: only for an alert whose firing message was sent. Times are epoch milliseconds,
event time where the data has it.

>>> gate = AlertGate(cooldown_ms=60_000)
>>> [gate.fire("drift", "1", t) for t in (0, 10_000)]  # the second: firing already
[True, False]
>>> gate.resolve("drift", "1"), gate.fire("drift", "1", 30_000), gate.resolve("drift", "1")
(True, False, False)
>>> gate.fire("drift", "1", 90_000), gate.held_back
(True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _State:
    firing: bool = False
    sent: bool = False  # the current episode's firing message went out
    last_sent: int | None = None


class AlertGate:
    """Firing state and cool-down per (kind, model version)."""

    def __init__(self, cooldown_ms: int) -> None:
        if cooldown_ms < 0:
            raise ValueError("the cool-down cannot be negative")
        self.cooldown_ms = cooldown_ms
        self._states: dict[tuple[str, str], _State] = {}
        self.held_back = 0  # firings not sent for the cool-down

    def firing(self, kind: str, version: str) -> bool:
        state = self._states.get((kind, version))
        return state is not None and state.firing

    def fire(self, kind: str, version: str, at_ms: int, again: bool = False) -> bool:
        """The condition holds at ``at_ms``: True if a firing message goes out.

        ``again``: an alert that is an event rather than a state (a detected change) may fire
        while the last one is still firing, once the cool-down has passed.
        """
        state = self._states.setdefault((kind, version), _State())
        if state.firing and not again:
            return False
        state.firing = True
        if state.last_sent is not None and at_ms - state.last_sent < self.cooldown_ms:
            self.held_back += 1
            state.sent = state.sent and again
            return False
        state.sent, state.last_sent = True, at_ms
        return True

    def resolve(self, kind: str, version: str) -> bool:
        """The condition cleared: True if a resolved message goes out (its firing one did)."""
        state = self._states.get((kind, version))
        if state is None or not state.firing:
            return False
        state.firing = False
        sent, state.sent = state.sent, False
        return sent

    def state(self) -> dict:
        """JSON-ready, for a checkpoint."""
        return {
            f"{kind}|{version}": [s.firing, s.sent, s.last_sent]
            for (kind, version), s in self._states.items()
        }

    def restore(self, state: dict) -> None:
        """Back to ``state()``; what is not a well-formed entry is left out (a checkpoint is input)."""
        self._states = {}
        for key, value in state.items():
            kind, _, version = str(key).partition("|")
            if (
                isinstance(value, list)
                and len(value) == 3
                and (value[2] is None or isinstance(value[2], int))
            ):
                self._states[(kind, version)] = _State(bool(value[0]), bool(value[1]), value[2])
