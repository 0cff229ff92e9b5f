"""A benchmark grid: feature sets × aggregators × methods × seeds → one training run per cell → report.

A grid is a YAML file (`configs/table*.yaml`) read into `BenchmarkConfig`; every cell gets a run name
derived from its settings alone (`<method>[-<opts>]_<features>_<aggregator>_s<seed>`), so a rerun finds
the same runs: finished ones (metrics.json present) are skipped, partly trained ones resume from
their last checkpoint, and the report is rebuilt from whatever has finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from videolt.config import field, from_dict, load_config, to_dict
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, StageError, UsageError
from videolt.evaluate import compare, plots, tables
from videolt.train.methods import create_method
from videolt.train.trainer import TrainConfig, train_run

__all__ = ["BenchmarkConfig", "Cell", "ComparisonEntry", "FeatureEntry", "MethodEntry", "load_benchmark",
           "paper_reference", "plan", "run_benchmark", "run_name", "run_status", "setting_key", "write_report"]

log = logging.getLogger(__name__)

TableKind = Literal["table1", "table2", "table3", "table4", "table5", "custom"]
GRID_KEYS = ("features", "model", "model_opts", "method", "method_opts", "loss", "loss_opts", "seed")
# Fields that may differ between a finished run and the grid without making it another experiment.
_RUNTIME_KEYS = {"workers", "preload", "device"}
_MAX_OPTS = 32  # longer option strings in run names are shortened and given a hash


@dataclass(frozen=True, kw_only=True)
class FeatureEntry:
    """A feature set of the workdir and the backbone it was made with (to find the paper's rows)."""

    name: str = field("", "feature set name (WORKDIR/features/<name>.zarr)")
    backbone: str = field("", "backbone label matching the paper: resnet50, resnet101, tsm_r50 (others: no paper row)")


@dataclass(frozen=True, kw_only=True)
class MethodEntry:
    """One row of a table: a method, optionally with its loss or options changed."""

    method: str = field("", "method name: baseline, focal, cb, ldam_drw, eql, mixup, cbs, srs, framestack")
    label: str = field("", "display label in tables and plots (default: the run-name stem)")
    loss: str = field("", "loss replacing the method's own ('' keeps it)")
    options: dict = field({}, "method options (e.g. eta, beta_rule for framestack; gamma for focal)")
    loss_opts: dict = field({}, "loss options applied over the method's")

    @property
    def stem(self) -> str:
        """`<method>[-<opts>]`: the settings part of the run name."""
        parts = ([f"loss{self.loss}"] if self.loss else [])
        parts += [f"{k}{_value(v)}" for k, v in sorted(self.options.items())]
        parts += [f"{k}{_value(v)}" for k, v in sorted(self.loss_opts.items())]
        opts = _sanitise("-".join(parts), keep="-.")
        if len(opts) > _MAX_OPTS:
            digest = hashlib.sha1(json.dumps([self.loss, self.options, self.loss_opts], sort_keys=True)
                                  .encode()).hexdigest()[:8]
            opts = f"{opts[:_MAX_OPTS - 9].rstrip('-')}-{digest}"
        return _sanitise(self.method.replace("_", "-"), keep="-") + (f"-{opts}" if opts else "")

    @property
    def display(self) -> str:
        return self.label or self.stem


@dataclass(frozen=True, kw_only=True)
class ComparisonEntry:
    """A paired comparison between two rows (labels), e.g. FrameStack − focal-only."""

    treatment: str = field("", "label of the row whose gain is measured")
    control: str = field("", "label of the row it is measured against")


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    """A grid of training runs and the report made from them."""

    name: str = field("", "benchmark name: the report goes to WORKDIR/reports/<name>/")
    table: TableKind = field("custom", "paper table this grid reproduces: table1 .. table5, or custom")
    features: tuple[FeatureEntry, ...] = field((), "feature sets, each with its backbone label")
    aggregators: tuple[str, ...] = field(("nonlinear",), "aggregators: nonlinear, netvlad")
    model_opts: dict = field({}, "options per aggregator, e.g. {netvlad: {clusters: 64, hidden: 1024}}")
    methods: tuple[MethodEntry, ...] = field((), "the table's rows")
    seeds: tuple[int, ...] = field((2021,), "one run per seed; tables show mean ± std over seeds")
    train: dict = field({}, "TrainConfig options shared by every run (epochs, batch_size, lr, ...)")
    comparisons: tuple[ComparisonEntry, ...] = field((), "paired comparisons (treatment − control) to report")
    bootstrap: int = field(1000, "bootstrap resamples of the test videos for intervals (0: none)")

    def __post_init__(self) -> None:
        if not self.name or _sanitise(self.name, keep="-._") != self.name:
            raise ConfigError(f"name: expected letters, digits, '-', '.', '_', got {self.name!r}")
        for key in ("features", "aggregators", "methods", "seeds"):
            if not getattr(self, key):
                raise ConfigError(f"{key}: list at least one")
        for f in self.features:
            if not f.name:
                raise ConfigError("features[].name: name the feature set")
        for m in self.methods:
            if not m.method:
                raise ConfigError("methods[].method: name the method")
        labels = [m.display for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ConfigError(f"methods: label {dup[0]!r} is used twice")
        for c in self.comparisons:
            for side in (c.treatment, c.control):
                if side not in labels:
                    raise ConfigError(f"comparisons: {side!r} is not a method label ({', '.join(labels)})")
        stray = sorted(set(self.model_opts) - set(self.aggregators))
        if stray:
            raise ConfigError(f"model_opts.{stray[0]}: not one of the aggregators ({', '.join(self.aggregators)})")
        grid = sorted(set(self.train) & set(GRID_KEYS))
        if grid:
            raise ConfigError(f"train.{grid[0]}: set by the grid (features, aggregators, methods, seeds), not here")
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap: expected >= 0, got {self.bootstrap}")


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    run: str
    label: str
    backbone: str
    features: str
    aggregator: str
    seed: int
    setting: str  # canonical method settings: rows with equal settings are the same experiment
    config: TrainConfig


def load_benchmark(path: str | Path, overrides: Sequence[str] = ()) -> BenchmarkConfig:
    """A grid file (YAML/TOML) plus `--set key=value` overrides; unknown keys are errors."""
    return load_config(BenchmarkConfig, [path], overrides)


def run_name(method: MethodEntry, features: str, aggregator: str, seed: int) -> str:
    """`<method>[-<opts>]_<features>_<aggregator>_s<seed>`, safe as a folder name; default options omitted."""
    features, aggregator = (_sanitise(t.replace("_", "-"), keep="-.") for t in (features, aggregator))
    return f"{_without_defaults(method).stem}_{features}_{aggregator}_s{seed}"


def setting_key(method: str, loss: str = "", options: dict | None = None, loss_opts: dict | None = None) -> str:
    """The method's resolved settings as canonical JSON: `framestack` and `framestack` with eta 0.5 are equal."""
    spec = create_method(method, **(options or {}))
    loss_name = loss or spec.loss
    opts = {**(spec.loss_opts if loss_name == spec.loss else {}), **(loss_opts or {})}
    return json.dumps({"loss": loss_name, "loss_opts": opts, "sampler": spec.sampler, "batch_mix": spec.batch_mix,
                       "mix_opts": spec.mix_opts}, sort_keys=True)


def plan(config: BenchmarkConfig) -> list[Cell]:
    """Every cell of the grid in table order (features, aggregator, method, seed); names are unique."""
    cells = []
    for feat in config.features:
        for agg in config.aggregators:
            for m in map(_without_defaults, config.methods):
                setting = setting_key(m.method, m.loss, m.options, m.loss_opts)
                for seed in config.seeds:
                    train = {**config.train, "features": feat.name, "model": agg,
                             "model_opts": dict(config.model_opts.get(agg, {})), "method": m.method, "method_opts": dict(m.options), "loss": m.loss,
                             "loss_opts": dict(m.loss_opts), "seed": seed}
                    cells.append(Cell(run_name(m, feat.name, agg, seed), m.display, feat.backbone or feat.name,
                                      feat.name, agg, seed, setting, from_dict(TrainConfig, train, where="train")))
    names = [c.run for c in cells]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two cells of the grid would share the run name {dup[0]!r}")
    return cells


def _without_defaults(entry: MethodEntry) -> MethodEntry:
    """Drop options equal to the method's defaults, so equal experiments get equal names and configs."""
    default = create_method(entry.method)
    defaults = {**default.loss_opts, **default.mix_opts}
    options = {k: v for k, v in entry.options.items() if k not in defaults or defaults[k] != v}
    loss = "" if entry.loss == default.loss else entry.loss
    return dataclasses.replace(entry, options=options, loss=loss, label=entry.display)


def run_status(wd: Workdir, cell: Cell) -> Literal["done", "partial", "todo"]:
    """done: metrics.json written; partial: a last checkpoint to resume from; todo: nothing usable."""
    run_dir = wd.run_dir(cell.run)
    if (run_dir / "metrics.json").is_file():
        _check_same(run_dir, cell)
        return "done"
    if (run_dir / "last.pt").is_file():
        return "partial"
    return "todo"


def run_benchmark(workdir: str | Path, config: BenchmarkConfig, *, jobs: int = 1, dry_run: bool = False,
                  progress: bool = True) -> dict:
    """Train every unfinished cell (`jobs` at a time), then write the report; return the runs and report."""
    if jobs < 1:
        raise UsageError(f"--jobs: expected at least 1, got {jobs}")
    wd = Workdir.open(workdir)
    cells = plan(config)
    status = {c.run: run_status(wd, c) for c in cells}
    result = {"name": config.name, "table": config.table,
              "runs": [{"run": c.run, "label": c.label, "features": c.features, "aggregator": c.aggregator,
                        "seed": c.seed, "status": status[c.run]} for c in cells]}
    if dry_run:
        return result
    pending = [c for c in cells if status[c.run] != "done"]
    log.info("%s: %d runs, %d to train", config.name, len(cells), len(pending))
    failures = _train_all(wd, pending, status, jobs=jobs, progress=progress)
    for entry, cell in zip(result["runs"], cells):
        entry["status"] = "failed" if cell.run in failures else run_status(wd, cell)
    result["report"] = write_report(wd, config, cells)
    if failures:
        first = next(iter(failures.items()))
        raise StageError(f"{config.name}: {len(failures)} run(s) failed, e.g. {first[0]}: {first[1]} "
                         f"(the report holds the {sum(s['status'] == 'done' for s in result['runs'])} finished runs)")
    return result


def _train_all(wd: Workdir, cells: list[Cell], status: dict[str, str], *, jobs: int, progress: bool) -> dict[str, str]:
    """Train `cells`; returns {run: error message} for those that failed (the others go on)."""
    work = []
    for c in cells:
        resume = status[c.run] == "partial"
        if not resume:
            _clear_unstarted(wd.run_dir(c.run))
        work.append((str(wd.root), c.run, to_dict(c.config), resume))
    failures: dict[str, str] = {}
    if jobs <= 1:
        for item in work:
            error = _train_cell(*item, progress=progress)
            if error:
                failures[item[1]] = error
        return failures
    # spawn, not fork: torch's threads and CUDA do not survive a fork.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {item[1]: pool.submit(_train_cell, *item, progress=False) for item in work}
        for run, fut in futures.items():
            error = fut.result()
            if error:
                failures[run] = error
    return failures


def _train_cell(root: str, run: str, config: dict, resume: bool, *, progress: bool) -> str | None:
    """One run in this process; a run's failure is returned as a message so the others go on."""
    try:
        train_run(root, run, from_dict(TrainConfig, config), resume=resume, progress=progress)
    except Exception as e:  # noqa: BLE001 - recorded per run and raised as one StageError at the end
        log.exception("run %s failed", run)
        return f"{type(e).__name__}: {e}"
    return None


def _clear_unstarted(run_dir: Path) -> None:
    """A run killed before its first checkpoint holds only its config and log: start it afresh."""
    if run_dir.is_dir() and not any(run_dir.glob("*.pt")) and not (run_dir / "metrics.json").exists():
        log.info("%s: no checkpoint yet; starting it again", run_dir)
        shutil.rmtree(run_dir)


def _check_same(run_dir: Path, cell: Cell) -> None:
    """A finished run is reused only if it was trained with this cell's settings."""
    from videolt.train.rundir import read_config

    saved, now = read_config(run_dir), to_dict(cell.config)
    changed = sorted(k for k in now if k not in _RUNTIME_KEYS and saved.get(k) != now[k])
    if changed:
        raise ConfigError(f"{run_dir}: finished with other settings ({', '.join(changed)}); "
                          f"rename the benchmark's runs or remove that run")


def _value(v: object) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v)


def _sanitise(text: str, *, keep: str) -> str:
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]", "", text)


