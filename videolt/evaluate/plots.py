"""Report figures as PNG (matplotlib, Agg backend): plain arrays in, one file out, nothing shown.

- `class_frequency`: train videos per class, sorted, log–log, head/medium/tail shaded (paper Fig. 3).
- `group_map_bars`: head/medium/tail/overall mAP per method, error bars = std over seeds.
- `ap_difference`: the classes gaining most AP from one method over another, over all classes and over
  tail classes, with class names (paper Figs. 4–5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402

from videolt import atomic  # noqa: E402
from videolt.data.protocol import GROUP_HEAD, GROUP_TAIL, GROUPS  # noqa: E402

__all__ = ["ap_difference", "class_frequency", "group_map_bars"]

GROUP_COLOURS = {"head": "#4C72B0", "medium": "#55A868", "tail": "#C44E52", "overall": "#8172B2"}
_DPI = 120


def class_frequency(counts: np.ndarray, path: Path, *, head: int = GROUP_HEAD, tail: int = GROUP_TAIL,
                    title: str = "Class frequency (train videos per class)") -> Path:
    """Sorted class index (1 = most frequent) vs train count on log–log axes, groups shaded."""
    counts = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    rank = np.arange(1, len(counts) + 1)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    n_head, n_tail = int((counts > head).sum()), int((counts <= tail).sum())
    spans = {"head": (1, n_head), "medium": (n_head + 1, len(counts) - n_tail), "tail": (len(counts) - n_tail + 1,
                                                                                     len(counts))}
    for group, (lo, hi) in spans.items():
        if hi >= lo:
            ax.axvspan(lo - 0.5, hi + 0.5, color=GROUP_COLOURS[group], alpha=0.15,
                       label=f"{group} ({hi - lo + 1} classes)")
    ax.plot(rank, np.maximum(counts, 0.5), color="black", lw=1.5, label="train videos")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.5, len(counts) + 0.5)
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 200, not 2×10²
    for axis, (lo, hi) in ((ax.xaxis, (1, len(counts))), (ax.yaxis, (max(counts.min(), 0.5), counts.max()))):
        axis.set_major_formatter(plain)
        # Within one decade there may be no major tick at all: label the minor ones instead.
        axis.set_minor_formatter(plain if hi / lo < 10 else ticker.NullFormatter())
    ax.set_xlabel("class index, sorted by train count (log)")
    ax.set_ylabel("train videos (log)")
    ax.set_title(f"{title}\nhead > {head}, tail ≤ {tail}")
    ax.legend(loc="lower left", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


def group_map_bars(rows: Sequence[Mapping], path: Path, *, title: str = "mAP by class group") -> Path:
    """Grouped bars: one group per method, bars overall/head/medium/tail; `rows` are `tables.result_rows` rows."""
    groups = ("overall", *GROUPS)
    labels = [r["method"] for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.5))
    for i, g in enumerate(groups):
        mean = np.array([np.nan if r.get(f"{g}_map") is None else r[f"{g}_map"] for r in rows])
        std = np.array([r.get(f"{g}_map_std") or 0.0 for r in rows])
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, mean, width, yerr=std, capsize=3,
               color=GROUP_COLOURS[g], label=g)
    ax.set_xticks(x, labels, rotation=20 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center")
    ax.set_ylabel("mAP")
    ax.set_ylim(0, 1.15)  # headroom for the legend above bars near 1
    ax.set_yticks(np.linspace(0, 1, 6))
    seeds = sorted({r.get("seeds") for r in rows if r.get("seeds")})
    ax.set_title(f"{title}\n(error bars: std over seeds; seeds per method: {', '.join(map(str, seeds))})")
    ax.legend(ncols=4, loc="upper right", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def ap_difference(ap_a: np.ndarray, ap_b: np.ndarray, names: Sequence[str], tail_mask: np.ndarray, path: Path, *,
                  label_a: str, label_b: str, top: int = 10) -> Path:
    """Top-`top` classes by AP(a) − AP(b): over all classes (left) and over tail classes (right)."""
    diff = np.asarray(ap_a, dtype=np.float64) - np.asarray(ap_b, dtype=np.float64)
    names = np.asarray(names)
    panels = [("", np.arange(len(diff))), ("tail ", np.flatnonzero(tail_mask))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * top + 2.2))
    for ax, (what, idx) in zip(axes, panels):
        order = idx[np.argsort(-diff[idx], kind="stable")][:top]
        values = diff[order]
        ax.barh(np.arange(len(order)), values, color=np.where(values >= 0, "#4C72B0", "#C44E52"))
        ax.set_yticks(np.arange(len(order)), names[order], fontsize=9)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"AP({label_a}) − AP({label_b})")
        ax.set_title(f"top {len(order)} of all {len(idx)} {what}classes")
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"Per-class AP difference {label_a} − {label_b}: the classes gaining most")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        return atomic.replace(path, lambda tmp: fig.savefig(tmp, dpi=_DPI, format="png"))
    finally:
        plt.close(fig)
