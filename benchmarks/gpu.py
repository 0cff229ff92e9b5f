"""What a GPU machine is worth to videolt, measured in at most 5 minutes (run by benchmarks/gpu.sh).

    python benchmarks/gpu.py --out DIR [--budget 280] [--dry-run]

Writes DIR/gpu.json (every figure) and DIR/gpu.md (tables for benchmarks/RESULTS.md):
1. extraction frames/s per backbone (resnet50, resnet101, tsm_r50; random weights): the device
   path of `FeatureSink` (pinned uint8 clip → device → [0, 1] → normalise → channels_last → bf16
   autocast forward → float32 on the host), one video of 150 frames per forward, eager and with
   `torch.compile` (static shapes);
2. CPU-vs-GPU feature agreement: the same weights and frames through the CPU fp32 path and the GPU
   fp32 and bf16 paths (cosine similarity per frame, relative max error);
3. training steps/s at VideoLT shapes (batch 128 × 60 frames × 2048, 1,004 classes; NonLinear and
   NetVLAD, Adam, gradient clipping), fp32 (TF32 allowed, the trainer's default) vs bf16 autocast;
4. the pipelined sink (`videolt.extract.sink.FeatureSink`, ResNet-50) on pre-decoded clips against the
   bare forward at the same batch (goal: sink ≥ 0.9 × bare), with one and with four videos per
   forward, and the GPU's busy fraction (CUDA-event time of the forwards over wall time); with
   several GPUs, N sink processes against N × one (goal ≥ 0.9); with one, a line says it is
   unmeasured (needs zarr);
5. the whole extract stage, decoding included, on one decode process per core, when PyAV and zarr
   are importable (carried as wheels: benchmarks/gpu.sh); otherwise a line says it was skipped;
6. (run first) a VideoLT-sized int8 feature cache made on the device (179,334 × 150 × 2048 random
   codes): the trainer's own epoch function (`_train_epoch`, NonLinear + FrameStack, batch 128 × 60
   frames) timed over a few hundred steps, eagerly and with `torch.compile`, FrameStack's end-of-epoch
   AP at full size, then a test-sized cache (51,239 rows) in its place for one evaluation pass
   (`predict`), and the projected time of a 100-epoch run and of Table 1 (27 runs); it also checks
   that the clip generator draws the same frames on the CPU and on the device, that a cache held in
   host RAM reads on the device like one held there, and counts the waits for the GPU of an epoch.
Each part checks the time left (`--budget` seconds in all) and is skipped, with a line saying so,
when too little is left. `--dry-run` runs every part on the CPU at tiny sizes (the test suite does
this; the GPU-only comparisons say they were skipped).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a bare checkout, as on the device

from videolt.extract.backbones import create_backbone  # noqa: E402
from videolt.extract.config import ExtractConfig  # noqa: E402
from videolt.extract.transforms import Preprocessing  # noqa: E402
from videolt.train.aggregators import create_aggregator  # noqa: E402

BACKBONES = ("resnet50", "resnet101", "tsm_r50")


@dataclass(frozen=True)
class Sizes:
    backbones: tuple[str, ...]
    frames: int  # frames per video (one forward)
    crop: int
    seconds: float  # timed seconds per figure
    train_batch: int
    clip: int
    dim: int
    classes: int
    agree_frames: int
    stage_videos: int
    stage_seconds: float  # length of each generated stage video
    sink_videos: int  # videos through the sink per measurement
    cache_rows: int = 179_334  # VideoLT's train split
    cache_test_rows: int = 51_239  # and its test split
    cache_steps: int = 300  # training steps timed on the cache


FULL = Sizes(backbones=BACKBONES, frames=150, crop=Preprocessing().crop, seconds=4.0, train_batch=128, clip=60, dim=2048, classes=1004,
             agree_frames=16, stage_videos=32, stage_seconds=150.0, sink_videos=48)
DRY = Sizes(backbones=("resnet50", "tsm_r50"), frames=8, crop=32, seconds=0.05, train_batch=4, clip=4, dim=64, classes=10, agree_frames=8,
            stage_videos=2, stage_seconds=2.0, sink_videos=4, cache_rows=96, cache_test_rows=24, cache_steps=6)
EPOCHS, EVALUATIONS, TABLE1_RUNS = 100, 20, 27  # the paper's recipe (an evaluation every 5 epochs); Table 1's grid


class Budget:
    """The time left for the whole script; a part runs only when its estimate fits."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, seconds: float) -> tuple[float, int]:
    """(seconds per call, calls): `fn` repeated for about `seconds` after one warm-up call."""
    fn()
    sync(device)
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
        if calls % 4 == 0:
            sync(device)
    sync(device)
    return (time.perf_counter() - start) / calls, calls


