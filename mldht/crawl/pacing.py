"""The crawl's rate, sans-IO: one token bucket for every query the crawler's node sends.

:class:`Pacer` says how long a job must wait before it starts; the caller passes the time
and the node's query counter in. The async driver (:mod:`.driver`) sleeps that long, the
simulated crawl of ``bench/crawl.py`` runs the simulator that long: both pace alike.

* A sample or a ping is one query: one token.
* A lookup (find_node, get_peers) sends alpha queries at once and more as answers come.
  It is charged up front what lookups have sent on average so far (:data:`LOOKUP_COST`
  until two have run, then within 4..64), so it waits for that many tokens (a full bucket
  at most) instead of bursting past the rate; and at most ``rate / (2 cost)`` lookups run
  at once (one at low rates), since what they send beyond their charge is known only as
  it goes out.
* Before each job the node's counter settles the account: queries sent beyond those paid
  for are charged (the bucket may go below zero, and the next job waits); what was paid
  and not sent is given back once no lookup is running.
"""

from __future__ import annotations

from ..errors import InvalidArgument

__all__ = ["LOOKUP_COST", "Pacer", "TokenBucket"]

LOOKUP_COST = 16.0
"""What a lookup is charged until two have run."""


class TokenBucket:
    """A token bucket over time given by the caller: ``rate`` tokens/s, at most ``burst``.

    ``charge`` may take the level below zero (queries already sent that were not asked
    for, such as a lookup's); ``delay`` says how long until one token is available.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise InvalidArgument("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._last = now

    def refill(self, now: float) -> None:
        if now > self._last:
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
            self._last = now

    def charge(self, n: float) -> None:
        self.tokens -= n

    def delay(self, now: float, need: float = 1.0) -> float:
        """Seconds until ``need`` tokens (at most ``burst``) are there (0 if they are)."""
        self.refill(now)
        need = min(need, self.burst)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens once the bucket holds them, or is full when ``cost`` is
        more than ``burst`` (it then goes below zero, and the next take waits)."""
        if self.delay(now, cost) > 0:
            return False
        self.tokens -= cost
        return True


class Pacer:
    """Paces a crawl at ``rate`` queries/s; ``sent`` is the node's query counter now."""

    def __init__(self, rate: float, now: float, sent: int) -> None:
        self.rate = rate
        self.bucket = TokenBucket(rate, max(1.0, rate / 4), now)
        self.base = sent
        self._accounted = float(sent)
        self._single = 0  # samples and pings started: one query each
        self.lookups = 0
        """Lookups started."""
        self.lookups_running = 0

    def lookup_cost(self, sent: int) -> float:
        """What a lookup is charged now."""
        if self.lookups < 2:
            return LOOKUP_COST
        return min(64.0, max(4.0, (sent - self.base - self._single) / self.lookups))

    def delay(self, single: bool, now: float, sent: int) -> float:
        """Seconds a job must still wait (0: it may start now, and is paid for).
        ``single``: a one-query job (a sample or a ping), else a lookup."""
        bucket = self.bucket
        if sent > self._accounted or self.lookups_running == 0:
            bucket.charge(sent - self._accounted)
            self._accounted = float(sent)
        cost = 1.0 if single else self.lookup_cost(sent)
        if not single and self.lookups_running >= max(1, self.rate // (2 * cost)):
            return min(0.1, cost / self.rate)
        if not bucket.take(now, cost):
            return max(bucket.delay(now, cost), 1e-6)
        self._accounted += cost
        if single:
            self._single += 1
        else:
            self.lookups += 1
            self.lookups_running += 1
        return 0.0

    def done(self, single: bool) -> None:
        """A job the pacer let start has ended."""
        if not single:
            self.lookups_running -= 1
