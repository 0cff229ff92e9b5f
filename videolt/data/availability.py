"""How much of VideoLT is still on YouTube: survival per class and per head/medium/tail group.

Every video of the manifest has one outcome of the download stage:

- `fetched`: downloaded by yt-dlp; `imported`: registered from a local copy (`import-videos`),
  which says nothing about YouTube;
- `lost`: failed with a permanent class (`failures.PERMANENT`: removed, private, copyright, policy,
  geo_blocked, age_restricted, members_only, login_required, invalid_id), kept by class; an ID no
  URL can be made from is `invalid_id` even in a workdir made before `init` recorded them;
- `retryable`: failed with a class the next `download` retries (transient, rate_limited, bot_check, ...);
- `exhausted`: failed with such a class, but its attempts are used up (`max_attempts`), so no
  download retries it (unless given a higher `--max-attempts`, or `--recheck` the class);
- `not_tried`: no attempt yet.

Survival is fetched / (fetched + lost): the share of the videos whose fate is known that YouTube
still serves, so an unfinished run does not read as decay. Coverage is (fetched + imported) /
listed: what the dataset has. Classes count each video once per label; a group counts the distinct
videos with a label in it (a video labelled in two groups counts in both). The CSV holds one row per
video (id, split, outcome, failure class, yt-dlp version, date of the last attempt) and can be
shared without any video. Outcomes written by `videolt.data.simulate` are marked and every output
then says "simulated".
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from videolt import atomic
from videolt.data.download.config import DownloadConfig
from videolt.data.failures import PERMANENT, RECOVERABLE
from videolt.data.ids import INVALID_ID
from videolt.data.labels import COUNT_FILE, LabelSet, group_warning, read_counts
from videolt.data.protocol import GROUP_HEAD, GROUP_TAIL, GROUPS
from videolt.data.workdir import Workdir

__all__ = ["OUTCOMES", "VideoOutcome", "availability", "format_availability", "plot_survival", "split_coverage",
           "video_outcomes", "write_csv"]

STAGE = "download"
OUTCOMES = ("fetched", "imported", "lost", "retryable", "exhausted", "not_tried")
CSV_COLUMNS = ("video_id", "split", "outcome", "failure", "ytdlp_version", "date")
_LOST = frozenset(f.value for f in PERMANENT)
# The house colours of `videolt.evaluate.plots` (data may not import a stage).
GROUP_COLOURS = {"head": "#4C72B0", "medium": "#55A868", "tail": "#C44E52", "overall": "#8172B2"}
_LOST_COLOURS = ["#C44E52", "#DD8452", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#64B5CD", "#4C72B0", "#CCB974"]


@dataclass(frozen=True)
class VideoOutcome:
    """One video's download outcome, as shared in the CSV (plus its labels and manifest index)."""

    index: int
    video_id: str
    split: str
    labels: tuple[int, ...]
    outcome: str
    failure: str | None
    ytdlp_version: str | None
    date: str | None  # ISO date (UTC) of the last attempt
    simulated: bool = False


