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
import importlib
import logging
import sys
from typing import Callable, NoReturn, Sequence

from videolt import __version__
from videolt.data.protocol import GROUP_HEAD, GROUP_TAIL
from videolt.errors import VideoltError

log = logging.getLogger("videolt")

_EXTRACTING = {"extract", "run", "demo"}  # commands whose process may run a feature sink
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None]):
    """Register a subcommand: its help line, its argument declarations and its handler."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (help, args, fn)
        return fn

    return deco


def _print_json(data: object) -> None:
    from videolt import jsonio

    print(jsonio.dumps(data))  # strict: NaN (an empty group's mAP) is null


def _print_counts(counts: dict, as_json: bool, summary: str) -> None:
    """A stage's counts: JSON, or `summary` (formatted with the counts) and the failures by class."""
    if as_json:
        _print_json(counts)
        return
    failed = ", ".join(f"{k} {v}" for k, v in sorted(counts["failed"].items())) or "none"
    print(f"{summary.format(**counts)}; failed: {failed}")
    for failure, message in sorted(counts.get("messages", {}).items()):  # what happened, one line per class
        print(f"  {failure}, e.g. {message}")


def _wait_arg(p: argparse.ArgumentParser, what: str) -> None:
    """`--wait`: wait for the process holding the lock (of `what`) instead of being refused."""
    p.add_argument("--wait", action="store_true",
                   help=f"if another process holds {what}, wait for it to end instead of exiting (exit 1)")


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


def _key(p: argparse.ArgumentParser, flag: str, config: str, key: str, **kw: object) -> None:
    """A flag that is a shortcut for key `key` of the config class `config` ("module:Class"): None
    unless given. Its help is the key's one-line doc and default, read from the dataclass (the one
    source of both) when help is shown, so building the parser imports no stage code."""
    own = kw.pop("help", None)
    action = p.add_argument(flag, dest=key, default=None, help=key, **kw)
    action.config_key = (config, key, own)  # type: ignore[attr-defined]
    p.formatter_class = _KeyHelp


class _KeyHelp(argparse.HelpFormatter):
    """Help of `_key` flags: the config key's doc (unless the flag has its own), the key and its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if not hasattr(action, "config_key"):
            return super()._get_help_string(action)
        from videolt.config import describe

        config, key, own = action.config_key
        module, _, name = config.partition(":")
        doc, default = next((d, v) for k, d, v in describe(getattr(importlib.import_module(module), name)) if k == key)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        given = "" if shown in (None, "", False) else f"; default {shown}"
        return f"{own or doc} [{key}{given}]".replace("%", "%%")


def _keys(args: argparse.Namespace, cls: type) -> dict[str, object]:
    """The values of `cls`'s config-key flags (declared with `_key`, so their dest is the key)."""
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


# -- labels ---------------------------------------------------------------------------------------
def _labels_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("labels_dir", metavar="LABELS_DIR", help="folder with train.lst, validate.lst, test.lst, "
                   "count-labels-train.lst")
    p.add_argument("--head", type=int, default=GROUP_HEAD, help="head classes have more train videos than this")
    p.add_argument("--tail", type=int, default=GROUP_TAIL, help="tail classes have at most this many train videos")
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
    for warning in s["warnings"]:
        print(f"warning: {warning}")
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


# -- check ----------------------------------------------------------------------------------------
CHECK_PROBLEMS = 3  # `videolt check`'s exit code when it finds problems (0: none; 1, 2: as every command)


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--restore-manifest", action="store_true",
                   help="first put back the manifest's backup (made at the end of every stage); the current "
                        "manifest is kept as manifest.sqlite.damaged-TIME")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@command("check", "verify the manifest and every feature set against each other and say what to run "
         f"(exit {CHECK_PROBLEMS} on a problem)", _check_args)
def _check(args: argparse.Namespace) -> int:
    from videolt.data.check import check_workdir, format_check, restore_manifest
    from videolt.data.workdir import Workdir

    wd = Workdir.open(args.workdir)
    restored = restore_manifest(wd) if args.restore_manifest else None
    report = check_workdir(wd)
    if restored:
        report["restored"] = restored
    if args.json:
        _print_json(report)
    else:
        if restored:
            print(f"manifest restored from its backup of {restored['restored_from']['time']}"
                  + (f"; the replaced one is kept as {restored['kept']}" if restored["kept"] else ""))
        print(format_check(report))
    return 0 if report["ok"] else CHECK_PROBLEMS