def _backbone(name: str, device: torch.device):
    opts = {"n_segment": 8} if name.startswith("tsm") else {}
    return create_backbone(name, weights="random", seed=0, **opts).to(device)


def device_path(bb, clip: torch.Tensor, device: torch.device, *, amp: bool, channels_last: bool,
                forward=None) -> torch.Tensor:
    """The sink's device path for one video: uint8 [T, 3, c, c] on the host → float32 [T, dim] on the host."""
    x = clip.to(device, non_blocking=True)
    x = bb.preprocessing.normalise()(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = (forward or bb)(x)
    return out.float().cpu()


def extraction(sizes: Sizes, device: torch.device, budget: Budget, compile_too: bool) -> list[dict]:
    """Frames/s of the sink's device path per backbone, eager and compiled."""
    rows = []
    clip = torch.randint(0, 256, (sizes.frames, 3, sizes.crop, sizes.crop), dtype=torch.uint8)
    if device.type == "cuda":
        clip = clip.pin_memory()
    cuda = device.type == "cuda"
    for name in sizes.backbones:
        for compiled in (False, True):
            row: dict[str, Any] = {"backbone": name, "compile": compiled, "amp": "bf16" if cuda else "fp32",
                                   "channels_last": cuda, "frames": sizes.frames, "crop": sizes.crop}
            if compiled and not compile_too:
                rows.append({**row, "skipped": "torch.compile not asked for (dry run)"})
                continue
            if not budget.allows(90 if compiled else 15):
                rows.append({**row, "skipped": f"out of time ({budget.left():.0f} s left)"})
                continue
            bb = _backbone(name, device)
            if cuda:
                bb = bb.to(memory_format=torch.channels_last)
            forward = torch.compile(bb) if compiled else bb
            start = time.perf_counter()
            device_path(bb, clip, device, amp=cuda, channels_last=cuda, forward=forward)  # compile, autotune
            sync(device)
            warmup = time.perf_counter() - start
            per_call, calls = timed(lambda: device_path(bb, clip, device, amp=cuda, channels_last=cuda,
                                                        forward=forward), device, sizes.seconds)
            rows.append({**row, "fps": sizes.frames / per_call, "calls": calls, "warmup_s": round(warmup, 1)})
            print(f"extraction {name} compile={compiled}: {rows[-1]['fps']:.0f} frames/s", flush=True)
            del bb, forward
    return rows


def agreement(sizes: Sizes, device: torch.device, budget: Budget) -> list[dict]:
    """Per-frame features of the CPU fp32 path against the device's fp32 and bf16 paths."""
    if device.type != "cuda":
        return [{"skipped": "no CUDA device: nothing to compare the CPU with"}]
    rows = []
    torch.manual_seed(1)
    clip = torch.randint(0, 256, (sizes.agree_frames, 3, sizes.crop, sizes.crop), dtype=torch.uint8)
    for name in sizes.backbones:
        if not budget.allows(20):
            rows.append({"backbone": name, "skipped": f"out of time ({budget.left():.0f} s left)"})
            continue
        bb = _backbone(name, torch.device("cpu"))
        ref = device_path(bb, clip, torch.device("cpu"), amp=False, channels_last=False)
        bb = bb.to(device)
        for amp in (False, True):
            got = device_path(bb.to(memory_format=torch.channels_last if amp else torch.contiguous_format), clip,
                              device, amp=amp, channels_last=amp)
            cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
            rel = ((got - ref).abs().max() / ref.abs().max()).item()
            rows.append({"backbone": name, "device_path": "bf16 channels_last" if amp else "fp32",
                         "cosine_min": cos.min().item(), "cosine_mean": cos.mean().item(), "rel_max_err": rel})
    return rows


def training(sizes: Sizes, device: torch.device, budget: Budget) -> list[dict]:
    """Steps/s of one training step (forward, BCE, backward, clip, Adam) at VideoLT shapes."""
    rows = []
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # the trainer's default
    for name in ("nonlinear", "netvlad"):
        for amp in (False, True):
            if not budget.allows(15):
                rows.append({"model": name, "amp": amp, "skipped": f"out of time ({budget.left():.0f} s left)"})
                continue
            model = create_aggregator(name, sizes.dim, sizes.classes).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            x = torch.randn(sizes.train_batch, sizes.clip, sizes.dim, device=device)
            y = (torch.rand(sizes.train_batch, sizes.classes, device=device) < 0.002).float()

            def step() -> None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(x)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
                opt.step()

            per_step, steps = timed(step, device, sizes.seconds)
            rows.append({"model": name, "amp": "bf16" if amp else "fp32 (tf32)", "steps_s": 1 / per_step,
                         "batch": sizes.train_batch, "clip": sizes.clip, "dim": sizes.dim, "classes": sizes.classes})
            print(f"training {name} {rows[-1]['amp']}: {rows[-1]['steps_s']:.1f} steps/s", flush=True)
    return rows


def _bare_forward(bb, x: torch.Tensor, device: torch.device, seconds: float) -> float:
    """Frames/s of the backbone alone on a ready, normalised device batch (the sink's ceiling)."""
    cuda = device.type == "cuda"

    def call() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            bb(x).float()

    per_call, _ = timed(call, device, seconds)
    return len(x) / per_call


def _sink_rate(device: str, frames: int, crop: int, videos: int, per_forward: int, root: Path) -> dict:
    """Frames/s and busy fraction of one FeatureSink fed `videos` pre-decoded clips, submitted ahead."""
    import numpy as np  # noqa: PLC0415

    from videolt.data.store import FeatureStore  # noqa: PLC0415
    from videolt.extract.decode_worker import Decoded  # noqa: PLC0415
    from videolt.extract.sink import FeatureSink, SinkSpec  # noqa: PLC0415

    path = root / f"sink-{device.replace(':', '')}-{per_forward}.zarr"
    ids = [f"gpu{i:08d}" for i in range(videos + 1)]
    FeatureStore.create(path, ids, frames=frames, dim=2048, attrs={})
    spec = SinkSpec("bench", "resnet50", "random", str(path), 0, crop=crop, resize=max(crop, Preprocessing().resize))
    sink = FeatureSink([spec], device=device, batch_size=per_forward * frames, pack=per_forward > 1,
                       room=2 * per_forward + 1, threads=1 if device == "cpu" else None)
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (frames, 3, crop, crop), dtype=np.uint8) for _ in range(min(videos, 8))]
    sink.consume(Decoded(videos, ids[videos], frames, (clips[0],)))  # warm-up: cuDNN's choice, allocator
    start = time.perf_counter()
    futures = [sink.submit(Decoded(i, ids[i], frames, (clips[i % len(clips)],))) for i in range(videos)]
    results = [f.result() for f in futures]
    seconds = time.perf_counter() - start
    sink.close()
    assert all(r.sets["bench"] is None for r in results), [r.message for r in results]
    return {"fps": videos * frames / seconds, "busy": sum(r.infer_seconds for r in results) / seconds}


