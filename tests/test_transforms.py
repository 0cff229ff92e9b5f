"""Preprocessing transforms against torchvision.transforms.v2, and temporal sampling by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from videolt.errors import ConfigError
from videolt.extract.sampling import sample_indices
from videolt.extract.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    Preprocessing,
    ResizeShortSide,
    ToFloat,
    channels_first,
)

SHAPES = [(2, 48, 80), (2, 90, 40), (1, 37, 37)]  # landscape, portrait, square (N, H, W)


def frames(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 frames [N, H, W, 3], channels last as the decoder gives them."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("shape", SHAPES)
def test_resize_short_side_matches_torchvision(shape: tuple[int, int, int]) -> None:
    x = frames(*shape)
    nchw = x.permute(0, 3, 1, 2).contiguous()
    out = ResizeShortSide(32)(x)
    assert out.dtype == torch.uint8 and min(out.shape[-2:]) == 32
    assert torch.equal(out, F.resize(nchw, [32], antialias=True))  # int size: torchvision's short side
    assert torch.equal(ResizeShortSide(32)(nchw), out)  # either layout


def test_resize_output_size_by_hand() -> None:
    resize = ResizeShortSide(256)
    assert resize.output_size(720, 1280) == (256, 455)  # 256 * 1280 / 720 = 455.1
    assert resize.output_size(1280, 720) == (455, 256)
    assert resize.output_size(360, 360) == (256, 256)


@pytest.mark.parametrize("size", [16, 17])
def test_center_crop_matches_torchvision(size: int) -> None:
    x = frames(2, 31, 44).permute(0, 3, 1, 2)
    assert torch.equal(CenterCrop(size)(x), F.center_crop(x, [size, size]))


def test_center_crop_refuses_small_frames() -> None:
    with pytest.raises(ValueError, match="cannot crop"):
        CenterCrop(64)(frames(1, 48, 80))


def test_to_float_divides_by_255_and_normalise_refuses_uint8() -> None:
    x = frames(2, 8, 10)
    nchw = x.permute(0, 3, 1, 2)
    as_float = ToFloat()(x)
    assert torch.equal(as_float, nchw.to(torch.float32) / 255)  # divided, not multiplied by 1/255 (v2's ToDtype)
    assert torch.allclose(as_float, F.to_dtype(nchw, torch.float32, scale=True), rtol=0, atol=1e-7)
    expected = (as_float - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.equal(Preprocessing().normalise()(x), expected)  # the float part, bit for bit
    with pytest.raises(TypeError):
        Preprocessing().normalise().transforms[1](x)  # v2.Normalize: uint8 frames are refused
    with pytest.raises(TypeError):
        ToFloat()(as_float)


@pytest.mark.parametrize("crop", [256, 224])
def test_preprocessing_matches_torchvision_pipeline(crop: int) -> None:
    x = frames(2, 270, 480)  # a 480×270 video frame
    reference = v2.Compose([
        v2.Resize(256, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.CenterCrop(crop),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
    ])
    out = Preprocessing(crop=crop).build()(x)
    assert out.shape == (2, 3, crop, crop) and out.dtype == torch.float32
    assert torch.allclose(out, reference(x.permute(0, 3, 1, 2).contiguous()), atol=1e-6)


def test_preprocessing_record_round_trips() -> None:
    prep = Preprocessing(crop=224)
    record = json.loads(json.dumps(prep.to_dict()))
    assert record == {
        "resize": 256, "crop": 224, "interpolation": "bilinear", "antialias": True,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    }
    assert Preprocessing(**{**record, "mean": tuple(record["mean"]), "std": tuple(record["std"])}) == prep


def test_preprocessing_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="crop"):  # as create_backbone says it: a config error, exit 2
        Preprocessing(resize=224, crop=256)
    with pytest.raises(ConfigError, match="bilinaer"):
        Preprocessing(interpolation="bilinaer")


def test_channels_first_rejects_other_shapes() -> None:
    with pytest.raises(ValueError):
        channels_first(torch.zeros(4, 4, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="3 colour channels"):
        channels_first(torch.zeros(1, 4, 5, 6, dtype=torch.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu() -> None:
    x = frames(2, 90, 160)
    transform = Preprocessing(resize=64, crop=64).build()
    # uint8 resize rounds on both devices; allow one grey level.
    assert torch.allclose(transform(x.cuda()).cpu(), transform(x), atol=1.0 / 255 / 0.224 + 1e-5)


# ---- temporal sampling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "num", "expected"),
    [
        (10, 4, [0, 3, 6, 9]),  # linspace 0, 3, 6, 9
        (3, 5, [0, 0, 1, 1, 2]),  # linspace 0, .5, 1, 1.5, 2: repeats when n < num
        (1, 3, [0, 0, 0]),
        (7, 1, [0]),
        (200, 3, [0, 99, 199]),  # linspace 0, 99.5, 199
    ],
)
def test_sample_indices_by_hand(n: int, num: int, expected: list[int]) -> None:
    got = sample_indices(n, num)
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_sample_indices_default_covers_the_video() -> None:
    got = sample_indices(180)
    assert len(got) == 150 and got[0] == 0 and got[-1] == 179 and np.all(np.diff(got) >= 1)


def test_sample_indices_rejects_no_frames() -> None:
    with pytest.raises(ValueError, match="at least one"):
        sample_indices(0)