# -- download, doctor -----------------------------------------------------------------------------
def _fetch_options(p: argparse.ArgumentParser) -> None:
    """The download config's flags, shared by `download` and `doctor` (which checks the run you will start)."""
    from videolt.data.failures import DownloadFailure

    config = "videolt.data.download:DownloadConfig"
    _key(p, "--splits", config, "splits", type=_csv, metavar="A,B")
    _key(p, "--limit", config, "limit", type=int, metavar="N")
    _key(p, "--url-template", config, "url_template", metavar="T")
    _key(p, "--workers", config, "workers", type=int, metavar="N")
    _key(p, "--rate", config, "rate_per_hour", type=float, metavar="PER_HOUR")
    _key(p, "--max-attempts", config, "max_attempts", type=int, metavar="N")
    _key(p, "--socket-timeout", config, "socket_timeout", type=float, metavar="SECONDS")
    _key(p, "--backoff", config, "backoff_base_s", type=float, metavar="SECONDS")
    _key(p, "--jitter", config, "jitter_s", type=float, metavar="SECONDS")
    _key(p, "--pause", config, "pause_s", type=float, metavar="SECONDS")
    _key(p, "--min-free-gb", config, "min_free_gb", type=float, metavar="GB")
    _key(p, "--recheck", config, "recheck", nargs="+", choices=sorted(f.value for f in DownloadFailure),
         metavar="CLASS")
    _key(p, "--executor", config, "executor", choices=("threads", "local", "ray"),
         help="where fetches run: threads here, local processes here or Ray tasks; pacing and recording stay here")
    _key(p, "--ray-address", config, "ray_address", metavar="HOST:PORT")
    session = p.add_mutually_exclusive_group()
    _key(session, "--cookies", config, "cookies", metavar="FILE")
    _key(session, "--cookies-from-browser", config, "cookies_from_browser", metavar="BROWSER[:PROFILE]")
    _key(p, "--extractor-args", config, "extractor_args", action="append", metavar="IE_KEY:ARGS",
         help="yt-dlp --extractor-args (repeatable), e.g. 'youtube:player_client=default,mweb'; never recorded")
    _key(p, "--js-runtimes", config, "js_runtimes", action="append", metavar="RUNTIME[:PATH]",
         help="JavaScript runtime for YouTube (repeatable): deno, node, quickjs, bun [default: every usable one]")
    _key(p, "--plugin-dirs", config, "plugin_dirs", action="append", metavar="DIR")
    _key(p, "--max-bot-checks", config, "max_bot_checks", type=int, metavar="N")
    _config_args(p, "max_trips=5")


def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR", nargs="?", default=None,
                   help="also check its write access and free disk against its pending videos")
    _fetch_options(p)
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


@command("doctor", "what will work on this machine and what will not, each with its fix (exit 1 on a problem)",
         _doctor_args)
def _doctor(args: argparse.Namespace) -> int:
    from videolt.data.download import DownloadConfig
    from videolt.pipeline.doctor import doctor, format_doctor

    result = doctor(args.workdir, _stage_config(DownloadConfig, args, **_keys(args, DownloadConfig)))
    if args.json:
        _print_json(result)
    else:
        print(format_doctor(result))
    return 0 if result["ok"] else 1


def _download_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    _fetch_options(p)
    _wait_arg(p, "the workdir's videos (a download or import-videos)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print this run's counts as JSON")


@command("download", "fetch pending videos with yt-dlp: paced, classified, resumable", _download_args)
def _download(args: argparse.Namespace) -> int:
    from videolt.data.download import DownloadConfig
    from videolt.data.workdir import Workdir
    from videolt.pipeline.download import run_download

    config = _stage_config(DownloadConfig, args, **_keys(args, DownloadConfig))
    counts = run_download(Workdir.open(args.workdir), config, progress=not args.no_progress, wait=args.wait)
    _print_counts(counts, args.json, "downloaded {done} of {todo}")
    return 0


