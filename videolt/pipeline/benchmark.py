"""A benchmark grid: feature sets × aggregators × methods × seeds → one training run per cell → report.

Wiring between `train` (the runs) and `evaluate.report` (tables and plots from plain records).

A grid is a YAML file (`configs/table*.yaml`) read into `BenchmarkConfig`; every cell gets a run name
derived from its settings alone (`<method>[-<opts>]_<features>_<aggregator>_s<seed>`), so a rerun finds
the same runs: finished ones (with the cell's settings: `rundir.check_config`) are skipped, partly
trained ones resume from their last checkpoint, and the report is rebuilt from whatever has finished.

Rows run with every aggregator of the grid, except rows with an aggregator of their own (`model` on the
row, or a method built around one, e.g. MOVE): those run once per feature set with that aggregator and
form their own block of the table (as the paper's "Agg" rows); a paired comparison whose control is not
in the treatment's block takes it from the same feature set's other block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from videolt.config import field, from_dict, load_config, to_dict
from videolt.data import runfiles
from videolt.data.availability import split_coverage
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, UsageError, VideoltError, describe, write_traceback
from videolt.evaluate import report, tables
from videolt.pipeline.lifeline import exit_with
from videolt.train import cache, preflight, rundir
from videolt.train.aggregators import AGGREGATORS
from videolt.train.config import TrainConfig
from videolt.train.losses import LOSSES
from videolt.train.methods import METHODS, create_method, method_key, method_model, resolve_method
from videolt.train.trainer import run_train

__all__ = ["BenchmarkConfig", "BenchmarkError", "Cell", "ComparisonEntry", "FeatureEntry", "MethodEntry", "load_benchmark",
           "check_inputs", "paper_reference", "plan", "run_benchmark", "run_name", "run_status", "write_report"]

log = logging.getLogger(__name__)

TableKind = Literal["table1", "table2", "table3", "table4", "table5", "table6", "custom"]
GRID_KEYS = ("features", "model", "model_opts", "method", "method_opts", "loss", "loss_opts", "seed")
_MAX_OPTS = 32  # longer option strings in run names are shortened and given a hash


@dataclass(frozen=True, kw_only=True)
class FeatureEntry:
    """A feature set of the workdir and the backbone it was made with (to find the paper's rows)."""

    name: str = field("", "feature set name (WORKDIR/features/<name>.zarr)")
    backbone: str = field("", "backbone label matching the paper: resnet50, resnet101, tsm_r50 (others: no paper row)")


@dataclass(frozen=True, kw_only=True)
class MethodEntry:
    """One row of a table: a method, optionally with its loss or options changed."""

    method: str = field("", "method name: {names}", names=METHODS.names)
    label: str = field("", "display label in tables and plots (default: the run-name stem)")
    loss: str = field("", "loss replacing the method's own ('' keeps it): {names}", names=LOSSES.names)
    options: dict = field({}, "method options (e.g. eta, beta_rule for framestack; gamma for focal)")
    loss_opts: dict = field({}, "loss options applied over the method's")
    model: str = field("", "an aggregator of this row's own instead of the grid's ('': the method's own if it has "
                           "one, else every aggregator of the grid), e.g. move")
    model_opts: dict = field({}, "options of this row's aggregator, over the grid's model_opts for it")

    @property
    def stem(self) -> str:
        """`<method>[-<opts>]`: the settings part of the run name."""
        parts = ([f"loss{self.loss}"] if self.loss else [])
        parts += [f"{k}{_value(v)}" for k, v in sorted(self.options.items())]
        parts += [f"{k}{_value(v)}" for k, v in sorted(self.loss_opts.items())]
        parts += [f"{k}{_value(v)}" for k, v in sorted(self.model_opts.items())]
        opts = _sanitise("-".join(parts), keep="-.")
        if len(opts) > _MAX_OPTS:
            digest = hashlib.sha1(json.dumps([self.loss, self.options, self.loss_opts, self.model_opts],
                                             sort_keys=True).encode()).hexdigest()[:8]
            opts = f"{opts[:_MAX_OPTS - 9].rstrip('-')}-{digest}"
        return _sanitise(self.method.replace("_", "-"), keep="-") + (f"-{opts}" if opts else "")

    @property
    def display(self) -> str:
        return self.label or self.stem

    @property
    def own_model(self) -> str:
        """The aggregator this row trains whatever the grid's ('' when it follows the grid)."""
        return method_model(self.method, self.model) if self.model or create_method(self.method).model else ""


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
    aggregators: tuple[str, ...] = field(("nonlinear",), "aggregators: {names} (rows with an aggregator of their own "
                                                        "run once, with it)", names=AGGREGATORS.names)
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
            if m.model_opts and not m.own_model:
                raise ConfigError(f"methods[{m.display}].model_opts: only for a row with an aggregator of its own "
                                  "(set model, or the grid's model_opts)")
        labels = [m.display for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ConfigError(f"methods: label {dup[0]!r} is used twice")
        for c in self.comparisons:
            for side in (c.treatment, c.control):
                if side not in labels:
                    raise ConfigError(f"comparisons: {side!r} is not a method label ({', '.join(labels)})")
        models = list(dict.fromkeys([*self.aggregators, *(m.own_model for m in self.methods if m.own_model)]))
        stray = sorted(set(self.model_opts) - set(models))
        if stray:
            raise ConfigError(f"model_opts.{stray[0]}: not one of the aggregators ({', '.join(models)})")
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
    method_key: str  # the resolved method spec (`method_key`): rows with equal keys are the same experiment
    config: TrainConfig


def load_benchmark(path: str | Path, overrides: Sequence[str] = ()) -> BenchmarkConfig:
    """A grid file (YAML/TOML) plus `--set key=value` overrides; unknown keys are errors."""
    return load_config(BenchmarkConfig, [path], overrides)


def run_name(method: MethodEntry, features: str, aggregator: str, seed: int) -> str:
    """`<method>[-<opts>]_<features>_<aggregator>_s<seed>`, safe as a folder name; default options omitted."""
    features, aggregator = (_sanitise(t.replace("_", "-"), keep="-.") for t in (features, aggregator))
    return f"{_without_defaults(method).stem}_{features}_{aggregator}_s{seed}"


def plan(config: BenchmarkConfig) -> list[Cell]:
    """Every cell of the grid in table order (features, aggregator, method, seed); names are unique.

    Rows with an aggregator of their own come after the grid's aggregators, once per feature set."""
    rows = list(map(_without_defaults, config.methods))
    cells = []
    for feat in config.features:
        blocks = [(agg, [m for m in rows if not m.own_model]) for agg in config.aggregators]
        blocks += [(m.own_model, [m]) for m in rows if m.own_model]
        for agg, block in blocks:
            for m in block:
                model_opts = {**config.model_opts.get(agg, {}), **m.model_opts}
                key = method_key(resolve_method(m.method, m.options, m.loss, m.loss_opts), agg, model_opts)
                for seed in config.seeds:
                    train = {**config.train, "features": feat.name, "model": agg, "model_opts": model_opts,
                             "method": m.method, "method_opts": dict(m.options), "loss": m.loss,
                             "loss_opts": dict(m.loss_opts), "seed": seed}
                    cells.append(Cell(run_name(m, feat.name, agg, seed), m.display, feat.backbone or feat.name,
                                      feat.name, agg, seed, key, from_dict(TrainConfig, train, where="train")))
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
    agg_defaults = AGGREGATORS.options(entry.own_model) if entry.own_model else {}
    model_opts = {k: v for k, v in entry.model_opts.items() if k not in agg_defaults or agg_defaults[k] != v}
    return dataclasses.replace(entry, options=options, loss=loss, model_opts=model_opts, label=entry.display)


def run_status(wd: Workdir, cell: Cell) -> Literal["done", "partial", "todo"]:
    """done: finished (and trained with this cell's settings); partial: a last checkpoint to resume
    from; todo: nothing usable (`rundir.state`)."""
    run_dir = wd.run_dir(cell.run)
    found = rundir.state(run_dir)
    if found == "finished":
        rundir.check_config(run_dir, to_dict(cell.config), resuming=False,
                            remedy="rename the benchmark's runs or remove that run")
        return "done"
    return "partial" if found == "interrupted" else "todo"


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
    pending = [c for c in cells if status[c.run] != "done"]
    result["checks"] = check_inputs(wd, pending)
    for warning in result["checks"]["warnings"]:
        log.warning("%s", warning)
    if result["checks"]["errors"]:
        raise BenchmarkError(result["checks"]["errors"], result, exit_code=2)
    if dry_run:
        return result
    log.info("%s: %d runs, %d to train", config.name, len(cells), len(pending))
    failures = _train_all(wd, pending, status, jobs=jobs, progress=progress)
    for entry, cell in zip(result["runs"], cells):
        entry["status"] = "failed" if cell.run in failures else run_status(wd, cell)
        if cell.run in failures:
            entry["error"] = failures[cell.run]
    result["report"] = write_report(wd, config, cells)
    if failures:
        finished = sum(s["status"] == "done" for s in result["runs"])
        raise BenchmarkError([f"{config.name}: {len(failures)} of {len(cells)} runs failed (each one's traceback in "
                              f"{wd.log_path}); the report holds the {finished} finished runs"], result)
    return result


class BenchmarkError(VideoltError):
    """A grid refused before training (inputs a run needs are missing: exit 2) or with failed runs
    (exit 1); `result` is `run_benchmark`'s result so far, every run with its status (and error)."""

    def __init__(self, lines: Sequence[str], result: dict, *, exit_code: int = 1):
        super().__init__("\n".join(lines))
        self.result = result
        self.exit_code = exit_code


#: How a benchmark grid changes the class-group thresholds of its runs.
GRID_GROUP_FIX = "--set train.group_head={head} --set train.group_tail={tail}"


def check_inputs(wd: Workdir, cells: Sequence[Cell]) -> dict[str, list[str]]:
    """`preflight.check_run` for every cell: `{"errors": [...], "warnings": [...]}`, each distinct line
    once, followed by the runs it concerns; trains nothing, writes nothing."""
    labels, splits = wd.labels(), preflight.split_indices(wd)
    found: dict[str, dict[str, list[str]]] = {"errors": {}, "warnings": {}}
    for cell in cells:
        checked = preflight.check_run(wd, cell.config, group_fix=GRID_GROUP_FIX, labels=labels, splits=splits)
        for kind, lines in (("errors", checked.errors), ("warnings", checked.warnings)):
            for line in lines:
                found[kind].setdefault(line, []).append(cell.run)
    return {kind: [f"{line} ({_which(runs, len(cells))})" for line, runs in lines.items()]
            for kind, lines in found.items()}


def _which(runs: list[str], total: int) -> str:
    if len(runs) == 1:
        return f"run {runs[0]}"
    return f"all {total} runs" if len(runs) == total else f"{len(runs)} runs, e.g. {runs[0]}"


def _train_all(wd: Workdir, cells: list[Cell], status: dict[str, str], *, jobs: int, progress: bool) -> dict[str, str]:
    """Train `cells`; returns {run: error message} for those that failed (the others go on)."""
    # A run that failed before its first checkpoint starts again in run_train (`rundir.start`).
    work = [(str(wd.root), c.run, to_dict(c.config), status[c.run] == "partial") for c in cells]
    failures: dict[str, str] = {}
    if jobs <= 1:
        with cache.shared():  # each feature set's caches are built once and serve all its runs
            for item in work:
                error = _train_cell(*item, progress=progress)
                if error:
                    failures[item[1]] = error
        return failures
    # spawn, not fork: torch's threads and CUDA do not survive a fork.
    # Each training process ends with this one (`exit_with`): none outlives a killed benchmark.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=exit_with, initargs=(os.getpid(),)) as pool:
        futures = {item[1]: pool.submit(_train_cell, *item, progress=False) for item in work}
        for run, fut in futures.items():
            error = fut.result()
            if error:
                failures[run] = error
    return failures


def _train_cell(root: str, run: str, config: dict, resume: bool, *, progress: bool) -> str | None:
    """One run in this process; a run's failure is returned as one line so the others go on, and its
    traceback goes to the workdir's log."""
    try:
        run_train(root, run, from_dict(TrainConfig, config), resume=resume, progress=progress)
    except Exception as e:  # noqa: BLE001 - reported per run in the result's table, raised as one error at the end
        line = describe(e)[1][0]
        log.error("run %s failed: %s", run, line)
        write_traceback(Workdir(root).log_path, e, f"benchmark run {run}")
        return line
    return None


def _value(v: object) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v)


def _sanitise(text: str, *, keep: str) -> str:
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]", "", text)


