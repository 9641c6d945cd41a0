"""A training run's clock: wall time over its sessions (resume), the ``--max-minutes`` budget, the ETA."""

from __future__ import annotations

import time


class Clock:
    """Seconds since this session's :meth:`start`, plus ``before``: those of the run's earlier sessions (from its checkpoint)."""

    def __init__(self, max_minutes: float = 0.0):
        self.budget = max_minutes * 60  # seconds a session may train; 0: no limit
        self.before = 0.0
        self.started = time.perf_counter()

    def start(self) -> float:
        """Start this session now; returns the moment (``time.perf_counter()``)."""
        self.started = time.perf_counter()
        return self.started

    def session(self) -> float:
        """Seconds of this session."""
        return time.perf_counter() - self.started

    def elapsed(self) -> float:
        """Training wall time of the whole run, earlier sessions included."""
        return self.before + time.perf_counter() - self.started

    def eta(self, spent: float, done: int, left: int) -> float:
        """Seconds left: ``left`` steps at this session's pace (``done`` steps in ``spent`` s), or to the budget if that comes first."""
        eta = spent / max(done, 1) * left
        if self.budget:
            eta = min(eta, max(0.0, self.budget - spent))
        return eta

    def over_budget(self) -> bool:
        """This session has run past the budget (never without one)."""
        return bool(self.budget) and time.perf_counter() - self.started > self.budget
