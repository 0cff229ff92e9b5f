"""The `videolt` command: parse, validate, call a stage function, print. No logic of its own.

Every subcommand is a pair: `_<name>_args(parser)` declares its options and a `@command`-registered
function runs it. `main` is the one place that maps exceptions to exit codes: 0 success, 2 bad usage
or bad input (one line naming the file and line, key or ID), 1 runtime failure, 130 interrupted.
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


def _csv(text: str) -> list[str]:
    return [t for t in (s.strip() for s in text.split(",")) if t]


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
    p.add_argument("--min-free-gb", type=float, default=None, help="stop cleanly below this much free disk")
    p.add_argument("--recheck", nargs="+", default=(), choices=sorted(f.value for f in Failure), metavar="CLASS",
                   help="also retry videos that failed with these (permanent) classes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print this run's counts as JSON")


@command("download", "fetch pending videos with yt-dlp: paced, classified, resumable", _download_args)
def _download(args: argparse.Namespace) -> int:
    import dataclasses

    from videolt.data.download import DownloadConfig, download_pending
    from videolt.data.workdir import Workdir

    given = {"url_template": args.url_template, "workers": args.workers, "rate_per_hour": args.rate,
             "max_attempts": args.max_attempts, "socket_timeout": args.socket_timeout,
             "min_free_gb": args.min_free_gb}
    cfg = dataclasses.replace(DownloadConfig(), **{k: v for k, v in given.items() if v is not None})
    counts = download_pending(Workdir.open(args.workdir), cfg, splits=args.splits, limit=args.limit,
                              recheck=args.recheck, progress=not args.no_progress)
    if args.json:
        _print_json(counts)
    else:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(counts["failed"].items())) or "none"
        print(f"downloaded {counts['done']} of {counts['todo']}; failed: {failed}")
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
                        dtype=args.dtype, compile=args.compile, retry=tuple(args.retry))
    opts = {"address": args.ray_address, "workers": args.workers} if args.executor == "ray" else {
        "workers": args.workers}
    executor = create_executor(args.executor, **opts)
    try:
        counts = run_extract(Workdir.open(args.workdir), cfg, executor, progress=not args.no_progress)
    finally:
        executor.close()
    if args.json:
        _print_json(counts)
    else:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(counts["failed"].items())) or "none"
        print(f"extracted {counts['done']} of {counts['videos']} videos; failed: {failed}")
    return 0


# -- importers ------------------------------------------------------------------------------------
def _import_features_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR")
    p.add_argument("--name", required=True, help="feature set name (features/<name>.zarr)")
    p.add_argument("--npy-dir", required=True, metavar="DIR", help="official release: <id>.npy float32 [150, D]")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage dtype")
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
                             workers=args.workers, splits=args.splits, frames=args.frames, dim=args.dim,
                             progress=not args.no_progress)
    if args.json:
        _print_json(counts)
    else:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(counts["failed"].items())) or "none"
        print(f"imported {counts['done']} of {counts['videos']} (skipped {counts['skipped']} done); failed: {failed}")
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
    if args.json:
        _print_json(counts)
    else:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(counts["failed"].items())) or "none"
        print(f"registered {counts['done']} of {counts['files']} files (unknown IDs {counts['unknown_id']}); "
              f"failed: {failed}")
    return 0


# -- entry point ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videolt", description=__doc__.split("\n")[0])
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