def paper_reference() -> list[dict]:
    """The paper's numbers (evaluate/paper_results.json), each with the `method_key` rows are matched on."""
    return [e | {"method_key": method_key(resolve_method(e["method"], e["options"], e["loss"]), e["aggregator"],
                                        e.get("model_opts"))}
            for e in report.paper_results()]


def write_report(wd: Workdir, config: BenchmarkConfig, cells: Sequence[Cell]) -> dict:
    """Tables (md/csv/json) and plots of the finished cells into WORKDIR/reports/<name>/."""
    spec = report.ReportSpec(
        name=config.name, title=tables.TABLE_TITLES[config.table], total=len(cells),
        comparisons=tuple((c.treatment, c.control) for c in config.comparisons), bootstrap=config.bootstrap,
        seeds=config.seeds, head=cells[0].config.group_head, tail=cells[0].config.group_tail,
        settings=to_dict(config),
        coverage={f: split_coverage(wd, split="test", features=f, head=cells[0].config.group_head,
                                    tail=cells[0].config.group_tail)
                  for f in dict.fromkeys(c.features for c in cells) if wd.features_path(f).exists()})
    records = [r for r in (_record(wd, c) for c in cells) if r is not None]
    return report.write(wd, spec, records, paper_reference())


def _record(wd: Workdir, cell: Cell) -> dict | None:
    path = runfiles.metrics_path(wd.run_dir(cell.run))
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    selection = {metrics.get("select_on", cell.config.select_on): _clean(metrics)}
    other = metrics.get("other_selection")
    if other:
        selection[other["select_on"]] = _clean(other)
    return {"run": cell.run, "label": cell.label, "backbone": cell.backbone, "features": cell.features,
            "aggregator": cell.aggregator, "seed": cell.seed, "method_key": cell.method_key, "metrics": _clean(metrics),
            "selection": selection}


def _clean(metrics: dict) -> dict:
    """The metric values of a metrics.json (NaN, e.g. an empty class group, as None)."""
    return {k: (None if v is None or math.isnan(v) else float(v)) for k, v in metrics.items() if k in tables.METRICS}


