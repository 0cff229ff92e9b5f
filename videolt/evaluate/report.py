"""A benchmark's report from plain records: tables (md/csv/json), bootstrap intervals and plots.

The caller (the benchmark grid in `videolt.pipeline.benchmark`) hands over one *record* per finished
run — `{"run", "label", "backbone", "features", "aggregator", "seed", "method_key", "metrics", "selection"}`,
where `selection` maps "test" and "val" to the test metrics of the checkpoint each split picked — the
paper's reference entries with the same `method_key`s, and a `ReportSpec`; nothing here knows how
runs are trained. Per-run and paired bootstrap intervals come from each run's saved test scores and
are cached by the scores' modification times, so a rebuilt report costs little.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from videolt.data.workdir import Workdir
from videolt.evaluate import compare, plots, tables

__all__ = ["ReportSpec", "paper_results", "write"]


@dataclass(frozen=True)
class ReportSpec:
    """What a report is about: its name and title, the grid's size, comparisons, seeds and groups."""

    name: str  # the report goes to WORKDIR/reports/<name>/
    title: str
    total: int  # runs in the grid (finished or not)
    comparisons: tuple[tuple[str, str], ...]  # (treatment label, control label)
    bootstrap: int  # resamples of the test videos (0: no intervals)
    seeds: tuple[int, ...]
    head: int  # group thresholds the runs were scored with
    tail: int
    settings: dict[str, Any]  # the grid as plain data, recorded in report.json
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)  # feature set -> its test-set coverage


def _coverage_lines(coverage: dict[str, dict[str, Any]]) -> list[str]:
    """Which fraction of the test list each feature set's numbers were measured on (videos lost to
    download or extraction are not scored), overall and per class group."""
    lines = []
    for name, cov in coverage.items():
        if not cov.get("listed"):
            continue
        groups = ", ".join(f"{g} {c['fraction']:.1%}" for g, c in cov["groups"].items() if c.get("fraction") is not None)
        lines.append(f"Features `{name}`: measured on {cov['fraction']:.1%} of the test list "
                     f"({cov['measured']:,} of {cov['listed']:,} videos; {groups}).")
    return [*lines, ""] if lines else []


def paper_results() -> list[dict]:
    """The paper's reported numbers (paper_results.json), one entry per table cell."""
    return json.loads(Path(__file__).with_name("paper_results.json").read_text())["entries"]


def write(wd: Workdir, spec: ReportSpec, records: Sequence[dict], paper: Sequence[dict]) -> dict:
    """Tables (md/csv/json) and plots of the finished runs' `records` into WORKDIR/reports/<name>/."""
    out = wd.reports_dir / spec.name
    (out / "plots").mkdir(parents=True, exist_ok=True)
    results = tables.result_rows(records, paper)
    paired = tables.paired_rows(records, spec.comparisons)
    selection = tables.selection_rows(records)
    intervals, differences = _bootstrap_rows(wd, spec, records, out / "bootstrap_cache.json")
    figures = _figures(wd, spec, records, results, out / "plots")
    title = spec.title
    parts = [f"# {spec.name}: {title}", "",
             f"{len(records)} of {spec.total} runs finished. Metrics are fractions in [0, 1]: mean ± sample std "
             "(ddof=1) over seeds; with one seed the std is left blank. Paper rows are matched on backbone, "
             "aggregator and the method's resolved settings; `− paper` rows are ours minus the paper's.", "",
             *_coverage_lines(spec.coverage), tables.markdown(title, results)]
    if paired:
        parts.append(tables.markdown("Paired comparisons over shared seeds (mean ± std of the differences, "
                                     "(seeds where treatment > control)/seeds)", paired, kind="paired"))
    if selection:
        parts.append(tables.selection_markdown(
            "Checkpoint selection: test-selected / validation-selected, both scored on test (test − val ± std over "
            "seeds). The paper and its reference code pick the best epoch on the test list (the first number, "
            "comparable with the paper); picking it on the validation list is the honest protocol", selection))
    if intervals:
        parts.append(tables.simple_markdown(
            f"Bootstrap 95% intervals over test videos ({spec.bootstrap} resamples)",
            ["run", "group", "estimate", "low", "high"], intervals))
    if differences:
        parts.append(tables.simple_markdown(
            "Paired bootstrap 95% intervals of the differences (same resampled test sets for both runs)",
            ["comparison", "seed", "group", "difference", "diff_low", "diff_high", "includes_zero"], differences))
    parts.append("## Plots\n\n" + "\n".join(f"![{p.stem}](plots/{p.name})" for p in figures) + "\n")
    tables.write_markdown(out / "report.md", "\n".join(parts))
    tables.write_csv(out / "results.csv", results)
    tables.write_csv(out / "paired.csv", paired)
    tables.write_csv(out / "intervals.csv", intervals + differences)
    tables.write_csv(out / "selection.csv", selection)
    tables.write_json(out / "report.json", {"benchmark": spec.settings, "finished": len(records),
                                            "total": spec.total, "results": results, "paired": paired,
                                            "selection": selection, "coverage": spec.coverage,
                                            "intervals": intervals,
                                            "differences": differences})
    return {"dir": str(out), "finished": len(records), "total": spec.total,
            "files": ["report.md", "results.csv", "paired.csv", "intervals.csv", "selection.csv", "report.json",
                      *(f"plots/{p.name}" for p in figures)]}


