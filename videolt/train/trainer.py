"""The training loop (docs/semantics.md §5–§6): one run = one `TrainConfig` → runs/<run>/ with checkpoints,
logs and metrics; a killed run resumes to exactly the result of an uninterrupted one.

Per epoch: the loss's schedule (DRW) and the batch mix are told the epoch, the epoch's order is
drawn (a shuffle, or the CBS/SRS sampler's draws and loss masks), clips are read a batch at a time,
the batch mix changes the clips before the aggregator and/or the clip embeddings after it (mixup,
FrameStack, ...), a mix that observes gets the sigmoid scores of the clean clips from a no-grad
forward in train mode after the loss and before the backward pass (FrameStack's running AP), and
Adam steps with the gradient norm clipped. Every `eval_every` epochs and at the last one the model
is evaluated on the selection split (`select_on`, test by default as in the reference) and on the
other of test and val: `best.pt` is the epoch the selection split picks, `best_<other>.pt` the one
the other split picks, and the test metrics of both are reported side by side (the reference and
every published VideoLT number select on test; selecting on val is the honest protocol).
`last.pt` and the best checkpoints hold everything needed to resume.
Under torchrun every global batch is split between the ranks (`rank_share`), each rank's loss is
weighted by its share so that DDP's gradient average is the single-process mean over the global
batch, a batch mix's end of epoch sees the whole epoch gathered from all ranks, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from videolt import __version__
from videolt.config import to_dict
from videolt.data import runfiles
from videolt.data.integrity import require_consistent
from videolt.data.labels import LabelSet, multi_hot
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.devices import resolve_device
from videolt.errors import UsageError
from videolt.evaluate import metrics
from videolt.train import preflight, rundir
from videolt.train.cache import open_sources
from videolt.train.config import TrainConfig
from videolt.train.datasets import BatchLoader, FrameSource, TrainClips, chunks, rank_share, split_rows
from videolt.train.evaluation import evaluate_checkpoint, predict
from videolt.train.losses import LOSSES, create_loss
from videolt.train.memory import device_reserve
from videolt.train.methods import MethodSpec, resolve_method
from videolt.train.mixes import BatchMix, Gather, create_batch_mix
from videolt.train.model import Decoupled, autocast, build_model, resolve_amp
from videolt.train.samplers import create_sampler, sample_mask

__all__ = ["DistEnv", "rank_loss_weight", "run_train"]

log = logging.getLogger(__name__)

LOG_HEADER = ("epoch", "loss", "lr", "seconds", "clips_per_s", *metrics.METRIC_KEYS)
PROGRESS_EVERY = 50  # steps between reads of the running loss for the progress bar (each read waits for the GPU)


@dataclass(frozen=True)
class DistEnv:
    """torchrun's rank variables, read in this one place; world 1 without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistEnv":
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


@dataclass
class _Run:
    """Everything one training run holds while it runs."""

    config: TrainConfig
    env: DistEnv
    device: torch.device
    amp_dtype: torch.dtype | None
    labels: LabelSet
    store: FeatureStore
    sources: dict[str, FrameSource]  # split -> its cache, or the store (streaming)
    spec: MethodSpec  # the resolved method (`resolve_method`)
    train_rows: np.ndarray
    train_labels: list[tuple[int, ...]]
    train_targets: np.ndarray  # [N, C] multi-hot of the train list
    selection: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (store rows, targets): select_on first
    model: nn.Module
    net: nn.Module  # `model`, DDP-wrapped under torchrun
    loss: nn.Module
    sampler: object
    mix: BatchMix
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    scaler: torch.amp.GradScaler