def video_outcomes(workdir: Workdir, *, max_attempts: int | None = None) -> list[VideoOutcome]:
    """Every manifest video with its download outcome, in manifest order; a retryable failure with
    `max_attempts` attempts (default: the download stage's cap) is `exhausted`, as `download` sees it."""
    max_attempts = DownloadConfig().max_attempts if max_attempts is None else max_attempts
    with workdir.manifest() as m:
        videos = m.videos()
        states = m.states(STAGE)
    out = []
    day = _utc_day()
    for v in videos:
        s = states.get(v.index)
        info = s.info if s else {}
        failure = s.failure if s and s.status == "failed" else None
        if (s is None or s.status == "pending") and not v.id_valid:  # never fetched, never pending
            outcome, failure = "lost", INVALID_ID
        elif s is None or s.status == "pending":
            outcome = "not_tried"
        elif s.status == "done":
            outcome = "imported" if info.get("source") == "import" else "fetched"
        elif s.failure in _LOST:
            outcome = "lost"
        else:
            outcome = "exhausted" if s.attempts >= max_attempts else "retryable"
        date = day(int(s.finished_at // 86400)) if s and s.finished_at else None
        out.append(VideoOutcome(v.index, v.video_id, v.split, v.labels, outcome, failure,
                                info.get("ytdlp_version"), date, bool(info.get("simulated"))))
    return out


def _utc_day():
    """Day number since the epoch → ISO date (UTC), cached: a quarter of a million timestamps share a few days."""
    import functools

    @functools.lru_cache(maxsize=None)
    def day(n: int) -> str:
        return (dt.date(1970, 1, 1) + dt.timedelta(days=n)).isoformat()

    return day


def _tally(outcomes: Iterable[VideoOutcome]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    lost_by: Counter[str] = Counter()
    retry_by: Counter[str] = Counter()
    for o in outcomes:
        counts[o.outcome] += 1
        if o.outcome == "lost":
            lost_by[o.failure or "unknown"] += 1
        elif o.outcome == "retryable":
            retry_by[o.failure or "unknown"] += 1
    listed = sum(counts.values())
    known = counts["fetched"] + counts["lost"]
    return {"listed": listed, **{k: counts[k] for k in OUTCOMES},
            "survival": counts["fetched"] / known if known else None,
            "coverage": (counts["fetched"] + counts["imported"]) / listed if listed else None,
            "lost_by_class": dict(lost_by.most_common()), "retryable_by_class": dict(retry_by.most_common())}


def availability(workdir: Workdir, *, head: int = GROUP_HEAD, tail: int = GROUP_TAIL, worst: int = 15,
                 outcomes: Sequence[VideoOutcome] | None = None) -> dict[str, Any]:
    """The availability report as plain data (see the module docstring for the definitions)."""
    import yt_dlp

    labels = workdir.labels()
    group_of = labels.group_of(head, tail)
    counts = labels.counts
    outcomes = list(outcomes) if outcomes is not None else video_outcomes(workdir)
    by_class: list[list[VideoOutcome]] = [[] for _ in range(labels.num_classes)]
    by_group: dict[str, list[VideoOutcome]] = {g: [] for g in GROUPS}
    for o in outcomes:
        for c in o.labels:
            by_class[c].append(o)
        for g in {group_of[c] for c in o.labels}:
            by_group[g].append(o)
    classes = [{"class": c, "name": labels.names[c], "group": group_of[c], "train_count": int(counts[c]),
                "train_fetched": sum(o.split == "train" and o.outcome in ("fetched", "imported") for o in by_class[c]),
                **_tally(by_class[c])} for c in range(labels.num_classes)]
    groups = {g: {"classes": sum(x == g for x in group_of), **_tally(by_group[g]),
                  **_smallest([c["train_fetched"] for c in classes if c["group"] == g])} for g in GROUPS}
    lost_most = sorted((c for c in classes if c["lost"]), key=lambda c: (-c["lost"] / c["listed"], -c["lost"]))
    versions = Counter(o.ytdlp_version for o in outcomes if o.ytdlp_version)
    overall = _tally(outcomes)
    recoverable = sum(overall["lost_by_class"].get(f.value, 0) for f in RECOVERABLE)
    return {
        "date": dt.date.today().isoformat(),
        "simulated": any(o.simulated for o in outcomes),
        "ytdlp_versions": dict(versions.most_common()),
        "installed_ytdlp": yt_dlp.version.__version__,
        "thresholds": {"head": head, "tail": tail},
        "warnings": [w for w in [group_warning(labels, head, tail, "--head {head} --tail {tail}")] if w],
        "overall": {**overall, "recoverable": recoverable},
        "splits": {s: _tally(o for o in outcomes if o.split == s) for s in dict.fromkeys(o.split for o in outcomes)},
        "groups": groups,
        "test_coverage": split_coverage(workdir, split="test", outcomes=outcomes, group_of=group_of),
        "lost_most": [_brief(c) for c in lost_most[:worst]],
        "classes": classes,
    }


def _smallest(train_fetched: list[int]) -> dict[str, int | None]:
    """How small a group's classes have become: train videos the workdir has, in its smallest and median class."""
    if not train_fetched:
        return {"train_fetched_min": None, "train_fetched_median": None}
    return {"train_fetched_min": int(min(train_fetched)), "train_fetched_median": int(np.median(train_fetched))}


def _brief(c: dict) -> dict:
    return {k: c[k] for k in ("class", "name", "group", "train_count", "train_fetched", "listed", "fetched", "lost",
                              "survival", "lost_by_class")}


def split_coverage(workdir: Workdir, *, split: str = "test", features: str | None = None, head: int = GROUP_HEAD,
                   tail: int = GROUP_TAIL, outcomes: Sequence[VideoOutcome] | None = None,
                   group_of: Sequence[str] | None = None) -> dict[str, Any]:
    """Which fraction of a split's listed videos a number can be measured on.

    Without `features`: the videos the workdir has (fetched or imported). With `features` (a feature
    set name): the videos whose row in `features/<name>.zarr` is done, which are exactly the videos
    evaluation scores (the rest are skipped). Returns `{"split", "features", "listed", "measured",
    "fraction", "groups": {head|medium|tail: {"listed", "measured", "fraction"}}}`.
    """
    if features is not None:
        from videolt.data.store import STATUS_DONE, FeatureStore

        done = FeatureStore.open(workdir.features_path(features)).status() == STATUS_DONE
        with workdir.manifest() as m:
            items = [(v.index, v.labels) for v in m.videos([split])]
        have = {i for i, _ in items if done[i]}
    else:
        rows = [o for o in (outcomes if outcomes is not None else video_outcomes(workdir)) if o.split == split]
        items = [(o.index, o.labels) for o in rows]
        have = {o.index for o in rows if o.outcome in ("fetched", "imported")}
    if group_of is None:  # the count file alone decides the groups: no need to read the split lists
        group_of = LabelSet(read_counts(workdir.labels_dir / COUNT_FILE)).group_of(head, tail)

    def share(subset: list[tuple[int, tuple[int, ...]]]) -> dict[str, Any]:
        n, k = len(subset), sum(i in have for i, _ in subset)
        return {"listed": n, "measured": k, "fraction": k / n if n else None}

    return {"split": split, "features": features, **share(items),
            "groups": {g: share([(i, ls) for i, ls in items if any(group_of[c] == g for c in ls)]) for g in GROUPS}}


def write_csv(outcomes: Sequence[VideoOutcome], path: str | Path) -> Path:
    """One row per video: `CSV_COLUMNS`; no video, no message, no session detail. Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for o in outcomes:
                version = "simulated" if o.simulated else o.ytdlp_version
                writer.writerow([o.video_id, o.split, o.outcome, o.failure or "", version or "", o.date or ""])

    atomic.replace(path, write)
    return path


def format_availability(report: dict) -> str:
    """The report as a few lines of text."""
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    o = report["overall"]
    tag = "SIMULATED outcomes (not a measurement) — " if report["simulated"] else ""
    versions = ", ".join(report["ytdlp_versions"]) or "none"
    lines = [f"{tag}availability on {report['date']} (yt-dlp {versions})",
             f"videos {o['listed']:,}: fetched {o['fetched']:,}, imported {o['imported']:,}, lost {o['lost']:,}, "
             f"retryable {o['retryable']:,}, failed with attempts exhausted {o['exhausted']:,}, "
             f"not tried {o['not_tried']:,}; survival {pct(o['survival'])}, "
             f"coverage {pct(o['coverage'])}",
             "lost by class: " + (", ".join(f"{k} {v:,}" for k, v in o["lost_by_class"].items()) or "none")
             + (f" ({o['recoverable']:,} perhaps recoverable with your own account's cookies or from another "
                "country)" if o["recoverable"] else "")]
    t = report["thresholds"]
    lines.append(f"{'group':<8} {'classes':>7} {'videos':>8} {'fetched':>8} {'lost':>7} {'survival':>9} "
                 f"{'coverage':>9}  train videos left per class: smallest, median   "
                 f"(head > {t['head']}, tail <= {t['tail']} train videos)")
    for g, s in report["groups"].items():
        lines.append(f"{g:<8} {s['classes']:>7} {s['listed']:>8,} {s['fetched']:>8,} {s['lost']:>7,} "
                     f"{pct(s['survival']):>9} {pct(s['coverage']):>9}  {s['train_fetched_min']}, "
                     f"{s['train_fetched_median']}")
    tc = report["test_coverage"]
    lines.append(f"test set: {tc['measured']:,} of {tc['listed']:,} videos available ({pct(tc['fraction'])}); "
                 + ", ".join(f"{g} {pct(s['fraction'])}" for g, s in tc["groups"].items()))
    lines.append("lost most: " + ("; ".join(
        f"{c['name']} ({c['group']}, {c['train_count']} train) {c['lost']}/{c['listed']}"
        for c in report["lost_most"][:5]) or "no class has lost a video"))
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def plot_survival(report: dict, path: str | Path) -> Path:
    """Survival per class against its train count (log), groups coloured, a binned median, and the
    outcome mix per group; titled "SIMULATED" when the outcomes are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = [c for c in report["classes"] if c["survival"] is not None]
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    x = np.array([max(c["train_count"], 1) for c in classes], dtype=float)
    y = np.array([c["survival"] for c in classes])
    for g in GROUPS:
        sel = np.array([c["group"] == g for c in classes], dtype=bool)
        s = report["groups"][g]["survival"]
        ax.scatter(x[sel], y[sel], s=9, alpha=0.55, color=GROUP_COLOURS[g], linewidths=0,
                   label=f"{g}: {int(sel.sum())} classes, survival {s:.1%}" if s is not None else g)
    if len(x):
        edges = np.geomspace(x.min(), x.max() * 1.0001, 12)
        mids, med = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (x >= lo) & (x < hi)
            if sel.sum() >= 3:
                mids.append(np.sqrt(lo * hi))
                med.append(np.median(y[sel]))
        ax.plot(mids, med, color="black", lw=1.5, label="median per frequency bin")
    overall = report["overall"]["survival"]
    if overall is not None:
        ax.axhline(overall, color="grey", ls="--", lw=1, label=f"all videos {overall:.1%}")
    t = report["thresholds"]
    for v in (t["tail"], t["head"]):
        ax.axvline(v, color="grey", lw=0.6, alpha=0.6)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.set_xlabel("train videos in the class (log)")
    ax.set_ylabel("survival: fetched / (fetched + lost)")
    ax.set_ylim(max(0.0, min(y.min() if len(y) else 0, 0.5) - 0.05), 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _outcome_bars(bars, report)
    tag = "SIMULATED outcomes, not a measurement — " if report["simulated"] else ""
    versions = ", ".join(report["ytdlp_versions"]) or "no yt-dlp run"
    tc = report["test_coverage"]
    test = f"; test set {tc['fraction']:.1%} available" if tc["fraction"] is not None else ""
    fig.suptitle(f"{tag}VideoLT availability on {report['date']} (yt-dlp {versions}){test}",
                 color="#C44E52" if report["simulated"] else "black", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        return atomic.replace(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def _outcome_bars(ax, report: dict) -> None:
    """Per group, the share of its videos not fetched: lost by failure class, then retryable, exhausted and not tried."""
    lost_classes = list(dict.fromkeys(k for g in GROUPS for k in report["groups"][g]["lost_by_class"]))
    segments = [*(f"lost: {k}" for k in lost_classes), "retryable", "exhausted", "not_tried"]
    palette = [*(_LOST_COLOURS * 2)[:len(lost_classes)], "#E5D8A0", "#B0A070", "#DDDDDD"]
    names = list(reversed(GROUPS))
    left = np.zeros(len(names))
    for seg, colour in zip(segments, palette):
        vals = []
        for g in names:
            s = report["groups"][g]
            k = s["lost_by_class"].get(seg[6:], 0) if seg.startswith("lost: ") else s[seg]
            vals.append(k / (s["listed"] or 1))
        vals = np.array(vals)
        if vals.any():
            label = {"not_tried": "not tried", "exhausted": "attempts exhausted"}.get(seg, seg)
            ax.barh(names, vals, left=left, color=colour, label=label, height=0.6)
        left += vals
    for i, g in enumerate(names):
        imported = report["groups"][g]["imported"]
        note = f"  fetched {report['groups'][g]['fetched'] / (report['groups'][g]['listed'] or 1):.1%}"
        ax.text(left[i], i, note + (f", imported {imported:,}" if imported else ""), va="center", fontsize=8)
    ax.set_xlim(0, max(left.max() * 1.45, 0.05))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_xlabel("share of the group's videos not fetched")
    ax.set_title("what became of the rest", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, frameon=False)
