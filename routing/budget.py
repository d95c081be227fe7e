"""The wall-time budget of one solve: a deadline on a clock that tests can inject.

Every stage of a solve (screening, trip construction, the model, the search,
finishing, the pieces of a decomposed district) asks the budget what is left instead
of reading the clock itself, so a solve returns within ``limit_s × (1 + OVERRUN_SHARE)
+ OVERRUN_S`` whatever the size of the district."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

Clock = Callable[[], float]

# What a solve may take beyond its limit, for the steps that cannot stop at once
# (the last route being timed, the plan being assembled): budget × 1.05 + 2 s.
OVERRUN_SHARE: Final = 0.05
OVERRUN_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class Budget:
    """``limit_s`` seconds of ``clock`` from ``start``."""

    limit_s: float
    clock: Clock = time.monotonic
    start: float = field(default=-1.0)

    @classmethod
    def of(cls, limit_s: float, clock: Clock = time.monotonic) -> Budget:
        """A budget that starts now."""
        return cls(limit_s=limit_s, clock=clock, start=clock())

    def elapsed_s(self) -> float:
        return self.clock() - self.start

    def remaining_s(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.limit_s - self.elapsed_s())

    def overrun_s(self) -> float:
        """Seconds left before the hard cap (the deadline plus the allowed overrun)."""
        cap = self.limit_s * (1.0 + OVERRUN_SHARE) + OVERRUN_S - 1.0
        return max(0.0, cap - self.elapsed_s())

    def finishing_reserve_s(self) -> float:
        """What the search leaves inside the budget for timing and repairing the plan
        (the overrun allowance comes on top, for re-insertions that need it)."""
        return min(5.0, 0.03 * self.limit_s + 0.5)