# -- availability -----------------------------------------------------------------------------------
def _availability_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--csv", metavar="FILE", default=None,
                   help="also write one row per video (id, split, outcome, failure class, yt-dlp version, date)")
    p.add_argument("--plot", metavar="FILE", default=None,
                   help="survival against class frequency (default WORKDIR/reports/availability/survival_DATE.png)")
    p.add_argument("--head", type=int, default=GROUP_HEAD, help="head classes have more train videos than this")
    p.add_argument("--tail", type=int, default=GROUP_TAIL, help="tail classes have at most this many train videos")
    _key(p, "--max-attempts", "videolt.data.download:DownloadConfig", "max_attempts", type=int, metavar="N",
         help="a retryable failure with this many attempts counts as exhausted, as `download` with it sees it")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@command("availability", "how much of the dataset YouTube still serves: per class, per head/medium/tail group",
         _availability_args)
def _availability(args: argparse.Namespace) -> int:
    from videolt.data.availability import availability, format_availability, plot_survival, video_outcomes, write_csv
    from videolt.data.workdir import Workdir

    wd = Workdir.open(args.workdir)
    for given in (args.csv, args.plot):
        _output_file(given)
    outcomes = video_outcomes(wd, max_attempts=args.max_attempts)
    report = availability(wd, head=args.head, tail=args.tail, outcomes=outcomes)
    plot = plot_survival(report, args.plot or wd.reports_dir / "availability" / f"survival_{report['date']}.png")
    report["plot"] = str(plot)
    if args.csv:
        report["csv"] = str(write_csv(outcomes, args.csv))
    if args.json:
        _print_json(report)
    else:
        print(format_availability(report))
        print(f"plot: {plot}" + (f"\ncsv: {report['csv']}" if args.csv else ""))
    return 0


def _output_file(path: str | None) -> None:
    """A file the user named for an output must not be a folder (exit 2 before anything is computed)."""
    from pathlib import Path

    from videolt.errors import UsageError

    if path and Path(path).is_dir():
        raise UsageError(f"{path}: a folder; name a file to write")


# -- extract --------------------------------------------------------------------------------------
def _extract_args(p: argparse.ArgumentParser) -> None:
    config = "videolt.extract.config:ExtractConfig"
    p.add_argument("workdir", metavar="WORKDIR")
    _key(p, "--backbone", config, "backbones", type=_csv, metavar="NAMES")
    _key(p, "--weights", config, "weights", metavar="imagenet|kinetics400|random|PATH")
    _key(p, "--name", config, "names", type=_csv, metavar="FEATURESETS")
    _key(p, "--device", config, "device", metavar="auto|cpu|cuda|cuda:N")
    _key(p, "--devices", config, "devices", metavar="auto|N|cuda:0,cuda:1|cpu,cpu")
    _key(p, "--batch-size", config, "batch_size", type=int, metavar="N")
    _key(p, "--decoder", config, "decoder", metavar="NAME")
    _key(p, "--workers", config, "workers", type=int, metavar="N")
    _key(p, "--splits", config, "splits", type=_csv, metavar="A,B")
    _key(p, "--limit", config, "limit", type=int, metavar="N")
    _key(p, "--frames", config, "frames", type=int, metavar="N")
    _key(p, "--resize", config, "resize", type=int, metavar="PX")
    _key(p, "--crop", config, "crop", type=int, metavar="PX")
    _key(p, "--n-segment", config, "n_segment", type=int, metavar="N")
    _key(p, "--dtype", config, "dtype", choices=("float16", "float32"))
    _key(p, "--compression", config, "compression", choices=("none", "zstd"))
    _key(p, "--compile", config, "compile", action="store_true")
    _key(p, "--retry", config, "retry", nargs="+", metavar="CLASS")
    _key(p, "--executor", config, "executor", choices=("local", "ray"))
    _key(p, "--ray-address", config, "ray_address", metavar="HOST:PORT")
    _key(p, "--verify", config, "verify", type=int, metavar="N")
    _key(p, "--verify-tolerance", config, "verify_tolerance", type=float, metavar="FRACTION")
    _config_args(p, "fps=2 or timeout=600 or amp=false")
    _wait_arg(p, "the feature set")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print this run's counts as JSON")


