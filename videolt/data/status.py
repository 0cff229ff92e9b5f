"""What `videolt status` reports: per stage, counts by status and failure class, the commonest failure
messages of each class, and class coverage.

An ID no URL can be made from is a failed `invalid_id` download (recorded so by `init`; counted so
too in a workdir made before), never a pending one.
"""

from __future__ import annotations

import re
from collections import Counter

from videolt.data.ids import INVALID_ID
from videolt.data.protocol import GROUP_HEAD, GROUP_TAIL, GROUPS
from videolt.data.workdir import DOWNLOAD_STAGE, Workdir

FEATURE_PREFIX = "features:"
MESSAGE_CHARS = 240  # a message longer than this is cut (the manifest keeps it whole)


def workdir_status(wd: Workdir, *, head: int = GROUP_HEAD, tail: int = GROUP_TAIL, worst: int = 10,
                   messages: int = 3) -> dict:
    """Counts per stage; for downloads and feature sets also head/medium/tail coverage and, per failure
    class, its `messages` commonest messages (the video's ID replaced by `<id>`) with their counts."""
    labels = wd.labels()
    group_of = labels.group_of(head, tail)
    with wd.manifest() as m:
        videos = m.videos()
        out: dict = {"videos": len(videos), "splits": dict(Counter(v.split for v in videos)),
                     "invalid_ids": sum(not v.id_valid for v in videos)}
        stages = m.stages()
        for stage in ["download", "decode"]:
            out[stage] = _stage(m, stage, videos, group_of, labels.names, worst, messages)
        out["features"] = {}
        for stage in stages:
            if stage.startswith(FEATURE_PREFIX):
                s = _stage(m, stage, videos, group_of, labels.names, worst, messages)
                s["missing"] = s.pop("pending")
                out["features"][stage[len(FEATURE_PREFIX):]] = s
    return out


def _stage(m, stage: str, videos, group_of: list[str], names: list[str], worst: int, top: int) -> dict:
    counts = m.counts(stage)
    states = m.states(stage)
    if stage == DOWNLOAD_STAGE:  # invalid IDs of a workdir made before init recorded them
        unrecorded = sum(not v.id_valid and v.index not in states for v in videos)
        if unrecorded:
            counts["pending"] -= unrecorded
            counts["failed"][INVALID_ID] = counts["failed"].get(INVALID_ID, 0) + unrecorded
    done = {i for i, s in states.items() if s.status == "done"}
    counts["messages"] = _messages(states, {v.index: v.video_id for v in videos}, top)
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
        coverage[g] = {"videos": n, "done": k, "fraction": (k / n) if n else None}
    counts["coverage"] = coverage
    if done:
        lost = sorted(total, key=lambda c: (have[c] / total[c], -total[c]))[:worst]
        counts["lowest_coverage_classes"] = [
            {"class": c, "name": names[c], "group": group_of[c], "done": have[c], "videos": total[c]}
            for c in lost]
    return counts


def _messages(states: dict, ids: dict[int, str], top: int) -> dict[str, list[dict]]:
    """Per failure class, its `top` commonest messages as `{"message", "videos"}`, commonest first."""
    by_class: dict[str, Counter[str]] = {}
    for i, s in states.items():
        if s.status == "failed" and s.message:
            vid = ids.get(i, "")
            text = s.message.replace(vid, "<id>") if vid else s.message
            by_class.setdefault(s.failure or "unknown", Counter())[_short(text)] += 1
    return {k: [{"message": msg, "videos": n} for msg, n in c.most_common(top)] for k, c in sorted(by_class.items())}


def _short(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 1] + "…"


def format_status(status: dict) -> str:
    """A human-readable table of `workdir_status`."""
    lines = [f"videos: {status['videos']}  ({', '.join(f'{k} {v}' for k, v in status['splits'].items())}; "
             f"invalid IDs {status['invalid_ids']})"]
    rows = [("download", status["download"]), ("decode", status["decode"])]
    rows += [(f"features:{k}", v) for k, v in status["features"].items()]
    for name, s in rows:
        pending = s.get("pending", s.get("missing", 0))
        failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "none"
        cov = "  ".join(f"{g} {'n/a' if c['fraction'] is None else format(c['fraction'], '.1%')}"
                        for g, c in s["coverage"].items())
        lines.append(f"{name:<24} done {s['done']:>7}  pending {pending:>7}  failed: {failed}")
        lines.append(f"{'':<24} coverage by group: {cov}")
        for failure, top in s.get("messages", {}).items():
            for entry in top:
                lines.append(f"{'':<24} {failure} ({entry['videos']}): {entry['message']}")
    return "\n".join(lines)
