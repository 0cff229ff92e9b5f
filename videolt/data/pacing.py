"""Pacing for the download stage: a token bucket shared by all workers and a circuit breaker.

YouTube allows a guest about 300 videos an hour per IP and answers faster requesters with
"try again later" blocks of up to an hour; yt-dlp neither paces nor backs off on 429. Both classes take
an injected `clock` and `sleep` so that tests run on a fake clock in microseconds.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable

from videolt.errors import StageError

Clock = Callable[[], float]
Sleep = Callable[[float], object]


class TokenBucket:
    """At most `rate_per_hour` acquisitions an hour on average, bursts of up to `burst`.

    A caller reserves a token under the lock (the balance may go negative) and sleeps outside it,
    so concurrent workers queue up fairly without holding the lock while they wait. `jitter` adds
    up to that many seconds of random wait to each acquisition so requests do not come in lockstep.
    """

    def __init__(
        self,
        rate_per_hour: float,
        burst: int = 1,
        *,
        jitter: float = 0.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ):
        if rate_per_hour <= 0 or burst < 1 or jitter < 0:
            raise ValueError(f"need rate_per_hour > 0, burst >= 1, jitter >= 0; got {rate_per_hour}, {burst}, {jitter}")
        self.interval = 3600.0 / rate_per_hour
        self.burst = burst
        self.jitter = jitter
        self._clock, self._sleep = clock, sleep
        self._rng = rng or random.Random()
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) / self.interval)
            self._last = now
            self._tokens -= 1.0
            wait = max(0.0, -self._tokens * self.interval)
            wait += self._rng.uniform(0.0, self.jitter) if self.jitter else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class CircuitBreaker:
    """Pauses every worker after a rate-limit answer; gives up after `max_trips` trips in a row.

    The first trip pauses for `pause_s`, each further trip without a success in between pauses
    `factor` times longer. An answer that says how long to wait (HTTP `Retry-After`) sets the pause
    instead, up to `max_pause_s`; a longer wait stops the run at once. Reports that arrive while a
    pause is running belong to the same trip (the other workers' requests were already in flight).
    After `max_trips` trips `trip` raises a `StageError` telling the user when to resume.
    """

    def __init__(
        self,
        pause_s: float,
        *,
        factor: float = 2.0,
        max_trips: int = 4,
        max_pause_s: float = float("inf"),
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        wall_clock: Clock = time.time,
    ):
        if pause_s <= 0 or factor < 1 or max_trips < 1:
            raise ValueError(f"need pause_s > 0, factor >= 1, max_trips >= 1; got {pause_s}, {factor}, {max_trips}")
        self.pause_s, self.factor, self.max_trips, self.max_pause_s = pause_s, factor, max_trips, max_pause_s
        self._clock, self._sleep, self._wall = clock, sleep, wall_clock
        self._lock = threading.Lock()
        self._trips = 0
        self._until = float("-inf")

    @property
    def trips(self) -> int:
        """Consecutive trips so far (reset by a success)."""
        return self._trips

    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self._until - self._clock())

    def trip(self, retry_after: float | None = None) -> float:
        """Report a rate-limit answer (`retry_after`: the seconds it asked to wait, if it said);
        returns the pause in seconds now in force."""
        with self._lock:
            now = self._clock()
            if retry_after is not None and retry_after > self.max_pause_s:
                resume = dt.datetime.fromtimestamp(self._wall() + retry_after)
                raise StageError(f"YouTube asked this machine to wait {retry_after / 3600:.1f} h (Retry-After), "
                                 f"more than download.max_pause_s; stopping. Resume after {resume:%Y-%m-%d %H:%M}")
            if now < self._until:  # the same trip: answers to requests already in flight
                if retry_after is not None:
                    self._until = max(self._until, now + retry_after)
                return self._until - now
            pause = self.pause_s * self.factor**self._trips if retry_after is None else retry_after
            if self._trips >= self.max_trips:
                resume = dt.datetime.fromtimestamp(self._wall() + pause)
                raise StageError(
                    f"YouTube rate-limited this machine {self._trips + 1} times in a row despite pausing; "
                    f"stopping. Resume after {resume:%Y-%m-%d %H:%M} (or lower rate_per_hour, --rate)"
                )
            self._trips += 1
            self._until = now + pause
            return pause

    def success(self) -> None:
        """Report a successful fetch: the next trip starts from the base pause again."""
        with self._lock:
            self._trips = 0

    def wait(self) -> float:
        """Sleep for what is left of the current pause (0 if none); returns that time.

        One sleep only: a pause may be extended meanwhile, and an injected sleep may return early
        (a stop event's `wait`), so callers loop on `paused_for()` with their own stop condition.
        """
        left = self.paused_for()
        if left > 0:
            self._sleep(left)
        return left


class Streak:
    """Answers of one kind in a row (e.g. bot checks), reset by a success; `hit` returns the count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def hit(self) -> int:
        with self._lock:
            self.count += 1
            return self.count

    def reset(self) -> None:
        with self._lock:
            self.count = 0
