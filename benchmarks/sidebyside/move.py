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
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from _common import PYTHON, add_source_args, best_test, checkout, import_from, make_set, print_runs, run_videolt
from _move import (
    MOVE,
    RecordedCalls,
    RecordedRandom,
    ReplayedDraws,
    copy_weights,
    grads_as_ours,
    load_theirs,
    lt_meters,
    sampling_prob_and_smooth,
    sized_classes,
)

# The components' class counts and clip labels (label 0 is the most frequent class, 8 and 9 the rarest).
COUNTS = np.array([175, 66, 31, 22, 16, 12, 9, 7, 5, 4])
LABELS = [[0, 1], [2], [1], [9], [0], [5, 7]]
# The end-to-end set and recipe of benchmarks/RESULTS.md ("End to end on a synthetic ... 2048-d set").
E2E_SET = dict(num_classes=20, videos=(600, 100, 300), dim=2048, frames=150, seed=0, signal=0.04)
E2E = dict(epochs=12, batch=16, eval_every=4, clusters=16, hidden=256, key_dim=128, lb=3.0, calib_bias=0.5)
# --smoke: the same code paths in seconds (their classes still take 2048-d features).
SMOKE_SET = dict(num_classes=6, videos=(48, 12, 24), signal=1.0)
SMOKE = dict(epochs=2, batch=8, eval_every=1, clusters=2, hidden=16, key_dim=8)


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


# ---- components --------------------------------------------------------------------------------------


def _their_modules(their: dict, d: int, c: int, *, dynamic: bool = True) -> dict[str, torch.nn.Module]:
    m = their["models"]
    if dynamic:
        return {"MHA": m.MultiHeadAttention_Dynamic_Aggregator(n_head=4, d_model=d, d_k=512, d_v=512, dropout=0.1),
                "vlad": m.NetVLAD_Dynamic_Aggregator(d, c), "cls": m.NonlinearClassifier(d + 1024, c)}
    return {"MHA": m.MultiHeadAttention_Aggregator(n_head=4, d_model=d, d_k=512, d_v=512, dropout=0.1),
            "vlad": m.NetVLADModel_Aggregator(d, c), "cls": m.NonlinearClassifier(d + 1024, c)}


