"""How many lines of each model a runner sends at once: as many as the gateway lets start,
learnt from its answers, so that a runner with spare slots does not ask again and again for
room the backends do not have.

Per model, a window of lines in flight. A slot whose line ends takes the next one (the count
stays); beyond the window one probe goes out at a time, at most every PROBE_GAP_SECS (a
refusal comes back within milliseconds, so the gap lets it arrive before the next probe). A
probe that is let in widens the window by one, so room that opens fills at about 20 lines a
second. A refusal for room (`no_spare_capacity`, `preempted`, a full lane) shrinks the window
to the lines still running and holds probes back for a while that doubles with each refusal
in a row (BACKOFF_SECS) and starts again from the shortest once a probe's line succeeds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

PROBE_GAP_SECS = 0.05
BACKOFF_SECS = (0.02, 0.25)


@dataclass
class _Window:
    allowed: int = 0
    running: int = 0
    probe_at: float = 0.0   # no probe before this clock reading
    backoff: float = 0.0    # the hold after the last refusal; 0 after a probe succeeded


class Pacer:
    def __init__(self, clock: Callable[[], float], rng: random.Random) -> None:
        self._clock, self._rng = clock, rng
        self._windows: dict[str, _Window] = {}

    def blocked(self) -> list[str]:
        """Models no line may start for now: their windows are full and no probe is due."""
        now = self._clock()
        return [m for m, w in self._windows.items()
                if w.running >= w.allowed and now < w.probe_at]

    def start(self, model: str) -> bool:
        """Count a line of `model` as sent; True if it is a probe beyond the window."""
        w = self._windows.setdefault(model, _Window())
        w.running += 1
        if w.running <= w.allowed:
            return False
        w.allowed = w.running  # let in, unless a refusal says otherwise before the next probe
        w.probe_at = self._clock() + PROBE_GAP_SECS
        return True

    def end(self, model: str, *, probe: bool, refused: bool, succeeded: bool) -> None:
        """A line of `model` is back: `refused` for lack of room, `succeeded` if it ran."""
        w = self._windows[model]
        w.running -= 1
        if refused:
            w.allowed = w.running
            w.backoff = min(BACKOFF_SECS[1], max(BACKOFF_SECS[0], w.backoff * 2))
            w.probe_at = self._clock() + w.backoff * self._rng.uniform(0.5, 1.0)
        elif succeeded and probe:
            w.backoff = 0.0
        if not w.running and not w.backoff:
            del self._windows[model]  # nothing known worth keeping: the next line probes
