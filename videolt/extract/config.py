"""The extract stage's config: which backbones, how frames are decoded and prepared, where it runs.

Kept apart from the stage code so the CLI can read the keys' defaults without importing torch (the docs
that list the registered backbones and decoders import their registries when shown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videolt.config import field
from videolt.data.protocol import FPS, FRAMES
from videolt.errors import ConfigError

__all__ = ["ExtractConfig", "feature_set_names"]


def _backbone_names() -> list[str]:
    """The registered backbones (their package, and torch, imported only when a doc lists them)."""
    from videolt.extract.backbones import list_backbones

    return list_backbones()


def _decoder_names() -> list[str]:
    from videolt.extract.decoders import DECODERS

    return DECODERS.names()


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """One extraction pass: every video is decoded once for all its backbones."""

    backbones: tuple[str, ...] = field(("resnet50",), "backbones to run: {names}; each video is decoded once for all",
                                       names=_backbone_names)
    weights: str = field("imagenet", "imagenet (library download; for timm:<name> its pretrained tag from the hub), "
                         "kinetics400 (tsm_r50), random (seeded) or a .safetensors/.pth file")
    names: tuple[str, ...] = field((), "feature set names, one per backbone; default <backbone>[-<weights>]")
    device: str = field("auto", "auto (every GPU there is, else the CPU), cpu, cuda or cuda:N")
    devices: str | int | None = field(None, "one sink per device: auto (every GPU, else one CPU sink), N (the "
                                      "first N GPUs; on Ray, N GPU sink actors) or a list of one kind "
                                      "(cuda:0,cuda:1 or cpu,cpu); default: from `device`")
    batch_size: int = field(150, "frames per forward pass (with pack_videos, several whole videos up to this)")
    pack_videos: bool | None = field(None, "several whole videos per forward, up to batch_size frames; default: "
                                     "on CUDA only (on the CPU a batch's size can change the float sums)")
    decoder: str = field("pyav", "decoding backend: {names}", names=_decoder_names)
    selective: bool = field(True, "discard frames no tick shows and no frame references before decoding, where "
                            "exact (H.264 in mp4/mkv/webm/ts/flv); false: decode every frame")
    workers: int | None = field(None, "decoding processes (0: decode in the main process); default: sized from "
                                "the cores and the device (extract/cores.py)")
    decoder_threads: int | None = field(None, "threads per decoder (0: FFmpeg's choice); default: sized with workers")
    torch_threads: int | None = field(None, "inference threads of the backbone process; default: sized with workers")
    decoder_nice: int | None = field(None, "priority increment of the decode processes (local executor); default 0")
    executor: Literal["local", "ray"] = field("local", "where decoding runs: processes here or a Ray cluster")
    ray_address: str | None = field(None, "Ray cluster to join (executor ray; default: start a local one)")
    splits: tuple[str, ...] = field((), "only these splits (default: all)")
    limit: int | None = field(None, "at most this many videos this run")
    fps: float = field(FPS, "decoding rate")
    frames: int = field(FRAMES, "frames per video after uniform temporal sampling")
    resize: int | None = field(None, "short side after resizing, for every backbone of the run (default: each "
                               "backbone's own: 256 for resnet50/101 and tsm_r50, timm's pretrained config for timm:)")
    crop: int | None = field(None, "square centre crop fed to every backbone of the run (default: each backbone's "
                             "own: 256 for the paper's backbones; a fixed-size model is built at this size if it can)")
    dtype: Literal["float16", "float32"] = field("float16", "feature storage dtype")
    compression: Literal["none", "zstd"] = field("none", "feature chunks: none (raw, read without zarr: several "
                                                 "times faster to stream in training) or zstd (smaller)")
    timeout: float | None = field(900.0, "seconds allowed to decode one video")
    seed: int = field(0, "init seed for random weights")
    n_segment: int = field(8, "TSM: frames per temporal segment")
    amp: bool | None = field(None, "bf16 autocast; default: on CUDA only")
    compile: bool = field(False, "torch.compile the backbones (static batch shapes)")
    retry: tuple[str, ...] = field((), "failure classes to try again (e.g. timeout, inference)")
    verify: int = field(0, "after extracting, recompute this many done videos (drawn with `seed`) per feature set "
                        "with the reference path (ffmpeg frames, the model library's transform, fp32) and compare")
    verify_tolerance: float = field(0.02, "largest relative error verify accepts (0.02 = 2 %)")

    def __post_init__(self) -> None:
        if self.devices is not None and self.device != "auto":
            raise ConfigError(f"extract.devices and extract.device: set one (devices {self.devices!r}, "
                              f"device {self.device!r})")
        if self.batch_size < 1:
            raise ConfigError(f"extract.batch_size: expected a positive number of frames, got {self.batch_size}")
        if self.ray_address is not None and self.executor != "ray":
            raise ConfigError(f"extract.ray_address is for executor ray, not {self.executor}")
        for key in ("resize", "crop"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"extract.{key}: expected a positive number of pixels, got {value}")
        if self.verify < 0:
            raise ConfigError(f"extract.verify: expected a number of videos >= 0, got {self.verify}")
        if not self.verify_tolerance > 0:
            raise ConfigError(f"extract.verify_tolerance: expected a positive fraction, got {self.verify_tolerance}")


def feature_set_names(cfg: ExtractConfig) -> list[str]:
    """The feature set of each backbone: `names`, or <backbone>[-random|-file] by default."""
    if cfg.names:
        if len(cfg.names) != len(cfg.backbones):
            raise ConfigError(f"names (--name): {len(cfg.names)} names for {len(cfg.backbones)} backbones")
        return list(cfg.names)
    tag = "" if cfg.weights == "imagenet" else "-" + ("random" if cfg.weights == "random" else "file")
    return [b.replace(":", "-").replace("/", "-") + tag for b in cfg.backbones]
