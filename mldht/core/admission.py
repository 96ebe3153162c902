"""Admission of incoming queries: a per-IP rate limit (token buckets)."""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    """Per-IP token buckets, bounded in memory (the table is reset when it grows too big).

    ``rate`` queries per second per IP, with a burst of 2 s worth (at least 1);
    ``rate <= 0`` admits everything.
    """

    __slots__ = ("_b", "burst", "dropped", "max_ips", "rate")

    def __init__(self, rate: float, max_ips: int = 50_000) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self.max_ips = max_ips
        self._b: dict[str, tuple[float, float]] = {}
        self.dropped = 0

    def allow(self, ip: str, now: float) -> bool:
        """Whether a query from ``ip`` at ``now`` is admitted (takes one token if so)."""
        if self.rate <= 0:
            return True
        tokens, last = self._b.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._b[ip] = (tokens, now)
            self.dropped += 1
            return False
        if len(self._b) >= self.max_ips and ip not in self._b:
            self._b.clear()
        self._b[ip] = (tokens - 1.0, now)
        return True
