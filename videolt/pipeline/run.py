"""`videolt run CONFIG`: every stage of one config file in order — (demo data) → init → videos
(download or import) → features (extract or import) → benchmark grids.

Each stage skips the work already done (the manifest, the Zarr status column and the runs' metrics
are the record), so the same command resumes after a kill and a rerun of a finished config does
nothing but rebuild the reports. Relative paths are taken from the current directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from videolt.config import field, load_config
from videolt.data.demo import DemoSpec, make_demo_dataset
from videolt.data.download import DownloadConfig
from videolt.data.importers import ImportFeaturesConfig, ImportVideosConfig, import_features, import_videos
from videolt.data.serve import FileServer
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError
from videolt.extract.config import ExtractConfig
from videolt.pipeline.benchmark import BenchmarkConfig, load_benchmark, run_benchmark
from videolt.pipeline.download import run_download
from videolt.pipeline.extract import run_extract

__all__ = ["BenchmarkStage", "DemoStage", "RunConfig", "format_summary", "load_run_config", "run_pipeline"]

log = logging.getLogger(__name__)

PORT = "{port}"  # in the demo's URL template: the loopback server's port, known once it runs


@dataclass(frozen=True, kw_only=True)
class DemoStage(DemoSpec):
    """Generate the demo set and serve its clips on 127.0.0.1 while the download stage runs."""

    dir: str = field("demo-data", "folder for the generated lists (labels/) and clips (clips/)")

    @property
    def spec(self) -> DemoSpec:
        return DemoSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DemoSpec)})


@dataclass(frozen=True, kw_only=True)
class BenchmarkStage:
    files: tuple[str, ...] = field((), "benchmark grid files (configs/table*.yaml), run in order")
    grid: BenchmarkConfig | None = field(None, "a grid written inline (same keys as a grid file)")
    jobs: int = field(1, "training runs at a time")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One config file for the whole pipeline; an absent section is a stage not run."""

    workdir: str = field("", "the workdir (created on the first run)")
    labels: str = field("", "folder with the four official list files (omit with a demo section)")
    threads: int | None = field(None, "torch CPU threads in this process, extraction's inference included unless an "
                                      "extract entry sets torch_threads (default: torch's choice, all cores)")
    demo: DemoStage | None = field(None, "generate the offline demo set; its lists become `labels`")
    download: DownloadConfig | None = field(None, "fetch videos with yt-dlp")
    import_videos: ImportVideosConfig | None = field(None, "register local video files instead of downloading")
    import_features: tuple[ImportFeaturesConfig, ...] = field((), "official feature releases to import, in order")
    extract: tuple[ExtractConfig, ...] = field((), "extraction passes, in order (one per weights source)")
    benchmark: BenchmarkStage | None = field(None, "training grids and their reports")

    def __post_init__(self) -> None:
        if not self.workdir:
            raise ConfigError("workdir: name the workdir")
        if bool(self.labels) == (self.demo is not None):
            raise ConfigError("labels: give either `labels` or a `demo` section (whose lists are used), not both")
        if self.download is not None and self.import_videos is not None:
            raise ConfigError("download and import_videos: choose one way to get the videos")
        if self.extract and self.import_features:
            raise ConfigError("extract and import_features: choose one way to get the features")
        if self.download is not None and PORT in self.download.url_template and self.demo is None:
            raise ConfigError(f"download.url_template: {PORT} is the demo server's port; there is no demo section")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: expected a positive integer, got {self.threads}")
        if self.benchmark is not None and not (self.benchmark.files or self.benchmark.grid):
            raise ConfigError("benchmark: list grid files or write a grid")


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """A run config file plus `--set key=value` overrides; unknown keys are errors."""
    return load_config(RunConfig, [path], overrides)


