"""VideoLT's reference code (17Skye17/VideoLT at 1732d5c) side by side with videolt's training core, on the CPU.

    python benchmarks/sidebyside/videolt_core.py components --source DIR
    python benchmarks/sidebyside/videolt_core.py e2e --source DIR --method baseline --seeds 2021 2022 2023 [--work DIR]
    python benchmarks/sidebyside/videolt_core.py e2e --source DIR --method framestack --seeds 2021 2022 2023

DIR is a checkout of their repository at 1732d5c; without `--source` the harness reads
`$VIDEOLT_SIDEBYSIDE_SOURCE_VIDEOLT`, or clones it with `--clone`. Their files run unmodified under the
CPU shim of `_common.py` (`.cuda()` a no-op, `tensorboardX` a stub); their data paths are set from outside.

- components: on the same weights, inputs and random numbers, their `NonlinearClassifier` and
  `NetVLADModel` against videolt's `nonlinear` and `netvlad` (logits in evaluation and training, gradients
  of a BCE); each loss of `ops/losses.py` (BCE, focal γ 1, CB, LDAM before and after its DRW epoch, EQL
  with its drop probability at 0 and 1) against videolt's (value and gradient); their `mixup` and
  `FrameStack` (`ops/Augment.py`) against videolt's with their λ, π and AP vector; their `mAPMeter`
  (`ops/apmeter.py`) and `accuracy` against videolt's metrics; their resampling mask
  (`ops/feature_loader.py`) against `sample_mask`.
- e2e: the synthetic long-tailed, weakly-labelled 2048-d set of the MOVE comparison (tests/synthetic.py,
  20 classes, 600/100/300 videos, signal 0.04), both codes trained per seed with the reference's recipe
  shrunk to the CPU (12 epochs, batch 16, lr 1e-4, steps at 30/60 so none inside 12 epochs, gradient-norm
  clip 20, test every 4 epochs with the best reported, one loader thread): `baseline` is their
  `base_main.py` (scripts/baseline.sh) against `videolt train --method baseline`; `framestack` their
  `dy_main.py` (scripts/framestack.sh: focal γ 1, ratio 0.5, warm-up epoch 0, clip length 60) against
  `--method framestack`. Prints the per-seed table, mean ± std and Welch's p. Runs are kept in `--work`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import (
    PYTHON,
    Reference,
    add_source_args,
    best_logged_test,
    checkout,
    import_from,
    install_cpu_shim,
    make_set,
    print_runs,
    run_videolt,
)

from videolt.data import runfiles  # noqa: E402  (after _common puts the repository on sys.path)

VIDEOLT = Reference(
    repo="17Skye17/VideoLT", commit="1732d5cfd067cf5d40736bd9ef68c64e4080590e", subdir="",
    env="VIDEOLT_SIDEBYSIDE_SOURCE_VIDEOLT",
    files={
        "base_main.py": "8c5c571ec576306f6c6e5ee4be7a44727eb22c655f1bcda8a4e439690698113f",
        "dy_main.py": "0968b49d2aa22fba2ad53eaccdf540b732b3daf0ea747f7ada885cf9bedc0f8e",
        "opts.py": "0969ed7fba4b0473fda3cc92d4c303c7184f12dda218b80d87b790b759b02214",
        "models/models.py": "0ba70718cc938a5bdfcb326321d5459a2b526874fdcbb2b7644cd2ab8497ee08",
        "models/net_module.py": "52e5459460d0ff1fd4ba6f6d640bba66d94dcb660167180e07f20f7fc7853e33",
        "ops/Augment.py": "f9854a9de139d2ca9d9a28b0c8729bedaea1fc8d9bb4e391b4ae71dfef54f092",
        "ops/feature_loader.py": "242e79473f26617cd2bdb592c645f6c12b487c07a59a99b12ed128e8de84995c",
        "ops/losses.py": "7260cc60484c3a8f3e0c327acf493d648d56113d887f47ebe347ae7315c93131",
        "ops/mapmeter.py": "d06eb0e8dfea6e982ec3e55e7b965c2e2497da067b1c6d2b0c19dbe5d3dd6250",
        "ops/apmeter.py": "5b661372d9c72b6d681c8e5bd11edca61926fe60fa930cc51e7d3465d3fca203",
        "ops/utils.py": "3683263cbe7863039ea3159d8d94214f35b13f5665f1d2a56e3b7478465ffc1b",
        "tools/utils.py": "aae7518dadb0348bb8128904e0f6fdc8fc4ef814feb54cd62163d53ea28070dc",
        "dataset/dutils.py": "07fe64578f6ed1483cbf4e577bcc9a715e40731f94f6078136844d76d3d34d31",
        "scripts/baseline.sh": "3acec918aa2314c579ce651844b45db02524c25cf8353219a0ba17416b6f1c53",
    })

COUNTS = np.array([900, 400, 150, 90, 40, 20, 12, 8])  # the components' train counts (tail: ≤ 100)
E2E_SET = dict(num_classes=20, videos=(600, 100, 300), dim=2048, frames=150, seed=0, signal=0.04)
E2E = dict(epochs=12, batch=16, eval_every=4, lr=1e-4)
# --smoke: the same code paths in seconds.
SMOKE_SET = dict(num_classes=6, videos=(48, 12, 24), signal=1.0)
SMOKE = dict(epochs=2, batch=8, eval_every=1)
# method → (their main script, its flags beyond the shared ones, our --method)
E2E_METHODS = {
    "baseline": ("base_main", ["--loss_func", "BCELoss"], "baseline"),
    "framestack": ("dy_main", ["--loss_func", "FocalLoss", "--gamma", "1", "--clip_length", "60", "--warm_epoch", "0",
                               "--ratio", "0.5"], "framestack"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("components", "e2e", "_theirs"):
        p = sub.add_parser(name)
        add_source_args(p, VIDEOLT)
        if name != "components":
            p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "videolt-sidebyside-videolt")
            p.add_argument("--method", choices=list(E2E_METHODS), default="baseline")
        if name == "e2e":
            p.add_argument("--seeds", type=int, nargs="+", default=[2021, 2022, 2023])
            p.add_argument("--only", choices=["theirs", "ours"], help="train one side only (the other is read)")
        if name in ("e2e", "_theirs"):
            p.add_argument("--smoke", action="store_true", help="a tiny set and 2 epochs: checks the harness runs")
        if name == "_theirs":
            p.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    if getattr(args, "smoke", False):
        E2E_SET.update(SMOKE_SET)
        E2E.update(SMOKE)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    work = checkout(VIDEOLT, args.source, clone=args.clone, cache=args.cache)
    {"components": components, "e2e": e2e, "_theirs": run_theirs_main}[args.command](work, args)


def _load(work: Path) -> dict:
    install_cpu_shim()
    names = ("models.models", "ops.losses", "ops.Augment", "ops.mapmeter", "ops.utils", "ops.feature_loader")
    return dict(zip(("models", "losses", "Augment", "mapmeter", "utils", "feature_loader"), import_from(work, *names)))


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


# ---- components ------------------------------------------------------------------------------------------


def components(work: Path, args: argparse.Namespace) -> None:
    from videolt.evaluate.metrics import average_precision, topk_accuracy
    from videolt.train.aggregators import create_aggregator
    from videolt.train.losses import create_loss
    from videolt.train.mixes.framestack import framestack_mix
    from videolt.train.mixes.mixup import mixup
    from videolt.train.samplers import sample_mask

    their = _load(work)
    rows: list[tuple[str, str]] = []
    d, c, b = 2048, len(COUNTS), 8
    g = torch.Generator().manual_seed(0)

    for name, theirs_cls, ours_name, mapping in (
            ("NonLinear", their["models"].NonlinearClassifier, "nonlinear",
             {"fc1": "fc", "project": "classifier"}),
            ("NetVLAD", their["models"].NetVLADModel, "netvlad",
             {"bn1": "input_bn", "vlad.activation_fc": "assign", "vlad.bn1": "assign_bn", "vlad.gate_weight": "gate",
              "hidden_fc": "project", "bn2": "project_bn", "pred_fc": "classifier"})):
        torch.manual_seed(1)
        theirs = theirs_cls(d, c)
        ours = create_aggregator(ours_name, d, c, class_counts=COUNTS)
        state = {}
        for k, v in theirs.state_dict().items():
            prefix = next(p for p in sorted(mapping, key=len, reverse=True) if k == p or k.startswith(p + "."))
            state[mapping[prefix] + k[len(prefix):]] = v
        ours.load_state_dict(state)
        diffs, grads = [], []
        for mode, frames in ((False, 150), (True, 60)):
            theirs.train(mode)
            ours.train(mode)
            x, y = torch.randn(b, frames, d, generator=g), (torch.rand(b, c, generator=g) < 0.3).float()
            torch.manual_seed(7)
            logits = theirs(x)[1]
            torch.manual_seed(7)
            logits_ours = ours(x)
            diffs.append(_max(logits, logits_ours))
            if mode:
                F.binary_cross_entropy_with_logits(logits, y).backward()
                F.binary_cross_entropy_with_logits(logits_ours, y).backward()
                named = dict(ours.named_parameters())
                scale = max(float(p.grad.abs().max()) for p in theirs.parameters())
                for k, p in theirs.named_parameters():
                    prefix = next(q for q in sorted(mapping, key=len, reverse=True) if k == q or k.startswith(q + "."))
                    grads.append(_max(p.grad, named[mapping[prefix] + k[len(prefix):]].grad) / scale)
        rows.append((f"{name}: logits in evaluation (T = 150) and training (T = 60, same dropout draws); BCE "
                     "gradients relative to max grad", f"{diffs[0]:.2g}, {diffs[1]:.2g}; {max(grads):.2g}"))

    with tempfile.TemporaryDirectory() as tmp:
        lc = Path(tmp) / "count-labels-train.lst"
        lc.write_text("".join(f"Class{i} {i} {float(n)}\n" for i, n in enumerate(COUNTS)))
        opts = argparse.Namespace(lc_list=str(lc), alpha=1.0, gamma=1.0)
        losses = their["losses"]
        z = torch.randn(b, c, generator=g) * 2
        y = (torch.rand(b, c, generator=g) < 0.3).float()
        cases = [("BCE", losses.BCELoss(opts), create_loss("bce", COUNTS)),
                 ("focal γ 1", losses.FocalLoss(opts), create_loss("focal", COUNTS, gamma=1.0)),
                 ("CB (β 0.9999)", losses.CBLoss(opts), create_loss("cb", COUNTS))]
        for epoch in (0, 60):
            theirs_ldam, ours_ldam = losses.LDAM(opts), create_loss("ldam", COUNTS)
            theirs_ldam.reset_epoch(epoch)
            ours_ldam.set_epoch(epoch)
            cases.append((f"LDAM, epoch {epoch} ({'DRW weights' if epoch >= 50 else 'before DRW'})", theirs_ldam,
                          ours_ldam))
        for p in (0.0, 1.0):
            cases.append((f"EQL, drop probability {p:g}", losses.EQL(opts, gamma=p),
                          create_loss("eql", COUNTS, drop_prob=p)))
        for name, theirs_loss, ours_loss in cases:
            z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
            a, o = theirs_loss(z1, y), ours_loss(z2, y)
            a.backward()
            o.backward()
            rows.append((f"loss {name}: value; gradient", f"{abs(a.item() - o.item()):.2g}; {_max(z1.grad, z2.grad):.2g}"))

    x, y = torch.randn(b, 60, 16, generator=g), (torch.rand(b, c, generator=g) < 0.3).float()
    ours_gen = torch.Generator().manual_seed(5)
    lam = torch.rand((), generator=torch.Generator().manual_seed(5)).item()  # ours draws λ, then π
    after_lam = torch.Generator().manual_seed(5)
    torch.rand((), generator=after_lam)
    torch.set_rng_state(after_lam.get_state())  # their mixup draws π from torch's global generator
    mx, my = their["Augment"].mixup(x, y, lam)
    ox, oy = mixup(x, y, ours_gen)
    rows.append(("mixup (ops/Augment.py:5-14), their λ and π: clips; targets",
                 f"{_max(mx, ox):.2g}; {_max(my, oy):.2g}"))

    ap = torch.rand(c, generator=g)
    m = b // 2
    torch.set_rng_state(torch.Generator().manual_seed(6).get_state())  # ours draws π of the first m first
    fx, fy = their["Augment"].FrameStack(x[:m], y[:m], 60, ap)
    sx, sy = framestack_mix(x, y, ap, eta=0.5, generator=torch.Generator().manual_seed(6))
    rows.append(("FrameStack (Augment.py:16-68, ratio 0.5 as dy_main.py:190-195), their π and AP: mixed clips; "
                 "targets", f"{_max(fx, sx[:m]):.2g}; {_max(fy, sy[:m]):.2g}"))

    scores, targets = torch.rand(300, c, generator=g), (torch.rand(300, c, generator=g) < 0.2).float()
    meter = their["mapmeter"].mAPMeter()
    meter.add(scores, targets.long())
    ap_ours = average_precision(scores.numpy(), targets.numpy())
    acc = [their["utils"].accuracy(scores, targets, topk=(k,))[0] / 100 for k in (1, 5)]
    acc_ours = [topk_accuracy(scores.numpy(), targets.numpy(), k) for k in (1, 5)]
    rows.append(("per-class AP (their mAPMeter) on 300 × 8 scores without ties; Acc@1, Acc@5 (their accuracy)",
                 f"{float(np.abs(meter.value().numpy() - ap_ours).max()):.2g}; "
                 f"{max(abs(a - o) for a, o in zip(acc, acc_ours)):.2g}"))

    import random

    rows_labels = [np.flatnonzero(r) for r in y.numpy() if r.any()] + [[k] for k in range(c)]  # every class has a video
    lists = [f"v{i:010d} {','.join(map(str, r))}" for i, r in enumerate(rows_labels)]
    worst, draws = 0.0, 500
    with tempfile.TemporaryDirectory() as npy:
        for line in lists:
            np.save(Path(npy) / f"{line.split()[0]}.npy", np.zeros((150, 4), np.float32))
        dataset = their["feature_loader"].ResamplingDataset_Mask(lists, npy, 60, "CBS", cls_num=c)
        random.seed(0)
        for k in range(draws):
            _, _, label, mask = dataset[k % len(lists)]  # a class drawn uniformly, then one of its videos
            drawn = int(np.argmax(label * mask))  # the one positive label the mask keeps
            ours_mask = sample_mask(torch.as_tensor(label[None]), torch.tensor([drawn]))[0].numpy()
            worst = max(worst, float(np.abs(mask - ours_mask).max()))
    rows.append((f"resampling mask (feature_loader.py:84-98, CBS) on {draws} of their draws", f"{worst:.2g}"))
    print("| check | max abs difference |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


# ---- end to end --------------------------------------------------------------------------------------------


def e2e(work: Path, args: argparse.Namespace) -> None:
    made = make_set(args.work / "set", features="r2048", **E2E_SET)
    out = args.work / args.method
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        if args.only != "ours" and _theirs_metrics(out / f"theirs_s{seed}.log") is None:
            tic = time.time()
            with open(out / f"theirs_s{seed}.log", "w") as f:
                subprocess.run([PYTHON, __file__, "_theirs", "--source", str(work), "--work", str(args.work),
                                "--method", args.method, "--seed", str(seed), *(["--smoke"] if args.smoke else [])],
                               check=True, stdout=f, stderr=f)
            print(f"theirs seed {seed}: {time.time() - tic:.0f} s", file=sys.stderr)
        run = f"{args.method}_s{seed}"
        run_dir = Path(made["workdir"]) / "runs" / run
        if args.only != "theirs" and not runfiles.metrics_path(run_dir).is_file():
            tic = time.time()
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_videolt(*_ours_args(made, run, seed, args.method), log=out / f"ours_s{seed}.log")
            print(f"ours seed {seed}: {time.time() - tic:.0f} s", file=sys.stderr)
    collect(made, out, args.method, args.seeds)


def _ours_args(made: dict, run: str, seed: int, method: str) -> list[str]:
    return ["train", made["workdir"], "--features", "r2048", "--run", run, "--method", E2E_METHODS[method][2],
            "--epochs", str(E2E["epochs"]), "--seed", str(seed), "--no-progress", "--set", f"lr={E2E['lr']}",
            "--set", f"batch_size={E2E['batch']}", "--set", "clip_grad=20", "--set", "milestones=[30,60]",
            "--set", "workers=0", "--set", f"group_head={made['head']}", "--set", f"group_tail={made['tail']}",
            "--set", f"eval_every={E2E['eval_every']}"]


def run_theirs_main(work: Path, args: argparse.Namespace) -> None:
    """Their base_main.py or dy_main.py `main()` in this process, unmodified, on the synthetic set."""
    made = make_set(args.work / "set", features="r2048", **E2E_SET)
    out = args.work / args.method / f"theirs_s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    _load(work)
    script, flags, _ = E2E_METHODS[args.method]
    (module,) = import_from(work, script)
    dutils = sys.modules["dataset.dutils"]
    dutils.path_dict["ResNet101"], dutils.ROOT = made["npy"], made["labels"]  # dutils.py:2, 7
    sys.argv = [f"{script}.py", "--feature_name", "ResNet101", "--num_class", str(E2E_SET["num_classes"]),
                "--lr", str(E2E["lr"]), "--gd", "20", "--lr_steps", "30", "60", "--epochs", str(E2E["epochs"]),
                "-b", str(E2E["batch"]), "-j", "0", "--eval-freq", str(E2E["eval_every"]), "--print-freq", "100000",
                "--model_name", "NonlinearClassifier", "--train_num_frames", "60", "--val_num_frames", "150",
                "--head", str(made["head"]), "--tail", str(made["tail"]), "--seed", str(args.seed),
                "--root_log", str(out / "log"), "--root_model", str(out / "model"), "--store_name", f"s{args.seed}",
                *flags]
    module.main()


_GROUPS = re.compile(r"Overall mAP = ([\d.]+) \| Head = ([\d.naN]+) \| Medium = ([\d.naN]+) \| Tail = ([\d.naN]+)")


def _theirs_metrics(log: Path) -> dict | None:
    """The best `Test Epoch` of their log (base_main.py:149-153 keeps the best mAP), with its group mAPs."""
    return best_logged_test(log, _GROUPS, E2E["epochs"] // E2E["eval_every"])


def collect(made: dict, out: Path, method: str, seeds: list[int]) -> None:
    from videolt.train import rundir

    rows: dict[str, dict[int, dict]] = {"theirs": {}, "ours": {}}
    for seed in seeds:
        theirs = _theirs_metrics(out / f"theirs_s{seed}.log")
        if theirs:
            rows["theirs"][seed] = theirs
        run_dir = Path(made["workdir"]) / "runs" / f"{method}_s{seed}"
        if runfiles.metrics_path(run_dir).is_file():
            epoch = int(rundir.load_checkpoint(rundir.checkpoint_path(run_dir, "best"))["epoch"]) + 1
            rows["ours"][seed] = {**json.loads(runfiles.metrics_path(run_dir).read_text()), "epoch": epoch}
    print(f"{method}; set {E2E_SET}; head > {made['head']}, tail <= {made['tail']}; recipe {E2E}\n")
    print_runs(rows, seeds)


if __name__ == "__main__":
    main()