def sinks(sizes: Sizes, device: torch.device, budget: Budget) -> list[dict]:
    """The pipelined sink against the bare forward, 1 and 4 videos per forward; N sinks against N × one."""
    if importlib.util.find_spec("zarr") is None:
        return [{"skipped": "zarr not installed here (carry wheels: benchmarks/gpu.sh)"}]
    rows = []
    bb = _backbone("resnet50", device)
    cuda = device.type == "cuda"
    if cuda:
        bb = bb.to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        for per_forward in (1, 4):
            if not budget.allows(40 if cuda else 5):
                rows.append({"videos_per_forward": per_forward, "skipped": f"out of time ({budget.left():.0f} s left)"})
                continue
            x = torch.randn(per_forward * sizes.frames, 3, sizes.crop, sizes.crop, device=device)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            bare = _bare_forward(bb, x, device, sizes.seconds)
            del x
            sink = _sink_rate(str(device), sizes.frames, sizes.crop, sizes.sink_videos, per_forward, Path(tmp))
            rows.append({"videos_per_forward": per_forward, "bare_fps": bare, "sink_fps": sink["fps"],
                         "sink_vs_bare": sink["fps"] / bare, "busy": sink["busy"]})
            print(f"sink {per_forward} video(s)/forward: {sink['fps']:.0f} frames/s = {rows[-1]['sink_vs_bare']:.2f}"
                  f" x bare, busy {sink['busy']:.0%}", flush=True)
        rows.append(_multi_sink(sizes, device, budget, Path(tmp)))
    return rows