def run_pipeline(config: RunConfig, *, progress: bool = True) -> dict:
    """Run every configured stage in order, each skipping done work; returns what each stage did."""
    summary: dict = {"workdir": str(Path(config.workdir).resolve())}
    if config.threads is not None:  # on a small shared machine, fewer threads than cores avoids spin-wait thrash
        log.info("torch CPU threads: %d (was %d)", config.threads, torch.get_num_threads())
        torch.set_num_threads(config.threads)
    labels_dir = Path(config.labels)
    clips_dir = None
    if config.demo is not None:
        paths = make_demo_dataset(config.demo.dir, config.demo.spec, progress=progress)
        labels_dir, clips_dir = paths.labels_dir, paths.clips_dir
        summary["demo"] = {"labels": str(labels_dir), "clips": str(clips_dir)}
    wd = Workdir.init(config.workdir, labels_dir)
    log.info("workdir %s (labels %s)", wd.root, labels_dir)
    if config.download is not None:
        summary["download"] = _download(wd, config.download, clips_dir, progress)
    if config.import_videos is not None:
        summary["import_videos"] = import_videos(wd, config.import_videos, progress=progress)
    for c in config.import_features:
        summary.setdefault("import_features", []).append(import_features(wd, c, progress=progress) | {"name": c.name})
    for c in config.extract:
        if config.threads is not None and c.torch_threads is None:  # the run's choice, not the core plan's
            c = dataclasses.replace(c, torch_threads=config.threads)
        summary.setdefault("extract", []).append(_extract(wd, c, progress) | {"backbones": list(c.backbones)})
    if config.benchmark is not None:
        grids = [load_benchmark(f) for f in config.benchmark.files]
        grids += [config.benchmark.grid] if config.benchmark.grid is not None else []
        summary["benchmarks"] = [run_benchmark(wd.root, g, jobs=config.benchmark.jobs, progress=progress)
                                 for g in grids]
    return summary


def _download(wd: Workdir, config: DownloadConfig, clips_dir: Path | None, progress: bool) -> dict:
    """The download stage; with a demo, its clips are served on the loopback while it runs."""
    serving = FileServer(clips_dir) if clips_dir is not None and PORT in config.url_template else None
    with serving or contextlib.nullcontext():
        if serving is not None:
            config = dataclasses.replace(config, url_template=config.url_template.replace(PORT, str(serving.port)))
        counts = run_download(wd, config, progress=progress)
    log.info("download: %d of %d fetched this run", counts["done"], counts["todo"])
    return counts


def _extract(wd: Workdir, config: ExtractConfig, progress: bool) -> dict:
    counts = run_extract(wd, config, progress=progress)
    log.info("extract: %d of %d videos this run", counts["done"], counts["videos"])
    return counts


def format_summary(summary: dict) -> str:
    """One line per stage that ran: what it did this time."""
    def failed(counts: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.get("failed", {}).items())) or "none"

    lines = [f"workdir {summary['workdir']}"]
    if "demo" in summary:
        lines.append(f"demo set: lists {summary['demo']['labels']}, clips {summary['demo']['clips']}")
    if "download" in summary:
        c = summary["download"]
        lines.append(f"download: {c['done']} of {c['todo']} fetched this run; failed: {failed(c)}")
    if "import_videos" in summary:
        c = summary["import_videos"]
        lines.append(f"import videos: {c['done']} registered of {c['files']} files; failed: {failed(c)}")
    for c in summary.get("import_features", []):
        lines.append(f"import features {c['name']}: {c['done']} of {c['videos']} imported; failed: {failed(c)}")
    for c in summary.get("extract", []):
        lines.append(f"extract {'+'.join(c['backbones'])}: {c['done']} of {c['videos']} videos this run; "
                     f"failed: {failed(c)}")
    for b in summary.get("benchmarks", []):
        done = sum(r["status"] == "done" for r in b["runs"])
        lines.append(f"benchmark {b['name']}: {done} of {len(b['runs'])} runs finished; report {b['report']['dir']}")
    return "\n".join(lines)