def _their_views(mods: dict, x: torch.Tensor, prob: np.ndarray, labels: list[str]) -> torch.Tensor:
    """MOVE.py:214-219: the two views [B, 2, E] of a training batch (attention first)."""
    v1, v2 = mods["vlad"](x, prob, label=labels, train=True)
    q, _ = mods["MHA"](x, x, x, prob, label=labels, train=True)
    return torch.stack([torch.cat([q[:, 0], v1], dim=1), torch.cat([q[:, 1], v2], dim=1)], dim=1)


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def components(work: Path, args: argparse.Namespace) -> None:
    from videolt.train.aggregators import create_aggregator
    from videolt.train.losses import create_loss
    from videolt.train.mixes.vicinity import VicinityDraws, calibration_factors, vicinity_expand

    their = load_theirs(work)
    (move_module,) = import_from(work, "MOVE")
    models, augment = their["models"], their["Augment"]
    d, c, b, t = 2048, len(COUNTS), len(LABELS), 60
    with tempfile.TemporaryDirectory() as tmp:
        prob, smooth = sampling_prob_and_smooth(move_module, Path(tmp), COUNTS, frames=t, lb=3.0, calib_bias=0.5)
    labels = [",".join(map(str, row)) for row in LABELS]
    y = torch.zeros(b, c)
    for i, row in enumerate(LABELS):
        y[i, row] = 1.0
    rows: list[tuple[str, str]] = []

    torch.manual_seed(1)
    mods = _their_modules(their, d, c)
    ours = create_aggregator("move", d, c, class_counts=COUNTS, seed=0)
    copy_weights(mods, ours)
    for module in (*mods.values(), ours):
        module.eval()
    diffs = []
    with torch.no_grad():
        for frames in (150, 60):
            x = torch.randn(b, frames, d)
            e = torch.cat([mods["MHA"](x, x, x, train=False)[0], mods["vlad"](x, train=False)[:, None]], dim=2)
            e_ours = ours.embed(x)
            diffs += [_max(e, e_ours), _max(mods["cls"](e)[1], ours.head(e_ours))]
    rows.append(("evaluation, T = 150 and T = 60: embeddings [B, 1, E] and logits", f"{max(diffs):.2g}"))

    for module in (*mods.values(), ours):
        module.train()
    recorder = RecordedRandom()
    models.random = recorder  # their models.py draws through this (it records and passes on)
    x = torch.randn(b, t, d)
    random.seed(7)
    torch.manual_seed(11)
    views = _their_views(mods, x, prob, labels)
    ours.draws = ReplayedDraws(recorder.draws, b, t)
    torch.manual_seed(11)
    views_ours = ours.embed(x, y)
    rows.append(("training: the two views [B, 2, E]", f"{_max(views, views_ours):.2g}"))
    projection = torch.randn(views.shape, generator=torch.Generator().manual_seed(3))
    (views * projection).sum().backward()
    (views_ours * projection).sum().backward()
    theirs_grads, ours_grads = grads_as_ours(mods), dict(ours.named_parameters())
    scale = max(float(g.abs().max()) for g in theirs_grads.values())
    rel = max(_max(g, ours_grads[k].grad) for k, g in theirs_grads.items()) / scale
    rows.append(("training: parameter gradients (of a fixed random projection of the views), relative to max grad",
                 f"{rel:.2g}"))
    bn = [(mods["vlad"].bn1, ours.input_bn), (mods["vlad"].vlad.bn1, ours.assign_bn), (mods["vlad"].bn2, ours.project_bn)]
    rows.append(("training: BatchNorm running statistics (input, cluster, hidden)",
                 f"{max(max(_max(a.running_mean, o.running_mean), _max(a.running_var, o.running_var)) for a, o in bn):.2g}"))
    no_grad = sorted(f"{p}.{k}" for p in ("MHA", "vlad") for k, q in mods[p].named_parameters() if q.grad is None)
    rows.append(("their aggregators' parameters without a gradient in training", ", ".join(no_grad) or "none"))

    torch.manual_seed(1)
    plain = _their_modules(their, d, c, dynamic=False)
    ours_none = create_aggregator("move", d, c, class_counts=COUNTS, seed=0, sampling="none")
    copy_weights(plain, ours_none)
    diffs = []
    for mode in (False, True):
        for module in (*plain.values(), ours_none):
            module.train(mode)
        x = torch.randn(b, t, d)
        torch.manual_seed(5)
        e = torch.cat([plain["MHA"](x, x, x)[0], plain["vlad"](x)[:, None]], dim=2)
        torch.manual_seed(5)
        diffs.append(_max(e, ours_none.embed(x, y)))
    rows.append(("`sampling: none` vs their base_main_Agg.py aggregators (NetVLADModel_Aggregator, "
                 "MultiHeadAttention_Aggregator), evaluation and training", f"{max(diffs):.2g}"))
    factors = calibration_factors(COUNTS, 0.5)
    rows.append(("their smooth_factor (MOVE.py:82-84) vs our calibration_factors",
                 "0 (torch.equal)" if torch.equal(smooth, factors) else f"{_max(smooth, factors):.2g}"))

    equal = True
    for s in range(20):
        g = torch.Generator().manual_seed(100 + s)
        e1, e2 = torch.randn(b, 3072, generator=g), torch.randn(b, 3072, generator=g)
        yy = (torch.rand(b, c, generator=g) < 0.3).float()
        np.random.seed(s)
        torch.manual_seed(s)
        mixed, mixed_y = augment.calibrated_interpolation(*(2 * [augment.dynamic_extrapolation(e1, e2)]), yy, smooth)
        np.random.seed(s)
        lam, gamma = np.random.beta(2.0, 2.0) + 1, np.random.beta(1.0, 1.0)
        torch.manual_seed(s)
        draws = VicinityDraws(float(lam), float(gamma), torch.randperm(b))
        ours_e, ours_y = vicinity_expand(torch.stack([e1, e2], dim=1), yy, factors, draws)
        equal &= torch.equal(mixed, ours_e) and torch.equal(mixed_y, ours_y)
    rows.append(("expansion (dynamic_extrapolation + calibrated_interpolation) on 20 fixed batches of embeddings and "
                 "labels, their λ, γ, π injected into ours", "0 (torch.equal)" if equal else "DIFFERENT"))

    rows += _training_step(their, mods, ours, prob, labels, y, smooth, create_loss, vicinity_expand, VicinityDraws,
                           factors)
    print(f"| check (D = {d}, C = {c}, B = {b}, T = {t} in training) | max abs difference |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def _training_step(their, mods, ours, prob, labels, y, smooth, create_loss, vicinity_expand, VicinityDraws,
                   factors) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """One whole step of each, from the same weights, on the same batch and draws (MOVE.py:214-244)."""
    torch.manual_seed(1)
    mods = _their_modules(their, 2048, len(COUNTS))
    copy_weights(mods, ours)
    ours.zero_grad(set_to_none=True)
    for module in (*mods.values(), ours):
        module.train()
    criterion = their["losses"].BCELoss(argparse.Namespace(), logits=True, reduce="mean")
    params = [p for m in mods.values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    opt_ours = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=1e-4)
    recorder = their["models"].random
    recorder.clear()
    x = torch.randn(len(labels), 60, 2048)
    random.seed(8)
    np.random.seed(8)
    torch.manual_seed(12)
    views = _their_views(mods, x, prob, labels)
    extra = their["Augment"].dynamic_extrapolation(views[:, 0], views[:, 1])
    intra, mixed_y = their["Augment"].calibrated_interpolation(extra, extra, y, smooth)
    _, logits = mods["cls"](intra)
    loss = criterion(logits, mixed_y)
    loss.backward()
    opt.step()

    ours.draws = ReplayedDraws(recorder.draws, len(labels), 60)
    np.random.seed(8)
    torch.manual_seed(12)
    e = ours.embed(x, y)
    lam, gamma = np.random.beta(2.0, 2.0) + 1, np.random.beta(1.0, 1.0)
    draws = VicinityDraws(float(lam), float(gamma), torch.randperm(len(labels)))  # the torch stream theirs used
    e, y_ours = vicinity_expand(e, y, factors, draws)
    logits_ours = ours.head(e)
    loss_ours = create_loss("bce", COUNTS)(logits_ours, y_ours)
    loss_ours.backward()
    theirs_grads, ours_params = grads_as_ours(mods), dict(ours.named_parameters())
    scale = max(float(g.abs().max()) for g in theirs_grads.values())
    grad_rel = max(_max(g, ours_params[k].grad) for k, g in theirs_grads.items()) / scale
    opt_ours.step()
    state = {f"{p}.{k}": v for p, m in mods.items() for k, v in m.named_parameters()}
    from _move import WEIGHT_MAP
    after = max(_max(v, ours_params[WEIGHT_MAP[k]]) for k, v in state.items() if WEIGHT_MAP.get(k) in ours_params)
    return [("one whole training step (both aggregators, expansion, classifier, BCE, backward, Adam step), their "
             f"draws replayed: logits (losses {loss.item():.6f} / {loss_ours.item():.6f})", f"{_max(logits, logits_ours):.2g}"),
            ("same step: gradients relative to max grad; parameters after the Adam step", f"{grad_rel:.2g}; {after:.2g}")]


