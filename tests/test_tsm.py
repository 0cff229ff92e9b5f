"""TSM backbone: the shift itself, checkpoint layouts, segmenting, and sensitivity to frame order.

The reference model is built here by hand: a plain torchvision ResNet-50 whose bottleneck
`conv1` modules are wrapped in a shift written with `torch.cat` (independent of the library's
slicing), run one segment at a time.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck

from videolt.errors import ConfigError
from videolt.extract.backbones import create_backbone, temporal_shift


def random_resnet50_state(seed: int) -> dict[str, Tensor]:
    """A torchvision ResNet-50 state dict with random weights *and* random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = resnet50()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


class HandShift(nn.Module):
    """Reference shift for one segment of T frames: [T, C, H, W]."""

    def __init__(self, t: int):
        super().__init__()
        self.t = t

    def forward(self, x: Tensor) -> Tensor:
        fold = x.shape[1] // 8
        zero = torch.zeros_like(x[:1])
        back = torch.cat([x[1:], zero])[:, :fold]  # value from t + 1
        fwd = torch.cat([zero, x[:-1]])[:, fold : 2 * fold]  # value from t - 1
        return torch.cat([back, fwd, x[:, 2 * fold :]], dim=1)


def hand_tsm_features(state: dict[str, Tensor], frames: Tensor, segments: list[tuple[int, int]]) -> Tensor:
    """Features of each [start, stop) segment through a hand-wrapped torchvision ResNet-50."""
    outs = []
    for start, stop in segments:
        model = resnet50()
        model.load_state_dict(state)
        for m in model.modules():
            if isinstance(m, Bottleneck):
                m.conv1 = nn.Sequential(HandShift(stop - start), m.conv1)
        model.fc = nn.Identity()
        with torch.no_grad():
            outs.append(model.eval()(frames[start:stop]))
    return torch.cat(outs)


def to_tsm_layout(state: dict[str, Tensor]) -> dict:
    """The original TSM repo's checkpoint layout (module.base_model.*, `.net` on shifted convs)."""
    sd = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        key = re.sub(r"^(layer\d\.\d+\.conv1)\.", r"\1.net.", key)
        sd["module.base_model." + key] = value
    sd["module.new_fc.weight"] = torch.randn(400, 2048)
    sd["module.new_fc.bias"] = torch.randn(400)
    return {"epoch": 50, "arch": "resnet50", "state_dict": sd}


def to_mmaction2_layout(state: dict[str, Tensor]) -> dict:
    """MMAction2's layout: ConvModule `.conv`/`.bn`, `.net` inside the shifted conv, `cls_head`."""
    sd = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        key = re.sub(r"^conv1\.", "conv1.conv.", key)
        key = re.sub(r"^bn1\.", "conv1.bn.", key)
        key = re.sub(r"^(layer\d\.\d+)\.conv1\.", r"\1.conv1.conv.net.", key)
        key = re.sub(r"^(layer\d\.\d+)\.conv([23])\.", r"\1.conv\2.conv.", key)
        key = re.sub(r"^(layer\d\.\d+)\.bn(\d)\.", r"\1.conv\2.bn.", key)
        key = key.replace("downsample.0.", "downsample.conv.").replace("downsample.1.", "downsample.bn.")
        sd["backbone." + key] = value
    sd["cls_head.fc_cls.weight"] = torch.randn(400, 2048)
    sd["cls_head.fc_cls.bias"] = torch.randn(400)
    return {"meta": {"epoch": 50}, "state_dict": sd}


@pytest.fixture(scope="module")
def state() -> dict[str, Tensor]:
    return random_resnet50_state(seed=7)


@pytest.fixture(scope="module")
def frames() -> Tensor:
    return torch.randn(10, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def test_shift_moves_the_right_channels_within_segments():
    n_seg, t, c = 2, 3, 16
    x = torch.zeros(n_seg * t, c, 1, 1)
    for s in range(n_seg):
        for step in range(t):
            for ch in range(c):
                x[s * t + step, ch] = 1000 * s + 100 * step + ch + 1  # every value unique and non-zero
    out = temporal_shift(x, t)
    fold = c // 8
    for s in range(n_seg):
        for step in range(t):
            for ch in range(c):
                got = out[s * t + step, ch].item()
                if ch < fold:
                    want = x[s * t + step + 1, ch].item() if step < t - 1 else 0.0
                elif ch < 2 * fold:
                    want = x[s * t + step - 1, ch].item() if step > 0 else 0.0
                else:
                    want = x[s * t + step, ch].item()
                assert got == want, (s, step, ch)


def test_shift_rejects_partial_segments():
    with pytest.raises(ValueError, match="segments of 4"):
        temporal_shift(torch.zeros(6, 16, 1, 1), 4)


@pytest.mark.parametrize("layout", ["torchvision", "tsm", "mmaction2"])
def test_checkpoint_layouts_match_hand_built_model(layout, state, frames, tmp_path):
    payload = {"torchvision": dict(state), "tsm": to_tsm_layout(state), "mmaction2": to_mmaction2_layout(state)}[layout]
    path = tmp_path / f"{layout}.pth"
    torch.save(payload, path)
    backbone = create_backbone("tsm_r50", weights=str(path), n_segment=4)
    got = backbone(frames[:8])
    want = hand_tsm_features(state, frames, [(0, 4), (4, 8)])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert backbone.cfg.n_segment == 4 and backbone.cfg.temporal
    assert backbone.cfg.to_dict()["n_segment"] == 4


def test_remainder_uses_last_full_window_and_short_videos_one_segment(state, frames, tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(state, path)
    backbone = create_backbone("tsm_r50", weights=str(path), n_segment=4)
    got = backbone(frames)  # 10 frames: segments [0, 4), [4, 8), then window [6, 10) for frames 8, 9
    last = hand_tsm_features(state, frames, [(6, 10)])[2:]
    want = torch.cat([hand_tsm_features(state, frames, [(0, 4), (4, 8)]), last])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    short = backbone(frames[:3])
    torch.testing.assert_close(short, hand_tsm_features(state, frames, [(0, 3)]), rtol=1e-4, atol=1e-4)


def test_frame_order_matters_for_tsm_not_for_resnet(state, frames, tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(state, path)
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    clip = frames[:8]
    tsm = create_backbone("tsm_r50", weights=str(path))
    resnet = create_backbone("resnet50", weights=str(path))
    torch.testing.assert_close(resnet(clip[perm]), resnet(clip)[perm], rtol=1e-4, atol=1e-4)
    tsm_diff = (tsm(clip[perm]) - tsm(clip)[perm]).abs().max()
    assert tsm_diff > 1e-2


@pytest.mark.parametrize("bad", [0, -2, 2.5])
def test_bad_segment_length_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="n_segment"):
        create_backbone("tsm_r50", weights="random", n_segment=bad)
