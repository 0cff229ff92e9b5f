"""The `videolt` command: parse, validate, call a stage function, print. No logic of its own.

Every subcommand is a pair: `_<name>_args(parser)` declares its options and a `@command`-registered
function runs it. A stage's options are shortcuts for keys of its config dataclass: every flag
defaults to None, and `_stage_config` builds the config as defaults ← `--config` files ← the flags
given ← `--set` overrides, so the dataclasses are the only source of defaults. `main` is the one
place that maps exceptions to exit codes: 0 success, 2 bad usage or bad input (one line naming the
file and line, key or ID), 1 runtime failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

from videolt import __version__
from videolt.errors import UsageError, VideoltError

log = logging.getLogger("videolt")

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None]):
    """Register a subcommand: its help line, its argument declarations and its runner."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (help, args, fn)
        return fn

    return deco


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _print_counts(counts: dict, as_json: bool, summary: str) -> None:
    """A stage's counts: JSON, or `summary` (formatted with the counts) and the failures by class."""
    if as_json:
        _print_json(counts)
        return
    failed = ", ".join(f"{k} {v}" for k, v in sorted(counts["failed"].items())) or "none"
    print(f"{summary.format(**counts)}; failed: {failed}")


def _csv(text: str) -> list[str]:
    return [t for t in (s.strip() for s in text.split(",")) if t]


def _config_args(p: argparse.ArgumentParser, example: str) -> None:
    """`--config FILE` and `--set KEY=VALUE`: every stage's config keys, beyond its flags."""
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="YAML/TOML file of this stage's config keys (repeatable; later files win, flags win over files)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"any config key, e.g. {example} (repeatable; wins over files and flags)")


def _stage_config(cls: type, args: argparse.Namespace, **flags: object):
    """The stage's config: defaults ← `--config` files ← the flags given (not None) ← `--set`."""
    from videolt.config import load_config

    return load_config(cls, files=args.config, overrides=args.overrides, flags=flags)


# -- labels ---------------------------------------------------------------------------------------
def _labels_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("labels_dir", metavar="LABELS_DIR", help="folder with train.lst, validate.lst, test.lst, "
                   "count-labels-train.lst")
    p.add_argument("--head", type=int, default=500, help="head classes have more train videos than this")
    p.add_argument("--tail", type=int, default=100, help="tail classes have at most this many train videos")
    p.add_argument("--json", action="store_true", help="print JSON to stdout")


@command("labels", "summarise VideoLT label lists", _labels_args)
def _labels(args: argparse.Namespace) -> int:
    from videolt.data.labels import load_labels, summary

    s = summary(load_labels(args.labels_dir), args.head, args.tail)
    if args.json:
        _print_json(s)
        return 0
    print(f"classes {s['classes']}  videos {s['videos']}  invalid IDs {s['invalid_ids']}")
    print("splits  " + "  ".join(f"{k} {v}" for k, v in s["splits"].items()))
    print("groups  " + "  ".join(f"{k} {v}" for k, v in s["groups"].items())
          + f"  (head > {args.head}, tail <= {args.tail} train videos)")
    print("train count  " + "  ".join(f"{k} {v}" for k, v in s["train_counts"].items()))
    print("labels per video  " + "  ".join(f"{k}: {v}" for k, v in s["labels_per_video"].items()))
    return 0


# -- init -----------------------------------------------------------------------------------------
def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--labels", required=True, metavar="LABELS_DIR", help="the label lists to load")


@command("init", "create a workdir and load every split into its manifest", _init_args)
def _init(args: argparse.Namespace) -> int:
    from videolt.data.workdir import Workdir

    wd = Workdir.init(args.workdir, args.labels)
    with wd.manifest() as m:
        print(f"{wd.root}: {len(m)} videos in the manifest")
    return 0


# -- status ---------------------------------------------------------------------------------------
def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--json", action="store_true", help="print JSON to stdout")