# ---- sampling statistics -------------------------------------------------------------------------------


def sampling(work: Path, args: argparse.Namespace) -> None:
    from scipy.stats import chi2_contingency, ks_2samp

    from videolt.train.aggregators import create_aggregator
    from videolt.train.aggregators._frame_sampling import DRAW_ROLES, RandomFrameDraws
    from videolt.train.mixes.vicinity import VicinityExpansion

    their = load_theirs(work)
    (move_module,) = import_from(work, "MOVE")
    d, c, b, t = 8, len(COUNTS), len(LABELS), 60  # the draws do not depend on the feature size
    with tempfile.TemporaryDirectory() as tmp:
        prob, _ = sampling_prob_and_smooth(move_module, Path(tmp), COUNTS, frames=t, lb=3.0, calib_bias=0.5)
    labels = [",".join(map(str, row)) for row in LABELS]
    y = torch.zeros(b, c)
    for i, row in enumerate(LABELS):
        y[i, row] = 1.0
    mods = _their_modules(their, d, c)
    recorder = RecordedRandom()
    their["models"].random = recorder
    random.seed(2021)
    theirs = np.zeros((args.forwards, len(DRAW_ROLES), b, t), dtype=bool)
    with torch.no_grad():
        for k in range(args.forwards):
            recorder.clear()
            _their_views(mods, torch.randn(b, t, d), prob, labels)
            replay = ReplayedDraws(recorder.draws, b, t)
            for r, role in enumerate(DRAW_ROLES):
                theirs[k, r] = replay.masks[role].numpy()
    lower_theirs = recorder.bounds[0:2 * b:2]  # the bound each clip's first NetVLAD view got (models.py:59)

    ours = create_aggregator("move", d, c, class_counts=COUNTS, seed=2021)
    record: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    random_draws = RandomFrameDraws(ours.generator)

    def recording(role: str, lower: torch.Tensor, frames: int) -> torch.Tensor:
        mask = random_draws(role, lower, frames)
        record.append((role, lower.clone(), mask))
        return mask

    ours.draws = recording
    ours.train()
    mine = np.zeros_like(theirs)
    with torch.no_grad():
        for k in range(args.forwards):
            record.clear()
            ours.embed(torch.randn(b, t, d), y)
            for role, _, mask in record:
                mine[k, DRAW_ROLES.index(role)] = mask.numpy()
    lower_ours = record[0][1].tolist()

    p_sizes, p_frames = [], []
    for i in range(b):
        for r in range(len(DRAW_ROLES)):
            if lower_ours[i] == t:
                continue  # every frame kept: nothing random to compare
            n_t, n_o = theirs[:, r, i].sum(1), mine[:, r, i].sum(1)
            values = sorted(set(n_t) | set(n_o))
            p_sizes.append(chi2_contingency([[np.sum(n_t == v) for v in values],
                                             [np.sum(n_o == v) for v in values]])[1])
            p_frames.append(chi2_contingency([theirs[:, r, i].sum(0), mine[:, r, i].sum(0)])[1])
    tail = LABELS.index([9])
    print(f"{args.forwards} training forwards each; labels {LABELS}, class counts {COUNTS.tolist()}")
    print(f"lower bounds: theirs {lower_theirs}, ours {lower_ours}")
    print(f"kept-frame counts, {len(p_sizes)} chi-square tests of homogeneity (clip × draw role): smallest p "
          f"{min(p_sizes):.3f}")
    print(f"per-frame inclusion, {len(p_frames)} tests: smallest p {min(p_frames):.3f}")
    print(f"mean kept frames of the tail clip {LABELS[tail]} (NetVLAD view 1): ours {mine[:, 0, tail].sum(1).mean():.2f}, "
          f"theirs {theirs[:, 0, tail].sum(1).mean():.2f} (uniform on [{lower_ours[tail]}, {t}]: "
          f"{(lower_ours[tail] + t) / 2:.2f})")

    augment = their["Augment"]
    beta = RecordedCalls(np.random, "beta")
    augment.np = RecordedCalls(np, ndarray=np.ndarray, random=beta)
    augment.torch = perm = RecordedCalls(torch, "randperm")
    np.random.seed(2021)
    torch.manual_seed(2021)
    e, yy = torch.zeros(b, 1), torch.zeros(b, c)
    for _ in range(args.batches):  # Augment.py:72, 79-80: λ, then γ and π
        extrapolated = augment.dynamic_extrapolation(e, e)
        augment.calibrated_interpolation(extrapolated, extrapolated, yy, torch.ones(c))
    lam_t, gam_t = np.array(beta.calls["beta"][0::2]) + 1, np.array(beta.calls["beta"][1::2])
    perm_t = np.zeros((b, b))
    for p in perm.calls["randperm"]:
        perm_t[np.arange(b), p.numpy()] += 1
    expansion = VicinityExpansion(COUNTS, 2021)
    lam_o, gam_o, perm_o = [], [], np.zeros((b, b))
    for _ in range(args.batches):
        draws = expansion.draw(b)
        lam_o.append(draws.lam)
        gam_o.append(draws.gamma)
        perm_o[np.arange(b), draws.perm.numpy()] += 1
    n = args.batches
    print(f"expansion draws, {n} batches each: λ mean {np.mean(lam_o):.4f} / var {np.var(lam_o):.4f} ours vs "
          f"{lam_t.mean():.4f} / {lam_t.var():.4f} theirs (KS p {ks_2samp(lam_o, lam_t).pvalue:.2f}); γ mean "
          f"{np.mean(gam_o):.4f} / var {np.var(gam_o):.4f} vs {gam_t.mean():.4f} / {gam_t.var():.4f} "
          f"(KS p {ks_2samp(gam_o, gam_t).pvalue:.2f}); P(π(i) = j) in [{perm_o.min() / n:.3f}, {perm_o.max() / n:.3f}] "
          f"vs [{perm_t.min() / n:.3f}, {perm_t.max() / n:.3f}] (1/{b})")


