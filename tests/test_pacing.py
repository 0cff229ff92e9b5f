"""TokenBucket and CircuitBreaker on a fake clock: exact waits, computed by hand."""

from __future__ import annotations

import datetime as dt
import random
import threading

import pytest

from videolt.data.pacing import CircuitBreaker, TokenBucket
from videolt.errors import StageError


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self, t: float = 1000.0):
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_bucket_paces_after_burst():
    clock = FakeClock()
    bucket = TokenBucket(3600, burst=2, clock=clock, sleep=clock.sleep)  # one token a second
    waits = [bucket.acquire() for _ in range(6)]
    assert waits == pytest.approx([0, 0, 1, 1, 1, 1])
    assert clock.t == pytest.approx(1004.0)


def test_bucket_refills_only_up_to_burst():
    clock = FakeClock()
    bucket = TokenBucket(360, burst=3, clock=clock, sleep=clock.sleep)  # one token per 10 s
    for _ in range(3):
        bucket.acquire()
    clock.t += 1000.0  # a long idle spell earns at most `burst` tokens
    assert [bucket.acquire() for _ in range(5)] == pytest.approx([0, 0, 0, 10, 10])


def test_bucket_partial_refill():
    clock = FakeClock()
    bucket = TokenBucket(360, burst=1, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    clock.t += 4.0
    assert bucket.acquire() == pytest.approx(6.0)


def test_bucket_jitter_adds_seeded_uniform_wait():
    clock = FakeClock()
    bucket = TokenBucket(3600, burst=1, jitter=5.0, clock=clock, sleep=clock.sleep, rng=random.Random(7))
    ref = random.Random(7)
    got = [bucket.acquire() for _ in range(4)]
    # Jitter is waited on top of the pacing and also counts as elapsed time for the next token.
    expected, t_balance = [], 1.0
    for _ in range(4):
        j = ref.uniform(0.0, 5.0)
        t_balance -= 1.0
        base = max(0.0, -t_balance)
        expected.append(base + j)
        t_balance = min(1.0, t_balance + base + j)
    assert got == pytest.approx(expected)
    assert got[0] > 0  # jitter applies even when a token is free


def test_bucket_reservations_are_fair_across_threads():
    # The clock stands still, so the k-th reservation must wait exactly (k - burst) intervals,
    # whatever the interleaving of the threads.
    waits: list[float] = []
    lock = threading.Lock()

    def record(s: float) -> None:
        with lock:
            waits.append(s)

    bucket = TokenBucket(7200, burst=2, clock=lambda: 0.0, sleep=record)  # 0.5 s per token
    threads = [threading.Thread(target=lambda: [bucket.acquire() for _ in range(25)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([0.5 * k for k in range(1, 99)])  # 100 minus 2 free


def test_bucket_rejects_bad_settings():
    with pytest.raises(ValueError, match="rate_per_hour"):
        TokenBucket(0)


def test_breaker_pauses_double_and_stop_with_resume_time():
    clock = FakeClock()
    wall = 1_700_000_000.0
    breaker = CircuitBreaker(60, factor=2, max_trips=3, clock=clock, sleep=clock.sleep, wall_clock=lambda: wall)
    assert breaker.paused_for() == 0 and breaker.wait() == 0
    assert breaker.trip() == 60
    clock.t += 10
    assert breaker.trip() == pytest.approx(50)  # in-flight reports during the pause: same trip
    assert breaker.trips == 1
    assert breaker.wait() == pytest.approx(50) and breaker.paused_for() == 0
    assert breaker.trip() == 120
    clock.t += 120
    assert breaker.trip() == 240
    clock.t += 240
    with pytest.raises(StageError, match="Resume after") as err:
        breaker.trip()
    resume = dt.datetime.fromtimestamp(wall + 60 * 2**3)
    assert f"{resume:%Y-%m-%d %H:%M}" in str(err.value)


def test_breaker_success_resets_the_doubling():
    clock = FakeClock()
    breaker = CircuitBreaker(30, max_trips=2, clock=clock, sleep=clock.sleep)
    assert breaker.trip() == 30
    clock.t += 30
    breaker.success()
    assert breaker.trip() == 30
    clock.t += 30
    assert breaker.trip() == 60


def test_breaker_pauses_for_a_retry_after():
    clock = FakeClock()
    wall = 1_700_000_000.0
    breaker = CircuitBreaker(900, max_trips=2, max_pause_s=3600, clock=clock, sleep=clock.sleep,
                             wall_clock=lambda: wall)
    assert breaker.trip(retry_after=7) == 7  # the answer's wait, not the configured 900 s
    clock.t += 2
    assert breaker.trip() == pytest.approx(5)  # in flight: the same trip
    assert breaker.trip(retry_after=30) == pytest.approx(30) and breaker.trips == 1  # extended, still one trip
    clock.t += 30
    assert breaker.trip() == 1800  # no Retry-After: the configured pause, doubled for the second trip
    clock.t += 1800
    with pytest.raises(StageError, match=r"wait 2.0 h .*Resume after"):
        breaker.trip(retry_after=7200)  # longer than max_pause_s: stop at once, with the time to resume
    resume = dt.datetime.fromtimestamp(wall + 7200)
    with pytest.raises(StageError, match=f"{resume:%Y-%m-%d %H:%M}"):
        breaker.trip(retry_after=7200)