@command("status", "per stage: counts by status and failure class, class coverage", _status_args)
def _status(args: argparse.Namespace) -> int:
    from videolt.data.status import format_status, workdir_status
    from videolt.data.workdir import Workdir

    status = workdir_status(Workdir.open(args.workdir))
    if args.json:
        _print_json(status)
    else:
        print(format_status(status))
    return 0


# -- download -------------------------------------------------------------------------------------
def _download_args(p: argparse.ArgumentParser) -> None:
    from videolt.data.failures import Failure

    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--splits", type=_csv, default=None, help="comma-separated splits (train,val,test); default all")
    p.add_argument("--limit", type=int, default=None, help="at most N videos this run")
    p.add_argument("--url-template", default=None, help="URL with {id}; default https://www.youtube.com/watch?v={id}")
    p.add_argument("--workers", type=int, default=None, help="parallel downloads (default 2)")
    p.add_argument("--rate", type=float, default=None, metavar="PER_HOUR",
                   help="videos started per hour, all workers together (default 250)")
    p.add_argument("--max-attempts", type=int, default=None, help="attempts per video for retryable failures")
    p.add_argument("--socket-timeout", type=float, default=None, help="seconds before a silent connection fails")
    p.add_argument("--backoff", type=float, default=None, metavar="SECONDS",
                   help="wait after a video's first transient failure, doubled per attempt (default 30)")
    p.add_argument("--jitter", type=float, default=None, metavar="SECONDS",
                   help="up to this many random seconds added to each start (default 5)")
    p.add_argument("--pause", type=float, default=None, metavar="SECONDS",
                   help="pause of all workers after a rate-limit answer, doubled per repeat (default 900)")
    p.add_argument("--min-free-gb", type=float, default=None, help="stop cleanly below this much free disk")
    p.add_argument("--recheck", nargs="+", default=(), choices=sorted(f.value for f in Failure), metavar="CLASS",
                   help="also retry videos that failed with these (permanent) classes")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: worker threads here; ray: fetch tasks on a Ray cluster, paced by this process")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print this run's counts as JSON")


@command("download", "fetch pending videos with yt-dlp: paced, classified, resumable", _download_args)
def _download(args: argparse.Namespace) -> int:
    import dataclasses

    from videolt.data.download import DownloadConfig, download_pending
    from videolt.data.workdir import Workdir

    given = {"url_template": args.url_template, "workers": args.workers, "rate_per_hour": args.rate,
             "max_attempts": args.max_attempts, "socket_timeout": args.socket_timeout,
             "backoff_base_s": args.backoff, "jitter_s": args.jitter, "pause_s": args.pause,
             "min_free_gb": args.min_free_gb}
    cfg = dataclasses.replace(DownloadConfig(), **{k: v for k, v in given.items() if v is not None})
    wd = Workdir.open(args.workdir)
    if args.executor == "ray":
        from videolt.pipeline.download import run_download
        from videolt.pipeline.executors import create_executor

        executor = create_executor("ray", address=args.ray_address, in_flight=cfg.workers)
        try:
            counts = run_download(wd, cfg, executor, splits=args.splits, limit=args.limit, recheck=args.recheck)
        finally:
            executor.close()
    else:
        counts = download_pending(wd, cfg, splits=args.splits, limit=args.limit, recheck=args.recheck,
                                  progress=not args.no_progress)
    _print_counts(counts, args.json, "downloaded {done} of {todo}")
    return 0


