"""Run-vs-run comparison: per-group mAP differences with paired bootstrap intervals over test videos.

Used by `videolt report WORKDIR --runs A B ...` (A compared with each of the others) and by the
benchmark report. A run contributes its per_class_ap.csv (AP per class and the class groups it was
scored with) and, when present, scores_test.npy with rows_test.npy (the store rows those scores
belong to): with scores, the intervals come from `stats.bootstrap_map` / `stats.bootstrap_difference`
on the very same resampled test sets; without them, only the point values are reported.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from videolt.data.labels import multi_hot
from videolt.data.workdir import Workdir
from videolt.errors import UsageError
from videolt.evaluate import plots
from videolt.evaluate.stats import bootstrap_difference, bootstrap_map

__all__ = ["GROUPS", "RunResult", "compare_runs", "format_comparison", "load_run", "run_difference",
           "run_intervals"]

log = logging.getLogger(__name__)

GROUPS = ("overall", "head", "medium", "tail")


@dataclass(frozen=True)
class RunResult:
    """A finished run's test results as arrays."""

    run: str
    metrics: dict
    ap: np.ndarray  # [C] float64
    names: list[str]
    group: np.ndarray  # [C] "head" | "medium" | "tail"
    scores_path: Path | None  # scores_test.npy [N, C] float32, with rows_path's [N] store rows
    rows_path: Path | None

    def groups(self) -> dict[str, np.ndarray]:
        return {g: np.flatnonzero(self.group == g) for g in GROUPS[1:]}

    def group_map(self) -> dict[str, float]:
        ids = {"overall": np.arange(len(self.ap)), **self.groups()}
        return {g: float(self.ap[i].mean()) if i.size else float("nan") for g, i in ids.items()}


def load_run(wd: Workdir, run: str) -> RunResult:
    """metrics.json, per_class_ap.csv and (if present) the test scores of `run`."""
    run_dir = wd.run_dir(run)
    metrics_path, ap_path = run_dir / "metrics.json", run_dir / "per_class_ap.csv"
    if not metrics_path.is_file() or not ap_path.is_file():
        raise UsageError(f"{run_dir}: not a finished run (no metrics.json / per_class_ap.csv)")
    with ap_path.open(newline="") as f:
        table = list(csv.DictReader(f))
    scores, rows = run_dir / "scores_test.npy", run_dir / "rows_test.npy"
    has_scores = scores.is_file() and rows.is_file()
    return RunResult(run, json.loads(metrics_path.read_text()), np.array([float(r["ap"]) for r in table]),
                     [r["name"] for r in table], np.array([r["group"] for r in table]),
                     scores if has_scores else None, rows if has_scores else None)


def run_intervals(wd: Workdir, result: RunResult, *, n_resamples: int = 1000, seed: int = 0) -> dict | None:
    """{group: {estimate, low, high}} 95% bootstrap intervals of the run's mAP; None without scores."""
    if result.scores_path is None or n_resamples == 0:
        return None
    scores, targets = _scores_and_targets(wd, result)
    return bootstrap_map(scores, targets, result.groups(), n_resamples=n_resamples, seed=seed)


def run_difference(wd: Workdir, a: RunResult, b: RunResult, *, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Per group: mAP of a and b, a − b and, with both runs' scores, the paired 95% interval of a − b."""
    if not np.array_equal(a.group, b.group):
        raise UsageError(f"{a.run} and {b.run} were scored with different class groups; compare like with like")
    map_a, map_b = a.group_map(), b.group_map()
    out = {g: {"a": map_a[g], "b": map_b[g], "difference": map_a[g] - map_b[g]} for g in GROUPS}
    if n_resamples and a.scores_path is not None and b.scores_path is not None:
        rows_a, rows_b = np.load(a.rows_path), np.load(b.rows_path)
        if np.array_equal(rows_a, rows_b):
            sa, targets = _scores_and_targets(wd, a)
            sb = np.load(b.scores_path).astype(np.float64)
            boot = bootstrap_difference(sa, sb, targets, a.groups(), n_resamples=n_resamples, seed=seed)
            for g in GROUPS:
                out[g] |= {"low": boot[g]["low"], "high": boot[g]["high"], "includes_zero": boot[g]["includes_zero"]}
        else:
            log.warning("%s and %s were tested on different videos: no paired interval", a.run, b.run)
    return out


def compare_runs(workdir: str | Path, runs: Sequence[str], out_dir: str | Path | None = None, *,
                 n_resamples: int = 1000, seed: int = 0, top: int = 10) -> dict:
    """The first run against each other run: paired group differences and a per-class AP difference plot.

    Plots go to `out_dir` (default WORKDIR/reports/compare/).
    """
    if len(runs) < 2:
        raise UsageError("--runs: name at least two runs (the first is compared with each of the others)")
    wd = Workdir.open(workdir)
    out_dir = Path(out_dir) if out_dir is not None else wd.reports_dir / "compare"
    results = [load_run(wd, r) for r in runs]
    a = results[0]
    comparisons = []
    for b in results[1:]:
        plot = plots.ap_difference(a.ap, b.ap, a.names, a.group == "tail",
                                   out_dir / f"ap_difference_{a.run}__{b.run}.png", label_a=a.run, label_b=b.run,
                                   top=top)
        notes = {r.run: r.metrics["note"] for r in (a, b) if r.metrics.get("note")}
        comparisons.append({"a": a.run, "b": b.run, "n_resamples": n_resamples,
                            "groups": run_difference(wd, a, b, n_resamples=n_resamples, seed=seed),
                            "plot": str(plot), "notes": notes})
    return {"runs": list(runs), "comparisons": comparisons}


def format_comparison(result: dict) -> str:
    """Plain-text lines for the terminal, saying outright whether each interval includes zero."""
    lines = []
    for c in result["comparisons"]:
        lines.append(f"{c['a']} − {c['b']}  (95% paired bootstrap over test videos, {c['n_resamples']} resamples)")
        for g, row in c["groups"].items():
            text = f"  {g:<8} {row['a']:.4f} vs {row['b']:.4f}  difference {row['difference']:+.4f}"
            if "low" in row:
                verdict = ("includes zero: no evidence of a difference" if row["includes_zero"]
                           else "excludes zero")
                text += f"  [{row['low']:+.4f}, {row['high']:+.4f}]  {verdict}"
            else:
                text += "  (no interval: scores_test.npy missing)"
            lines.append(text)
        lines.append(f"  plot: {c['plot']}")
        lines += [f"  note on {run}: {note}" for run, note in c.get("notes", {}).items()]
    return "\n".join(lines)


def _scores_and_targets(wd: Workdir, result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """The run's test scores and the multi-hot targets of the videos they belong to."""
    scores = np.load(result.scores_path).astype(np.float64)
    rows = np.load(result.rows_path)
    labels = {v.index: v.labels for v in wd.manifest().videos(["test"])}
    missing = [int(r) for r in rows if int(r) not in labels]
    if missing:
        raise UsageError(f"{result.rows_path}: row {missing[0]} is not a test video of {wd.root}")
    return scores, multi_hot([labels[int(r)] for r in rows], len(result.ap))
