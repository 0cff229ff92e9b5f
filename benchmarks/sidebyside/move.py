"""MOVE (wjun0830/MOVE at 7928daa, `VideoLT/`) side by side with videolt's MOVE, on the CPU.

    python benchmarks/sidebyside/move.py components --source DIR     # same weights, inputs and draws (~1 min)
    python benchmarks/sidebyside/move.py sampling --source DIR       # distributions of the random draws (~3 min)
    python benchmarks/sidebyside/move.py e2e --source DIR --seeds 2021 2022 2023 [--lr 1e-4] [--work DIR]
    python benchmarks/sidebyside/move.py lockstep --source DIR --seed 2021 [--lr 1e-4] [--diag]
    python benchmarks/sidebyside/move.py probe [--work DIR]        # how learnable the e2e set is (no DIR needed)

DIR is a checkout of their repository at 7928daa (its root or its `VideoLT/` folder); without
`--source` the harness reads `$VIDEOLT_SIDEBYSIDE_SOURCE_MOVE`, or clones it with `--clone`. Their files
run unmodified: a CPU shim turns `.cuda()` into a no-op and stubs `tensorboardX`, and everything else
(their classes at shrunk sizes, their 1,004-class logging meters, their data paths) is set from outside.

- components: their `NetVLAD_Dynamic_Aggregator`, `MultiHeadAttention_Dynamic_Aggregator` and
  `NonlinearClassifier` (MOVE.py:115-119 sizes, D = 2048, C = 10, B = 6, T = 60 in training) against
  videolt's `move` aggregator holding their weights; their Python-`random` frame draws recorded and
  replayed into ours, the torch seed set equal before both forwards (same dropout masks); their
  `base_main_Agg.py` aggregators against `sampling: none`; their calibration factors; their
  expansion (`Augment.py`) against ours with their λ, γ, π; one whole training step of each.
- sampling: 3,000 training forwards of each (theirs: Python's `random`; ours: its torch generator):
  lower bounds, subset sizes and per-frame inclusion per clip and draw role (chi-square tests of
  homogeneity), then 20,000 expansion draws of each (λ, γ: KS tests; P(π(i) = j)).
- e2e: the synthetic long-tailed, weakly-labelled 2048-d set of benchmarks/RESULTS.md (tests/synthetic.py,
  20 classes, 600/100/300 videos, signal 0.04), both codes trained per seed with the shrunk recipe
  recorded there (12 epochs, batch 16, lr as given, no step inside 12 epochs, test every 4 epochs, best
  reported, NetVLAD 16 clusters / hidden 256, attention key size 128, no gradient clipping, one loader
  thread); theirs through their MOVE.py `main()`, ours through `videolt train`. Prints the per-seed
  table, mean ± std, Welch's p, and their mAPMeter recomputed on our saved test scores. Runs are kept
  in `--work` (default: a folder in the system's temporary directory) and reused.
- lockstep: both codes trained together on one set of random streams: their data loader's batches and
  call sequence (MOVE.py:210-244), every random number they draw (frame subsets, λ, γ, π, dropout)
  replayed into our aggregator, our expansion, our BCE and an Adam over our parameters, from their
  initial weights; test mAP of both at every evaluation (`--diag`: the largest parameter difference
  after every step).
- probe: a logistic regression per class on each video's mean frame, fitted to convergence
  (scikit-learn, L2, C = 1), on the e2e set: its test mAP says how far 12 short epochs are from what
  the set allows.
"""


from __future__ import annotations

import argparse
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from _common import PYTHON, add_source_args, best_logged_test, checkout, import_from, make_set, print_runs, run_videolt
from _move import E2E, E2E_SET, MOVE, SMOKE, SMOKE_SET, load_theirs, lt_meters, sized_classes, their_args
from _move_checks import components, lockstep, sampling