# -- extract --------------------------------------------------------------------------------------
def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--backbone", required=True, type=_csv, metavar="NAMES",
                   help="comma-separated: resnet50, resnet101, tsm_r50, timm:<name>; each video is decoded once")
    p.add_argument("--weights", default="imagenet", help="imagenet | kinetics400 (tsm_r50) | random | PATH")
    p.add_argument("--name", type=_csv, default=(), metavar="FEATURESET", help="feature set name(s), one per backbone")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=150, help="frames per forward pass")
    p.add_argument("--decoder", default="pyav", help="pyav | decord | torchcodec")
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--splits", type=_csv, default=(), help="comma-separated splits; default all")
    p.add_argument("--limit", type=int, default=None, help="at most N videos this run")
    p.add_argument("--frames", type=int, default=150, help="frames per video after uniform temporal sampling")
    p.add_argument("--resize", type=int, default=256, help="short side after resizing")
    p.add_argument("--crop", type=int, default=256, help="centre crop side (224 for the ImageNet evaluation crop)")
    p.add_argument("--n-segment", type=int, default=8, help="TSM frames per temporal segment")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="feature storage dtype")
    p.add_argument("--compression", default="none", choices=("none", "zstd"),
                   help="feature chunks: none (raw, read without zarr: fastest to stream in training) or zstd (smaller)")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbones")
    p.add_argument("--retry", nargs="+", default=(), metavar="CLASS", help="retry videos failed with these classes")
    p.add_argument("--executor", default="local", choices=("local", "ray"), help="where decode work runs")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print this run's counts as JSON")


@command("extract", "decode at 1 fps, run backbones, write Zarr feature sets (resumable)", _extract_args)
def _extract(args: argparse.Namespace) -> int:
    from videolt.data.workdir import Workdir
    from videolt.pipeline.executors import create_executor
    from videolt.pipeline.extract import ExtractConfig, run_extract

    cfg = ExtractConfig(backbones=tuple(args.backbone), weights=args.weights, names=tuple(args.name),
                        device=args.device, batch_size=args.batch_size, decoder=args.decoder, workers=args.workers,
                        splits=tuple(args.splits), limit=args.limit, frames=args.frames, resize=args.resize, crop=args.crop, n_segment=args.n_segment,
                        dtype=args.dtype, compression=args.compression, compile=args.compile,
                        retry=tuple(args.retry))
    opts = {"address": args.ray_address, "workers": args.workers} if args.executor == "ray" else {
        "workers": args.workers}
    executor = create_executor(args.executor, **opts)
    try:
        counts = run_extract(Workdir.open(args.workdir), cfg, executor, progress=not args.no_progress)
    finally:
        executor.close()
    _print_counts(counts, args.json, "extracted {done} of {videos} videos")
    return 0


# -- importers ------------------------------------------------------------------------------------
def _import_features_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--name", required=True, help="feature set name (features/<name>.zarr)")
    p.add_argument("--npy-dir", required=True, metavar="DIR", help="official release: <id>.npy float32 [150, D]")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage dtype")
    p.add_argument("--compression", choices=("none", "zstd"), default="none",
                   help="feature chunks: none (raw, read without zarr: fastest to stream in training) or zstd (smaller)")
    p.add_argument("--workers", type=int, default=4, help="parallel file readers")
    p.add_argument("--splits", type=_csv, default=None, help="comma-separated splits to import (default all)")
    p.add_argument("--frames", type=int, default=150, help="frames per video in the release")
    p.add_argument("--dim", type=int, default=None, help="feature size D (default: from the first good file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print this run's counts as JSON")


@command("import-features", "import the official per-video .npy features into a feature set", _import_features_args)
def _import_features(args: argparse.Namespace) -> int:
    from videolt.data.importers import import_features
    from videolt.data.workdir import Workdir

    counts = import_features(Workdir.open(args.workdir), args.name, args.npy_dir, dtype=args.dtype,
                             compression=args.compression, workers=args.workers, splits=args.splits,
                             frames=args.frames, dim=args.dim, progress=not args.no_progress)
    _print_counts(counts, args.json, "imported {done} of {videos} (skipped {skipped} done)")
    return 0


def _import_videos_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--dir", required=True, metavar="DIR", help="folder of <id>.<ext> video files")
    p.add_argument("--mode", choices=("link", "copy", "symlink"), default="link",
                   help="hard link (default), copy or symlink into the workdir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")


@command("import-videos", "register a folder of <id>.<ext> videos as downloaded", _import_videos_args)
def _import_videos(args: argparse.Namespace) -> int:
    from videolt.data.importers import import_videos
    from videolt.data.workdir import Workdir

    counts = import_videos(Workdir.open(args.workdir), args.dir, mode=args.mode, progress=not args.no_progress)
    _print_counts(counts, args.json, "registered {done} of {files} files (unknown IDs {unknown_id})")
    return 0


