"""`videolt extract --verify N`: recompute a few videos' features on a plain, independent path and compare.

For each of N videos (drawn with a generator seeded by the config's `seed` among the rows done in
every feature set of the run), the reference path is:

- the ffmpeg CLI decodes at `fps` with `-vf fps=fps=F:round=up` (the rule videolt's decoders match
  frame for frame), and the frames floor(linspace(0, n − 1, frames)) are kept;
- the backbone's own library prepares each frame from a PIL image: torchvision's weights transform
  for resnet50/101 and tsm_r50, timm's `create_transform` for `timm:` models;
- the model runs in fp32 (no autocast, no channels_last, no compile, TF32 off).

Per video and feature set it reports ||stored − reference|| / ||reference|| over the [frames, D]
features. The two resampling filters differ by a grey level or two and the features are stored in
float16, so a correct extraction stays well under the default 2 % tolerance; a wrong frame, crop,
normalisation, precision problem or a broken accelerator shows as a larger error.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import StageError
from videolt.extract.backbones import Backbone, backbone_options, create_backbone
from videolt.extract.config import ExtractConfig, feature_set_names
from videolt.extract.transforms import Preprocessing

__all__ = ["VerifyResult", "check_verified", "require_ffmpeg", "verify_features"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyResult:
    """One video of one feature set: its relative error against the reference, or why there is none."""

    feature_set: str
    index: int
    video_id: str
    rel_error: float | None
    message: str | None = None

    def ok(self, tolerance: float) -> bool:
        return self.rel_error is not None and self.rel_error <= tolerance

    def line(self, tolerance: float) -> str:
        if self.rel_error is None:
            return f"verify {self.feature_set} {self.video_id}: FAILED, {self.message}"
        verdict = "ok" if self.ok(tolerance) else "ABOVE TOLERANCE"
        return (f"verify {self.feature_set} {self.video_id}: relative error {self.rel_error:.3%} "
                f"(tolerance {tolerance:.1%}) {verdict}")


def require_ffmpeg() -> None:
    """The reference decoder is the ffmpeg CLI: say so in one line when it is missing."""
    if shutil.which("ffmpeg") is None:
        raise StageError("--verify needs the ffmpeg CLI as its reference decoder, but ffmpeg is not on PATH; "
                         "install it (e.g. apt install ffmpeg) or run without --verify")


def verify_features(wd: Workdir, cfg: ExtractConfig, *, device: str | torch.device = "cpu") -> list[VerifyResult]:
    """Compare `cfg.verify` videos of every feature set of `cfg` with the reference path (see the module doc).

    Each video is decoded once by ffmpeg for all the run's feature sets, as the stage decodes it once.
    """
    require_ffmpeg()
    names = feature_set_names(cfg)
    stores = [FeatureStore.open(wd.features_path(name)) for name in names]
    picks = _pick_rows(stores, cfg.verify, cfg.seed)
    if not picks:
        log.warning("verify: no video is done in every feature set of this run; nothing to verify")
        return []
    device = torch.device(device)
    results: list[VerifyResult] = []
    with _plain_fp32():
        backbones = [_reference_backbone(cfg, b, store, device) for b, store in zip(cfg.backbones, stores)]
        for index, (video_id, path) in zip(picks, _video_paths(wd, picks)):
            decoded: dict[int, tuple[int, dict[int, np.ndarray]]] = {}  # n → ffmpeg's frames: one decode per video

            def decode(n: int, path: Path = path) -> tuple[int, dict[int, np.ndarray]]:
                if n not in decoded:
                    keep = set(np.floor(np.linspace(0, n - 1, cfg.frames)).astype(int).tolist())
                    decoded[n] = ffmpeg_frames(path, cfg.fps, keep=keep)
                return decoded[n]

            for bb, name, store in zip(backbones, names, stores):
                result = _verify_one(bb, store, name, index, video_id, path, decode, cfg, device)
                log.info(result.line(cfg.verify_tolerance))
                results.append(result)
    return results


def _reference_backbone(cfg: ExtractConfig, backbone: str, store: FeatureStore, device: torch.device) -> Backbone:
    """The run's backbone in fp32 on `device`, after checking that it is fed what the feature set records."""
    opts = {"n_segment": cfg.n_segment} if "n_segment" in backbone_options(backbone) else {}
    bb = create_backbone(backbone, weights=cfg.weights, seed=cfg.seed, resize=cfg.resize, crop=cfg.crop, **opts)
    recorded = Preprocessing.from_dict(store.attrs.get("preprocessing", {}))
    if recorded != bb.preprocessing:
        raise StageError(f"{store.path}: records preprocessing {recorded}, but {backbone} is fed "
                         f"{bb.preprocessing}; the feature set was made with other settings")
    return bb.to(device)


