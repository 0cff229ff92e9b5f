"""The backbone registry, its config dataclass, the `Backbone` module and `create_backbone`.

A backbone maps the normalised frames of one video, in temporal order, to one pooled
penultimate-layer feature per frame. Its `BackboneCfg` carries the `Preprocessing` the weights
expect (the paper's recipe for resnet50/101 and tsm_r50, the model's pretrained config for
`timm:`), with any `--resize`/`--crop` override applied by `create_backbone`: the stage applies that
very object and writes it to the feature set's attrs. Each backbone also knows the reference
transform of its own library (torchvision's weights transforms, timm's `create_transform`), which
`--verify` and the tests compare against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from videolt.errors import ConfigError, UnknownNameError, UsageError
from videolt.extract.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from videolt.registry import Registry

__all__ = ["BACKBONES", "BACKBONE_PREFIXES", "PAPER_PREPROCESSING", "Backbone", "BackboneCfg", "backbone_options",
           "create_backbone", "list_backbones", "parse_backbone_name", "torchvision_reference"]

# The VideoLT paper's recipe, kept by its backbones (resnet50, resnet101, tsm_r50).
PAPER_PREPROCESSING = Preprocessing(resize=256, crop=256, interpolation="bilinear", antialias=True,
                                    mean=IMAGENET_MEAN, std=IMAGENET_STD)

BackboneFactory = Callable[..., "Backbone"]
# Plain names ("resnet50") → factory(weights=, seed=, crop=, **opts).
BACKBONES: Registry[BackboneFactory] = Registry("backbone", facts=("weights", "seed", "crop"))
# "<prefix>:<name>" → factory(name, weights=, seed=, crop=, **opts), e.g. "timm:convnext_tiny".
# `crop` is the square input side asked for (None: the weights' own); a factory whose model has a
# fixed input size builds it at that size or raises a ConfigError naming the sizes it takes.
BACKBONE_PREFIXES: Registry[BackboneFactory] = Registry("backbone prefix", facts=("weights", "seed", "crop"))

# A reference transform: one RGB frame (PIL image) → float32 [3, crop, crop], built by the
# backbone's own library from a Preprocessing.
ReferenceTransform = Callable[[Any], Tensor]
ReferenceFactory = Callable[[Preprocessing], ReferenceTransform]


def torchvision_reference(pre: Preprocessing) -> ReferenceTransform:
    """torchvision's classification weights transform (`ResNet50_Weights.IMAGENET1K_V1.transforms()`,
    i.e. `ImageClassification`) with this preprocessing's sizes, interpolation and mean/std."""
    from torchvision.models import ResNet50_Weights
    from torchvision.transforms import InterpolationMode

    return ResNet50_Weights.IMAGENET1K_V1.transforms(
        crop_size=pre.crop, resize_size=pre.resize, mean=pre.mean, std=pre.std,
        interpolation=InterpolationMode(pre.interpolation), antialias=pre.antialias)


