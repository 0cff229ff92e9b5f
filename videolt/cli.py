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