def paper_reference() -> list[dict]:
    """The paper's numbers (paper_results.json), each with the `setting` key that rows are matched on."""
    doc = json.loads((Path(__file__).with_name("paper_results.json")).read_text())
    return [e | {"setting": setting_key(e["method"], e["loss"], e["options"])} for e in doc["entries"]]


def write_report(wd: Workdir, config: BenchmarkConfig, cells: Sequence[Cell]) -> dict:
    """Tables (md/csv/json) and plots of the finished cells into WORKDIR/reports/<name>/."""
    out = wd.reports_dir / config.name
    (out / "plots").mkdir(parents=True, exist_ok=True)
    records = [r for r in (_record(wd, c) for c in cells) if r is not None]
    results = tables.result_rows(records, paper_reference())
    paired = tables.paired_rows(records, [(c.treatment, c.control) for c in config.comparisons])
    intervals, differences = _bootstrap_rows(wd, config, records, out / "bootstrap_cache.json")
    figures = _figures(wd, config, cells, records, results, out / "plots")
    title = tables.TABLE_TITLES[config.table]
    parts = [f"# {config.name}: {title}", "",
             f"{len(records)} of {len(cells)} runs finished. Metrics are fractions in [0, 1]: mean ± sample std "
             "(ddof=1) over seeds; with one seed the std is left blank. Paper rows are matched on backbone, "
             "aggregator and the method's resolved settings; `− paper` rows are ours minus the paper's.", "",
             tables.markdown(title, results)]
    if paired:
        parts.append(tables.markdown("Paired comparisons over shared seeds (mean ± std of the differences, "
                                     "(seeds where treatment > control)/seeds)", paired, kind="paired"))
    if intervals:
        parts.append(tables.simple_markdown(
            f"Bootstrap 95% intervals over test videos ({config.bootstrap} resamples)",
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
    tables.write_json(out / "report.json", {"benchmark": to_dict(config), "finished": len(records),
                                            "total": len(cells), "results": results, "paired": paired,
                                            "intervals": intervals, "differences": differences})
    return {"dir": str(out), "finished": len(records), "total": len(cells),
            "files": ["report.md", "results.csv", "paired.csv", "intervals.csv", "report.json",
                      *(f"plots/{p.name}" for p in figures)]}


def _record(wd: Workdir, cell: Cell) -> dict | None:
    path = wd.run_dir(cell.run) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    clean = {k: (None if v is None or math.isnan(v) else float(v)) for k, v in metrics.items() if k in tables.METRICS}
    return {"run": cell.run, "label": cell.label, "backbone": cell.backbone, "features": cell.features,
            "aggregator": cell.aggregator, "seed": cell.seed, "setting": cell.setting, "metrics": clean}


def _bootstrap_rows(wd: Workdir, config: BenchmarkConfig, records: list[dict], cache_path: Path
                    ) -> tuple[list[dict], list[dict]]:
    """Per-run intervals and per-seed paired difference intervals, cached by the scores' mtimes."""
    if not config.bootstrap:
        return [], []
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    loaded = {r["run"]: compare.load_run(wd, r["run"]) for r in records}
    intervals, differences = [], []
    for r in records:
        res = loaded[r["run"]]
        if res.scores_path is None:
            continue
        key = f"map|{r['run']}|{config.bootstrap}|{res.scores_path.stat().st_mtime_ns}"
        if key not in cache:
            cache[key] = compare.run_intervals(wd, res, n_resamples=config.bootstrap)
        intervals += [{"run": r["run"], "group": g, **v} for g, v in cache[key].items()]
    by = {(*tables.block_key(r), r["label"], r["seed"]): r["run"] for r in records}
    for (backbone, features, aggregator, label, seed), run_a in by.items():
        for c in config.comparisons:
            run_b = by.get((backbone, features, aggregator, c.control, seed))
            if label != c.treatment or run_b is None:
                continue
            a, b = loaded[run_a], loaded[run_b]
            if a.scores_path is None or b.scores_path is None:
                continue
            key = (f"diff|{run_a}|{run_b}|{config.bootstrap}|{a.scores_path.stat().st_mtime_ns}|"
                   f"{b.scores_path.stat().st_mtime_ns}")
            if key not in cache:
                cache[key] = compare.run_difference(wd, a, b, n_resamples=config.bootstrap)
            differences += [{"comparison": f"{c.treatment} − {c.control} ({features}, {aggregator})", "seed": seed,
                             "group": g, "difference": v["difference"], "diff_low": v.get("low"),
                             "diff_high": v.get("high"), "includes_zero": v.get("includes_zero")}
                            for g, v in cache[key].items()]
    tables.write_json(cache_path, cache)
    return intervals, differences


def _figures(wd: Workdir, config: BenchmarkConfig, cells: Sequence[Cell], records: list[dict], results: list[dict],
             out: Path) -> list[Path]:
    """Class-frequency plot, group-mAP bars per block, per-class AP gain per comparison (first shared seed)."""
    head, tail = cells[0].config.group_head, cells[0].config.group_tail
    figures = [plots.class_frequency(wd.labels().counts, out / "class_frequency.png", head=head, tail=tail)]
    blocks: dict[tuple, list[dict]] = {}
    for row in results:
        if row["source"] == "ours":
            blocks.setdefault(tables.block_key(row), []).append(row)
    by = {(*tables.block_key(r), r["label"], r["seed"]): r["run"] for r in records}
    for (backbone, features, aggregator), rows in blocks.items():
        stem = f"{_sanitise(features, keep='-.')}_{aggregator}"
        figures.append(plots.group_map_bars(rows, out / f"group_map_{stem}.png",
                                            title=f"mAP by class group: {backbone}, {aggregator}"))
        for c in config.comparisons:
            seeds = sorted(s for s in config.seeds if (backbone, features, aggregator, c.treatment, s) in by
                           and (backbone, features, aggregator, c.control, s) in by)
            if not seeds:
                continue
            a = compare.load_run(wd, by[(backbone, features, aggregator, c.treatment, seeds[0])])
            b = compare.load_run(wd, by[(backbone, features, aggregator, c.control, seeds[0])])
            name = _sanitise(f"ap_difference_{c.treatment}_vs_{c.control}_{stem}", keep="-._")
            figures.append(plots.ap_difference(a.ap, b.ap, a.names, a.group == "tail", out / f"{name}.png",
                                               label_a=f"{c.treatment} (seed {seeds[0]})", label_b=c.control))
    return figures
