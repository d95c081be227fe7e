"""Slow down password guessing: after too many failed logins for one username within a
window, refuse further attempts for that username until the window has passed.
In-process (per API worker), which is enough to make online guessing impractical."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

MAX_FAILURES = 10
WINDOW_S = 300.0


class LoginThrottle:
    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        return failures

    def retry_after_s(self, username: str, *, now: float | None = None) -> float:
        """Seconds until this username may try again (0: now)."""
        now = time.monotonic() if now is None else now
        key = username.lower()
        with self._lock:
            failures = self._trim(key, now)
            if len(failures) < self.max_failures:
                return 0.0
            return max(self.window_s - (now - failures[0]), 1.0)

    def failed(self, username: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(username.lower(), now).append(now)
            if len(self._failures) > 100_000:  # bound memory under a flood of usernames
                self._failures.clear()

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username.lower(), None)
