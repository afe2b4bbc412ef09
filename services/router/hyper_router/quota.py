"""What each caller may spend in an hour: Routes, pairs the judge labels, the judge's money.

A Route's spending is reserved before the work, atomically, so concurrent Routes of one caller
cannot pass a quota between them. The judge's money is known only after its calls: it is
charged then, and a caller already at its limit is refused the next Route that would call it
(so one Route may pass the limit by its own cost, never more; the pairs quota bounds that)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from hyper.core.errors import QuotaExceeded

WINDOW_S = 3600.0


class HourlyQuota:
    """A sliding hour per caller of one kind of spending; a limit of 0: no limit."""

    def __init__(self, limit: float, spending: str, setting: str):
        self.limit = limit
        self.spending = spending  # e.g. "pairs labelled by the judge"
        self.setting = setting
        self.spent: defaultdict[str, deque[tuple[float, float]]] = defaultdict(deque)
        self.lock = threading.Lock()

    def reserve(self, caller: str, amount: float) -> None:
        """Counts `amount` against the caller's hour, or refuses it (nothing counted)."""
        if not self.limit:
            return
        with self.lock:
            used = self._used(caller)
            if used + amount > self.limit:
                raise self._refusal(caller, used, f" and this Route needs {amount:g}")
            self.spent[caller].append((time.monotonic(), amount))

    def require_room(self, caller: str) -> None:
        """Refuses a caller with nothing left of its hour (for spending known only afterwards)."""
        if not self.limit:
            return
        with self.lock:
            used = self._used(caller)
        if used >= self.limit:
            raise self._refusal(caller, used)

    def _refusal(self, caller: str, used: float, needed: str = "") -> QuotaExceeded:
        return QuotaExceeded(f"{caller or 'an anonymous caller'} may have {self.limit:g} {self.spending} an hour "
                             f"({self.setting}); {used:g} are spent{needed}")

    def charge(self, caller: str, amount: float) -> None:
        """Counts what was spent, after the fact."""
        if self.limit and amount:
            with self.lock:
                self.spent[caller].append((time.monotonic(), amount))

    def _used(self, caller: str) -> float:
        spent = self.spent[caller]
        while spent and spent[0][0] <= time.monotonic() - WINDOW_S:
            spent.popleft()
        return sum(amount for _, amount in spent)


@dataclass
class Quotas:
    """The router's per-caller quotas (callers as the access policy names them; callers of open
    RPCs share one anonymous quota)."""

    routes: HourlyQuota
    judged_pairs: HourlyQuota
    judge_money: HourlyQuota

    @classmethod
    def of(cls, routes_per_hour: int = 0, judge_pairs_per_hour: int = 0, judge_money_per_hour: float = 0.0) -> Quotas:
        return cls(HourlyQuota(routes_per_hour, "Routes and Diagnoses", "HYPER_ROUTES_PER_HOUR"),
                   HourlyQuota(judge_pairs_per_hour, "pairs labelled by the judge", "HYPER_JUDGE_PAIRS_PER_HOUR"),
                   HourlyQuota(judge_money_per_hour, "of the judge's cost (at its configured prices)",
                               "HYPER_JUDGE_MONEY_PER_HOUR"))
