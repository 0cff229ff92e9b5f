"""The extract stage: pick the videos to do, create the feature sets with their provenance, run the
decode work and one feature sink per device on an executor, and record every video's outcome in the
manifest as it arrives. Killed at any moment, a rerun redoes only rows whose status is not yet `done`,
and done rows whose data was found missing or short (`videolt.data.integrity.redo_damaged`).

The executor is the caller's (`videolt.pipeline.extract` builds the one the config names); the
work is `videolt.extract.decode_worker`'s, the sinks `videolt.extract.sink`'s.

Where rows go: each sink writes its rows' feature chunks itself, whole (a chunk file is replaced
atomically), and this process, the driver, alone sets a row's `n_frames` and `status` once the
sink's result arrives, then records it in the manifest. A row is 600 KB: 8 GPUs at 33 videos/s
are ~160 MB/s of chunks, which one driver process could not take in, convert and write besides
its bookkeeping (a row write is slow: benchmarks/RESULTS.md "## store"), while each sink writes its own 33 rows/s on two
writer threads. The small shared arrays and the manifest have one writer, so no lock is needed
across nodes (file locks on network filesystems are not to be trusted). On a Ray cluster the
workdir must therefore be on a filesystem every sink's node mounts at the same path: the driver
writes a token file into it, and a sink that cannot read it back fails before any work, in one line.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
import uuid
from contextlib import closing, contextmanager
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from videolt import atomic
from videolt.data.integrity import redo_damaged
from videolt.data.manifest import Manifest
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.devices import resolve_devices
from videolt.errors import StageError
from videolt.executor import Executor, SinkPlan, SinksLost
from videolt.extract.backbones import BackboneCfg, backbone_options, create_backbone, parse_backbone_name
from videolt.extract.config import ExtractConfig, feature_set_names
from videolt.extract.cores import keep_freed_memory
from videolt.extract.decoders import DECODERS, Decoder, package_version
from videolt.extract.failures import ExtractFailure
from videolt.extract.decode_worker import DecodeJob, RowResult, View, decode_job
from videolt.extract.sink import FeatureSinkFactory, SinkSpec
from videolt.extract.split import Split

__all__ = ["extract_pending"]

log = logging.getLogger(__name__)


def extract_pending(wd: Workdir, cfg: ExtractConfig, executor: Executor, *, progress: bool = True) -> dict:
    """Extract features for every downloaded video not yet done, on `executor`; returns counts of this run."""
    devices = resolve_devices(cfg.devices, cfg.device, executor.gpus())
    device = torch.device(devices[0].split(":")[0])  # the kind: every sink of a run computes alike
    specs, views = _sink_specs(wd, cfg, device)
    with wd.manifest() as m:
        for spec in specs:
            redo_damaged(FeatureStore.open(spec.store_path, mode="r+"), m, f"features:{spec.name}")
    _reconcile(wd, specs)
    jobs = _jobs(wd, cfg, specs, views)
    counts: dict = {"videos": len(jobs), "done": 0, "failed": {}}
    if not jobs:
        return counts
    stores = {s.name: FeatureStore.open(s.store_path, mode="r+") for s in specs}
    start = time.perf_counter()
    split = Split(cfg)
    torch_threads = torch.get_num_threads()  # the sink may set its own in this process: given back at the end
    bar = tqdm(total=len(jobs), unit="video", file=sys.stderr, disable=not progress, desc="extract")
    try:
        with wd.manifest() as m, _probe(wd) as probe, closing(
                executor.run(decode_job, jobs, _sink_plan(cfg, specs, devices, probe))) as results:
            for r in _lost_sinks_recorded(m, stores, split.timed(results)):
                _settle(stores, r)
                _record(m, r)
                failure = r.decode_failure or next((f for f in r.sets.values() if f), None)
                if failure is None:
                    counts["done"] += 1
                else:
                    counts["failed"][failure.value] = counts["failed"].get(failure.value, 0) + 1
                bar.update(1)
                elapsed = time.perf_counter() - start
                bar.set_postfix(videos_s=f"{bar.n / elapsed:.2f}", frames_s=f"{bar.n * cfg.frames / elapsed:.0f}",
                                failed=sum(counts["failed"].values()))
    finally:
        bar.close()
        torch.set_num_threads(torch_threads)
        if device.type == "cpu":
            keep_freed_memory(False)  # the sink kept freed memory for its forward passes (extract/cores.py)
    counts["seconds"] = time.perf_counter() - start
    counts["split"] = split.summary(counts["seconds"])
    log.info("%s", split.describe(counts["split"]))
    return counts


def _sink_plan(cfg: ExtractConfig, specs: list[SinkSpec], devices: list[str], probe: tuple[str, str]) -> SinkPlan:
    """One sink per device, each holding enough videos to fill a forward while the next is copied and
    the last written (`room`)."""
    gpu = devices[0] != "cpu"
    pack = cfg.pack_videos if cfg.pack_videos is not None else gpu
    per_forward = max(cfg.batch_size // cfg.frames, 1) if pack else 1
    room = 2 * per_forward + 1
    amp = cfg.amp if cfg.amp is not None else gpu  # as recorded (`_provenance`), whatever a sink computes on
    factory = FeatureSinkFactory(tuple(specs), batch_size=cfg.batch_size, amp=amp, compile=cfg.compile,
                                 threads=cfg.torch_threads, pack=pack, room=room, probe=probe)
    return SinkPlan(factory, tuple(devices), room)


@contextmanager
def _probe(wd: Workdir) -> Iterator[tuple[str, str]]:
    """A token file in the workdir that every sink must read back (the workdir is shared), removed at the end."""
    token = uuid.uuid4().hex
    path = wd.root / ".sink-check"
    atomic.write_text(path, token + "\n", unique=True)
    try:
        yield str(path), token
    finally:
        path.unlink(missing_ok=True)


def _settle(stores: dict[str, FeatureStore], r: RowResult) -> None:
    """The driver's part of a row: its sink wrote the chunk; n_frames, then status, are set here."""
    for name, failure in r.sets.items():
        if r.decode_failure is None and failure is None:
            stores[name].mark_done(r.index, r.n_frames)
        else:
            stores[name].mark_failed(r.index)