def _bootstrap_rows(wd: Workdir, spec: ReportSpec, records: Sequence[dict], cache_path: Path
                    ) -> tuple[list[dict], list[dict]]:
    """Per-run intervals and per-seed paired difference intervals, cached by the scores' mtimes."""
    if not spec.bootstrap:
        return [], []
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    loaded = {r["run"]: compare.load_run(wd, r["run"]) for r in records}
    intervals, differences = [], []
    for r in records:
        res = loaded[r["run"]]
        if res.scores_path is None:
            continue
        key = f"map|{r['run']}|{spec.bootstrap}|{res.scores_path.stat().st_mtime_ns}"
        if key not in cache:
            cache[key] = compare.run_intervals(wd, res, n_resamples=spec.bootstrap)
        intervals += [{"run": r["run"], "group": g, **v} for g, v in cache[key].items()]
    by = {(*tables.block_key(r), r["label"], r["seed"]): r["run"] for r in records}
    for (backbone, features, aggregator, label, seed), run_a in by.items():
        for treatment, control in spec.comparisons:
            other = tables.control_block((backbone, features, aggregator), control, by)
            run_b = by.get((*other, control, seed)) if other else None
            if label != treatment or run_b is None:
                continue
            a, b = loaded[run_a], loaded[run_b]
            if a.scores_path is None or b.scores_path is None:
                continue
            key = (f"diff|{run_a}|{run_b}|{spec.bootstrap}|{a.scores_path.stat().st_mtime_ns}|"
                   f"{b.scores_path.stat().st_mtime_ns}")
            if key not in cache:
                cache[key] = compare.run_difference(wd, a, b, n_resamples=spec.bootstrap)
            differences += [{"comparison": f"{treatment} − {control} ({features}, {aggregator})", "seed": seed,
                             "group": g, "difference": v["difference"], "diff_low": v.get("low"),
                             "diff_high": v.get("high"), "includes_zero": v.get("includes_zero")}
                            for g, v in cache[key].items()]
    tables.write_json(cache_path, cache)
    return intervals, differences


def _figures(wd: Workdir, spec: ReportSpec, records: Sequence[dict], results: list[dict], out: Path) -> list[Path]:
    """Class-frequency plot, group-mAP bars per block, per-class AP gain per comparison (first shared seed)."""
    figures = [plots.class_frequency(wd.labels().counts, out / "class_frequency.png", head=spec.head, tail=spec.tail)]
    blocks: dict[tuple, list[dict]] = {}
    for row in results:
        if row["source"] == "ours":
            blocks.setdefault(tables.block_key(row), []).append(row)
    by = {(*tables.block_key(r), r["label"], r["seed"]): r["run"] for r in records}
    for (backbone, features, aggregator), rows in blocks.items():
        stem = f"{_sanitise(features, keep='-.')}_{aggregator}"
        figures.append(plots.group_map_bars(rows, out / f"group_map_{stem}.png",
                                            title=f"mAP by class group: {backbone}, {aggregator}"))
        for treatment, control in spec.comparisons:
            other = tables.control_block((backbone, features, aggregator), control, by)
            seeds = sorted(s for s in spec.seeds if (backbone, features, aggregator, treatment, s) in by
                           and other and (*other, control, s) in by)
            if not seeds:
                continue
            a = compare.load_run(wd, by[(backbone, features, aggregator, treatment, seeds[0])])
            b = compare.load_run(wd, by[(*other, control, seeds[0])])
            name = _sanitise(f"ap_difference_{treatment}_vs_{control}_{stem}", keep="-._")
            figures.append(plots.ap_difference(a.ap, b.ap, a.names, a.group == "tail", out / f"{name}.png",
                                               label_a=f"{treatment} (seed {seeds[0]})", label_b=control))
    return figures


def _sanitise(text: str, *, keep: str) -> str:
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]", "", text)
