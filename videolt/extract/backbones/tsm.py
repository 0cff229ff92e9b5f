"""TSM (Temporal Shift Module) ResNet-50: per-frame features that see the neighbouring frames.

The model is torchvision's ResNet-50, unchanged in its parameters (so its state dict keys are
torchvision's), run with a parameter-free shift of 1/8 of the channels one step forward and 1/8
one step back in time at the input of each bottleneck's residual branch ("blockres"). Original
TSM and MMAction2 checkpoints are converted to those keys on load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, ResNet

from videolt.extract.backbones._registry import BACKBONES, PAPER_PREPROCESSING, Backbone, BackboneCfg
from videolt.extract.backbones.weights import (
    download_state_dict,
    load_checked,
    parse_weights,
    read_weights_file,
    seeded,
)

DEFAULT_N_SEGMENT = 8
SHIFT_DIV = 8
# MMAction2's TSM-R50, ImageNet-initialised, 8 segments, trained on Kinetics-400.
KINETICS400_URL = (
    "https://download.openmmlab.com/mmaction/v1.0/recognition/tsm/"
    "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb/"
    "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb_20220831-64d69186.pth"
)
CLASSIFIER_PREFIXES = ("fc.", "new_fc.", "cls_head.")

# MMAction2 wraps each conv in a ConvModule (`.conv`, `.bn`); torchvision names them flat.
_MMACTION2_RENAMES = (
    (re.compile(r"^conv1\.conv\."), "conv1."),
    (re.compile(r"^conv1\.bn\."), "bn1."),
    (re.compile(r"\.conv(\d)\.conv\."), r".conv\1."),
    (re.compile(r"\.conv(\d)\.bn\."), r".bn\1."),
    (re.compile(r"\.downsample\.conv\."), ".downsample.0."),
    (re.compile(r"\.downsample\.bn\."), ".downsample.1."),
)


def temporal_shift(x: Tensor, n_segment: int, fold_div: int = SHIFT_DIV) -> Tensor:
    """Shift channels in time within segments of `n_segment` consecutive frames.

    x is [N * n_segment, C, H, W]. With fold = C // fold_div, channels [0, fold) at step t take
    the value of step t + 1 (zero at the last step), channels [fold, 2 fold) that of t - 1 (zero
    at the first step); the rest are unchanged. Nothing crosses a segment boundary.
    """
    nt, c, h, w = x.shape
    if nt % n_segment:
        raise ValueError(f"{nt} frames are not a whole number of segments of {n_segment}")
    x = x.view(nt // n_segment, n_segment, c, h, w)  # [N, T, C, H, W]
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


def _shifted_bottleneck(block: Bottleneck, x: Tensor, n_segment: int) -> Tensor:
    """torchvision's Bottleneck.forward with the shift on the residual branch only."""
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(temporal_shift(x, n_segment))))
    out = block.relu(block.bn2(block.conv2(out)))
    out = block.bn3(block.conv3(out))
    return block.relu(out + identity)


class TSMResNet(ResNet):
    """ResNet-50 with blockres temporal shift; `forward(x [N*T, 3, H, W], n_segment) -> [N*T, 2048]`."""

    def __init__(self) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        self.fc = nn.Identity()

    def forward(self, x: Tensor, n_segment: int) -> Tensor:  # type: ignore[override]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = _shifted_bottleneck(block, x, n_segment)
        return torch.flatten(self.avgpool(x), 1)


def tsm_to_torchvision_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename original-TSM (`module.base_model.…conv1.net.weight`) and MMAction2
    (`backbone.…conv1.conv.net.weight`) keys to torchvision ResNet keys; plain torchvision keys
    pass through. Classifier heads keep their (ignored) names.
    """
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("base_model.").replace(".net.", ".")
        if key.startswith("backbone."):
            key = key.removeprefix("backbone.")
            for pattern, replacement in _MMACTION2_RENAMES:
                key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


@BACKBONES.register("tsm_r50")
def tsm_r50(*, weights: str, seed: int, crop: int | None = None, n_segment: int = DEFAULT_N_SEGMENT) -> Backbone:
    """TSM ResNet-50; weights "kinetics400" (MMAction2 release), "random" or a TSM/MMAction2/torchvision file."""
    kind = parse_weights(weights, ("kinetics400",), "tsm_r50")
    with seeded(seed):
        model = TSMResNet()
    sha256 = None
    if kind == "named":
        state, sha256 = download_state_dict(KINETICS400_URL, what="tsm_r50 Kinetics-400")
        weights = "mmaction2:" + KINETICS400_URL.rsplit("/", 1)[1].removesuffix(".pth")
    elif kind == "file":
        state, sha256, weights = read_weights_file(weights)
    if kind != "random":
        load_checked(model, tsm_to_torchvision_keys(state), source=weights, ignore=CLASSIFIER_PREFIXES)
    cfg = BackboneCfg(
        name="tsm_r50",
        arch="tsm.resnet50.blockres",
        weights=weights,
        weights_sha256=sha256,
        seed=seed if kind == "random" else None,
        dim=2048,
        preprocessing=PAPER_PREPROCESSING,  # the paper's recipe; any input size works (adaptive pooling)
        temporal=True,
        n_segment=n_segment,
    )
    return Backbone(model, cfg)