def _lost_sinks_recorded(m: Manifest, stores: dict[str, FeatureStore],
                         results: Iterator[RowResult]) -> Iterator[RowResult]:
    """The results; when every sink died, the videos they held are recorded failed and the run stops."""
    try:
        yield from results
    except SinksLost as e:
        for job in e.jobs:
            message = f"[extract] {job.video_id}: every sink died while it held this video"
            for name, store in stores.items():
                store.mark_failed(job.index)
                m.record(f"features:{name}", job.index, "failed", failure=ExtractFailure.INFERENCE.value,
                         message=message)
        raise StageError(f"extract: {e}; they are recorded as failed (class inference: rerun with retry "
                         "(--retry) inference)") from None


def _sink_specs(wd: Workdir, cfg: ExtractConfig, device: torch.device) -> tuple[list[SinkSpec], list[View]]:
    """Create (or check) each feature set with its provenance; one View per distinct preprocessing.

    Every backbone is built first, so a bad name, weights file or input size fails before any
    feature set is written.
    """
    decoder = DECODERS.get(cfg.decoder)  # an unknown name fails before any work
    names = feature_set_names(cfg)
    built = []
    for backbone in cfg.backbones:
        parse_backbone_name(backbone)  # a malformed name fails before any work
        opts = (("n_segment", cfg.n_segment),) if "n_segment" in backbone_options(backbone) else ()
        bb = create_backbone(backbone, weights=cfg.weights, seed=cfg.seed, resize=cfg.resize, crop=cfg.crop,
                             **dict(opts))
        built.append((backbone, opts, bb.cfg, bb.preprocessing))
        del bb
    with wd.manifest() as m:
        ids = [v.video_id for v in m.videos()]
    views: list[View] = []
    specs = []
    for (backbone, opts, bb_cfg, pre), name in zip(built, names):
        view = View.of(pre)
        if view not in views:
            views.append(view)
        FeatureStore.create(wd.features_path(name), ids, frames=cfg.frames, dim=bb_cfg.dim, dtype=cfg.dtype,
                            compression=cfg.compression, attrs=_provenance(cfg, bb_cfg, decoder, device))
        log.info("%s: %s, input %s", name, backbone, pre)
        specs.append(SinkSpec(name, backbone, cfg.weights, str(wd.features_path(name)), views.index(view),
                              cfg.seed, opts, cfg.resize, cfg.crop, pre))
    return specs, views


def _provenance(cfg: ExtractConfig, bb_cfg: BackboneCfg, decoder: Decoder, device: torch.device) -> dict:
    """The feature set's attrs: what produced it. `preprocessing` is the backbone's Preprocessing
    object serialised (the one the decoder and the sink apply), with the temporal side of the preprocessing."""
    amp = cfg.amp if cfg.amp is not None else device.type != "cpu"
    return {
        "backbone": {k: v for k, v in bb_cfg.to_dict().items() if k != "preprocessing"},
        "weights": {"name": bb_cfg.weights, "sha256": bb_cfg.weights_sha256},
        "preprocessing": {"fps": cfg.fps, "temporal_sampling": f"floor(linspace(0, n - 1, {cfg.frames}))",
                          "channel_order": "RGB", "scale": "[0, 1]", **bb_cfg.preprocessing.to_dict()},
        # Not `selective`: it changes no pixel (the manifest records each video's path), and as
        # provenance it would refuse to resume a set made with the other setting or before it existed.
        "decoder": {"name": decoder.name, "version": decoder.version()},
        "inference": {"device": str(device), "amp": "bf16" if amp else "fp32", "compile": cfg.compile},
        "versions": {p: package_version(p) for p in ("torch", "torchvision", "timm", "av")} | {
            "python": platform.python_version()},
        "source": "extract",
    }


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
                              cfg.timeout, cfg.selective, cfg.decoder_threads or 0))
        if cfg.limit is not None and len(jobs) >= cfg.limit:
            break
    return jobs


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


def _record(m: Manifest, r: RowResult) -> None:
    if r.decode_failure is not None:
        m.record("decode", r.index, "failed", failure=r.decode_failure.value, message=r.message, info=r.decode_info)
    else:
        m.record("decode", r.index, "done", info={"n_frames": r.n_frames, "seconds": round(r.decode_seconds, 3),
                                                  **r.decode_info})
    for name, failure in r.sets.items():
        if failure is None:
            m.record(f"features:{name}", r.index, "done", info={"n_frames": r.n_frames})
        else:
            m.record(f"features:{name}", r.index, "failed", failure=failure.value, message=r.message)