# -- train, evaluate, decouple ---------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--run", required=True, metavar="RUN", help="run name (runs/<run>/)")
    p.add_argument("--features", default=None, metavar="NAME", help="feature set (features/<name>.zarr)")
    p.add_argument("--model", default=None,
                   help="aggregator: nonlinear | netvlad | move (default: the method's own, else nonlinear)")
    p.add_argument("--method", default=None, help="baseline, focal, cb, ldam_drw, eql, mixup, cbs, srs, framestack, "
                                                  "move (MOVE: its aggregator + vicinity expansion), db, asl, "
                                                  "logit_adjusted")
    p.add_argument("--loss", default=None,
                   help="loss replacing the method's: bce, focal, cb, ldam, eql, db, asl, logit_adjusted")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--select-on", choices=("test", "val"), default=None,
                   help="split picking best.pt (test: the reference's protocol)")
    p.add_argument("--workers", type=int, default=None, help="threads reading batches ahead")
    p.add_argument("--preload", action="store_true", default=None, help="load the train split into memory once")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default=None)
    _config_args(p, "method_opts.eta=0.3 or milestones=[30,60]")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")


@command("train", "train an aggregator with a long-tail method; writes runs/RUN/", _train_args)
def _train(args: argparse.Namespace) -> int:
    from videolt.train.config import TrainConfig
    from videolt.train.trainer import train_run

    cfg = _stage_config(TrainConfig, args, features=args.features, model=args.model, method=args.method,
                        loss=args.loss, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        select_on=args.select_on, workers=args.workers, preload=args.preload, device=args.device,
                        amp=args.amp)
    metrics = train_run(args.workdir, args.run, cfg, resume=args.resume, progress=not args.no_progress)
    if metrics is not None:  # None on torchrun's ranks other than 0
        _print_metrics(metrics, args.json)
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--run", required=True, metavar="RUN")
    p.add_argument("--split", choices=("test", "val", "train"), default=None, help="default test")
    p.add_argument("--checkpoint", choices=("best", "last"), default=None, help="default best")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the run's)")
    p.add_argument("--batch-size", type=int, default=None, help="videos per forward pass (default: the run's)")
    _config_args(p, "split=val")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