@command("extract", "decode at 1 fps, run backbones, write Zarr feature sets (resumable)", _extract_args)
def _extract(args: argparse.Namespace) -> int:
    from videolt.data.workdir import Workdir
    from videolt.extract.config import ExtractConfig
    from videolt.pipeline.extract import run_extract

    config = _stage_config(ExtractConfig, args, **_keys(args, ExtractConfig))
    counts = run_extract(Workdir.open(args.workdir), config, progress=not args.no_progress, wait=args.wait)
    _print_counts(counts, args.json, "extracted {done} of {videos} videos")
    if "verify" in counts and not args.json:
        v = counts["verify"]
        worst = "n/a" if v["worst"] is None else f"{v['worst']:.3%}"
        print(f"verified {v['checked']} video features against the reference path: worst relative error {worst} "
              f"(tolerance {v['tolerance']:.1%})")
    return 0


# -- importers ------------------------------------------------------------------------------------
def _import_features_args(p: argparse.ArgumentParser) -> None:
    config = "videolt.data.importers:ImportFeaturesConfig"
    p.add_argument("workdir", metavar="WORKDIR")
    _key(p, "--name", config, "name", metavar="NAME")
    _key(p, "--npy-dir", config, "npy_dir", metavar="DIR")
    _key(p, "--dtype", config, "dtype", choices=("float16", "float32"))
    _key(p, "--compression", config, "compression", choices=("none", "zstd"))
    _key(p, "--workers", config, "workers", type=int, metavar="N")
    _key(p, "--splits", config, "splits", type=_csv, metavar="A,B")
    _key(p, "--frames", config, "frames", type=int, metavar="N")
    _key(p, "--dim", config, "dim", type=int, metavar="D")
    _config_args(p, "dtype=float32")
    _wait_arg(p, "the feature set")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print this run's counts as JSON")


@command("import-features", "import the official per-video .npy features into a feature set", _import_features_args)
def _import_features(args: argparse.Namespace) -> int:
    from videolt.data.importers import ImportFeaturesConfig, import_features
    from videolt.data.workdir import Workdir

    config = _stage_config(ImportFeaturesConfig, args, **_keys(args, ImportFeaturesConfig))
    counts = import_features(Workdir.open(args.workdir), config, progress=not args.no_progress, wait=args.wait)
    _print_counts(counts, args.json, "imported {done} of {videos} (skipped {skipped} done)")
    return 0


def _import_videos_args(p: argparse.ArgumentParser) -> None:
    config = "videolt.data.importers:ImportVideosConfig"
    p.add_argument("workdir", metavar="WORKDIR")
    _key(p, "--dir", config, "dir", metavar="DIR")
    _key(p, "--mode", config, "mode", choices=("link", "copy", "symlink"))
    _config_args(p, "mode=copy")
    _wait_arg(p, "the workdir's videos (a download or import-videos)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")


@command("import-videos", "register a folder of <id>.<ext> videos as downloaded", _import_videos_args)
def _import_videos(args: argparse.Namespace) -> int:
    from videolt.data.importers import ImportVideosConfig, import_videos
    from videolt.data.workdir import Workdir

    config = _stage_config(ImportVideosConfig, args, **_keys(args, ImportVideosConfig))
    counts = import_videos(Workdir.open(args.workdir), config, progress=not args.no_progress, wait=args.wait)
    _print_counts(counts, args.json, "registered {done} of {files} files (unknown IDs {unknown_id})")
    return 0


# -- train, evaluate, decouple ---------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    config = "videolt.train.config:TrainConfig"
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--run", required=True, metavar="RUN", help="run name (runs/<run>/)")
    _key(p, "--features", config, "features", metavar="NAME")
    _key(p, "--model", config, "model", metavar="AGGREGATOR")
    _key(p, "--method", config, "method", metavar="METHOD")
    _key(p, "--loss", config, "loss", metavar="LOSS")
    _key(p, "--epochs", config, "epochs", type=int, metavar="N")
    _key(p, "--batch-size", config, "batch_size", type=int, metavar="N")
    _key(p, "--lr", config, "lr", type=float, metavar="LR")
    _key(p, "--seed", config, "seed", type=int, metavar="N")
    _key(p, "--select-on", config, "select_on", choices=("test", "val"))
    _key(p, "--workers", config, "workers", type=int, metavar="N")
    _key(p, "--cache", config, "cache", choices=("auto", "stream", "fp16", "int8"))
    _key(p, "--device", config, "device", metavar="auto|cpu|cuda|cuda:N")
    _key(p, "--amp", config, "amp", choices=("off", "bf16", "fp16"))
    _config_args(p, "method_opts.eta=0.3 or milestones=[30,60]")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    _wait_arg(p, "the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")