from videolt.data import runfiles  # noqa: E402  (after _common puts the repository on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("components", "sampling", "e2e", "lockstep", "probe", "_theirs"):
        p = sub.add_parser(name)
        add_source_args(p, MOVE)
        if name in ("e2e", "lockstep", "probe", "_theirs"):
            p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "videolt-sidebyside-move")
            p.add_argument("--lr", type=float, default=1e-4)
        if name == "e2e":
            p.add_argument("--seeds", type=int, nargs="+", default=[2021, 2022, 2023])
            p.add_argument("--only", choices=["theirs", "ours"], help="train one side only (the other is read)")
        if name in ("e2e", "lockstep", "_theirs"):
            p.add_argument("--smoke", action="store_true", help="a tiny set and 2 epochs: checks the harness runs")
        if name in ("lockstep", "_theirs"):
            p.add_argument("--seed", type=int, default=2021)
        if name == "lockstep":
            p.add_argument("--diag", action="store_true", help="print the largest parameter difference every step")
        if name == "sampling":
            p.add_argument("--forwards", type=int, default=3000)
            p.add_argument("--batches", type=int, default=20000)
    args = parser.parse_args()
    if getattr(args, "smoke", False):
        E2E_SET.update(SMOKE_SET)
        E2E.update(SMOKE)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if args.command == "probe":
        probe(args)
        return
    work = checkout(MOVE, args.source, clone=args.clone, cache=args.cache)
    {"components": components, "sampling": sampling, "e2e": e2e, "lockstep": lockstep,
     "_theirs": run_theirs_main}[args.command](work, args)


def e2e(work: Path, args: argparse.Namespace) -> None:
    made = make_set(args.work / "set", features="r2048", **E2E_SET)
    out = args.work / f"lr{args.lr:g}"
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        if args.only != "ours" and _theirs_metrics(out / f"theirs_s{seed}") is None:
            tic = time.time()
            log = out / f"theirs_s{seed}.log"
            with open(log, "w") as f:
                subprocess.run([PYTHON, __file__, "_theirs", "--source", str(work), "--work", str(args.work),
                                "--lr", str(args.lr), "--seed", str(seed), *(["--smoke"] if args.smoke else [])],
                               check=True, stdout=f, stderr=f)
            print(f"theirs seed {seed}: {time.time() - tic:.0f} s", file=sys.stderr)
        run = f"move_lr{args.lr:g}_s{seed}"
        if args.only != "theirs" and not runfiles.metrics_path(Path(made["workdir"]) / "runs" / run).is_file():
            tic = time.time()
            run_dir = Path(made["workdir"]) / "runs" / run
            if run_dir.exists():  # a run killed before it finished: start it again
                shutil.rmtree(run_dir)
            run_videolt(*_ours_args(made, run, seed, args.lr), log=out / f"ours_s{seed}.log")
            print(f"ours seed {seed}: {time.time() - tic:.0f} s", file=sys.stderr)
    collect(load_theirs(work)["mapmeter"], made, out, args.seeds, args.lr)


def _ours_args(made: dict, run: str, seed: int, lr: float) -> list[str]:
    """`videolt train` with the recipe of benchmarks/RESULTS.md's MOVE end-to-end runs."""
    return ["train", made["workdir"], "--features", "r2048", "--run", run, "--method", "move",
            "--epochs", str(E2E["epochs"]), "--seed", str(seed), "--no-progress",
            "--set", f"lr={lr}", "--set", f"batch_size={E2E['batch']}", "--set", "clip_grad=0",
            "--set", "milestones=[30,60]", "--set", "workers=0", "--set", f"group_head={made['head']}",
            "--set", f"group_tail={made['tail']}", "--set", f"eval_every={E2E['eval_every']}",
            "--set", f"model_opts.clusters={E2E['clusters']}", "--set", f"model_opts.hidden={E2E['hidden']}",
            "--set", f"model_opts.key_dim={E2E['key_dim']}"]


def run_theirs_main(work: Path, args: argparse.Namespace) -> None:
    """Their MOVE.py `main()` in this process, unmodified, on the synthetic set (the `_theirs` command)."""
    made = make_set(args.work / "set", features="r2048", **E2E_SET)
    out = args.work / f"lr{args.lr:g}" / f"theirs_s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    their = load_theirs(work)
    (move_module,) = import_from(work, "MOVE")
    dutils = sys.modules["dataset.dutils"]
    dutils.path_dict["ResNet101"] = made["npy"]  # their feature folder, and their label folder (dutils.py:7, 25)
    dutils.ROOT = made["labels"]
    sized = sized_classes(their["models"], clusters=E2E["clusters"], hidden=E2E["hidden"], key_dim=E2E["key_dim"])
    find = move_module.utils.find_class_by_name  # MOVE.py:111-119 build every class through it
    move_module.utils = types.SimpleNamespace(get_indices=move_module.utils.get_indices,
                                              find_class_by_name=lambda name, mods: sized.get(name) or find(name, mods))
    move_module.LTAverageMeter, move_module.LTconfMeter = lt_meters(E2E_SET["num_classes"])
    sys.argv = ["MOVE.py", *their_args(made, args.seed, args.lr, out)]
    move_module.main()