# ---- end to end ------------------------------------------------------------------------------------------


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
        if args.only != "theirs" and not (Path(made["workdir"]) / "runs" / run / "metrics.json").is_file():
            tic = time.time()
            run_dir = Path(made["workdir"]) / "runs" / run
            if run_dir.exists():  # a run killed before it finished: start it again
                import shutil

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


def _their_args(made: dict, seed: int, lr: float, out: Path) -> list[str]:
    """Their MOVE.py flags for the same recipe (scripts/MOVE.sh, shrunk as in benchmarks/RESULTS.md)."""
    return ["--feature_name", "ResNet101", "--num_class", str(E2E_SET["num_classes"]), "--lr", str(lr),
            "--lr_steps", "30", "60", "--epochs", str(E2E["epochs"]), "-b", str(E2E["batch"]), "-j", "0",
            "--eval-freq", str(E2E["eval_every"]), "--model_name", "NonlinearClassifier", "--train_num_frames", "60",
            "--val_num_frames", "150", "--loss_func", "BCELoss", "--lb", str(E2E["lb"]),
            "--calib_bias", str(E2E["calib_bias"]), "--head", str(made["head"]), "--tail", str(made["tail"]),
            "--seed", str(seed), "--root_log", str(out / "log"), "--root_model", str(out / "model"),
            "--store_name", f"s{seed}", "--print-freq", "100000"]


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
    sys.argv = ["MOVE.py", *_their_args(made, args.seed, args.lr, out)]
    move_module.main()


