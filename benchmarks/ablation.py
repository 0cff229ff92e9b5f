"""A paper ablation grid (configs/table*.yaml) run end to end on a synthetic long-tailed feature set.

The set is tests/synthetic.py's: power-law train counts over `--classes` classes, weak labels (each
class's direction added to only 20-50 % of a video's frames), `--dim`-d features, 150 frames per video,
optional second labels. The grid's feature set, group thresholds and the training length are
overridden to fit it; everything else (methods, seeds, comparisons, bootstrap) is the config's own.
Prints the report's path and its Markdown.

    .venv/bin/python benchmarks/ablation.py --config configs/table3_beta.yaml --dir /tmp/ablation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/synthetic.py builds the set

from tests.synthetic import make_workdir  # noqa: E402
from videolt.data.workdir import Workdir  # noqa: E402
from videolt.pipeline.benchmark import load_benchmark, run_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "table3_beta.yaml"))
    parser.add_argument("--dir", required=True, help="folder for the synthetic set and its workdir (reused)")
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--videos", default="3000,400,800", help="train,val,test videos")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--signal", type=float, default=0.8, help="strength of a class's direction in its frames")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="more grid overrides, e.g. seeds=[1,2,3]")
    args = parser.parse_args()
    root = Path(args.dir)
    if (root / "wd" / "videolt.json").is_file():
        wd = Workdir.open(root / "wd")
        counts = sorted(wd.labels().counts)
        head, tail = int(counts[-3]), int(counts[len(counts) // 3])
    else:
        root.mkdir(parents=True, exist_ok=True)
        videos = tuple(int(v) for v in args.videos.split(","))
        path, syn = make_workdir(root, num_classes=args.classes, videos=videos, dim=args.dim, signal=args.signal)
        wd, head, tail = Workdir.open(path), syn.head, syn.tail
    overrides = ["features=[{name: syn, backbone: synthetic}]", f"train.epochs={args.epochs}",
                 f"train.milestones=[{args.epochs * 3 // 10},{args.epochs * 6 // 10}]",
                 f"train.group_head={head}", f"train.group_tail={tail}", *args.overrides]
    result = run_benchmark(wd.root, load_benchmark(args.config, overrides), progress=False)
    report = Path(result["report"]["dir"]) / "report.md"
    print(f"report: {report}\n")
    print(report.read_text())


if __name__ == "__main__":
    main()