@command("train", "train an aggregator with a long-tail method; writes runs/RUN/", _train_args)
def _train(args: argparse.Namespace) -> int:
    from videolt.train.config import TrainConfig
    from videolt.train.trainer import run_train

    cfg = _stage_config(TrainConfig, args, **_keys(args, TrainConfig))
    metrics = run_train(args.workdir, args.run, cfg, resume=args.resume, progress=not args.no_progress,
                        wait=args.wait)
    if metrics is not None:  # None on torchrun's ranks other than 0
        _print_metrics(metrics, args.json)
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    config = "videolt.train.evaluation:EvaluateConfig"
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--run", required=True, metavar="RUN")
    _key(p, "--split", config, "split", choices=("test", "val", "train"))
    _key(p, "--checkpoint", config, "checkpoint", choices=("best", "last", "best_val", "best_test"))
    _key(p, "--device", config, "device", metavar="auto|cpu|cuda|cuda:N")
    _key(p, "--batch-size", config, "batch_size", type=int, metavar="N")
    _config_args(p, "split=val")
    _wait_arg(p, "the run (e.g. its training)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


@command("evaluate", "score a run on a split: mAP overall/head/medium/tail, Acc@1/5", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    from videolt.train.evaluation import EvaluateConfig, run_evaluate

    cfg = _stage_config(EvaluateConfig, args, **_keys(args, EvaluateConfig))
    _print_metrics(run_evaluate(args.workdir, args.run, cfg, wait=args.wait), args.json)
    return 0


def _decouple_args(p: argparse.ArgumentParser) -> None:
    config = "videolt.train.decoupling:DecoupleConfig"
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--from", dest="source", required=True, metavar="RUN", help="the trained run")
    p.add_argument("--run", required=True, metavar="NEW", help="the new run")
    _key(p, "--stage", config, "stage", choices=("crt", "lws", "tau_norm"))
    _key(p, "--epochs", config, "epochs", type=int, metavar="N")
    _key(p, "--tau", config, "tau", type=float, metavar="TAU")
    _config_args(p, "epochs=20")
    _wait_arg(p, "the new run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true")


@command("decouple", "decoupling baselines on a trained run: cRT, LWS, τ-normalisation", _decouple_args)
def _decouple(args: argparse.Namespace) -> int:
    from videolt.train.decoupling import DecoupleConfig, run_decouple

    cfg = _stage_config(DecoupleConfig, args, **_keys(args, DecoupleConfig))
    metrics = run_decouple(args.workdir, args.source, args.run, cfg, progress=not args.no_progress, wait=args.wait)
    if metrics is not None:  # None on torchrun's ranks other than 0
        _print_metrics(metrics, args.json)
    return 0


def _print_metrics(metrics: dict, as_json: bool) -> None:
    """The six metrics; for a run's result also those of the epoch the other split picked."""
    if as_json:
        _print_json(metrics)
        return
    from videolt.evaluate.metrics import METRIC_KEYS as keys

    rows = [metrics] + ([metrics["other_selection"]] if metrics.get("other_selection") else [])
    print("  ".join(f"{k:>11}" for k in keys))
    for values in rows:
        picked = f"  (epoch {values['epoch']}, picked on {values['select_on']})" if "select_on" in values else ""
        print("  ".join(_metric(values[k]) for k in keys) + (picked if len(rows) > 1 else ""))
    if metrics.get("note"):
        print(f"note: {metrics['note']}")


def _metric(value: float | None) -> str:
    """A metric in an 11-wide column; an empty class group's (NaN, or null once read back) as n/a."""
    return f"{'n/a':>11}" if value is None or value != value else f"{value:>11.4f}"


# -- benchmark and report -------------------------------------------------------------------------
def _benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--config", required=True, metavar="FILE", help="benchmark grid, e.g. configs/table1_resnet50.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid key, e.g. train.epochs=10 or seeds=[1,2]")
    p.add_argument("--jobs", type=int, default=1, help="runs trained side by side, one process each")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and which are done, check every input they need (exit 2 on what would fail); "
                        "train nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("benchmark", "train and evaluate a grid of runs; write paper-style tables and plots", _benchmark_args)
def _benchmark(args: argparse.Namespace) -> int:
    from videolt.pipeline.benchmark import BenchmarkError, load_benchmark, run_benchmark

    config = load_benchmark(args.config, args.overrides)
    try:
        result = run_benchmark(args.workdir, config, jobs=args.jobs, dry_run=args.dry_run,
                               progress=not args.no_progress)
    except BenchmarkError as e:  # the table of runs first (the failed ones with their error), then the error line
        _print_benchmark(e.result, args.json)
        raise
    _print_benchmark(result, args.json)
    return 0


def _print_benchmark(result: dict, as_json: bool) -> None:
    """Every run with its status (todo, partial, done, failed: with its error), then the report."""
    if as_json:
        _print_json(result)
        return
    width = max((len(r["run"]) for r in result["runs"]), default=0)
    for r in result["runs"]:
        print(f"{r['status']:<8} {r['run']:<{width}}  {r.get('error', '')}".rstrip())
    report = result.get("report") or {}
    if report.get("dir"):
        print(f"report: {report['dir']}/report.md ({report.get('finished')}/{report.get('total')} runs finished)")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                   help="TREATMENT CONTROL [CONTROL ...]: the first run is compared with each other run; every "
                        "difference is treatment − control")
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

    config = load_run_config(args.config, args.overrides)
    args.log_workdir = config.workdir  # where a failure's traceback goes
    summary = run_pipeline(config, progress=not args.no_progress)
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


# -- components -----------------------------------------------------------------------------------
def _components_args(p: argparse.ArgumentParser) -> None:
    pass


@command("components", "the registered backbones, decoders, aggregators, losses, batch mixes, samplers and methods "
         "with their options, as the Markdown of docs/components.md", _components_args)
def _components(args: argparse.Namespace) -> int:
    from videolt.pipeline.components import components_markdown

    print(components_markdown(), end="")
    return 0


# -- entry point ----------------------------------------------------------------------------------
DESCRIPTION = """Long-tailed video recognition on VideoLT, from YouTube IDs to paper-style results.

Stages, each resumable (killed at any moment, a rerun loses nothing and does nothing twice):
  init → download (or import-videos) → extract (or import-features) → train → evaluate → benchmark"""
EPILOG = """Start with `videolt demo` (the whole pipeline offline, minutes on a CPU) or
`videolt run configs/videolt.yaml` (every stage of one config file). `videolt COMMAND --help` lists a
command's options; stage options are config keys, also settable with --config FILE and --set KEY=VALUE.
Exit codes: 0 success, 2 bad usage or input, 1 runtime failure (also: a stage or run in use by another
process; pass --wait to wait for it), 3 `check` found problems, 130 interrupted."""

class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too (exit 2), pointing at --help rather than printing the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="videolt", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"videolt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help, add_args, _) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help, description=help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in _EXTRACTING:  # still one thread: the sink's forward thread shares the main arena
        from videolt.extract.cores import one_malloc_arena

        one_malloc_arena()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return _COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        print(f"videolt {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`videolt status | head`): nothing to say to it
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # noqa: BLE001 - the one place every failure becomes an exit code and one line
        return _fail(args, e, sys.argv[1:] if argv is None else list(argv))


def _fail(args: argparse.Namespace, exc: Exception, argv: list[str]) -> int:
    """Print `exc` as one line (one per reason of a refused preflight) and return its exit code.

    The traceback of a runtime failure (exit 1) goes to WORKDIR/logs/videolt.log when the command
    has a workdir, and any traceback to stderr with `-v`; the line of an unexpected exception (not a
    `VideoltError`, whose line says it all) says where its traceback is.
    """
    import shlex
    import traceback
    from pathlib import Path

    from videolt.data.workdir import WORKDIR_FILE, Workdir
    from videolt.errors import describe, write_traceback

    root = getattr(args, "log_workdir", None) or getattr(args, "workdir", None)
    wd = Workdir(root) if root and (Path(root) / WORKDIR_FILE).is_file() else None
    code, lines = describe(exc, manifest=wd.manifest_path if wd else None)
    if args.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    where = None
    if code == 1 and wd is not None:
        try:
            where = f"traceback in {write_traceback(wd.log_path, exc, shlex.join(['videolt', *argv]))}"
        except OSError:  # a read-only workdir: the line still goes out
            pass
    if not isinstance(exc, VideoltError):
        lines[-1] += f" ({where or ('traceback above' if args.verbose else 'videolt -v ... prints the traceback')})"
    for line in lines:
        print(f"videolt {args.command}: error: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
