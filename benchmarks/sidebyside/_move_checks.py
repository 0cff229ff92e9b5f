"""The component, sampling and lockstep comparisons of `move.py` (see its docstring): MOVE's code and videolt's
on the same weights, inputs and random numbers."""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import import_from, make_set
from _move import (
    COUNTS,
    E2E,
    E2E_SET,
    LABELS,
    WEIGHT_MAP,
    RecordedCalls,
    RecordedRandom,
    ReplayedDraws,
    copy_weights,
    grads_as_ours,
    load_theirs,
    lt_meters,
    max_diff,
    sampling_prob_and_smooth,
    sized_classes,
    their_args,
    their_modules,
    their_views,
)


def _their_setup(work: Path) -> tuple[dict, object, object, object, list[str], torch.Tensor]:
    """Their modules, MOVE.py, its sampling probabilities and smoothing for COUNTS (60 frames), and the
    checks' labels as their comma-separated strings and as a multi-hot matrix."""
    their = load_theirs(work)
    (move_module,) = import_from(work, "MOVE")
    with tempfile.TemporaryDirectory() as tmp:
        prob, smooth = sampling_prob_and_smooth(move_module, Path(tmp), COUNTS, frames=60, lb=3.0, calib_bias=0.5)
    labels = [",".join(map(str, row)) for row in LABELS]
    y = torch.zeros(len(LABELS), len(COUNTS))
    for i, row in enumerate(LABELS):
        y[i, row] = 1.0
    return their, move_module, prob, smooth, labels, y


def components(work: Path, args: argparse.Namespace) -> None:
    from videolt.train.aggregators import create_aggregator
    from videolt.train.losses import create_loss
    from videolt.train.mixes.vicinity import VicinityDraws, calibration_factors, vicinity_expand

    their, move_module, prob, smooth, labels, y = _their_setup(work)
    models, augment = their["models"], their["Augment"]
    d, c, b, t = 2048, len(COUNTS), len(LABELS), 60
    rows: list[tuple[str, str]] = []

    torch.manual_seed(1)
    mods = their_modules(their, d, c)
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
            diffs += [max_diff(e, e_ours), max_diff(mods["cls"](e)[1], ours.head(e_ours))]
    rows.append(("evaluation, T = 150 and T = 60: embeddings [B, 1, E] and logits", f"{max(diffs):.2g}"))

    for module in (*mods.values(), ours):
        module.train()
    recorder = RecordedRandom()
    models.random = recorder  # their models.py draws through this (it records and passes on)
    x = torch.randn(b, t, d)
    random.seed(7)
    torch.manual_seed(11)
    views = their_views(mods, x, prob, labels)
    ours.draws = ReplayedDraws(recorder.draws, b, t)
    torch.manual_seed(11)
    views_ours = ours.embed(x, y)
    rows.append(("training: the two views [B, 2, E]", f"{max_diff(views, views_ours):.2g}"))
    projection = torch.randn(views.shape, generator=torch.Generator().manual_seed(3))
    (views * projection).sum().backward()
    (views_ours * projection).sum().backward()
    theirs_grads, ours_grads = grads_as_ours(mods), dict(ours.named_parameters())
    scale = max(float(g.abs().max()) for g in theirs_grads.values())
    rel = max(max_diff(g, ours_grads[k].grad) for k, g in theirs_grads.items()) / scale
    rows.append(("training: parameter gradients (of a fixed random projection of the views), relative to max grad",
                 f"{rel:.2g}"))
    bn = [(mods["vlad"].bn1, ours.input_bn), (mods["vlad"].vlad.bn1, ours.assign_bn), (mods["vlad"].bn2, ours.project_bn)]
    rows.append(("training: BatchNorm running statistics (input, cluster, hidden)",
                 f"{max(max(max_diff(a.running_mean, o.running_mean), max_diff(a.running_var, o.running_var)) for a, o in bn):.2g}"))
    no_grad = sorted(f"{p}.{k}" for p in ("MHA", "vlad") for k, q in mods[p].named_parameters() if q.grad is None)
    rows.append(("their aggregators' parameters without a gradient in training", ", ".join(no_grad) or "none"))

    torch.manual_seed(1)
    plain = their_modules(their, d, c, dynamic=False)
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
        diffs.append(max_diff(e, ours_none.embed(x, y)))
    rows.append(("`sampling: none` vs their base_main_Agg.py aggregators (NetVLADModel_Aggregator, "
                 "MultiHeadAttention_Aggregator), evaluation and training", f"{max(diffs):.2g}"))
    factors = calibration_factors(COUNTS, 0.5)
    rows.append(("their smooth_factor (MOVE.py:82-84) vs our calibration_factors",
                 "0 (torch.equal)" if torch.equal(smooth, factors) else f"{max_diff(smooth, factors):.2g}"))

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
    mods = their_modules(their, 2048, len(COUNTS))
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
    views = their_views(mods, x, prob, labels)
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
    grad_rel = max(max_diff(g, ours_params[k].grad) for k, g in theirs_grads.items()) / scale
    opt_ours.step()
    state = {f"{p}.{k}": v for p, m in mods.items() for k, v in m.named_parameters()}
    after = max(max_diff(v, ours_params[WEIGHT_MAP[k]]) for k, v in state.items() if WEIGHT_MAP.get(k) in ours_params)
    return [("one whole training step (both aggregators, expansion, classifier, BCE, backward, Adam step), their "
             f"draws replayed: logits (losses {loss.item():.6f} / {loss_ours.item():.6f})", f"{max_diff(logits, logits_ours):.2g}"),
            ("same step: gradients relative to max grad; parameters after the Adam step", f"{grad_rel:.2g}; {after:.2g}")]



