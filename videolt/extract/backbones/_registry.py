"""The backbone registry, its config dataclass, the `Backbone` module and `create_backbone`.

A backbone maps the normalised frames of one video, in temporal order, to one pooled
penultimate-layer feature per frame. Its `BackboneCfg` carries the preprocessing the weights
expect and is written to the feature set's attrs as provenance.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from videolt.errors import ConfigError, UnknownNameError, UsageError
from videolt.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BackboneFactory = Callable[..., "Backbone"]
# Plain names ("resnet50") → factory(weights=, seed=, **opts).
BACKBONES: Registry[BackboneFactory] = Registry("backbone")
# "<prefix>:<name>" → factory(name, weights=, seed=, **opts), e.g. "timm:convnext_tiny".
BACKBONE_PREFIXES: Registry[BackboneFactory] = Registry("backbone prefix")


@dataclass(frozen=True, kw_only=True)
class BackboneCfg:
    """What a backbone is and the input its weights expect (mean/std on the 0–1 scale)."""

    name: str  # as given to create_backbone, e.g. "resnet50", "timm:resnet18"
    arch: str  # the architecture actually built, e.g. "torchvision.resnet50"
    weights: str  # named weights (e.g. "ResNet50_Weights.IMAGENET1K_V1"), "random", or a file path
    weights_sha256: str | None  # of the weights file; None for random init (and timm hub weights)
    seed: int | None  # init seed, for random weights only
    dim: int  # feature size per frame
    resize: int  # short side before the centre crop, as the weights were evaluated
    crop: int  # square centre crop fed to the network
    interpolation: str  # "bilinear" or "bicubic"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    temporal: bool = False  # frames interact: pass one video's frames in temporal order
    n_segment: int | None = None  # frames per temporal segment (temporal backbones)

    def __post_init__(self) -> None:
        if self.temporal and (not isinstance(self.n_segment, int) or self.n_segment < 1):
            raise ConfigError(f"backbone {self.name}: n_segment must be a positive integer, got {self.n_segment!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists), for Zarr attrs and run configs."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class Backbone(nn.Module):
    """A frozen feature extractor: `forward(frames [N, 3, H, W]) -> [N, dim]` float32.

    For a temporal backbone the N frames are one video in temporal order and are cut into
    consecutive segments of `n_segment`. When N is not a multiple of it, the last frames take
    their features from the window of the last `n_segment` frames (overlapping the previous
    segment), so every segment holds real, consecutive frames and no padding ever enters one;
    a video shorter than `n_segment` is run as one shorter segment. The wrapped temporal model
    is called as `model(x, n_segment)` with x a whole number of segments.
    """

    def __init__(self, model: nn.Module, cfg: BackboneCfg):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.requires_grad_(False)
        self.eval()

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


def parse_backbone_name(name: str) -> tuple[str | None, str]:
    """Split "timm:convnext_tiny" into ("timm", "convnext_tiny"); a plain name gives (None, name)."""
    prefix, sep, rest = name.partition(":")
    if not sep:
        return None, name
    if not prefix or not rest:
        forms = ", ".join([*BACKBONES.names(), *(f"{p}:<name>" for p in BACKBONE_PREFIXES.names())])
        raise UsageError(f"malformed backbone name {name!r} (expected one of: {forms})")
    return prefix, rest


def create_backbone(name: str, *, weights: str = "imagenet", seed: int = 0, **opts: Any) -> Backbone:
    """Build a backbone by name, e.g. `create_backbone("resnet50", weights="random", seed=1)`.

    weights: a named set the backbone offers ("imagenet"; "kinetics400" for tsm_r50), "random"
    (seeded init) or a local .pth/.pt/.bin/.safetensors file. Options the factory does not
    take are a ConfigError.
    """
    prefix, rest = parse_backbone_name(name)
    if prefix is None:
        if name not in BACKBONES:
            hint = ", ".join(f"{p}:<name>" for p in BACKBONE_PREFIXES.names())
            raise UnknownNameError(f"{BACKBONES.unknown_message(name)}; or {hint}")
        factory, args = BACKBONES.get(name), ()
    else:
        factory, args = BACKBONE_PREFIXES.get(prefix), (rest,)
    _check_opts(name, factory, opts)
    return factory(*args, weights=weights, seed=seed, **opts)


def _check_opts(name: str, factory: BackboneFactory, opts: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    known = sorted(p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in ("weights", "seed"))
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"backbone {name} takes no option {', '.join(unknown)} (known: {', '.join(known) or 'none'})")
