"""Simulated download outcomes, to show and test the availability report without fetching anything.

Nobody has measured VideoLT's survival (`reference/download.md`). This writes a plausible mix into a
workdir's manifest instead, every record marked `simulated` so that `videolt availability` says so
in its text, JSON, CSV and plot:

- the lists' invalid IDs are `invalid_id`, as a real run records them;
- each class draws its own loss rate from Beta(4, 16) (mean 20 %, within the 15–30 % expected after
  five years), so classes differ as channels of one topic vanish together; a video is lost with the
  mean rate of its classes; nothing depends on class frequency, so any trend in the plot is noise;
- a lost video's class follows `LOSS_MIX` (removals and private videos dominate in other YouTube
  datasets' decay); a few videos are left `transient`, `bot_check` or `unknown` (still retryable).

    python -m videolt.data.simulate WORKDIR [--seed 0]     # then: videolt availability WORKDIR
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import yt_dlp

from videolt.data.workdir import Workdir

__all__ = ["LOSS_MIX", "simulate_outcomes"]

STAGE = "download"
LOSS_MIX = {"removed": 0.46, "private": 0.30, "copyright": 0.07, "policy": 0.05, "age_restricted": 0.05,
            "geo_blocked": 0.03, "login_required": 0.02, "members_only": 0.02}
UNRESOLVED = {"transient": 0.004, "bot_check": 0.002, "unknown": 0.001}
MEAN_BYTES = 9.6e6


def simulate_outcomes(workdir: Workdir, *, seed: int = 0, alpha: float = 4.0, beta: float = 16.0) -> dict[str, int]:
    """Write one simulated download outcome per video of `workdir`; returns the counts per outcome."""
    rng = np.random.default_rng(seed)
    labels = workdir.labels()
    class_loss = rng.beta(alpha, beta, labels.num_classes)
    lost_names, lost_p = list(LOSS_MIX), np.array(list(LOSS_MIX.values()))
    info = {"simulated": True, "ytdlp_version": yt_dlp.version.__version__, "session": "guest"}
    rows, counts = [], {}
    with workdir.manifest() as m:
        for v in m.videos():
            if not v.id_valid:
                status, failure = "failed", "invalid_id"
            else:
                u = rng.random()
                loss = float(np.mean(class_loss[list(v.labels)])) if v.labels else float(class_loss.mean())
                unresolved = np.cumsum(list(UNRESOLVED.values()))
                if u < unresolved[-1]:
                    status, failure = "failed", list(UNRESOLVED)[int(np.searchsorted(unresolved, u, side="right"))]
                elif rng.random() < loss:
                    status, failure = "failed", lost_names[rng.choice(len(lost_names), p=lost_p / lost_p.sum())]
                else:
                    status, failure = "done", None
            extra = {"bytes": int(rng.normal(MEAN_BYTES, MEAN_BYTES / 4))} if status == "done" else {}
            message = None if failure is None else f"[download] {v.video_id}: simulated {failure}"
            rows.append((v.index, status, failure, message, {**info, **extra}))
            key = failure or "done"
            counts[key] = counts.get(key, 0) + 1
        m.record_many(STAGE, rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m videolt.data.simulate", description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", help="a workdir made by `videolt init` (its download outcomes are replaced)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    counts = simulate_outcomes(Workdir.open(args.workdir), seed=args.seed)
    print(f"{args.workdir}: simulated outcomes written: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
