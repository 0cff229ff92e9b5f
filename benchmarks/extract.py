"""Extract-stage throughput against its parts (bare backbone forward, decoding alone) on the same cores.

    python benchmarks/extract.py [--device cpu|cuda] [--videos 4] [--frames 150] [--seconds 150] [--repeats 1]
    python benchmarks/extract.py --families [--device cpu|cuda] [--videos 1] [--frames 8]

`--families`: one row per backbone family instead (see `FAMILIES`): frames/s of the bare forward at
the backbone's own input (DINOv2 also at 224), the same measurement as "bare" below.

Frames per second, each measurement in a fresh child process (its own torch threads and allocator
state; `--only NAME` runs one there and prints JSON), measurements interleaved over `--repeats`:
- bare: `backbone(x)` on ready-normalised device tensors, batches of `--batch-size` (the ceiling);
  on a CPU device with the sink's allocator setting (`keep_freed_memory`), and once without it
  (`bare_default_malloc`) to show what that setting is worth;
- sink: `FeatureSink.consume` on pre-decoded uint8 clips (decoding excluded): uint8 → float,
  normalise, host → device, forward, device → host, the row's chunk written; one video at a time,
  each waited for (the serial sink: no step of one video overlaps another's);
- sink_pipelined: the same videos submitted ahead (`FeatureSink.submit`, 3 in the sink at once):
  the copy of the next video, the forward of this one and the write of the last overlap;
- relay: what handing one decoded clip to another process through a `multiprocessing` queue costs
  the sender (CPU ms per video; the reason each local sink process decodes its own jobs);
- decode: `decode_job` (selective where exact, resize + centre crop) over the videos on one
  process per core, one decoder thread each, nothing else running: decoding alone on these cores;
- stage: `run_extract` over the videos, decoding included, cores sized by
  `videolt.extract.cores` unless `--workers`/`--decoder-threads`/`--torch-threads`/`--nice` say
  otherwise; the whole run (pool and model start-up included) and its steady state (first to
  last finished video), and the run's decode/inference split;
- stage_before: the same with the sizing before issue 17 (2 decoders on FFmpeg's threads at
  normal priority, every frame decoded).
The figure of merit is stage / min(bare, decode). Sources are 360p 30 fps H.264 (x264 high, fast,
B-frames, ~300 kb/s: a streaming bitrate), `--seconds` long, generated once into `--cache`.
On CUDA the sink and the bare forward use bf16 autocast and channels_last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.extract.backbones import create_backbone
from videolt.extract.config import ExtractConfig
from videolt.extract.cores import available_cores, keep_freed_memory, one_malloc_arena
from videolt.extract.decode_worker import Decoded, DecodeJob, View, decode_job
from videolt.extract.sink import FeatureSink, SinkSpec
from videolt.pipeline.executors import create_executor
from videolt.pipeline.extract import run_extract

BACKBONE = "resnet50"
VIDEOLT_FRAMES = 150  # features per video in VideoLT: what the GPU rate is divided by for the estimate
# One row per family for `--families`: (label, backbone, resize, crop); None = the backbone's own input.
FAMILIES = (
    ("torchvision ResNet-50", "resnet50", None, None),
    ("TSM ResNet-50", "tsm_r50", None, None),
    ("timm EfficientNet-B0", "timm:efficientnet_b0.ra_in1k", None, None),
    ("timm ConvNeXt-T", "timm:convnext_tiny.fb_in1k", None, None),
    ("CLIP ViT-B/16", "timm:vit_base_patch16_clip_224.openai", None, None),
    ("SigLIP ViT-B/16", "timm:vit_base_patch16_siglip_224.webli", None, None),
    ("DINOv2 ViT-S/14 @224", "timm:vit_small_patch14_dinov2.lvd142m", 256, 224),
    ("DINOv2 ViT-S/14 @518", "timm:vit_small_patch14_dinov2.lvd142m", None, None),
    ("DINOv2 ViT-B/14 @224", "timm:vit_base_patch14_dinov2.lvd142m", 256, 224),
)


# -- sources and workdir ----------------------------------------------------------------------------


def make_sources(cache: Path, videos: int, seconds: int) -> list[Path]:
    """`videos` distinct 640×360 30 fps H.264 files of `seconds` (cached): x264 high, preset fast, ~300 kb/s."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(videos):
        path = cache / f"h264_360p_{seconds}s_{i}.mp4"
        if not path.exists():
            tmp = path.with_suffix(".part.mp4")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size=640x360:rate=30:duration={seconds}", "-vf",
                            f"hue=h={37 * i},noise=alls=5:allf=t", "-c:v", "libx264", "-profile:v", "high",
                            "-preset", "fast", "-b:v", "300k", "-maxrate", "450k", "-bufsize", "900k",
                            "-pix_fmt", "yuv420p", str(tmp)], check=True)
            tmp.rename(path)
        paths.append(path)
    return paths


