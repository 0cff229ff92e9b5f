"""Run-vs-run comparison: per-group mAP differences with paired bootstrap intervals over test videos.

Used by `videolt report WORKDIR --runs TREATMENT CONTROL [CONTROL ...]` (the first run compared with
each of the others, every difference treatment − control) and by the benchmark report. A run contributes its per_class_ap.csv (AP per class and the class groups it was
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

from videolt.data import protocol, runfiles
from videolt.data.labels import multi_hot
from videolt.data.workdir import Workdir
from videolt.errors import InputFileError, UsageError
from videolt.evaluate import plots
from videolt.evaluate.stats import bootstrap_difference, bootstrap_map

__all__ = ["GROUPS", "RunResult", "check_same_groups", "compare_runs", "format_comparison", "load_run", "run_difference",
           "run_intervals"]

log = logging.getLogger(__name__)

GROUPS = ("overall", *protocol.GROUPS)


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
    thresholds: tuple[int, int] | None = None  # (group_head, group_tail) it was scored with, when recorded

    def groups(self) -> dict[str, np.ndarray]:
        return {g: np.flatnonzero(self.group == g) for g in GROUPS[1:]}

    def group_map(self) -> dict[str, float]:
        ids = {"overall": np.arange(len(self.ap)), **self.groups()}
        return {g: float(self.ap[i].mean()) if i.size else float("nan") for g, i in ids.items()}


def load_run(wd: Workdir, run: str) -> RunResult:
    """metrics.json, per_class_ap.csv and (if present) the test scores of `run`."""
    run_dir = wd.run_dir(run)
    metrics_path, ap_path = runfiles.metrics_path(run_dir), runfiles.per_class_ap_path(run_dir)
    if not metrics_path.is_file() or not ap_path.is_file():
        raise UsageError(f"{run_dir}: not a finished run (no metrics.json / per_class_ap.csv)")
    metrics = _read_json(metrics_path)
    try:
        with ap_path.open(newline="", encoding="utf-8") as f:
            table = list(csv.DictReader(f))
        ap, names, group = np.array([float(r["ap"]) for r in table]), [r["name"] for r in table], [r["group"] for r in table]
    except (KeyError, ValueError, TypeError) as e:
        raise InputFileError(ap_path, None, f"not a per-class AP table videolt wrote ({type(e).__name__}: {e})") from None
    scores, rows = runfiles.scores_path(run_dir), runfiles.rows_path(run_dir)
    has_scores = scores.is_file() and rows.is_file()
    return RunResult(run, metrics, ap, names, np.array(group), scores if has_scores else None,
                     rows if has_scores else None, _thresholds(metrics, runfiles.config_path(run_dir)))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputFileError(path, None, f"not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, None, f"expected a JSON object, got {type(data).__name__}")
    return data


def _thresholds(metrics: dict, config_path: Path) -> tuple[int, int] | None:
    """(group_head, group_tail) from the metrics (recorded since they can differ from the run's), else
    from the run's config.json; None when neither says."""
    if "group_head" in metrics and "group_tail" in metrics:
        return int(metrics["group_head"]), int(metrics["group_tail"])
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))["config"]
        return int(config["group_head"]), int(config["group_tail"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_same_groups(wd: Workdir, treatment: RunResult, control: RunResult) -> None:
    """Refuse to compare runs scored with different class groups: one line naming both runs'
    thresholds and the `videolt evaluate` that re-scores one run with the other's (those that leave
    no group empty, when only one run's do)."""
    if np.array_equal(treatment.group, control.group):
        return

    def said(r: RunResult) -> str:
        return f"head > {r.thresholds[0]}, tail <= {r.thresholds[1]}" if r.thresholds else "unrecorded thresholds"

    def fills(r: RunResult) -> bool:
        return all(len(ids) for ids in wd.labels().groups(*r.thresholds).values())

    keep, redo = (treatment, control) if treatment.thresholds and fills(treatment) and not (
        control.thresholds and fills(control)) else (control, treatment)
    fix = (f"--set group_head={keep.thresholds[0]} --set group_tail={keep.thresholds[1]}" if keep.thresholds
           else "--set group_head=H --set group_tail=T")
    raise UsageError(f"{treatment.run} and {control.run} were scored with different class groups ({treatment.run}: "
                     f"{said(treatment)}; {control.run}: {said(control)} train videos); re-score one with the "
                     f"other's thresholds, e.g. `videolt evaluate {wd.root} --run {redo.run} {fix}`, then compare again")


def run_intervals(wd: Workdir, result: RunResult, *, n_resamples: int = 1000, seed: int = 0) -> dict | None:
    """{group: {estimate, low, high}} 95% bootstrap intervals of the run's mAP; None without scores."""
    if result.scores_path is None or n_resamples == 0:
        return None
    scores, targets = _scores_and_targets(wd, result)
    return bootstrap_map(scores, targets, result.groups(), n_resamples=n_resamples, seed=seed)


def run_difference(wd: Workdir, a: RunResult, b: RunResult, *, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Per group: mAP of the treatment `a` and the control `b`, a − b and, with both runs' scores, the
    paired 95% interval of a − b."""
    check_same_groups(wd, a, b)
    map_a, map_b = a.group_map(), b.group_map()
    out = {g: {"treatment": map_a[g], "control": map_b[g], "difference": map_a[g] - map_b[g]} for g in GROUPS}
    if n_resamples and a.scores_path is not None and b.scores_path is not None:
        rows_a, rows_b = _npy(a.rows_path), _npy(b.rows_path)
        if np.array_equal(rows_a, rows_b):
            sa, targets = _scores_and_targets(wd, a)
            sb, _ = _scores_and_targets(wd, b)
            boot = bootstrap_difference(sa, sb, targets, a.groups(), n_resamples=n_resamples, seed=seed)
            for g in GROUPS:
                out[g] |= {"low": boot[g]["low"], "high": boot[g]["high"], "includes_zero": boot[g]["includes_zero"]}
        else:
            log.warning("%s and %s were tested on different videos: no paired interval", a.run, b.run)
    return out


def compare_runs(workdir: str | Path, runs: Sequence[str], out_dir: str | Path | None = None, *,
                 n_resamples: int = 1000, seed: int = 0, top: int = 10) -> dict:
    """The first run (the treatment) against each other run (a control): paired group differences,
    treatment − control, and a per-class AP difference plot.

    Plots go to `out_dir` (default WORKDIR/reports/compare/). Every pair is checked before anything is
    computed or written: runs scored with other class groups are refused and nothing is written.
    """
    if len(runs) < 2:
        raise UsageError("--runs: name at least two runs (the treatment, then the control(s) it is compared with)")
    wd = Workdir.open(workdir)
    out_dir = Path(out_dir) if out_dir is not None else wd.reports_dir / "compare"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: a file; name a folder for the plots")
    results = [load_run(wd, r) for r in runs]
    a = results[0]
    for b in results[1:]:
        check_same_groups(wd, a, b)
    comparisons = []
    for b in results[1:]:
        groups = run_difference(wd, a, b, n_resamples=n_resamples, seed=seed)
        plot = plots.ap_difference(a.ap, b.ap, a.names, a.group == "tail",
                                   out_dir / f"ap_difference_{a.run}__{b.run}.png", label_a=a.run, label_b=b.run,
                                   top=top)
        notes = {r.run: r.metrics["note"] for r in (a, b) if r.metrics.get("note")}
        comparisons.append({"treatment": a.run, "control": b.run, "n_resamples": n_resamples, "groups": groups,
                            "plot": str(plot), "notes": notes})
    return {"runs": list(runs), "comparisons": comparisons}


def format_comparison(result: dict) -> str:
    """Plain-text lines for the terminal, saying outright whether each interval includes zero."""
    lines = []
    for c in result["comparisons"]:
        lines.append(f"{c['treatment']} − {c['control']} (treatment − control; 95% paired bootstrap over test videos, "
                     f"{c['n_resamples']} resamples)")
        for g, row in c["groups"].items():
            if row["difference"] != row["difference"]:  # NaN: no class in this group
                lines.append(f"  {g:<8} n/a (no class in this group under the thresholds in force)")
                continue
            text = (f"  {g:<8} {c['treatment']} {row['treatment']:.4f} − {c['control']} {row['control']:.4f} "
                    f"= {row['difference']:+.4f}")
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


def _npy(path: Path) -> np.ndarray:
    """A numeric array a run saved; anything else (damaged, pickled objects) is an `InputFileError`."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputFileError(path, None, f"not a readable array ({e})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        raise InputFileError(path, None, "not a numeric array")
    return array


def _scores_and_targets(wd: Workdir, result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """The run's test scores and the multi-hot targets of the videos they belong to."""
    scores, rows = _npy(result.scores_path).astype(np.float64), _npy(result.rows_path)
    if scores.shape != (len(rows), len(result.ap)) or rows.ndim != 1:
        raise InputFileError(result.scores_path, None, f"scores of shape {scores.shape} do not match the "
                                                       f"{len(rows)} rows of {result.rows_path.name} and the "
                                                       f"{len(result.ap)} classes of per_class_ap.csv")
    with wd.manifest() as m:
        labels = {v.index: v.labels for v in m.videos(["test"])}
    missing = [int(r) for r in rows if int(r) not in labels]
    if missing:
        raise UsageError(f"{result.rows_path}: row {missing[0]} is not a test video of {wd.root}")
    return scores, multi_hot([labels[int(r)] for r in rows], len(result.ap))