@dataclass(frozen=True, kw_only=True)
class BackboneCfg:
    """What a backbone is and the input its weights expect (mean/std on the 0–1 scale)."""

    name: str  # as given to create_backbone, e.g. "resnet50", "timm:resnet18"
    arch: str  # the architecture actually built, e.g. "torchvision.resnet50"
    weights: str  # named weights (e.g. "ResNet50_Weights.IMAGENET1K_V1"), "random", or a file path
    weights_sha256: str | None  # of the weights file; None for random init (and timm hub weights)
    seed: int | None  # init seed, for random weights only
    dim: int  # feature size per frame
    preprocessing: Preprocessing  # the input the model is fed (its weights' own unless overridden)
    temporal: bool = False  # frames interact: pass one video's frames in temporal order
    n_segment: int | None = None  # frames per temporal segment (temporal backbones)

    def __post_init__(self) -> None:
        if self.temporal and (not isinstance(self.n_segment, int) or self.n_segment < 1):
            raise ConfigError(f"backbone {self.name}: n_segment must be a positive integer, got {self.n_segment!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, for Zarr attrs and run configs (`preprocessing` as its own `to_dict()`)."""
        return {**asdict(self), "preprocessing": self.preprocessing.to_dict()}


class Backbone(nn.Module):
    """A frozen feature extractor: `forward(frames [N, 3, H, W]) -> [N, dim]` float32.

    For a temporal backbone the N frames are one video in temporal order and are cut into
    consecutive segments of `n_segment`. When N is not a multiple of it, the last frames take
    their features from the window of the last `n_segment` frames (overlapping the previous
    segment), so every segment holds real, consecutive frames and no padding ever enters one;
    a video shorter than `n_segment` is run as one shorter segment. The wrapped temporal model
    is called as `model(x, n_segment)` with x a whole number of segments.
    """

    def __init__(self, model: nn.Module, cfg: BackboneCfg, reference: ReferenceFactory = torchvision_reference):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self._reference = reference
        self.requires_grad_(False)
        self.eval()

    @property
    def preprocessing(self) -> Preprocessing:
        return self.cfg.preprocessing

    def reference_transform(self) -> ReferenceTransform:
        """The backbone library's own transform for `preprocessing`: PIL RGB frame → float32 [3, crop, crop].

        An independent path to the same input (used by `--verify` and the tests); its resampling
        filter may differ from the batched tensor one by a grey level or two.
        """
        return self._reference(self.cfg.preprocessing)

    def train(self, mode: bool = True) -> Backbone:
        """Stay in eval mode: BatchNorm must use its running statistics for features."""
        return super().train(False)

    @torch.inference_mode()
    def forward(self, frames: Tensor) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected frames [N, 3, H, W], got {tuple(frames.shape)}")
        if frames.shape[0] == 0:
            return frames.new_zeros((0, self.cfg.dim), dtype=torch.float32)
        if not self.cfg.temporal:
            return self.model(frames).float()  # [N, dim]
        seg = self.cfg.n_segment or 1  # never 0 or None: checked in BackboneCfg
        n = frames.shape[0]
        if n <= seg:
            return self.model(frames, n).float()
        whole = n - n % seg
        feats = [self.model(frames[:whole], seg)]  # [whole, dim]
        if whole < n:
            last = self.model(frames[n - seg :], seg)  # [seg, dim], the last n - whole are new
            feats.append(last[whole - n :])
        return torch.cat(feats).float()

    @torch.inference_mode()
    def forward_clips(self, frames: Tensor, lengths: Sequence[int]) -> Tensor:
        """Several videos' frames, concatenated in order ([sum(lengths), 3, H, W]) → [sum(lengths), dim].

        Each video is cut as `forward` cuts one; a temporal backbone runs every video's segments
        together in one model call (videos shorter than `n_segment` run alone, each as one shorter
        segment), so packing whole clips changes no segment, only the batch.
        """
        if not self.cfg.temporal or len(lengths) == 1:
            return self(frames)
        seg = self.cfg.n_segment or 1
        take: list[int] = []  # the segment frames of every video, in model-call order
        rows: list[int] = []  # for each output frame, its row in that call's output
        alone: list[tuple[int, int]] = []  # (offset, n) of videos shorter than a segment
        offset = 0
        for n in lengths:
            if n <= seg:
                alone.append((offset, n))
                rows.extend([-1] * n)
            else:
                whole = n - n % seg
                first = len(take)
                take.extend(range(offset, offset + whole))
                rows.extend(range(first, first + whole))
                if whole < n:  # the last window overlaps the previous segment; its last n - whole are new
                    take.extend(range(offset + n - seg, offset + n))
                    rows.extend(range(len(take) - (n - whole), len(take)))
            offset += n
        out = frames.new_empty((offset, self.cfg.dim), dtype=torch.float32)
        if take:
            index = torch.tensor(take, device=frames.device)
            got = self.model(frames.index_select(0, index), seg).float()
            mine = torch.tensor([k for k, r in enumerate(rows) if r >= 0], device=frames.device)
            out[mine] = got[torch.tensor([r for r in rows if r >= 0], device=frames.device)]
        for start, n in alone:
            out[start:start + n] = self(frames[start:start + n])
        return out


def list_backbones() -> list[str]:
    """Registered plain names plus the prefix forms, e.g. ["resnet101", ..., "timm:<name>"]."""
    return [*BACKBONES.names(), *(f"{p}:<name>" for p in BACKBONE_PREFIXES.names())]


def backbone_options(name: str) -> dict[str, Any]:
    """The options backbone `name` takes (a prefix family's for "<prefix>:<model>"), with their defaults;
    {} for a name not registered (`create_backbone` says what is wrong with it)."""
    prefix, _ = parse_backbone_name(name)
    registry, key = (BACKBONES, name) if prefix is None else (BACKBONE_PREFIXES, prefix)
    return registry.options(key) if key in registry else {}


def parse_backbone_name(name: str) -> tuple[str | None, str]:
    """Split "timm:convnext_tiny" into ("timm", "convnext_tiny"); a plain name gives (None, name)."""
    prefix, sep, rest = name.partition(":")
    if not sep:
        return None, name
    if not prefix or not rest:
        raise UsageError(f"malformed backbone name {name!r} (expected one of: {', '.join(list_backbones())})")
    return prefix, rest


def create_backbone(name: str, *, weights: str = "imagenet", seed: int = 0, resize: int | None = None,
                    crop: int | None = None, **opts: Any) -> Backbone:
    """Build a backbone by name, e.g. `create_backbone("resnet50", weights="random", seed=1)`.

    weights: a named set the backbone offers ("imagenet"; "kinetics400" for tsm_r50), "random"
    (seeded init) or a local .pth/.pt/.bin/.safetensors file. resize/crop: replace the short side
    and the centre crop of the backbone's own preprocessing (None keeps them); a model with a fixed
    input size is built at `crop` where its library can, else refused. Options the factory does
    not take are a ConfigError.
    """
    for key, value in (("resize", resize), ("crop", crop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key} must be a positive number of pixels, got {value!r}")
    prefix, rest = parse_backbone_name(name)
    facts = {"weights": weights, "seed": seed, "crop": crop}
    if prefix is None:
        if name not in BACKBONES:
            hint = ", ".join(f"{p}:<name>" for p in BACKBONE_PREFIXES.names())
            raise UnknownNameError(f"{BACKBONES.unknown_message(name)}; or {hint}")
        backbone = BACKBONES.create(name, facts=facts, **opts)
    else:
        backbone = BACKBONE_PREFIXES.create(prefix, rest, facts=facts, **opts)
    own = backbone.cfg.preprocessing
    if resize is None and crop is None:
        return backbone
    if (crop if crop is not None else own.crop) > (resize if resize is not None else own.resize):
        given = " and ".join(f"{k} {v}" for k, v in (("resize", resize), ("crop", crop)) if v is not None)
        raise ConfigError(f"{name}: {given} would crop {crop or own.crop} px from a short side of "
                          f"{resize or own.resize} px (its own: resize {own.resize}, crop {own.crop}); "
                          f"set resize (--resize) at least the crop")
    backbone.cfg = replace(backbone.cfg, preprocessing=own.override(resize=resize, crop=crop))
    return backbone