def make_workdir(root: Path, sources: list[Path]) -> Workdir:
    """A workdir whose videos are `sources` (linked), recorded as downloaded."""
    ids = [f"bench{i:06d}" for i in range(len(sources))]
    labels = root / "labels"
    labels.mkdir(parents=True)
    (labels / "train.lst").write_text("".join(f"{v} 0\n" for v in ids))
    (labels / "validate.lst").write_text("")
    (labels / "test.lst").write_text("")
    (labels / "count-labels-train.lst").write_text(f"Class0 0 {float(len(ids))}\n")
    wd = Workdir.init(root / "wd", labels)
    with wd.manifest() as m:
        for v, source in zip(m.videos(), sources):
            path = wd.video_path(v.video_id, "mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, path)
            except OSError:
                shutil.copyfile(source, path)
            m.record("download", v.index, "done", info={"path": str(path.relative_to(wd.root))})
    return wd


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- measurements: one function each, frames/s (and details) ---------------------------------------------


def bare_rate(args: argparse.Namespace, *, malloc: str = "keep") -> dict:
    """Frames/s of the backbone alone on inputs already normalised and on the device."""
    device = torch.device(args.device)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if device.type == "cpu" and malloc == "keep":
        keep_freed_memory()  # as the sink does
    bb = create_backbone(BACKBONE, weights="random").to(device)
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    bb = bb.to(memory_format=fmt)
    frames, batch = args.frames, args.batch_size
    x = torch.randn(frames, 3, args.crop, args.crop, device=device).contiguous(memory_format=fmt)

    def one_video() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            for i in range(0, frames, batch):
                bb(x[i:i + batch]).float().cpu()  # a short last batch runs as it is, as in the eager sink

    one_video()  # warm-up (cuDNN algorithm choice, allocator)
    sync(device)
    n = max(args.videos // 2, 1)
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(n):
        one_video()
    sync(device)
    seconds = time.perf_counter() - start
    return {"fps": n * frames / seconds, "seconds": seconds, "cpu_s": time.process_time() - cpu,
            "threads": torch.get_num_threads()}


def family_rate(backbone: str, device: torch.device, videos: int, frames: int, batch: int,
                resize: int | None = None, crop: int | None = None) -> tuple[int, int, float]:
    """(feature size, input crop, frames/s) of one backbone's bare forward at its own input (or resize/crop),
    on ready-normalised device tensors, as `bare_rate` does for ResNet-50."""
    bb = create_backbone(backbone, weights="random", resize=resize, crop=crop).to(device)
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    bb = bb.to(memory_format=fmt)
    side = bb.preprocessing.crop
    x = torch.randn(frames, 3, side, side, device=device).contiguous(memory_format=fmt)
    step = frames if bb.cfg.temporal else batch

    def one_video() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            for i in range(0, frames, step):
                bb(x[i:i + step]).float().cpu()

    one_video()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(videos):
        one_video()
    sync(device)
    return bb.cfg.dim, side, videos * frames / (time.perf_counter() - start)


def family_rows(device: torch.device, videos: int, frames: int, batch: int) -> None:
    """Print one row per entry of FAMILIES: frames/s of the bare forward and the ratio to ResNet-50's."""
    print("| family | backbone | dim | input | frames/s | vs ResNet-50 |")
    print("|---|---|---:|---:|---:|---:|")
    base = None
    for label, backbone, resize, crop in FAMILIES:
        dim, side, rate = family_rate(backbone, device, videos, frames, batch, resize, crop)
        base = base or rate
        print(f"| {label} | `{backbone}` | {dim} | {side} | {rate:.2f} | {rate / base:.2f}x |", flush=True)


def sink_rate(args: argparse.Namespace, *, pipelined: bool = False) -> dict:
    """Frames/s of the sink on pre-decoded clips, everything but decoding: one video at a time, or
    submitted ahead so that its steps overlap across videos."""
    device, frames, n = torch.device(args.device), args.frames, max(args.videos // 2, 1)
    ids = [f"sink{i:07d}" for i in range(n + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sink.zarr"
        FeatureStore.create(path, ids, frames=frames, dim=2048, attrs={})
        spec = SinkSpec("bench", BACKBONE, "random", str(path), 0, resize=args.resize, crop=args.crop)
        sink = FeatureSink([spec], device=str(device), batch_size=args.batch_size, threads=args.torch_threads,
                           room=3)
        rng = np.random.default_rng(0)
        clips = [rng.integers(0, 256, (frames, 3, args.crop, args.crop), dtype=np.uint8) for _ in range(n + 1)]
        sink.consume(Decoded(n, ids[n], frames, (clips[n],)))  # warm-up
        sync(device)
        start = time.perf_counter()
        if pipelined:
            futures = [sink.submit(Decoded(i, ids[i], frames, (clips[i],))) for i in range(n)]
            results = [f.result() for f in futures]
        else:
            results = [sink.consume(Decoded(i, ids[i], frames, (clips[i],))) for i in range(n)]
        sync(device)
        seconds = time.perf_counter() - start
        sink.close()
    assert all(r.sets["bench"] is None for r in results), [r.message for r in results]
    busy = sum(r.infer_seconds for r in results)
    return {"fps": n * frames / seconds, "seconds": seconds, "busy": busy / seconds}


def _drain(q) -> None:
    while q.get() is not None:
        pass


def relay_rate(args: argparse.Namespace) -> dict:
    """Frames/s and the sender's CPU ms per video of putting decoded clips on a queue to another process."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    q = ctx.Queue(maxsize=2)
    reader = ctx.Process(target=_drain, args=(q,))
    reader.start()
    clip = np.random.default_rng(0).integers(0, 256, (args.frames, 3, args.crop, args.crop), dtype=np.uint8)
    n = max(args.videos, 2)
    q.put(Decoded(0, "warm", args.frames, (clip,)))
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        q.put(Decoded(i, "relay", args.frames, (clip,)))
    q.put(None)
    reader.join()
    seconds = time.perf_counter() - start
    return {"fps": n * args.frames / seconds, "seconds": seconds,
            "sender_cpu_ms_per_video": 1000 * (time.process_time() - cpu) / n, "mb_per_video": clip.nbytes / 1e6}


def decode_rate(args: argparse.Namespace) -> dict:
    """Frames/s of `decode_job` alone over the sources: one process per core, one decoder thread each."""
    sources = make_sources(args.cache, args.videos, args.seconds)
    jobs = [DecodeJob(i, p.stem, str(p), (View(args.resize, args.crop),), frames=args.frames,
                      selective=not args.full_decode, threads=1) for i, p in enumerate(sources)]
    executor = create_executor("local", workers=available_cores())
    try:
        list(executor.run(decode_job, jobs[:1]))  # start the pool (imports) before the clock
        start = time.perf_counter()
        results = list(executor.run(decode_job, jobs))
        seconds = time.perf_counter() - start
    finally:
        executor.close()
    assert all(r.failure is None for r in results), [r.message for r in results if r.failure]
    return {"fps": len(jobs) * args.frames / seconds, "seconds": seconds,
            "cpu_s_per_video": statistics.mean(r.info["cpu_seconds"] for r in results),
            "selective": sum(bool(r.info.get("selective")) for r in results)}


def stage_rate(args: argparse.Namespace) -> dict:
    """Frames/s of `run_extract` (decoding included), whole run and steady state, and its split."""
    sources = make_sources(args.cache, args.videos, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        wd = make_workdir(Path(tmp), sources)
        cfg = ExtractConfig(backbones=(BACKBONE,), weights="random", names=("bench",), device=args.device,
                            batch_size=args.batch_size, frames=args.frames, resize=args.resize, crop=args.crop,
                            workers=args.workers, decoder_threads=args.decoder_threads,
                            torch_threads=args.torch_threads, decoder_nice=args.nice,
                            selective=not args.full_decode)
        counts = run_extract(wd, cfg, progress=False)
        assert counts["done"] == counts["videos"] == len(sources), counts
    split = counts["split"]  # steady state: from the first video done to the last
    after_first = counts["seconds"] - split["first_video_s"]
    steady = (counts["done"] - 1) * args.frames / after_first if counts["done"] > 1 and after_first > 0 else None
    return {"fps": counts["done"] * args.frames / counts["seconds"], "steady_fps": steady,
            "seconds": counts["seconds"], "split": split}


def stage_before_rate(args: argparse.Namespace) -> dict:
    """The stage as sized before issue 17: 2 decode processes on FFmpeg's threads at normal priority, every
    frame decoded (the sink's allocator setting stays: `bare_default_malloc` shows what it is worth)."""
    return stage_rate(argparse.Namespace(**{**vars(args), "workers": 2, "decoder_threads": 0, "nice": 0,
                                            "full_decode": True}))


MEASUREMENTS = {
    "bare": bare_rate,
    "bare_default_malloc": lambda args: bare_rate(args, malloc="default"),
    "sink": sink_rate,
    "sink_pipelined": lambda args: sink_rate(args, pipelined=True),
    "relay": relay_rate,
    "decode": decode_rate,
    "stage": stage_rate,
    "stage_before": stage_before_rate,
}


# -- driver ----------------------------------------------------------------------------------------------


def child(name: str, argv: list[str]) -> dict:
    """Run measurement `name` in a fresh process; its JSON result with the load around it."""
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, *argv, "--only", name], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"measurement": name, **row, "load": [round(load, 1), round(os.getloadavg()[0], 1)]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--videos", type=int, default=4, help="videos in the stage and decode runs")
    p.add_argument("--frames", type=int, default=150, help="frames per video")
    p.add_argument("--seconds", type=int, default=150, help="source length (>= 150 for the issue's figure)")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=None, help="frames per forward (default: --frames)")
    p.add_argument("--workers", type=int, default=None, help="stage: decode processes (default: sized)")
    p.add_argument("--decoder-threads", type=int, default=None, help="stage: threads per decoder (default: sized)")
    p.add_argument("--torch-threads", type=int, default=None, help="inference threads (default: sized)")
    p.add_argument("--nice", type=int, default=None, help="stage: decoder priority increment (default: sized)")
    p.add_argument("--full-decode", action="store_true", help="decode every frame (selective off)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--measure", default="bare,bare_default_malloc,sink,decode,stage",
                   help="comma-separated: " + ", ".join(MEASUREMENTS))
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videolt-bench-extract")
    p.add_argument("--gpu-rate", type=float, default=5000.0, help="frames/s one GPU is expected to infer")
    p.add_argument("--typical-seconds", type=float, default=192.0, help="mean video length for the estimate")
    p.add_argument("--families", action="store_true", help="only the bare forward of one backbone per family")
    p.add_argument("--only", choices=list(MEASUREMENTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batch_size = args.batch_size or args.frames
    return args


def main() -> None:
    args = parse_args()
    if args.only:
        one_malloc_arena()  # as the `videolt` command does before it extracts
        print(json.dumps(MEASUREMENTS[args.only](args)))
        return
    argv = [a for a in sys.argv[1:]]
    names = args.measure.split(",")
    device = torch.device(args.device)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {available_cores()} cores, "
          f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, {args.videos} videos x {args.frames} frames of "
          f"{args.seconds}-s 360p H.264, crop {args.crop}, batch {args.batch_size}, load {os.getloadavg()[0]:.1f}",
          flush=True)
    if args.families:
        print(f"# bare forward, {args.videos} x {args.frames} frames, random weights", flush=True)
        family_rows(device, args.videos, args.frames, args.batch_size)
        return
    make_sources(args.cache, args.videos, args.seconds)
    rows: dict[str, list[dict]] = {}
    for rep in range(args.repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotate the order
            row = child(name, argv)
            print(json.dumps(row), flush=True)
            rows.setdefault(name, []).append(row)
    med = {name: statistics.median(r["fps"] for r in rs) for name, rs in rows.items()}
    print()
    for name in names:
        print(f"{name:22s} {med[name]:8.2f} frames/s (median of {len(rows[name])})")
    if "stage" in med and "bare" in med and "decode" in med:
        ceiling = min(med["bare"], med["decode"])
        steady = statistics.median(r["steady_fps"] or r["fps"] for r in rows["stage"])
        print(f"stage / min(bare, decode) = {med['stage'] / ceiling:.2f} whole run, {steady / ceiling:.2f} steady; "
              f"shared-core bound 1/(1/bare + 1/decode) = {1 / (1 / med['bare'] + 1 / med['decode']) / ceiling:.2f}")
    if "sink" in med and "sink_pipelined" in med:
        busy = {name: statistics.median(r["busy"] for r in rows[name]) for name in ("sink", "sink_pipelined")}
        print(f"sink_pipelined / sink = {med['sink_pipelined'] / med['sink']:.3f} (the overlap gained); forward busy "
              f"{busy['sink']:.1%} serial, {busy['sink_pipelined']:.1%} pipelined")
    if "decode" in rows:
        per_video = statistics.median(r["cpu_s_per_video"] for r in rows["decode"])
        core_s = per_video / args.seconds * args.typical_seconds
        print(f"decode: {per_video:.2f} CPU-s per {args.seconds}-s 360p video (~{core_s:.1f} core-s per "
              f"{args.typical_seconds:.0f}-s video); at {args.gpu_rate:.0f} frames/s one GPU needs "
              f"~{args.gpu_rate / VIDEOLT_FRAMES * core_s:.0f} decoding cores (estimate)")


if __name__ == "__main__":
    main()