def _multi_sink(sizes: Sizes, device: torch.device, budget: Budget, root: Path) -> dict:
    """N sink processes (one per GPU, the local executor's own path) against N × one sink process."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2:
        return {"multi_sink": True, "skipped": f"{gpus} GPU(s) here: N sinks against N x one sink unmeasured"}
    if not budget.allows(90):
        return {"multi_sink": True, "skipped": f"out of time ({budget.left():.0f} s left)"}
    from videolt.data.store import FeatureStore  # noqa: PLC0415
    from videolt.executor import SinkPlan  # noqa: PLC0415
    from videolt.extract.sink import FeatureSinkFactory, SinkSpec  # noqa: PLC0415
    from videolt.pipeline.executors import create_executor  # noqa: PLC0415

    frames, videos = sizes.frames, sizes.sink_videos * gpus
    path = root / "multi.zarr"
    FeatureStore.create(path, [f"gpu{i:08d}" for i in range(videos)], frames=frames, dim=2048, attrs={})
    spec = SinkSpec("bench", "resnet50", "random", str(path), 0, crop=sizes.crop,
                    resize=max(sizes.crop, Preprocessing().resize))
    rates = {}
    for n in (1, gpus):
        plan = SinkPlan(FeatureSinkFactory((spec,), batch_size=frames, room=3), tuple(f"cuda:{k}" for k in range(n)), 3)
        executor = create_executor("local", workers=0)  # clips made where they are consumed: no decoding
        try:
            count = videos * n // gpus
            start = None
            for _ in executor.run(_as_decoded, [(i, frames, sizes.crop) for i in range(count)], plan):
                start = start or time.perf_counter()  # from the first result: sink start-up excluded
            rates[n] = (count - 1) * frames / (time.perf_counter() - start)
        finally:
            executor.close()
    return {"multi_sink": True, "gpus": gpus, "one_fps": rates[1], "n_fps": rates[gpus],
            "n_vs_n_times_one": rates[gpus] / (gpus * rates[1])}


def _as_decoded(job: tuple[int, int, int]) -> Any:
    """A pre-decoded video (the same random clip, made once per process: no decoding is measured)."""
    from videolt.extract.decode_worker import Decoded  # noqa: PLC0415

    i, frames, crop = job
    return Decoded(i, f"gpu{i:08d}", frames, (_clip(frames, crop),))


@functools.cache
def _clip(frames: int, crop: int) -> Any:
    import numpy as np  # noqa: PLC0415

    return np.random.default_rng(0).integers(0, 256, (frames, 3, crop, crop), dtype=np.uint8)


def stage(sizes: Sizes, device: torch.device, budget: Budget, sources: list[Path]) -> dict:
    """The whole extract stage, decoding included, cores sized by videolt (needs PyAV and zarr)."""
    missing = [m for m in ("av", "zarr") if importlib.util.find_spec(m) is None]
    if missing:
        return {"skipped": f"{', '.join(missing)} not installed here (carry wheels: benchmarks/gpu.sh)"}
    if not budget.allows(60 if device.type == "cuda" else 10):
        return {"skipped": f"out of time ({budget.left():.0f} s left)"}
    from extract import make_workdir  # benchmarks/extract.py: imports zarr, so only here

    from videolt.pipeline.extract import run_extract

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not sources:
            sources = [make_source(root / "source.mp4", sizes.stage_seconds)]
        videos = [sources[i % len(sources)] for i in range(sizes.stage_videos)]  # hard links: same decode cost
        wd = make_workdir(root / "stage", videos)
        # Cores sized by videolt on the GPU; the dry run decodes in this process (no pool to start).
        cfg = ExtractConfig(backbones=("resnet50",), weights="random", names=("bench",), device=device.type,
                            frames=sizes.frames, crop=sizes.crop, resize=max(sizes.crop, Preprocessing().resize),
                            batch_size=sizes.frames, amp=device.type == "cuda",
                            workers=None if device.type == "cuda" else 0,
                            torch_threads=None if device.type == "cuda" else 1)
        counts = run_extract(wd, cfg, progress=False)
    return {"fps": counts["done"] * sizes.frames / counts["seconds"], "videos": counts["videos"],
            "done": counts["done"], "seconds": counts["seconds"], "split": counts["split"],
            "sources": [str(s) for s in sources]}


def _int8_cache(rows: int, frames: int, dim: int, device: torch.device):
    """A `FeatureCache` of random int8 codes made on the device (no host copy of 55 GB)."""
    import numpy as np  # noqa: PLC0415

    from videolt.train.cache import FeatureCache  # noqa: PLC0415

    codes = torch.empty((rows, frames, dim), dtype=torch.uint8, device=device).random_(0, 256)
    scale = torch.full((rows, dim), 0.02, device=device)
    return FeatureCache("int8", np.arange(rows), codes, scale, torch.full((rows, dim), 128.0, device=device))


def bench_run(source, counts, *, batch: int, clip: int, dim: int, device: torch.device):
    """What the trainer's `_train_epoch` reads of a run: NonLinear + FrameStack (focal loss, γ = 1),
    Adam, training from `source` (set `train_rows` and `train_targets` before each epoch)."""
    from types import SimpleNamespace  # noqa: PLC0415

    from videolt.train import trainer  # noqa: PLC0415
    from videolt.train.config import TrainConfig  # noqa: PLC0415
    from videolt.train.losses import create_loss  # noqa: PLC0415
    from videolt.train.methods import resolve_method  # noqa: PLC0415
    from videolt.train.mixes import create_batch_mix  # noqa: PLC0415

    spec = resolve_method("framestack")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # the trainer's default
    model = create_aggregator("nonlinear", dim, len(counts)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return SimpleNamespace(
        config=TrainConfig(features="bench", batch_size=batch, clip_len=clip, workers=0),
        env=trainer.DistEnv(), device=device, amp_dtype=None, sources={"train": source}, sampler=None,
        mix=create_batch_mix(spec.batch_mix, counts, 0, **spec.mix_opts),
        loss=create_loss(spec.loss, counts, train_videos=int(counts.sum()), **spec.loss_opts).to(device),
        model=model, net=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.MultiStepLR(optimizer, [30]),
        scaler=torch.amp.GradScaler("cuda", enabled=False))


def timed_epoch(run, rows, targets, epoch: int) -> float:
    """Seconds of the trainer's `_train_epoch` over store rows `rows` (its end-of-epoch AP included)."""
    from videolt.train import trainer  # noqa: PLC0415

    run.train_rows, run.train_targets = rows, targets
    sync(run.device)
    tic = time.perf_counter()
    trainer._train_epoch(run, epoch, progress=False)
    sync(run.device)
    return time.perf_counter() - tic