_TEST = re.compile(r"Test Epoch (\d+): Acc@1: ([\d.]+) \| Acc@5: ([\d.]+) \| mAP: ([\d.]+)")
_GROUPS = re.compile(r"Overall, Head, Medium, Tail mAP, Acc@1, 5 = ([\d.]+) ([\d.naN]+) ([\d.naN]+) ([\d.naN]+)")


def _theirs_metrics(out: Path) -> dict | None:
    """The best `Test Epoch` of their log (MOVE.py:172-191 keeps the best mAP), with its group mAPs."""
    log = out.parent / f"{out.name}.log"
    if not log.is_file():
        return None
    text = log.read_text()
    tests, groups = _TEST.findall(text), _GROUPS.findall(text)
    if len(tests) < E2E["epochs"] // E2E["eval_every"] or len(groups) != len(tests):
        return None
    return best_test(tests, groups)


def collect(mapmeter: object, made: dict, out: Path, seeds: list[int], lr: float) -> None:
    """Per-seed table, mean ± std and Welch's p, and their mAPMeter on our saved test scores."""
    rows: dict[str, dict[int, dict]] = {"theirs": {}, "ours": {}}
    for seed in seeds:
        theirs = _theirs_metrics(out / f"theirs_s{seed}")
        run_dir = Path(made["workdir"]) / "runs" / f"move_lr{lr:g}_s{seed}"
        if theirs:
            rows["theirs"][seed] = theirs
        if (run_dir / "metrics.json").is_file():
            rows["ours"][seed] = {**json.loads((run_dir / "metrics.json").read_text()), "epoch": _best_epoch(run_dir)}
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
        scores, rows = np.load(run_dir / "scores_test.npy"), np.load(run_dir / "rows_test.npy")
        meter = mapmeter.mAPMeter()
        meter.add(torch.from_numpy(scores), torch.from_numpy(multi_hot([by_index[r] for r in rows],
                                                                        scores.shape[1])).long())
        ours = json.loads((run_dir / "metrics.json").read_text())["overall_map"]
        print(f"their mAPMeter on our seed-{seed} test scores: {float(meter.avg()):.6f} (ours {ours:.6f})")



