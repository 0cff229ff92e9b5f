"""Extract-stage throughput against the bare backbone forward on the same device, in the same run.

    python benchmarks/extract.py [--device cpu|cuda] [--videos 2] [--frames 150] [--crop 224] [--workers 2]
    python benchmarks/extract.py --families [--device cpu|cuda] [--videos 1] [--frames 8]

`--families`: one row per backbone family instead (see `FAMILIES`): frames/s of the bare forward at
the backbone's own input (DINOv2 also at 224), the same measurement as "bare" below.

Three figures, frames per second:
- bare: `backbone(x)` on ready-normalised device tensors, batches of `--batch-size` (the ceiling);
- sink: `FeatureSink.consume` on pre-decoded uint8 clips (decoding excluded): uint8 → float, normalise,
  host → device, forward, device → host, Zarr `write_row`;
- stage: `run_extract` over generated videos (`--seconds` long, 640×360 H.264) with `--workers`
  decoding processes (decoding included; on a CPU device decoders and inference share the cores).
On CUDA the sink uses bf16 autocast and channels_last, and so does the bare forward. The decode cost
per video (from the manifest) gives an estimate of the CPU cores one GPU needs at `--gpu-rate`.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.extract.backbones import create_backbone
from videolt.extract.config import ExtractConfig
from videolt.extract.runner import Decoded, FeatureSink, SinkSpec
from videolt.pipeline.extract import extract_features

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


def make_workdir(root: Path, videos: int, seconds: int) -> Workdir:
    """A workdir whose videos are ffmpeg test patterns, recorded as downloaded."""
    ids = [f"bench{i:06d}" for i in range(videos)]
    labels = root / "labels"
    labels.mkdir(parents=True)
    (labels / "train.lst").write_text("".join(f"{v} 0\n" for v in ids))
    (labels / "validate.lst").write_text("")
    (labels / "test.lst").write_text("")
    (labels / "count-labels-train.lst").write_text(f"Class0 0 {float(videos)}\n")
    wd = Workdir.init(root / "wd", labels)
    with wd.manifest() as m:
        for v in m.videos():
            path = wd.video_path(v.video_id, "mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size=640x360:rate=25:duration={seconds}", "-vf", f"hue=h={37 * v.index}",
                            "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
                            str(path)], check=True)
            m.record("download", v.index, "done", info={"path": str(path.relative_to(wd.root))})
    return wd


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_rate(device: torch.device, videos: int, frames: int, crop: int, batch: int) -> float:
    """Frames/s of the backbone alone on inputs already normalised and on the device."""
    bb = create_backbone(BACKBONE, weights="random").to(device)
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    bb = bb.to(memory_format=fmt)
    x = torch.randn(frames, 3, crop, crop, device=device).contiguous(memory_format=fmt)

    def one_video() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            for i in range(0, frames, batch):
                chunk = x[i:i + batch]
                if len(chunk) < batch:  # the sink pads its last batch to a static shape too
                    chunk = torch.cat([chunk, chunk[-1:].expand(batch - len(chunk), *chunk.shape[1:])])
                bb(chunk).float().cpu()

    one_video()  # warm-up (cuDNN algorithm choice, allocator)
    sync(device)
    start = time.perf_counter()
    for _ in range(videos):
        one_video()
    sync(device)
    return videos * frames / (time.perf_counter() - start)


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


def sink_rate(root: Path, device: torch.device, videos: int, frames: int, crop: int, batch: int) -> float:
    """Frames/s of `FeatureSink.consume` on pre-decoded clips: everything but decoding."""
    ids = [f"sink{i:07d}" for i in range(videos + 1)]
    path = root / "sink.zarr"
    FeatureStore.create(path, ids, frames=frames, dim=2048, attrs={})
    sink = FeatureSink([SinkSpec("bench", BACKBONE, "random", str(path), 0)], device=str(device), batch_size=batch)
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (frames, 3, crop, crop), dtype=np.uint8) for _ in range(videos + 1)]
    sink.consume(Decoded(videos, ids[videos], frames, (clips[videos],)))  # warm-up
    sync(device)
    start = time.perf_counter()
    for i in range(videos):
        result = sink.consume(Decoded(i, ids[i], frames, (clips[i],)))
        assert result.sets["bench"] is None, result.message
    sync(device)
    return videos * frames / (time.perf_counter() - start)


def stage_rate(wd: Workdir, device: str, frames: int, crop: int, resize: int, batch: int,
               workers: int) -> tuple[float, list[float]]:
    """Frames/s of `run_extract` (decoding included) and each video's decode seconds."""
    cfg = ExtractConfig(backbones=(BACKBONE,), weights="random", names=("bench",), device=device, batch_size=batch,
                        workers=workers, frames=frames, resize=resize, crop=crop)
    counts = extract_features(wd, cfg, progress=False)  # on the local executor, `workers` processes
    assert counts["done"] == counts["videos"], counts
    with wd.manifest() as m:
        decode = [s.info["seconds"] for s in m.states("decode").values()]
    return counts["done"] * frames / counts["seconds"], decode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--videos", type=int, default=2, help="videos per measurement")
    p.add_argument("--frames", type=int, default=150, help="frames per video")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=None, help="frames per forward (default: --frames)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes for the stage run")
    p.add_argument("--seconds", type=int, default=None, help="generated video length (default: --frames)")
    p.add_argument("--gpu-rate", type=float, default=5000.0, help="frames/s one GPU is expected to infer")
    p.add_argument("--typical-seconds", type=float, default=192.0, help="mean video length for the estimate")
    p.add_argument("--families", action="store_true", help="only the bare forward of one backbone per family")
    args = p.parse_args()
    args.batch_size = args.batch_size or args.frames  # a short clip padded to 150 would measure the padding
    device = torch.device(args.device)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    if args.families:
        print(f"# {time.strftime('%Y-%m-%d %H:%M')}, bare forward, {args.videos} x {args.frames} frames, "
              "random weights")
        family_rows(device, args.videos, args.frames, args.batch_size)
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {args.videos} videos x {args.frames} frames, crop {args.crop}, "
          f"batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        wd = make_workdir(root / "videos", args.videos, args.seconds or args.frames)
        print(f"# generated {args.videos} videos in {time.perf_counter() - start:.1f} s", flush=True)
        bare = bare_rate(device, args.videos, args.frames, args.crop, args.batch_size)
        print(f"bare forward           {bare:8.1f} frames/s", flush=True)
        sink = sink_rate(root, device, args.videos, args.frames, args.crop, args.batch_size)
        print(f"sink (decode excluded) {sink:8.1f} frames/s  = {sink / bare:5.1%} of bare (target >= 90%)", flush=True)
        stage, decode = stage_rate(wd, args.device, args.frames, args.crop, args.resize, args.batch_size,
                                   args.workers)
    per_video_s = float(np.mean(decode)) / (args.seconds or args.frames) * args.typical_seconds
    cores = args.gpu_rate / VIDEOLT_FRAMES * per_video_s
    print(f"stage (decode incl.)   {stage:8.1f} frames/s  = {stage / bare:5.1%} of bare, {args.workers} workers")
    print(f"decode: {np.mean(decode):.2f} s per {args.seconds or args.frames}-s 640x360 video "
          f"(~{per_video_s:.1f} core-s per {args.typical_seconds:.0f}-s video); at {args.gpu_rate:.0f} frames/s "
          f"one GPU needs ~{cores:.0f} decoding cores (estimate)")


if __name__ == "__main__":
    main()