def check_verified(results: list[VerifyResult], tolerance: float) -> dict:
    """A summary of the results; raises StageError (exit 1) when any is above `tolerance` or failed."""
    bad = [r for r in results if not r.ok(tolerance)]
    errors = [r.rel_error for r in results if r.rel_error is not None]
    summary = {"checked": len(results), "failed": len(bad), "tolerance": tolerance,
               "worst": max(errors) if errors else None, "videos": [asdict(r) for r in results]}
    if bad:
        worst = max(bad, key=lambda r: float("inf") if r.rel_error is None else r.rel_error)
        what = "could not be recomputed" if worst.rel_error is None else f"{worst.rel_error:.2%}"
        raise StageError(f"verify: {len(bad)} of {len(results)} checked videos differ from the reference path by "
                         f"more than {tolerance:.1%} (worst: {worst.feature_set} {worst.video_id}, {what}); "
                         "these features are not trustworthy")
    return summary


def _pick_rows(stores: list[FeatureStore], n: int, seed: int) -> list[int]:
    done = np.ones(stores[0].n, dtype=bool)
    for store in stores:
        done &= store.status() == STATUS_DONE
    rows = np.flatnonzero(done)
    if len(rows) <= n:
        return rows.tolist()
    return sorted(np.random.default_rng(seed).choice(rows, size=n, replace=False).tolist())


def _video_paths(wd: Workdir, rows: list[int]) -> list[tuple[str, Path | None]]:
    with wd.manifest() as m:
        downloads = m.states("download")
        out = []
        for i in rows:
            video_id = m.video(i).video_id
            dl = downloads.get(i)
            path = wd.inside(dl.info["path"]) if dl is not None and "path" in dl.info else wd.find_video(video_id)
            out.append((video_id, path))
    return out


@contextmanager
def _plain_fp32() -> Iterator[None]:
    """fp32 without TF32 on CUDA (convolutions allow TF32 by default), restored afterwards."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _verify_one(bb: Backbone, store: FeatureStore, name: str, index: int, video_id: str, path: Path | None,
                decode: Callable[[int], tuple[int, dict[int, np.ndarray]]], cfg: ExtractConfig,
                device: torch.device) -> VerifyResult:
    """One video of one feature set; `decode(n)` gives ffmpeg's frame count and the frames sampled from n."""
    if path is None or not path.is_file():
        return VerifyResult(name, index, video_id, None, "its video file is gone")
    n = int(store.n_frames()[index])
    picks = np.floor(np.linspace(0, n - 1, cfg.frames)).astype(int)  # the sampling rule, written out
    try:
        decoded, frames = decode(n)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return VerifyResult(name, index, video_id, None, f"ffmpeg could not decode {path} ({e})")
    if decoded != n:
        return VerifyResult(name, index, video_id, None,
                            f"ffmpeg decodes {decoded} frames at {cfg.fps:g} fps, the feature set records {n}")
    from PIL import Image

    transform = bb.reference_transform()
    x = torch.stack([transform(Image.fromarray(frames[int(k)])) for k in picks])  # [frames, 3, c, c] float32
    with torch.inference_mode():
        if bb.cfg.temporal:
            ref = bb(x.to(device))
        else:
            ref = torch.cat([bb(x[i:i + cfg.batch_size].to(device)) for i in range(0, len(x), cfg.batch_size)])
    ref64 = ref.double().cpu().numpy()
    got = store.read_rows([index])[0].astype(np.float64)
    scale = np.linalg.norm(ref64)
    if not np.isfinite(got).all():
        return VerifyResult(name, index, video_id, None, "the stored features are not all finite")
    rel = float(np.linalg.norm(got - ref64) / scale) if scale > 0 else float(np.linalg.norm(got) > 0)
    return VerifyResult(name, index, video_id, rel)


def ffmpeg_frames(path: str | Path, fps: float, *, keep: set[int] | None = None) -> tuple[int, dict[int, np.ndarray]]:
    """(number of frames, {tick index: uint8 [H, W, 3] RGB}) from the ffmpeg CLI at `fps` (the frame shown
    at each t = k / fps, autorotated); only the ticks in `keep` are held in memory (all when None).

    Frames come as a stream of PPM images, whose headers give each frame's size.
    """
    rate = Fraction(fps).limit_denominator(1_000_000)
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-an", "-vf", f"fps=fps={rate}:round=up",
           "-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"]
    frames: dict[int, np.ndarray] = {}
    n = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while (header := _ppm_header(proc.stdout)) is not None:
            width, height = header
            buf = proc.stdout.read(width * height * 3)
            if len(buf) < width * height * 3:
                break
            if keep is None or n in keep:
                frames[n] = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            n += 1
        err = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise ValueError(err.splitlines()[-1] if err else f"ffmpeg exited with {proc.returncode}")
    return n, frames


def _ppm_header(stream) -> tuple[int, int] | None:
    """One binary PPM header ("P6\\n<w> <h>\\n255\\n", as ffmpeg writes it) → (width, height); None at the end."""
    magic = stream.readline()
    if not magic:
        return None
    if magic.strip() != b"P6":
        raise ValueError(f"unexpected ffmpeg output {magic[:16]!r}")
    width, height = (int(t) for t in stream.readline().split())
    if stream.readline().strip() != b"255":
        raise ValueError("ffmpeg wrote a PPM frame that is not 8-bit")
    return width, height
