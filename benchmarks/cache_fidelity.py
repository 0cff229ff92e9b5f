"""Does training on the int8 cache change results? int8 − fp16 test mAP, paired by seed, per method.

    python benchmarks/cache_fidelity.py --synthetic DIR [--methods baseline framestack move] [--seeds 1 2 3] \
        [--epochs 12] [--set key=value ...]
    python benchmarks/cache_fidelity.py --workdir WD --features NAME --set group_head=20 --set group_tail=8 ...

Each (method, seed) trains twice with the same recipe, once on the fp16 cache (the stored values,
bit-identical to streaming) and once on the int8 cache (training, selection and the final test
scores all read int8 features). Runs are named `<method>_<cache>_s<seed>` in the workdir and skipped
when finished, so a killed study resumes. `--synthetic DIR` first makes a long-tailed, weakly-labelled
2048-d set with tests/synthetic.py (20 classes, 1,500 / 200 / 400 videos, signal 0.04: the set of
RESULTS.md's MOVE study, larger). Prints per-run mAPs, then per method the paired differences with
their mean and standard deviation, next to the seed spread of the fp16 runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from videolt.config import from_dict, parse_overrides  # noqa: E402
from videolt.data import runfiles  # noqa: E402
from videolt.data.workdir import Workdir  # noqa: E402
from videolt.train import cache  # noqa: E402
from videolt.train.config import TrainConfig  # noqa: E402
from videolt.train.trainer import run_train  # noqa: E402

SMALL_MOVE = {"clusters": 16, "hidden": 256, "key_dim": 128}  # MOVE's aggregator shrunk as in RESULTS.md's MOVE study


def make_set(root: Path) -> tuple[Path, dict]:
    from tests.synthetic import make_workdir

    if (root / "wd" / "videolt.json").is_file():
        return root / "wd", json.loads((root / "groups.json").read_text())
    wd, syn = make_workdir(root, num_classes=20, videos=(1500, 200, 400), dim=2048, signal=0.04, seed=0)
    groups = {"group_head": syn.head, "group_tail": syn.tail}
    (root / "groups.json").write_text(json.dumps(groups))
    return wd, groups


def run(wd: Path, name: str, config: TrainConfig) -> dict:
    run_dir = Workdir.open(wd).run_dir(name)
    if runfiles.metrics_path(run_dir).is_file():
        return json.loads(runfiles.metrics_path(run_dir).read_text())
    return run_train(wd, name, config, resume=runfiles.checkpoint_path(run_dir, "last").is_file(), progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synthetic", type=Path, help="make (or reuse) the synthetic 2048-d set in this folder")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--features", default="syn")
    p.add_argument("--methods", nargs="+", default=["baseline", "framestack", "move"])
    p.add_argument("--seeds", nargs="+", type=int, default=[2021, 2022, 2023])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--set", action="append", default=[], help="TrainConfig key=value for every run")
    args = p.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    wd, groups = make_set(args.synthetic) if args.synthetic else (args.workdir, {})
    base = {"features": args.features, "epochs": args.epochs, "eval_every": 4, "workers": 0, **groups,
            **parse_overrides(args.set)}
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}; workdir {wd}; recipe {json.dumps(base)}", flush=True)
    maps: dict[tuple[str, str, int], float] = {}
    with cache.shared():
        for method in args.methods:
            for seed in args.seeds:
                for kind in ("fp16", "int8"):
                    model_opts = {**SMALL_MOVE, **base.get("model_opts", {})} if method == "move" else {}
                    config = from_dict(TrainConfig, {**base, "method": method, "seed": seed, "cache": kind,
                                                     "model_opts": model_opts})
                    tic = time.perf_counter()
                    result = run(wd, f"{method}_{kind}_s{seed}", config)
                    maps[method, kind, seed] = result["overall_map"]
                    print(f"{method} {kind} seed {seed}: mAP {result['overall_map']:.4f} "
                          f"(tail {result['tail_map']:.4f}), {time.perf_counter() - tic:.0f} s", flush=True)
    print("\n| method | seeds | fp16 mAP (mean ± std over seeds) | int8 − fp16 per seed | mean ± std of the difference |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        fp16 = np.array([maps[method, "fp16", s] for s in args.seeds])
        diff = np.array([maps[method, "int8", s] - maps[method, "fp16", s] for s in args.seeds])
        print(f"| {method} | {len(args.seeds)} | {fp16.mean():.4f} ± {fp16.std(ddof=1):.4f} | "
              f"{', '.join(f'{d:+.4f}' for d in diff)} | {diff.mean():+.4f} ± {diff.std(ddof=1):.4f} |")


if __name__ == "__main__":
    main()