def _setup(wd: Workdir, config: TrainConfig, env: DistEnv) -> _Run:
    device = resolve_device(config.device, env.local_rank)
    labels = wd.labels()
    store = FeatureStore.open(wd.features_path(config.features))
    with wd.manifest() as manifest:
        train_rows, train_labels = split_rows(manifest.videos(["train"]), store)
        selection = {config.select_on: split_rows(manifest.videos([config.select_on]), store)}
        other = _other_split(config.select_on)
        if any(_has_features(manifest.videos([other]), store)):
            selection[other] = split_rows(manifest.videos([other]), store)
    spec = resolve_method(config.method, config.method_opts, config.loss, config.loss_opts)
    loss_opts = dict(spec.loss_opts)
    if "seed" in LOSSES.options(spec.loss):
        loss_opts.setdefault("seed", config.seed)
    torch.manual_seed(config.seed)
    model = build_model(config.model, store.dim, labels.num_classes, config.model_opts, config.decouple,
                        class_counts=labels.counts, seed=config.seed)
    if config.init_from:
        state = rundir.load_checkpoint(rundir.checkpoint_path(wd.run_dir(config.init_from), "best"))["model"]
        (model.base if isinstance(model, Decoupled) else model).load_state_dict(state)
        if config.decouple == "crt":
            model.reset_classifier()
    model.to(device)
    net = model
    if env.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    amp_dtype = resolve_amp(config.amp, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = config.tf32
    return _Run(
        config=config, env=env, device=device, amp_dtype=amp_dtype, labels=labels, store=store,
        sources=_sources(config, env, store, model, device, amp_dtype, labels.num_classes, train_rows, selection),
        spec=spec, train_rows=train_rows, train_labels=train_labels,
        train_targets=multi_hot(train_labels, labels.num_classes),
        selection={split: (rows, multi_hot(row_labels, labels.num_classes)) for split, (rows, row_labels)
                   in selection.items()}, model=model, net=net,
        loss=create_loss(spec.loss, labels.counts, train_videos=len(labels.splits["train"]), **loss_opts).to(device),
        sampler=create_sampler(spec.sampler, train_labels, labels.num_classes, config.seed),
        mix=create_batch_mix(spec.batch_mix, labels.counts, config.seed, **spec.mix_opts),
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
    )


def _sources(config: TrainConfig, env: DistEnv, store: FeatureStore, model: nn.Module, device: torch.device,
             amp_dtype: torch.dtype | None, num_classes: int, train_rows: np.ndarray,
             selection: dict[str, tuple[np.ndarray, list]]) -> dict[str, FrameSource]:
    """Each split's cache or the store (`config.cache`); only rank 0 evaluates, so only it caches the
    evaluation splits. The GPU room the run needs besides is measured first (model, optimizer, one
    step's activations), plus what it keeps on the device: an epoch of clean-clip scores and targets
    for a running AP (float32 + bool) and an evaluation's scores (float32)."""
    splits = {"train": train_rows, **({split: rows for split, (rows, _) in selection.items()} if env.rank == 0 else {})}
    reserve = 0
    if config.cache != "stream":
        reserve = device_reserve(model, batch=-(-config.batch_size // env.world), clip_len=config.clip_len,
                                 frames=store.frames, dim=store.dim, num_classes=num_classes, device=device,
                                 amp_dtype=amp_dtype)
        reserve += num_classes * (5 * len(train_rows) + 4 * max(len(rows) for rows in splits.values()))
    return open_sources(store, splits, config.cache, device, reserve, agree=_all_ranks if env.world > 1 else None)


def _all_ranks(flag: bool) -> bool:
    """True when `flag` is true on every DDP rank."""
    flags: list = [None] * dist.get_world_size()
    dist.all_gather_object(flags, flag)
    return all(flags)


def _epoch_order(run: _Run, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions into the train list for this epoch, and the drawn class of each (resampling only)."""
    if run.sampler is not None:
        return run.sampler.epoch(epoch)
    return np.random.default_rng([run.config.seed, epoch]).permutation(len(run.train_rows)), None


def _train_epoch(run: _Run, epoch: int, progress: bool) -> tuple[float, int]:
    """One epoch; returns (mean loss over this rank's batches, clips seen by this rank)."""
    cfg, dev, mix = run.config, run.device, run.mix
    run.loss.set_epoch(epoch)
    mix.start_epoch(epoch)
    order, drawn = _epoch_order(run, epoch)
    dataset = TrainClips(run.sources["train"], run.train_rows, run.train_targets, order=order, clip_len=cfg.clip_len,
                         seed=cfg.seed, epoch=epoch)
    global_batches = chunks(len(order), cfg.batch_size)
    shares = [rank_share(b, run.env.rank, run.env.world) for b in global_batches]
    loader = BatchLoader(dataset, shares, workers=cfg.workers, pin_memory=dev.type == "cuda")
    run.net.train()
    # The loss is summed on the device and read every PROGRESS_EVERY steps (for the bar) and at the end:
    # a step waits for nothing on the GPU.
    total, seen, tic = torch.zeros((), dtype=torch.float64, device=dev), 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not progress, leave=False)
    for step, ((x, y, pos), batch) in enumerate(zip(bar, global_batches)):
        x = x.to(dev, non_blocking=True).float()  # [B, T, D]
        y = y.to(dev, non_blocking=True)  # [B, C]
        mask = None if drawn is None else sample_mask(y, torch.from_numpy(drawn[pos.numpy()]).to(dev, non_blocking=True))
        xin, yin = mix.mix_clips(x, y)

        def mix_embeddings(e: torch.Tensor) -> torch.Tensor:  # runs inside the forward, between embed and head
            nonlocal yin
            e, yin = mix.mix_embeddings(e, yin)
            return e

        with autocast(dev, run.amp_dtype):
            logits = run.net(xin, targets=yin, embedding_hook=mix_embeddings if mix.mixes_embeddings else None)
        loss = run.loss(logits.float(), yin, mask)
        if mix.observes:  # in fp32 whatever the training precision, like every evaluation
            with torch.no_grad():
                mix.observe(torch.sigmoid(run.model(x, targets=y).float()), y)
        run.optimizer.zero_grad(set_to_none=True)
        # An empty share (a last batch smaller than the world) still joins DDP's all-reduce, with zero gradients.
        weighted = loss * rank_loss_weight(len(x), len(batch), run.env.world) if len(x) else logits.sum()
        run.scaler.scale(weighted).backward()
        if cfg.clip_grad > 0:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if len(x):
            total += loss.detach().double() * len(x)
        seen += len(x)
        if progress and (step % PROGRESS_EVERY == 0 or step == len(loader) - 1):
            bar.set_postfix(loss=f"{total.item() / max(seen, 1):.4f}", clips_s=f"{seen / (time.perf_counter() - tic):.0f}")
    run.scheduler.step()
    mix.end_epoch(_epoch_gather(np.concatenate(shares), len(order)) if run.env.world > 1 else None)
    return total.item() / max(seen, 1), seen


def rank_loss_weight(n_share: int, n_batch: int, world: int) -> float:
    """The factor on a rank's batch-mean loss that makes DDP's gradient average the global batch mean.

    DDP averages the ranks' gradients, (1/world)·Σ_r mean_r; with unequal shares (the last batch)
    that over-weights the samples of the smaller shares. Scaling rank r's mean by n_r·world/n turns
    the average into (1/n)·Σ_i g_i, what one process computes on the whole batch.
    """
    return n_share * world / n_batch


def _epoch_gather(positions: np.ndarray, n: int) -> Gather:
    """Under DDP: this rank's per-sample rows (at epoch `positions`) → all ranks' rows in epoch order.

    A batch mix that learns from the epoch (FrameStack's running AP) then sees what one process
    would: the AP of one rank's shard alone differs, and the ranks must mix alike.
    """
    def gather(rows: np.ndarray) -> np.ndarray:
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (positions, rows))
        out = np.zeros((n, *rows.shape[1:]), dtype=rows.dtype)
        for rank_positions, rank_rows in parts:
            out[rank_positions] = rank_rows
        return out

    return gather


def _state(run: _Run, epoch: int, best: dict, log_rows: list) -> dict:
    """Everything a resumed run needs, as tensors and plain data (`rundir.load_checkpoint`)."""
    return {"epoch": epoch, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "loss": run.loss.state_dict(),
            "batch_mix": run.mix.state_dict(), "rng": rundir.capture_rng(), "best": best, "log": log_rows}


def _restore(run: _Run, state: dict) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.loss.load_state_dict(state["loss"])
    run.mix.load_state_dict(state["batch_mix"])
    rundir.restore_rng(state["rng"])


def _provenance(run: _Run) -> dict:
    return {"feature_set": {"name": run.config.features, "path": str(run.store.path), "attrs": run.store.attrs},
            "train_videos": int(len(run.train_rows)),
            "selection_videos": {split: int(len(rows)) for split, (rows, _) in run.selection.items()},
            "recipe": to_dict(run.spec),  # the resolved spec, under its historical key
            "versions": {"videolt": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "device": str(run.device), "world_size": run.env.world,
            "amp": str(run.amp_dtype).removeprefix("torch.") if run.amp_dtype else "off",
            "tf32": run.device.type == "cuda" and run.config.tf32, "evaluation_precision": "float32"}


def run_train(workdir: str | Path, run_name: str, config: TrainConfig, *, resume: bool = False,
              progress: bool = True, wait: bool = False) -> dict | None:
    """Train `run_name` on `workdir`'s feature set and return the selected checkpoint's test metrics.

    Under torchrun every rank trains its share; rank 0 writes the run and returns the metrics, the
    other ranks return None. How the run folder is taken up (a finished run returns its metrics and
    trains nothing; one that failed before its first checkpoint starts again) is `rundir.start`'s;
    one process holds the run at a time (`wait`: wait for the one holding it, else refuse).
    """
    env = DistEnv.from_env()
    with _process_group(config, env):
        return _hold_and_train(Workdir.open(workdir), run_name, config, env, resume=resume, progress=progress,
                               wait=wait)


@contextlib.contextmanager
def _process_group(config: TrainConfig, env: DistEnv) -> Iterator[None]:
    """Under torchrun: the process group (joined here unless the caller did), left after a last barrier
    once the run returned (an exception propagates without them)."""
    owns_group = env.world > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
        if torch.cuda.is_available() and config.device != "cpu":
            torch.cuda.set_device(env.local_rank)
    yield
    if env.world > 1:
        # The last collective holds no tensor Python has seen: gloo's workers release a finished
        # collective's tensors after waking its caller, and a release that needs the GIL while the
        # interpreter is shutting down aborts the process (as broadcast_object_list here did; benchmarks/RESULTS.md).
        dist.barrier()
    if owns_group:
        dist.destroy_process_group()


def _hold_and_train(wd: Workdir, run_name: str, config: TrainConfig, env: DistEnv, *, resume: bool, progress: bool,
                    wait: bool) -> dict | None:
    """Take up the run folder under its lock (rank 0), check the inputs, and train or resume."""
    run_dir = wd.run_dir(run_name)
    writer = env.rank == 0
    # Only rank 0 holds the run's lock: the other ranks are its workers.
    with wd.lock("videolt train", [wd.run_lock(run_name)], wait=wait) if writer else contextlib.nullcontext():
        how = rundir.start(run_dir, to_dict(config), resume=resume, writer=writer)
        if isinstance(how, dict):  # finished with this config: nothing to do twice
            log.info("%s: finished already; its metrics are in %s", run_name, runfiles.metrics_path(run_dir))
            return how if writer else None
        features = wd.features_path(config.features)
        require_consistent(wd, FeatureStore.open(features) if features.exists() else None)
        _preflight(wd, config, env)
        return _train(wd, run_name, config, env, resume=how == "resume", progress=progress)


def _train(wd: Workdir, run_name: str, config: TrainConfig, env: DistEnv, *, resume: bool,
           progress: bool) -> dict | None:
    """Train (or resume) the run in its folder; the selected checkpoint's test metrics on rank 0."""
    run_dir = wd.run_dir(run_name)
    last = rundir.checkpoint_path(run_dir, "last")
    run = _setup(wd, config, env)
    writer = env.rank == 0
    start, log_rows = 0, []
    best = {split: {"overall_map": -1.0, "epoch": -1} for split in run.selection}
    if resume:
        start, best, log_rows = _resume(run, last, run_name)
    if writer:  # on resume too: runtime fields (epochs, workers, ...) may have changed
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_json(runfiles.config_path(run_dir), {"config": to_dict(config), "provenance": _provenance(run)})
    header = (*LOG_HEADER, *(f"{split}_map" for split in list(run.selection)[1:]))
    for epoch in range(start, config.epochs):
        tic = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        loss, seen = _train_epoch(run, epoch, progress and writer)
        seconds = time.perf_counter() - tic
        final = epoch == config.epochs - 1
        if not writer:
            continue
        scores = _evaluate_epoch(run, run_dir, epoch, best, log_rows) if (
            (epoch + 1) % config.eval_every == 0 or final) else {}
        log_rows.append(_log_row(run, epoch, loss, lr, seconds, seen, scores))
        rundir.write_csv(runfiles.train_log_path(run_dir), header, log_rows)
        if (epoch + 1) % config.checkpoint_every == 0 or final:
            rundir.save_checkpoint(last, _state(run, epoch, best, log_rows))
    return evaluate_checkpoint(wd, run_name, split="test", checkpoint="best", sources=run.sources) if writer else None


def _resume(run: _Run, last: Path, run_name: str) -> tuple[int, dict, list]:
    """Restore `last.pt` into the run; (first epoch to train, best so far, log rows so far)."""
    state = rundir.load_checkpoint(last)
    _restore(run, state)
    log.info("resuming %s after epoch %d", run_name, state["epoch"])
    return state["epoch"] + 1, state["best"], state["log"]


def _evaluate_epoch(run: _Run, run_dir: Path, epoch: int, best: dict, log_rows: list) -> dict[str, dict]:
    """Evaluate on the selection split (and the other one when it has features), save each split's new
    best checkpoint (`best` updated in place) and log the bests; returns each split's metrics."""
    scores: dict[str, dict] = {}
    for split in run.selection:
        scores[split] = _evaluate(run, split)
        if scores[split]["overall_map"] > best[split]["overall_map"]:
            best[split] = {"overall_map": scores[split]["overall_map"], "epoch": epoch}
            which = "best" if split == run.config.select_on else f"best_{split}"
            rundir.save_checkpoint(rundir.checkpoint_path(run_dir, which), _state(run, epoch, best, log_rows))
    log.info("epoch %d: %s", epoch, "; ".join(f"{split} mAP {scores[split]['overall_map']:.4f} (best "
                                              f"{b['overall_map']:.4f} at {b['epoch']})" for split, b in best.items()))
    return scores


def _log_row(run: _Run, epoch: int, loss: float, lr: float, seconds: float, seen: int,
             scores: dict[str, dict]) -> list:
    """One row of train_log.csv (`LOG_HEADER`, then the other split's mAP); metrics empty when not evaluated."""
    main = scores.get(run.config.select_on, {})
    return [epoch, f"{loss:.6f}", f"{lr:.3g}", f"{seconds:.2f}", f"{seen * run.env.world / seconds:.1f}",
            *[f"{main[k]:.6f}" if main else "" for k in metrics.METRIC_KEYS],
            *[f"{scores[s]['overall_map']:.6f}" if s in scores else "" for s in list(run.selection)[1:]]]


def _preflight(wd: Workdir, config: TrainConfig, env: DistEnv) -> None:
    """Refuse a run that would fail (one line per reason, exit 2) before anything is built or written;
    warn (rank 0) about what would make its numbers misleading, e.g. an empty class group."""
    found = preflight.check_run(wd, config)
    if found.errors:
        raise UsageError("\n".join(found.errors))
    if env.rank == 0:
        for warning in found.warnings:
            log.warning("%s", warning)


def _evaluate(run: _Run, split: str) -> dict:
    rows, targets = run.selection[split]
    scores = predict(run.model, run.sources[split], rows, num_classes=run.labels.num_classes,
                     batch_size=run.config.batch_size, device=run.device, workers=run.config.workers)
    groups = run.labels.groups(run.config.group_head, run.config.group_tail)
    return metrics.summarize(scores, targets, groups)


def _other_split(select_on: str) -> str:
    """The split whose best checkpoint is reported beside the selected one (test ↔ val)."""
    return "val" if select_on == "test" else "test"


def _has_features(videos: list, store: FeatureStore) -> list[bool]:
    done = store.status() == STATUS_DONE
    return [bool(done[v.index]) for v in videos]
