"""Batched frame preprocessing (resize short side → centre crop → [0, 1] → normalise), torchvision style.

Transforms take a batch of frames as a tensor on any device, either channels-last uint8
[N, H, W, 3] straight from the decoder or channels-first [N, 3, H, W], and return channels-first
[N, 3, H, W] (a tensor whose last dimension is 3 and second is not is read as channels-last).
`Preprocessing` is the frozen, recorded description of the whole chain; its `.to_dict()` goes
into the feature set's attributes so the features say how their inputs were made. The chain is
torchvision.transforms.v2's `Compose` and `Normalize` around three pieces of ours that v2 has
otherwise: the short-side resize of channels-last frames, a centre crop that refuses a frame smaller
than the crop, and the division by 255.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional import InterpolationMode

from videolt.errors import ConfigError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CenterCrop",
    "Preprocessing",
    "ResizeShortSide",
    "ToFloat",
    "channels_first",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] → [N, 3, H, W] (a view); [N, 3, H, W] is returned as is."""
    if x.ndim != 4:
        raise ValueError(f"expected a batch [N, H, W, 3] or [N, 3, H, W], got shape {tuple(x.shape)}")
    if x.shape[-1] == 3 and x.shape[1] != 3:
        return x.permute(0, 3, 1, 2)
    if x.shape[1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(x.shape)}")
    return x


class ResizeShortSide:
    """Resize so the short side is `size`, keeping the aspect ratio (long side truncated, as torchvision)."""

    def __init__(self, size: int, interpolation: str = "bilinear", antialias: bool = True):
        self.size = size
        self.interpolation = InterpolationMode(interpolation)
        self.antialias = antialias

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if height <= width:
            return self.size, int(self.size * width / height)
        return int(self.size * height / width), self.size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = channels_first(x)
        size = self.output_size(x.shape[-2], x.shape[-1])
        if size == tuple(x.shape[-2:]):
            return x
        # A channels-last view goes straight to torch's uint8 kernels: no copy, and their fastest path.
        return F.resize(x, list(size), interpolation=self.interpolation, antialias=self.antialias)


class CenterCrop:
    """Crop the central `size`×`size` window (offsets rounded as torchvision does).

    Ours, not v2's: v2.CenterCrop pads a frame smaller than the crop where this refuses it, and its
    dispatch costs more than the slice (benchmarks/RESULTS.md, "transforms: torchvision v2")."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = channels_first(x)
        height, width = x.shape[-2:]
        if height < self.size or width < self.size:
            raise ValueError(f"cannot crop {self.size}×{self.size} from a {height}×{width} frame")
        top = int(round((height - self.size) / 2.0))
        left = int(round((width - self.size) / 2.0))
        return x[..., top:top + self.size, left:left + self.size]


class ToFloat:
    """uint8 [0, 255] → float32 [0, 1], divided by 255: v2.ToDtype(scale=True) multiplies by 1/255, which
    differs in the last bit for about a third of the values (benchmarks/RESULTS.md)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = channels_first(x)
        if x.dtype != torch.uint8:
            raise TypeError(f"ToFloat expects uint8 frames, got {x.dtype}")
        return x.to(torch.float32).div_(255.0)


@dataclass(frozen=True)
class Preprocessing:
    """How frames become network input: the one object a backbone declares, the stage applies and the
    feature set records. Defaults are the VideoLT paper's recipe (short side 256, centre crop 256,
    bilinear with antialias, ImageNet mean/std on the 0–1 scale); `timm:` backbones take theirs from
    the model's pretrained config.
    """

    resize: int = 256  # short side after resizing
    crop: int = 256  # centre crop side (224 for the classic ImageNet evaluation crop)
    interpolation: str = "bilinear"
    antialias: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for key in ("resize", "crop"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"preprocessing {key} must be a positive integer, got {value!r}")
        if self.crop > self.resize:
            raise ConfigError(f"crop ({self.crop}) cannot exceed resize ({self.resize}), the short side it is cut from")
        try:
            InterpolationMode(self.interpolation)
        except ValueError as e:  # its message names the bad mode
            raise ConfigError(f"preprocessing interpolation: {e}") from None
        for key in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, key))
            if len(value) != 3:
                raise ConfigError(f"preprocessing {key} needs 3 values (RGB), got {len(value)}")
            object.__setattr__(self, key, value)  # lists (from JSON) become tuples, so equal records compare equal
        if min(self.std) <= 0:
            raise ConfigError(f"preprocessing std must be positive, got {self.std}")

    def override(self, *, resize: int | None = None, crop: int | None = None) -> Preprocessing:
        """This preprocessing with the short side and/or the crop replaced (None keeps the value)."""
        return replace(self, resize=self.resize if resize is None else resize, crop=self.crop if crop is None else crop)

    def spatial(self) -> v2.Compose:
        """The uint8 part (done once per distinct preprocessing where frames are decoded): resize → crop."""
        return v2.Compose([ResizeShortSide(self.resize, self.interpolation, self.antialias), CenterCrop(self.crop)])

    def normalise(self) -> v2.Compose:
        """The float part (done where the network runs): uint8 → [0, 1] → (x − mean) / std (v2.Normalize)."""
        return v2.Compose([ToFloat(), v2.Normalize(list(self.mean), list(self.std))])

    def build(self) -> v2.Compose:
        """The transform: uint8 frames [N, H, W, 3] or [N, 3, H, W] → float32 [N, 3, crop, crop]."""
        return v2.Compose([*self.spatial().transforms, *self.normalise().transforms])

    def to_dict(self) -> dict:
        """Plain JSON-ready values, recorded as provenance."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Preprocessing:
        """The object back from `to_dict()` (other keys of a larger record, e.g. fps, are ignored)."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})
