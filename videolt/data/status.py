"""What `videolt status` reports: per stage, counts by status and failure class, and class coverage."""

from __future__ import annotations

from collections import Counter

from videolt.data.labels import GROUPS
from videolt.data.workdir import Workdir

FEATURE_PREFIX = "features:"


def workdir_status(wd: Workdir, *, head: int = 500, tail: int = 100, worst: int = 10) -> dict:
    """Counts per stage; for downloads and feature sets also head/medium/tail coverage."""
    labels = wd.labels()
    group_of = labels.group_of(head, tail)
    with wd.manifest() as m:
        videos = m.videos()
        out: dict = {"videos": len(videos), "splits": dict(Counter(v.split for v in videos)),
                     "invalid_ids": sum(not v.id_valid for v in videos)}
        stages = m.stages()
        for stage in ["download", "decode"]:
            out[stage] = _stage(m, stage, videos, group_of, labels.names, worst)
        out["features"] = {}
        for stage in stages:
            if stage.startswith(FEATURE_PREFIX):
                s = _stage(m, stage, videos, group_of, labels.names, worst)
                s["missing"] = s.pop("pending")
                out["features"][stage[len(FEATURE_PREFIX):]] = s
    return out


def _stage(m, stage: str, videos, group_of: list[str], names: list[str], worst: int) -> dict:
    counts = m.counts(stage)
    done = {i for i, s in m.states(stage).items() if s.status == "done"}
    total: Counter[int] = Counter()
    have: Counter[int] = Counter()
    for v in videos:
        for c in v.labels:
            total[c] += 1
            have[c] += v.index in done
    coverage = {}
    for g in GROUPS:
        n = sum(total[c] for c in total if group_of[c] == g)
        k = sum(have[c] for c in total if group_of[c] == g)
        coverage[g] = {"videos": n, "done": k, "fraction": (k / n) if n else 0.0}
    counts["coverage"] = coverage
    if done:
        lost = sorted(total, key=lambda c: (have[c] / total[c], -total[c]))[:worst]
        counts["lowest_coverage_classes"] = [
            {"class": c, "name": names[c], "group": group_of[c], "done": have[c], "videos": total[c]}
            for c in lost]
    return counts


def format_status(status: dict) -> str:
    """A human-readable table of `workdir_status`."""
    lines = [f"videos: {status['videos']}  ({', '.join(f'{k} {v}' for k, v in status['splits'].items())}; "
             f"invalid IDs {status['invalid_ids']})"]
    rows = [("download", status["download"]), ("decode", status["decode"])]
    rows += [(f"features:{k}", v) for k, v in status["features"].items()]
    for name, s in rows:
        pending = s.get("pending", s.get("missing", 0))
        failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "none"
        cov = "  ".join(f"{g} {c['fraction']:.1%}" for g, c in s["coverage"].items())
        lines.append(f"{name:<24} done {s['done']:>7}  pending {pending:>7}  failed: {failed}")
        lines.append(f"{'':<24} coverage by group: {cov}")
    return "\n".join(lines)