# ---- lockstep ------------------------------------------------------------------------------------------------


def lockstep(work: Path, args: argparse.Namespace) -> None:
    """Both codes trained together on one set of random streams (see the module docstring)."""
    from videolt.data.workdir import Workdir
    from videolt.evaluate.metrics import summarize
    from videolt.train.aggregators import create_aggregator
    from videolt.train.losses import create_loss
    from videolt.train.mixes.vicinity import VicinityDraws, calibration_factors, vicinity_expand

    made = make_set(args.work / "set", features="r2048", **E2E_SET)
    their = load_theirs(work)
    (move_module,) = import_from(work, "MOVE")
    models, augment = their["models"], their["Augment"]
    dutils = sys.modules["dataset.dutils"]
    dutils.path_dict["ResNet101"], dutils.ROOT = made["npy"], made["labels"]
    out = args.work / f"lr{args.lr:g}" / f"lockstep_s{args.seed}"
    their_args = move_module.parser.parse_args(_their_args(made, args.seed, args.lr, out))
    their_args.lc_list, their_args.train_list, their_args.val_list = dutils.get_label_path()
    move_module.args = their_args
    move_module.setup_seed(args.seed)
    train_loader, val_loader, prob, smooth = move_module.load_data(E2E_SET["num_classes"], made["npy"])
    criterion = their["losses"].BCELoss(their_args, logits=True, reduce="mean")
    sized = sized_classes(models, clusters=E2E["clusters"], hidden=E2E["hidden"], key_dim=E2E["key_dim"])
    c = E2E_SET["num_classes"]
    mods = {"cls": sized["NonlinearClassifier"](3072, c), "vlad": sized["NetVLAD_Dynamic_Aggregator"](2048, c),
            "MHA": sized["MultiHeadAttention_Dynamic_Aggregator"](n_head=4, d_model=2048, d_k=512, d_v=512,
                                                                   dropout=0.1)}  # MOVE.py:115-119 order
    params = [p for k in ("cls", "vlad") for p in mods[k].parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params + list(mods["MHA"].parameters()), lr=args.lr)  # MOVE.py:148-162

    labels = Workdir.open(made["workdir"]).labels()
    counts = np.asarray(labels.counts)
    ours = create_aggregator("move", 2048, c, class_counts=counts, seed=args.seed, clusters=E2E["clusters"],
                             hidden=E2E["hidden"], key_dim=E2E["key_dim"])
    copy_weights(mods, ours)
    ours_opt = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=args.lr)
    factors, bce = calibration_factors(counts, E2E["calib_bias"]), create_loss("bce", counts)
    groups = labels.groups(made["head"], made["tail"])

    recorder, beta, perm = RecordedRandom(), RecordedCalls(np.random, "beta"), RecordedCalls(torch, "randperm")
    models.random = recorder
    augment.np, augment.torch = RecordedCalls(np, ndarray=np.ndarray, random=beta), perm
    states: dict[str, torch.Tensor] = {}
    mods["MHA"].register_forward_pre_hook(lambda m, a: states.__setitem__("attention", torch.get_rng_state()))
    mods["cls"].register_forward_pre_hook(lambda m, a: states.__setitem__("classifier", torch.get_rng_state()))
    move_module.criterion, move_module.tf_writer = criterion, None
    move_module.LTAverageMeter, move_module.LTconfMeter = lt_meters(c)
    logit_diff, step = 0.0, 0
    for epoch in range(E2E["epochs"]):
        move_module.adjust_learning_rate(optimizer, epoch, their_args.lr_type, their_args.lr_steps)
        for module in (*mods.values(), ours):
            module.train()
        for _, feature, target, _, label in train_loader:
            recorder.clear()
            beta.calls["beta"].clear()
            perm.calls["randperm"].clear()
            target = target.float()
            views = _their_views(mods, feature, prob, label)  # MOVE.py:214-219
            extra = augment.dynamic_extrapolation(views[:, 0], views[:, 1])  # 222-223
            intra, mixed = augment.calibrated_interpolation(extra, extra, target, smooth)
            _, output = mods["cls"](intra)  # 225-227
            loss = criterion(output, mixed)
            loss.backward()  # 239-244
            optimizer.step()
            optimizer.zero_grad()
            after = torch.get_rng_state()

            ours.draws = ReplayedDraws(recorder.draws, len(label), feature.shape[1])
            torch.set_rng_state(states["attention"])
            e = ours.embed(feature, target)
            draws = VicinityDraws(float(beta.calls["beta"][0]) + 1, float(beta.calls["beta"][1]),
                                  perm.calls["randperm"][0])
            e, y = vicinity_expand(e, target, factors, draws)
            torch.set_rng_state(states["classifier"])
            logits = ours.head(e)
            ours_loss = bce(logits, y)
            ours_opt.zero_grad()
            ours_loss.backward()
            ours_opt.step()
            torch.set_rng_state(after)
            logit_diff = max(logit_diff, _max(output, logits))
            step += 1
            if args.diag:
                theirs_params = {f"{p}.{k}": v for p, m in mods.items() for k, v in m.named_parameters()}
                mine = dict(ours.named_parameters())
                from _move import WEIGHT_MAP
                worst = max((_max(v, mine[WEIGHT_MAP[k]]), WEIGHT_MAP[k]) for k, v in theirs_params.items()
                            if WEIGHT_MAP.get(k) in mine)
                print(f"step {step}: loss {loss.item():.6f} / {ours_loss.item():.6f}, largest parameter difference "
                      f"{worst[0]:.2g} ({worst[1]})", flush=True)
        if (epoch + 1) % E2E["eval_every"] == 0 or epoch == E2E["epochs"] - 1:
            with open(os.devnull, "w") as null:  # their validate prints its meters
                stdout, sys.stdout = sys.stdout, null
                try:
                    _, _, their_map = move_module.validate(val_loader, mods["cls"], mods["vlad"], epoch, None,
                                                           move_module.utils.get_indices(
                                                               their_args.lc_list, head=made["head"],
                                                               tail=made["tail"]), mods["MHA"])
                finally:
                    sys.stdout = stdout
            ours.eval()
            scores, targets = [], []
            with torch.no_grad():
                for _, feature, target, _, _ in val_loader:
                    scores.append(torch.sigmoid(ours(feature)).numpy())
                    targets.append(target.numpy())
            ours_map = summarize(np.concatenate(scores), np.concatenate(targets), groups)["overall_map"]
            print(f"epoch {epoch + 1}: test mAP theirs {float(their_map):.4f} / ours {ours_map:.4f}; largest logit "
                  f"difference so far {logit_diff:.2g} over {step} steps", flush=True)



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