def long_tail_counts(classes: int) -> "np.ndarray":
    """Train videos per class, a power law (as VideoLT's)."""
    import numpy as np  # noqa: PLC0415

    return np.maximum(1, (2000 * np.arange(1, classes + 1, dtype=np.float64) ** -1.1).astype(np.int64))


def cache_projection(sizes: Sizes, device: torch.device, budget: Budget) -> dict:
    """The trainer's epoch over a VideoLT-sized int8 cache on the device, one evaluation pass, the projection."""
    import numpy as np  # noqa: PLC0415

    from videolt.evaluate.metrics import average_precision  # noqa: PLC0415
    from videolt.train.cache import FeatureCache  # noqa: PLC0415
    from videolt.train.evaluation import predict  # noqa: PLC0415
    from videolt.train.philox import clip_frames  # noqa: PLC0415

    if not budget.allows(45):
        return {"skipped": f"out of time ({budget.left():.0f} s left)"}
    out: dict[str, Any] = {"train_rows": sizes.cache_rows, "test_rows": sizes.cache_test_rows}
    probe = np.arange(0, 20 * sizes.cache_rows, 7) % 2**32
    out["clips_same_on_cpu_and_device"] = bool(torch.equal(
        clip_frames(2021, 7, probe, sizes.frames, sizes.clip, device=device).cpu(),
        clip_frames(2021, 7, probe, sizes.frames, sizes.clip)))
    small = _int8_cache(64, sizes.frames, sizes.dim, torch.device("cpu"))  # host-held, read on the device
    held = FeatureCache("int8", small.rows, *(t.to(device) for t in (small.codes, small.scale, small.zero)))
    host = FeatureCache("int8", small.rows, small.codes, small.scale, small.zero, out_device=device)
    picks = clip_frames(0, 0, np.arange(64), sizes.frames, sizes.clip)
    out["host_cache_reads_like_device_cache"] = bool(torch.equal(host.read_frames(small.rows, picks).cpu(),
                                                                 held.read_frames(small.rows, picks.to(device)).cpu()))
    rng = np.random.default_rng(0)
    counts = long_tail_counts(sizes.classes)
    train = _int8_cache(sizes.cache_rows, sizes.frames, sizes.dim, device)
    out["train_cache_gb"] = train.nbytes / 1e9
    targets = np.eye(sizes.classes, dtype=np.float32)[rng.choice(sizes.classes, sizes.cache_rows, p=counts / counts.sum())]
    run = bench_run(train, counts, batch=sizes.train_batch, clip=sizes.clip, dim=sizes.dim, device=device)
    model = run.model

    def epoch(steps: int, epoch_no: int) -> float:
        rows = np.sort(rng.choice(sizes.cache_rows, steps * sizes.train_batch, replace=False))
        return timed_epoch(run, rows, targets[rows], epoch_no)

    def ap_seconds(n: int) -> float:
        n = min(n, sizes.cache_rows)
        scores = rng.random((n, sizes.classes), dtype=np.float32)
        tic = time.perf_counter()
        average_precision(scores, targets[:n])
        return time.perf_counter() - tic

    epoch(max(2, sizes.cache_steps // 10), 0)  # warm-up (FrameStack mixes from epoch 1)
    ap_seconds(256)  # numba compiles its kernel once
    ap_part = ap_seconds(sizes.cache_steps * sizes.train_batch)
    out["step_ms"] = (epoch(sizes.cache_steps, 1) - ap_part) / sizes.cache_steps * 1e3
    out["epoch_ap_s"] = ap_seconds(sizes.cache_rows)
    print(f"cache: {out['step_ms']:.1f} ms per NonLinear + FrameStack step on the int8 cache", flush=True)
    if device.type == "cuda":  # every wait for the GPU in an epoch of 20 steps, end of epoch included
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            epoch(20, 1)
        torch.cuda.set_sync_debug_mode("default")
        out["syncs_in_a_20_step_epoch"] = len(caught)
        out["sync_sites"] = sorted({str(w.message).splitlines()[0][:100] for w in caught})[:6]
    if device.type == "cuda" and budget.allows(120):
        run.net = torch.compile(model)
        epoch(max(2, sizes.cache_steps // 10), 1)  # compiles
        out["step_ms_compiled"] = (epoch(sizes.cache_steps, 2) - ap_part) / sizes.cache_steps * 1e3
        run.net = model
    del run, train
    if device.type == "cuda":
        torch.cuda.empty_cache()
    test = _int8_cache(sizes.cache_test_rows, sizes.frames, sizes.dim, device)  # in the train cache's place
    out["test_cache_gb"] = test.nbytes / 1e9
    predict(model, test, np.arange(min(sizes.cache_test_rows, 4 * sizes.train_batch)), num_classes=sizes.classes,
            batch_size=sizes.train_batch, device=device)  # warm-up
    sync(device)
    tic = time.perf_counter()
    predict(model, test, np.arange(sizes.cache_test_rows), num_classes=sizes.classes, batch_size=sizes.train_batch,
            device=device)
    out["evaluation_s"] = time.perf_counter() - tic
    del test
    step_s = min(out["step_ms"], out.get("step_ms_compiled", out["step_ms"])) / 1e3
    steps = -(-sizes.cache_rows // sizes.train_batch)
    out["epoch_s"] = steps * step_s + out["epoch_ap_s"]
    out["run_minutes"] = (EPOCHS * out["epoch_s"] + EVALUATIONS * out["evaluation_s"]) / 60
    out["table1_hours"] = TABLE1_RUNS * out["run_minutes"] / 60
    print(f"cache: projected {out['run_minutes']:.1f} min per 100-epoch run, {out['table1_hours']:.2f} h for "
          f"Table 1 ({TABLE1_RUNS} runs)", flush=True)
    return out


def make_source(path: Path, seconds: float) -> Path:
    """A 640×360 30 fps H.264 video (x264, B-frames) of a moving, noisy pattern, written with PyAV."""
    import av  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    size = (640, 360) if seconds >= 10 else (64, 48)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "fast", "b": "300k", "bf": "3", "g": "300"}
        for i in range(int(seconds * 30)):
            img = np.stack([(x + 2 * i) % 256, (y + i) % 256, (x + y + 3 * i) % 256], axis=-1)
            img = (img + rng.integers(0, 8, img.shape)).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M %Z"), "host": platform.node()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    for mod in ("torchvision", "timm", "av", "zarr", "numba"):
        spec = importlib.util.find_spec(mod)
        env[mod] = getattr(__import__(mod), "__version__", "?") if spec else None
    return env


def _rows(part: Any) -> list[dict]:
    """A part's rows (a failed or skipped part is one dict)."""
    return part if isinstance(part, list) else [part]


def markdown(result: dict) -> str:
    """The tables for benchmarks/RESULTS.md."""
    env = result["environment"]
    lines = [f"{env.get('gpu', env['device'])}, torch {env['torch']}, {env['cpus']} CPUs, {env['date']}"
             + (" (dry run: CPU, tiny sizes)" if result["dry_run"] else ""), "",
             "| backbone | compile | precision | frames/s | warm-up s |", "|---|---|---|---|---|"]
    for r in _rows(result.get("extraction", [])):
        fps = f"{r['fps']:.0f}" if "fps" in r else r.get("skipped", "")
        lines.append(f"| {r.get('backbone', '')} | {r.get('compile', '')} | {r.get('amp', '')} | {fps} | "
                     f"{r.get('warmup_s', '')} |")
    lines += ["", "| backbone | device path vs CPU fp32 | cosine min | cosine mean | rel. max error |",
              "|---|---|---|---|---|"]
    for r in _rows(result.get("agreement", [])):
        if "cosine_min" in r:
            lines.append(f"| {r['backbone']} | {r['device_path']} | {r['cosine_min']:.5f} | {r['cosine_mean']:.5f} "
                         f"| {r['rel_max_err']:.2e} |")
        else:
            lines.append(f"| {r.get('backbone', '')} | {r.get('skipped', '')} | | | |")
    lines += ["", "| model | precision | steps/s |", "|---|---|---|"]
    for r in _rows(result.get("training", [])):
        steps = f"{r['steps_s']:.1f}" if "steps_s" in r else r.get("skipped", "")
        lines.append(f"| {r.get('model', '')} | {r.get('amp', '')} | {steps} |")
    lines += ["", "| sink (ResNet-50) | videos per forward | bare forward frames/s | sink frames/s | sink / bare | "
              "busy |", "|---|---|---|---|---|---|"]
    for r in _rows(result.get("sinks", [])):
        if "sink_fps" in r:
            lines.append(f"| pipelined | {r['videos_per_forward']} | {r['bare_fps']:.0f} | {r['sink_fps']:.0f} | "
                         f"{r['sink_vs_bare']:.2f} | {r['busy']:.0%} |")
        elif "n_fps" in r:
            lines.append(f"| {r['gpus']} sinks | 1 | {r['gpus']} x {r['one_fps']:.0f} | {r['n_fps']:.0f} | "
                         f"{r['n_vs_n_times_one']:.2f} of N x one | |")
        else:
            lines.append(f"| {'N sinks' if r.get('multi_sink') else 'pipelined'} | {r.get('videos_per_forward', '')} "
                         f"| {r.get('skipped', '')} | | | |")
    s = result.get("stage", {})
    lines += ["", "stage, decoding included: " + (s["skipped"] if "skipped" in s else
                                                  f"{s['fps']:.0f} frames/s over {s['done']} videos; split {s['split']}")]
    c = result.get("cache", {})
    if "run_minutes" in c:
        compiled = f"{c['step_ms_compiled']:.1f}" if "step_ms_compiled" in c else "not measured"
        lines += ["", "| int8 cache on the device | value |", "|---|---|",
                  f"| train cache ({c['train_rows']:,} rows) / test cache ({c['test_rows']:,} rows) | "
                  f"{c['train_cache_gb']:.1f} GB / {c['test_cache_gb']:.1f} GB |",
                  f"| NonLinear + FrameStack step, eager / torch.compile | {c['step_ms']:.1f} ms / {compiled} ms |",
                  f"| FrameStack's end-of-epoch AP ({c['train_rows']:,} × classes) | {c['epoch_ap_s']:.2f} s |",
                  f"| one evaluation pass of the test cache | {c['evaluation_s']:.1f} s |",
                  f"| projected epoch / 100-epoch run ({EVALUATIONS} evaluations) / Table 1 ({TABLE1_RUNS} runs) | "
                  f"{c['epoch_s']:.1f} s / {c['run_minutes']:.1f} min / {c['table1_hours']:.2f} h |",
                  f"| clip generator: same frames on the CPU and the device | {c['clips_same_on_cpu_and_device']} |",
                  f"| a host-held int8 cache reads like a device-held one | {c['host_cache_reads_like_device_cache']} |",
                  f"| waits for the GPU in an epoch of 20 steps (end of epoch included) | "
                  f"{c.get('syncs_in_a_20_step_epoch', 'not measured (no CUDA)')} |"]
    else:
        lines += ["", f"int8 cache on the device: {c.get('skipped', 'not run')}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", tempfile.gettempdir())))
    p.add_argument("--budget", type=float, default=280.0, help="seconds for everything (the device allows 300)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, no torch.compile")
    p.add_argument("--sources", type=Path, action="append", default=[],
                   help="a video for the stage (repeatable; default: one generated with PyAV)")
    args = p.parse_args()
    budget = Budget(args.budget)
    if args.dry_run:
        device, sizes = torch.device("cpu"), DRY
        torch.set_num_threads(1)  # tiny tensors: more threads only wait for each other
    elif torch.cuda.is_available():
        device, sizes = torch.device("cuda"), FULL
    else:
        sys.exit("no CUDA device here: run with --dry-run for the CPU check")
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"environment": environment(device), "dry_run": args.dry_run}
    print(json.dumps(result["environment"]), flush=True)
    parts = [("cache", lambda: cache_projection(sizes, device, budget)),
             ("extraction", lambda: extraction(sizes, device, budget, compile_too=not args.dry_run)),
             ("agreement", lambda: agreement(sizes, device, budget)),
             ("training", lambda: training(sizes, device, budget)),
             ("sinks", lambda: sinks(sizes, device, budget)),
             ("stage", lambda: stage(sizes, device, budget, args.sources))]
    for name, part in parts:
        try:
            result[name] = part()
        except Exception as exc:  # one part's failure must not cost the others' figures
            result[name] = {"skipped": f"failed: {type(exc).__name__}: {exc}"}
            print(f"{name} failed: {exc!r}", flush=True)
        (args.out / "gpu.json").write_text(json.dumps(result, indent=1, default=str))
    (args.out / "gpu.md").write_text(markdown(result))
    print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