_GROUPS = re.compile(r"Overall, Head, Medium, Tail mAP, Acc@1, 5 = ([\d.]+) ([\d.naN]+) ([\d.naN]+) ([\d.naN]+)")


def _theirs_metrics(out: Path) -> dict | None:
    """The best `Test Epoch` of their log (MOVE.py:172-191 keeps the best mAP), with its group mAPs."""
    return best_logged_test(out.parent / f"{out.name}.log", _GROUPS, E2E["epochs"] // E2E["eval_every"])


def collect(mapmeter: object, made: dict, out: Path, seeds: list[int], lr: float) -> None:
    """Per-seed table, mean ± std and Welch's p, and their mAPMeter on our saved test scores."""
    rows: dict[str, dict[int, dict]] = {"theirs": {}, "ours": {}}
    for seed in seeds:
        theirs = _theirs_metrics(out / f"theirs_s{seed}")
        run_dir = Path(made["workdir"]) / "runs" / f"move_lr{lr:g}_s{seed}"
        if theirs:
            rows["theirs"][seed] = theirs
        if runfiles.metrics_path(run_dir).is_file():
            rows["ours"][seed] = {**json.loads(runfiles.metrics_path(run_dir).read_text()), "epoch": _best_epoch(run_dir)}
    print(f"lr {lr:g}; set {E2E_SET}; head > {made['head']}, tail <= {made['tail']}\n")
    print_runs(rows, seeds)
    _their_map_on_ours(mapmeter, made, [s for s in seeds if s in rows["ours"]], lr)


def _best_epoch(run_dir: Path) -> int:
    from videolt.train import rundir

    return int(rundir.load_checkpoint(rundir.checkpoint_path(run_dir, "best"))["epoch"]) + 1


def _their_map_on_ours(mapmeter: object, made: dict, seeds: list[int], lr: float) -> None:
    """Their mAPMeter (ops/mapmeter.py, ops/apmeter.py) on our saved test scores, against our metrics.json."""
    from videolt.data.labels import multi_hot
    from videolt.data.workdir import Workdir

    wd = Workdir.open(made["workdir"])
    by_index = {v.index: v.labels for v in wd.manifest().videos(["test"])}
    for seed in seeds:
        run_dir = Path(made["workdir"]) / "runs" / f"move_lr{lr:g}_s{seed}"
        scores, rows = np.load(runfiles.scores_path(run_dir)), np.load(runfiles.rows_path(run_dir))
        meter = mapmeter.mAPMeter()
        meter.add(torch.from_numpy(scores), torch.from_numpy(multi_hot([by_index[r] for r in rows],
                                                                        scores.shape[1])).long())
        ours = json.loads(runfiles.metrics_path(run_dir).read_text())["overall_map"]
        print(f"their mAPMeter on our seed-{seed} test scores: {float(meter.avg()):.6f} (ours {ours:.6f})")


def probe(args: argparse.Namespace) -> None:
    """Test mAP of per-class logistic regressions on the mean frame (the e2e set's learnability)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from videolt.data.labels import multi_hot
    from videolt.data.store import FeatureStore
    from videolt.data.workdir import Workdir
    from videolt.evaluate.metrics import summarize

    made = make_set(args.work / "set", features="r2048", **E2E_SET)
    wd = Workdir.open(made["workdir"])
    store = FeatureStore.open(wd.features_path("r2048"))
    labels = wd.labels()
    data = {}
    for split in ("train", "test"):
        videos = wd.manifest().videos([split])
        x = store.read_rows([v.index for v in videos]).astype(np.float64).mean(axis=1)  # [N, D] mean frames
        data[split] = (x, multi_hot([v.labels for v in videos], labels.num_classes))
    model = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=10000)).fit(*data["train"])
    scores = model.predict_proba(data["test"][0])
    result = summarize(scores, data["test"][1], labels.groups(made["head"], made["tail"]))
    print("logistic-regression probe on the mean frame, test: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))



if __name__ == "__main__":
    main()
