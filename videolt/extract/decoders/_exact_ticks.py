"""The 1-fps sampling timeline in integers, for decoders with exact timestamps (pyav and its selective plan).

Tick k (time k / fps) precedes a frame at offset d (pts units from the stream start) iff
k / fps < d · time_base, i.e. k · tick < d · unit: exact, and 25× cheaper than Fractions.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["first_tick", "tick_units"]


def tick_units(fps: Fraction, time_base: Fraction) -> tuple[int, int]:
    """(tick, unit): tick k precedes offset d iff `k * tick < d * unit`."""
    return fps.denominator * time_base.denominator, fps.numerator * time_base.numerator


def first_tick(d: int, tick: int, unit: int) -> int:
    """The first tick at or after offset d: ceil(d · unit / tick) (negative for a negative d)."""
    return -(-d * unit // tick)
