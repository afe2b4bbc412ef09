"""How many pairs each caller may have the judge label in an hour: paid calls a Route makes
for pairs without a confidence (allow_judge_calls) are reserved here first, atomically, so
concurrent Routes of one caller cannot spend past the quota between them."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from hyper.core.errors import QuotaExceeded

WINDOW_S = 3600.0


class JudgeQuota:
    """A sliding hour per caller; 0 pairs per hour: no limit."""

    def __init__(self, pairs_per_hour: int):
        self.pairs_per_hour = pairs_per_hour
        self.spent: defaultdict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self.lock = threading.Lock()

    def reserve(self, caller: str, pairs: int) -> None:
        """Counts `pairs` against the caller's hour, or refuses them all (nothing reserved)."""
        if not self.pairs_per_hour:
            return
        now = time.monotonic()
        with self.lock:
            spent = self.spent[caller]
            while spent and spent[0][0] <= now - WINDOW_S:
                spent.popleft()
            used = sum(n for _, n in spent)
            if used + pairs > self.pairs_per_hour:
                raise QuotaExceeded(f"{caller or 'an anonymous caller'} may have the judge label "
                                    f"{self.pairs_per_hour} pairs an hour (HYPER_JUDGE_PAIRS_PER_HOUR); "
                                    f"{used} are spent and this Route needs {pairs}")
            spent.append((now, pairs))
