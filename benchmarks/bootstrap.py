"""Which bootstrap interval for a run's mAP? Coverage and centring of four interval rules on simulated test sets.

For each regime a generative model draws test sets of N videos and C classes (long-tailed prevalence,
per-class signal strength, optionally weak saturated scores rounded to float16 so that many tie).
The target is the mean mAP of such test sets (Monte Carlo over `--truth` sets). For `--sets` test
sets, `--resamples` bootstrap resamples of the videos give four 95% intervals:

- percentile: the 2.5 and 97.5 % quantiles of the resampled mAPs (videolt before issue 14);
- basic: the percentile interval reflected about the estimate (2θ̂ − q_hi, 2θ̂ − q_lo);
- BC: Efron's bias-corrected percentiles (BCa without acceleration);
- re-centred: the percentile interval shifted by median(θ*) − θ̂ (videolt's choice, `stats._interval`).

Printed per regime and rule: coverage of the target, and the share of estimates inside the middle 70 %
of their own interval. Run: `.venv/bin/python benchmarks/bootstrap.py` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from videolt.evaluate.metrics import average_precision
from videolt.evaluate.stats import resample_counts, resampled_average_precision

# name: (N videos, C classes, prevalence from, to, signal from, to, float16 ties)
REGIMES = {
    "moderate positives (12-60 per class)": (1000, 60, 0.06, 0.012, 0.5, 2.0, False),
    "few positives, strong signal (5-10)": (500, 100, 0.02, 0.01, 2.0, 4.0, False),
    "very few positives, strong signal (1-3)": (500, 200, 0.006, 0.002, 2.0, 4.0, False),
    "weak saturated float16 scores (3-15)": (1000, 120, 0.015, 0.003, 0.3, 1.5, True),
    "tiny demo-like set (3 per class)": (60, 20, 0.05, 0.05, 0.5, 2.0, False),
}


def _phi_inv(p: float) -> float:
    """Inverse standard normal CDF by bisection on erf (no scipy needed)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def intervals(estimate: float, boot: np.ndarray) -> dict[str, tuple[float, float]]:
    lo, hi = np.quantile(boot, [0.025, 0.975])
    z0 = _phi_inv(float(np.clip((boot < estimate).mean(), 1e-3, 1 - 1e-3)))
    a1, a2 = _phi(2 * z0 - 1.959964), _phi(2 * z0 + 1.959964)
    shift = float(np.median(boot)) - estimate
    return {"percentile": (lo, hi), "basic": (2 * estimate - hi, 2 * estimate - lo),
            "BC": tuple(np.quantile(boot, [a1, a2])), "re-centred": (lo - shift, hi - shift)}


def run_regime(spec: tuple, sets: int, resamples: int, truth_sets: int) -> dict[str, tuple[float, float]]:
    n, c, p0, p1, s0, s1, ties = spec
    prevalence = np.geomspace(p0, p1, c)
    signal = np.random.default_rng(0).uniform(s0, s1, c)

    def test_set(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        targets = rng.random((n, c)) < prevalence
        logits = targets * signal + rng.normal(size=(n, c))
        if ties:
            return (1 / (1 + np.exp(-(logits - 6.0)))).astype(np.float16).astype(np.float32), targets
        return logits.astype(np.float32), targets

    truth = float(np.mean([average_precision(*test_set(10**6 + i)).mean() for i in range(truth_sets)]))
    hits: dict[str, list[bool]] = {}
    central: dict[str, list[bool]] = {}
    for seed in range(sets):
        scores, targets = test_set(seed)
        estimate = float(average_precision(scores, targets).mean())
        boot = resampled_average_precision(scores, targets, resample_counts(n, resamples, seed)).mean(axis=0)
        for rule, (a, b) in intervals(estimate, boot).items():
            hits.setdefault(rule, []).append(a <= truth <= b)
            central.setdefault(rule, []).append(0.15 < (estimate - a) / (b - a) < 0.85 if b > a else False)
    return {rule: (float(np.mean(hits[rule])), float(np.mean(central[rule]))) for rule in hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=200, help="simulated test sets per regime")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per test set")
    parser.add_argument("--truth", type=int, default=1000, help="test sets for the Monte Carlo target")
    args = parser.parse_args()
    print("| regime | rule | coverage of E[mAP] | estimate in middle 70 % |")
    print("|---|---|---:|---:|")
    for name, spec in REGIMES.items():
        tic = time.perf_counter()
        for rule, (coverage, centred) in run_regime(spec, args.sets, args.resamples, args.truth).items():
            print(f"| {name} | {rule} | {coverage:.3f} | {centred:.3f} |", flush=True)
        print(f"<!-- {name}: {time.perf_counter() - tic:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
