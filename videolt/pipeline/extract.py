"""Orchestrate the extract stage: pick the videos to do, create the feature sets, run the decode
work and the feature sink on an executor, and record every video's outcome in the manifest as it
arrives. Killed at any moment, a rerun redoes only rows whose status is not yet `done`.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import platform
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from videolt.config import field
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import UsageError
from videolt.extract.backbones import create_backbone, parse_backbone_name
from videolt.extract.decoders import DECODERS
from videolt.extract.runner import DecodeJob, FeatureSink, RowResult, SinkSpec, View, decode_job
from videolt.pipeline.executors import Executor, LocalExecutor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractConfig:
    backbones: tuple[str, ...] = field(("resnet50",), "backbones to run; each video is decoded once for all")
    weights: str = field("imagenet", "imagenet (library download), random (seeded) or a local weights file")
    names: tuple[str, ...] = field((), "feature set names, one per backbone; default <backbone>[-<weights>]")
    device: str = field("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    batch_size: int = field(150, "frames per forward pass")
    decoder: str = field("pyav", "decoding backend: pyav, decord or torchcodec")
    workers: int = field(2, "decoding processes (0: decode in the main process)")
    splits: tuple[str, ...] = field((), "only these splits (default: all)")
    limit: int | None = field(None, "at most this many videos this run")
    fps: float = field(1.0, "decoding rate")
    frames: int = field(150, "frames per video after uniform temporal sampling")
    resize: int = field(256, "short side after resizing (bilinear, antialias)")
    crop: int = field(256, "centre crop side (224 selectable)")
    dtype: Literal["float16", "float32"] = field("float16", "feature storage dtype")
    compression: Literal["none", "zstd"] = field("none", "feature chunks: none (raw, read without zarr: several "
                                                 "times faster to stream in training) or zstd (smaller)")
    timeout: float | None = field(900.0, "seconds allowed to decode one video")
    seed: int = field(0, "init seed for random weights")
    n_segment: int = field(8, "TSM: frames per temporal segment")
    amp: bool | None = field(None, "bf16 autocast; default: on CUDA only")
    compile: bool = field(False, "torch.compile the backbones (static batch shapes)")
    retry: tuple[str, ...] = field((), "failure classes to try again (e.g. timeout, inference)")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device here (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


def feature_set_names(cfg: ExtractConfig) -> list[str]:
    if cfg.names:
        if len(cfg.names) != len(cfg.backbones):
            raise UsageError(f"--name gives {len(cfg.names)} names for {len(cfg.backbones)} backbones")
        return list(cfg.names)
    tag = "" if cfg.weights == "imagenet" else "-" + ("random" if cfg.weights == "random" else "file")
    return [b.replace(":", "-").replace("/", "-") + tag for b in cfg.backbones]


def _sink_specs(wd: Workdir, cfg: ExtractConfig, device: str) -> tuple[list[SinkSpec], list[View]]:
    """Create (or check) each feature set with its provenance; one View per distinct preprocessing."""
    decoder = DECODERS.get(cfg.decoder)  # an unknown name fails before any work
    with wd.manifest() as m:
        ids = [v.video_id for v in m.videos()]
    views: list[View] = []
    specs = []
    for backbone, name in zip(cfg.backbones, feature_set_names(cfg)):
        parse_backbone_name(backbone)  # a malformed name fails before any work
        opts = (("n_segment", cfg.n_segment),) if backbone.startswith("tsm") else ()
        bb = create_backbone(backbone, weights=cfg.weights, seed=cfg.seed, **dict(opts))
        view = View(cfg.resize, cfg.crop, "bilinear", True)
        if view not in views:
            views.append(view)
        attrs = {
            "backbone": bb.cfg.to_dict(),
            "weights": {"name": bb.cfg.weights, "sha256": bb.cfg.weights_sha256},
            "preprocessing": {"fps": cfg.fps, "resize": cfg.resize, "crop": cfg.crop, "interpolation": "bilinear",
                              "antialias": True, "scale": "[0, 1]", "mean": list(bb.cfg.mean),
                              "std": list(bb.cfg.std), "channel_order": "RGB",
                              "temporal_sampling": f"floor(linspace(0, n - 1, {cfg.frames}))"},
            "decoder": {"name": decoder.name, "version": decoder.version()},
            "inference": {"device": device, "amp": "bf16" if (cfg.amp if cfg.amp is not None else device != "cpu")
                          else "fp32", "compile": cfg.compile},
            "versions": {p: _version(p) for p in ("torch", "torchvision", "timm", "av")} | {
                "python": platform.python_version()},
            "source": "extract",
        }
        FeatureStore.create(wd.features_path(name), ids, frames=cfg.frames, dim=bb.cfg.dim, dtype=cfg.dtype,
                            compression=cfg.compression, attrs=attrs)
        specs.append(SinkSpec(name, backbone, cfg.weights, str(wd.features_path(name)), views.index(view),
                              cfg.seed, opts))
    return specs, views


def _jobs(wd: Workdir, cfg: ExtractConfig, specs: list[SinkSpec], views: list[View]) -> list[DecodeJob]:
    """Downloaded videos whose rows are not all done (and not failed, unless their class is retried)."""
    stores = [FeatureStore.open(s.store_path) for s in specs]
    status = [st.status() for st in stores]
    with wd.manifest() as m:
        downloads = m.states("download")
        decode = m.states("decode")
        feats = [m.states(f"features:{s.name}") for s in specs]
        videos = m.videos(list(cfg.splits) or None)
    jobs = []
    for v in videos:
        dl = downloads.get(v.index)
        if dl is None or dl.status != "done":
            continue
        if all(st[v.index] == STATUS_DONE for st in status):
            continue
        dec = decode.get(v.index)
        if dec is not None and dec.status == "failed" and dec.failure not in cfg.retry:
            continue
        if all((f.get(v.index) is not None and f[v.index].status == "failed" and f[v.index].failure not in cfg.retry)
               or st[v.index] == STATUS_DONE for f, st in zip(feats, status)):
            continue
        path = wd.inside(dl.info["path"]) if "path" in dl.info else wd.find_video(v.video_id)
        if path is None or not path.is_file():
            continue
        jobs.append(DecodeJob(v.index, v.video_id, str(path), tuple(views), cfg.fps, cfg.frames, cfg.decoder,
                              cfg.timeout))
        if cfg.limit is not None and len(jobs) >= cfg.limit:
            break
    return jobs


def run_extract(wd: Workdir, cfg: ExtractConfig, executor: Executor | None = None, *,
                progress: bool = True) -> dict:
    """Extract features for every downloaded video not yet done; returns counts of this run."""
    device = resolve_device(cfg.device)
    specs, views = _sink_specs(wd, cfg, device)
    _reconcile(wd, specs)
    jobs = _jobs(wd, cfg, specs, views)
    counts: dict = {"videos": len(jobs), "done": 0, "failed": {}}
    if not jobs:
        return counts
    own = executor is None
    executor = executor or LocalExecutor(cfg.workers)

    def make_sink() -> FeatureSink:
        return FeatureSink(specs, device=device, batch_size=cfg.batch_size, amp=cfg.amp, compile=cfg.compile)

    start = time.perf_counter()
    frames = 0
    bar = tqdm(total=len(jobs), unit="video", disable=not progress, desc="extract")
    try:
        with wd.manifest() as m:
            for r in executor.run(decode_job, jobs, make_sink, sink_gpus=1 if device != "cpu" else 0):
                _record(m, r)
                if r.decode_failure is None and all(f is None for f in r.sets.values()):
                    counts["done"] += 1
                    frames += r.n_frames
                else:
                    cls = r.decode_failure or next(f for f in r.sets.values() if f)
                    counts["failed"][cls] = counts["failed"].get(cls, 0) + 1
                bar.update(1)
                elapsed = time.perf_counter() - start
                bar.set_postfix(videos_s=f"{bar.n / elapsed:.2f}", frames_s=f"{bar.n * cfg.frames / elapsed:.0f}",
                                failed=sum(counts["failed"].values()))
    finally:
        bar.close()
        if own:
            executor.close()
    counts["seconds"] = time.perf_counter() - start
    return counts


def _reconcile(wd: Workdir, specs: list[SinkSpec]) -> None:
    """Record rows a killed run wrote but could not record: the store's status is the truth."""
    with wd.manifest() as m:
        decoded = {i for i, st in m.states("decode").items() if st.status == "done"}
        for spec in specs:
            store = FeatureStore.open(spec.store_path)
            states = m.states(f"features:{spec.name}")
            n_frames = store.n_frames()
            for i in np.flatnonzero(store.status() == STATUS_DONE).tolist():
                info = {"n_frames": int(n_frames[i])}
                if i not in states or states[i].status != "done":
                    m.record(f"features:{spec.name}", i, "done", info=info, attempt=False)
                if i not in decoded:
                    m.record("decode", i, "done", info=info, attempt=False)
                    decoded.add(i)


def _record(m, r: RowResult) -> None:
    if r.decode_failure is not None:
        m.record("decode", r.index, "failed", failure=r.decode_failure, message=r.message)
    else:
        m.record("decode", r.index, "done", info={"n_frames": r.n_frames, "seconds": round(r.decode_seconds, 3)})
    for name, failure in r.sets.items():
        if failure is None:
            m.record(f"features:{name}", r.index, "done", info={"n_frames": r.n_frames})
        else:
            m.record(f"features:{name}", r.index, "failed", failure=failure, message=r.message)


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"
