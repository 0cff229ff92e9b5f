"""torchvision ResNet-50/101: the per-frame 2048-d features of the VideoLT paper.

"imagenet" pins `IMAGENET1K_V1`, the weights the paper-era features were computed with (the newer
V2 weights expect other preprocessing). The input is the paper's recipe, not torchvision's
evaluation crop of 224: short side 256, centre crop 256, bilinear, ImageNet mean/std.
"""

from __future__ import annotations

from typing import Callable

from torch import nn
from torchvision import models as tvm

from videolt.extract.backbones._registry import BACKBONES, PAPER_PREPROCESSING, Backbone, BackboneCfg
from videolt.extract.backbones.weights import (
    download_state_dict,
    load_checked,
    parse_weights,
    read_weights_file,
    seeded,
    strip_prefix,
)

CLASSIFIER_PREFIXES = ("fc.",)


def build_resnet(
    name: str, builder: Callable[..., tvm.ResNet], imagenet: tvm.WeightsEnum, *, weights: str, seed: int
) -> Backbone:
    """A torchvision ResNet with `fc` removed, so its output is the global-average-pooled feature.

    It takes any input size (adaptive pooling), so a `--crop` override needs nothing here.
    """
    kind = parse_weights(weights, ("imagenet",), name)
    with seeded(seed):
        model = builder(weights=None)
    dim = model.fc.in_features
    model.fc = nn.Identity()
    sha256 = None
    if kind == "named":
        state, sha256 = download_state_dict(imagenet.url, what=f"{name} {imagenet}")
        load_checked(model, state, source=str(imagenet), ignore=CLASSIFIER_PREFIXES)
        weights = str(imagenet)
    elif kind == "file":
        state, sha256, weights = read_weights_file(weights)
        load_checked(model, strip_prefix(state, "module."), source=weights, ignore=CLASSIFIER_PREFIXES)
    cfg = BackboneCfg(
        name=name,
        arch=f"torchvision.{builder.__name__}",
        weights=weights,
        weights_sha256=sha256,
        seed=seed if kind == "random" else None,
        dim=dim,
        preprocessing=PAPER_PREPROCESSING,
    )
    return Backbone(model, cfg)


@BACKBONES.register("resnet50")
def resnet50(*, weights: str, seed: int, crop: int | None = None) -> Backbone:
    """torchvision ResNet-50, 2048-d pooled features; weights "imagenet" (IMAGENET1K_V1), the paper's input."""
    return build_resnet("resnet50", tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, weights=weights, seed=seed)


@BACKBONES.register("resnet101")
def resnet101(*, weights: str, seed: int, crop: int | None = None) -> Backbone:
    """torchvision ResNet-101, 2048-d pooled features; weights "imagenet" (IMAGENET1K_V1), the paper's input."""
    return build_resnet("resnet101", tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V1, weights=weights, seed=seed)