@command("evaluate", "score a run on a split: mAP overall/head/medium/tail, Acc@1/5", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    from videolt.train.evaluation import EvaluateConfig, evaluate_run

    cfg = _stage_config(EvaluateConfig, args, split=args.split, checkpoint=args.checkpoint, device=args.device,
                        batch_size=args.batch_size)
    _print_metrics(evaluate_run(args.workdir, args.run, cfg), args.json)
    return 0


def _decouple_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--from", dest="source", required=True, metavar="RUN", help="the trained run")
    p.add_argument("--run", required=True, metavar="NEW", help="the new run")
    p.add_argument("--stage", choices=("crt", "lws", "tau_norm"), default=None, help="required (or stage= in a file)")
    p.add_argument("--epochs", type=int, default=None, help="cRT/LWS epochs (default 10)")
    p.add_argument("--tau", type=float, default=None, help="τ of τ-normalisation (default 1)")
    _config_args(p, "epochs=20")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true")


@command("decouple", "decoupling baselines on a trained run: cRT, LWS, τ-normalisation", _decouple_args)
def _decouple(args: argparse.Namespace) -> int:
    from videolt.train.decoupling import DecoupleConfig, decouple_run

    cfg = _stage_config(DecoupleConfig, args, stage=args.stage, epochs=args.epochs, tau=args.tau)
    metrics = decouple_run(args.workdir, args.source, args.run, cfg, progress=not args.no_progress)
    if metrics is not None:  # None on torchrun's ranks other than 0
        _print_metrics(metrics, args.json)
    return 0


def _print_metrics(metrics: dict, as_json: bool) -> None:
    if as_json:
        _print_json(metrics)
        return
    keys = ("overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5")
    print("  ".join(f"{k:>11}" for k in keys))
    print("  ".join(f"{metrics[k]:>11.4f}" for k in keys))


# -- benchmark and report -------------------------------------------------------------------------
def _benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--config", required=True, metavar="FILE", help="benchmark grid, e.g. configs/table1_resnet50.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid key, e.g. train.epochs=10 or seeds=[1,2]")
    p.add_argument("--jobs", type=int, default=1, help="runs trained side by side, one process each")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are done; train nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("benchmark", "train and evaluate a grid of runs; write paper-style tables and plots", _benchmark_args)
def _benchmark(args: argparse.Namespace) -> int:
    from videolt.pipeline.benchmark import load_benchmark, run_benchmark

    config = load_benchmark(args.config, args.overrides)
    result = run_benchmark(args.workdir, config, jobs=args.jobs, dry_run=args.dry_run, progress=not args.no_progress)
    if args.json:
        _print_json(result)
        return 0
    for r in result["runs"]:
        print(f"{r['status']:<8} {r['run']}")
    report = result.get("report") or {}
    if report.get("dir"):
        print(f"report: {report['dir']}/report.md ({report.get('finished')}/{report.get('total')} runs finished)")
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                   help="the first run is compared with each other run")
    p.add_argument("--out", default=None, metavar="DIR", help="plot folder (default WORKDIR/reports/compare)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test videos (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("report", "compare runs: paired differences with bootstrap intervals, per-class AP plots", _report_args)
def _report(args: argparse.Namespace) -> int:
    from videolt.evaluate.compare import compare_runs, format_comparison

    result = compare_runs(args.workdir, args.runs, args.out, n_resamples=args.bootstrap, seed=args.seed)
    if args.json:
        _print_json(result)
    else:
        print(format_comparison(result))
    return 0


# -- run, demo ------------------------------------------------------------------------------------
def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="run config (configs/videolt.yaml, configs/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set benchmark.jobs=2 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print what each stage did as JSON")


@command("run", "run every stage of a config file in order, skipping done work (resumable)", _run_args)
def _run(args: argparse.Namespace) -> int:
    from videolt.pipeline.run import format_summary, load_run_config, run_pipeline

    summary = run_pipeline(load_run_config(args.config, args.overrides), progress=not args.no_progress)
    if args.json:
        _print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR", nargs="?", default="demo-workdir",
                   help="workdir to create or reuse (default ./demo-workdir; the clips go to WORKDIR-source)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the random weights and training")
    p.add_argument("--weights", default="random", metavar="PATH", help="ResNet-50 weights file (default: random)")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: decode in this process)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo config (configs/demo.yaml), e.g. --set demo.classes=6")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


@command("demo", "the whole pipeline offline on generated videos (minutes on a CPU)", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    from videolt.pipeline.demo import demo_config, format_demo, run_demo

    config = demo_config(args.workdir, seed=args.seed, weights=args.weights, workers=args.workers,
                         overrides=args.overrides)
    result = run_demo(config, progress=not args.no_progress)
    if args.json:
        _print_json({k: v for k, v in result.items() if k != "summary"})
    else:
        print(format_demo(result))
    return 0


# -- entry point ----------------------------------------------------------------------------------
DESCRIPTION = """Long-tailed video recognition on VideoLT, from YouTube IDs to paper-style results.

Stages, each resumable (killed at any moment, a rerun loses nothing and does nothing twice):
  init → download (or import-videos) → extract (or import-features) → train → evaluate → benchmark"""
EPILOG = """Start with `videolt demo` (the whole pipeline offline, minutes on a CPU) or
`videolt run configs/videolt.yaml` (every stage of one config file). `videolt COMMAND --help` lists a
command's options; stage options are config keys, also settable with --config FILE and --set KEY=VALUE.
Exit codes: 0 success, 2 bad usage or input, 1 runtime failure, 130 interrupted."""

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videolt", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"videolt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help, add_args, _) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help, description=help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return _COMMANDS[args.command][2](args)
    except UsageError as e:
        print(f"videolt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except VideoltError as e:
        print(f"videolt {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"videolt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