def sampling(work: Path, args: argparse.Namespace) -> None:
    from scipy.stats import chi2_contingency, ks_2samp

    from videolt.train.aggregators import create_aggregator
    from videolt.train.aggregators._frame_sampling import DRAW_ROLES, RandomFrameDraws
    from videolt.train.mixes.vicinity import VicinityExpansion

    their, move_module, prob, _, labels, y = _their_setup(work)
    d, c, b, t = 8, len(COUNTS), len(LABELS), 60  # the draws do not depend on the feature size
    mods = their_modules(their, d, c)
    recorder = RecordedRandom()
    their["models"].random = recorder
    random.seed(2021)
    theirs = np.zeros((args.forwards, len(DRAW_ROLES), b, t), dtype=bool)
    with torch.no_grad():
        for k in range(args.forwards):
            recorder.clear()
            their_views(mods, torch.randn(b, t, d), prob, labels)
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
    opts = move_module.parser.parse_args(their_args(made, args.seed, args.lr, out))
    opts.lc_list, opts.train_list, opts.val_list = dutils.get_label_path()
    move_module.args = opts
    move_module.setup_seed(args.seed)
    train_loader, val_loader, prob, smooth = move_module.load_data(E2E_SET["num_classes"], made["npy"])
    criterion = their["losses"].BCELoss(opts, logits=True, reduce="mean")
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
        move_module.adjust_learning_rate(optimizer, epoch, opts.lr_type, opts.lr_steps)
        for module in (*mods.values(), ours):
            module.train()
        for _, feature, target, _, label in train_loader:
            recorder.clear()
            beta.calls["beta"].clear()
            perm.calls["randperm"].clear()
            target = target.float()
            views = their_views(mods, feature, prob, label)  # MOVE.py:214-219
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
            logit_diff = max(logit_diff, max_diff(output, logits))
            step += 1
            if args.diag:
                theirs_params = {f"{p}.{k}": v for p, m in mods.items() for k, v in m.named_parameters()}
                mine = dict(ours.named_parameters())
                worst = max((max_diff(v, mine[WEIGHT_MAP[k]]), WEIGHT_MAP[k]) for k, v in theirs_params.items()
                            if WEIGHT_MAP.get(k) in mine)
                print(f"step {step}: loss {loss.item():.6f} / {ours_loss.item():.6f}, largest parameter difference "
                      f"{worst[0]:.2g} ({worst[1]})", flush=True)
        if (epoch + 1) % E2E["eval_every"] == 0 or epoch == E2E["epochs"] - 1:
            with open(os.devnull, "w") as null:  # their validate prints its meters
                stdout, sys.stdout = sys.stdout, null
                try:
                    _, _, their_map = move_module.validate(val_loader, mods["cls"], mods["vlad"], epoch, None,
                                                           move_module.utils.get_indices(
                                                               opts.lc_list, head=made["head"],
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
