"""Backbone registry: the contract every backbone keeps, weights files, names and offline errors."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torchvision.models import resnet50

from videolt.errors import ConfigError, StageError, UnknownNameError, UsageError
from videolt.extract.backbones import BACKBONES, backbone_options, create_backbone, list_backbones, parse_backbone_name
from videolt.extract.backbones import PAPER_PREPROCESSING
from videolt.extract.transforms import Preprocessing

CONTRACT_NAMES = [*BACKBONES.names(), "timm:resnet18"]


class NotATensor:
    """A pickled object that `torch.load(weights_only=True)` must refuse."""


@pytest.fixture(scope="module")
def frames() -> Tensor:
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def tv_state() -> dict[str, Tensor]:
    """A torchvision ResNet-50 state dict, random weights and random BatchNorm statistics."""
    torch.manual_seed(11)
    model = resnet50()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


@pytest.fixture(scope="module")
def tv_file(tv_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(tv_state, path)
    return path


def reference_features(state: dict[str, Tensor], frames: Tensor) -> Tensor:
    """torchvision's ResNet-50 forward up to and including avgpool, built independently."""
    model = resnet50()
    model.load_state_dict(state)
    trunk = nn.Sequential(*list(model.children())[:-1]).eval()
    with torch.no_grad():
        return trunk(frames).flatten(1)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_contract(name, frames):
    backbone = create_backbone(name, weights="random", seed=0)
    feats = backbone(frames)
    assert feats.shape == (len(frames), backbone.cfg.dim)
    assert feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and feats.abs().sum() > 0
    assert backbone(frames[:0]).shape == (0, backbone.cfg.dim)
    assert not backbone.training and not backbone.model.training
    assert not backbone.train().training  # stays in eval mode: BatchNorm uses running statistics
    assert all(not p.requires_grad for p in backbone.parameters())
    again = create_backbone(name, weights="random", seed=0)
    torch.testing.assert_close(again(frames), feats, rtol=0, atol=0)
    other = create_backbone(name, weights="random", seed=1)
    assert not torch.allclose(other(frames), feats)
    cfg = json.loads(json.dumps(backbone.cfg.to_dict()))
    assert cfg["name"] == name and cfg["weights"] == "random" and cfg["seed"] == 0
    pre = cfg["preprocessing"]
    assert cfg["weights_sha256"] is None and len(pre["mean"]) == len(pre["std"]) == 3
    assert pre["resize"] >= pre["crop"] > 0
    assert Preprocessing.from_dict(pre) == backbone.preprocessing


def test_random_init_leaves_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    create_backbone("timm:resnet18", weights="random", seed=9)
    torch.testing.assert_close(torch.rand(3), expected)


def test_resnet50_file_weights_match_plain_torchvision(tv_state, tv_file, frames):
    backbone = create_backbone("resnet50", weights=str(tv_file))
    torch.testing.assert_close(backbone(frames), reference_features(tv_state, frames), rtol=1e-5, atol=1e-5)
    assert backbone.cfg.weights_sha256 == hashlib.sha256(tv_file.read_bytes()).hexdigest()
    assert backbone.cfg.weights == str(tv_file.resolve()) and backbone.cfg.seed is None
    assert backbone.cfg.dim == 2048 and backbone.preprocessing == PAPER_PREPROCESSING  # the paper's 256 / 256


def test_safetensors_and_nested_checkpoints_load(tv_state, frames, tmp_path):
    want = reference_features(tv_state, frames)
    path = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in tv_state.items()}, path)
    torch.testing.assert_close(create_backbone("resnet50", weights=str(path))(frames), want, rtol=1e-5, atol=1e-5)
    nested = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "model": OrderedDict(("module." + k, v) for k, v in tv_state.items())}, nested)
    torch.testing.assert_close(create_backbone("resnet50", weights=str(nested))(frames), want, rtol=1e-5, atol=1e-5)


def test_timm_file_weights_ignore_the_classifier(tmp_path, frames):
    import timm

    torch.manual_seed(2)
    full = timm.create_model("resnet18", pretrained=False)  # with its 1000-class head
    path = tmp_path / "r18.pth"
    torch.save(full.state_dict(), path)
    backbone = create_backbone("timm:resnet18", weights=str(path))
    with torch.no_grad():
        want = full.eval().forward_head(full.forward_features(frames), pre_logits=True)
    torch.testing.assert_close(backbone(frames), want, rtol=1e-5, atol=1e-5)
    assert backbone.cfg.dim == 512 and backbone.preprocessing.interpolation == "bicubic"


def test_weights_that_do_not_fit_name_the_keys(tv_state, tmp_path):
    state = {k: v for k, v in tv_state.items() if not k.startswith("layer4.2.")}
    state["head.extra.weight"] = torch.zeros(3)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(UsageError, match=r"missing \(layer4\.2\.conv1\.weight.*unexpected \(head\.extra\.weight\)"):
        create_backbone("resnet50", weights=str(path))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"state_dict": {"conv1.weight": torch.zeros(1)}, "opt": NotATensor()}, "weights_only"),
        ({"conv1.weight": torch.zeros(1), "lr": 0.1}, "not tensors"),
        ([torch.zeros(1)], "expected a state dict"),
    ],
)
def test_files_that_are_not_state_dicts_are_usage_errors(payload, message, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save(payload, path)
    with pytest.raises(UsageError, match=message):
        create_backbone("resnet50", weights=str(path))


def test_corrupt_safetensors_is_a_usage_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(UsageError, match="safetensors"):
        create_backbone("resnet50", weights=str(path))


@pytest.mark.parametrize(("weights", "message"), [("missing.pth", "not found"), ("imagenett", "imagenet, random")])
def test_unknown_weights_are_usage_errors(weights, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message):
        create_backbone("resnet50", weights=weights)


@pytest.mark.parametrize("name", ["resnet50", "timm:resnet18"])
def test_pretrained_offline_fails_fast_and_clearly(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))  # nothing cached
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(StageError, match=r"could not download .*set weights \(--weights\) to the path of a local copy"):
        create_backbone(name, weights="imagenet")
    assert time.monotonic() - start < 10


def test_names_are_parsed_in_one_place():
    assert parse_backbone_name("resnet50") == (None, "resnet50")
    assert parse_backbone_name("timm:convnext_tiny.fb_in1k") == ("timm", "convnext_tiny.fb_in1k")
    assert {"resnet50", "resnet101", "tsm_r50", "timm:<name>"} <= set(list_backbones())
    for bad in ("timm:", ":resnet50"):
        with pytest.raises(UsageError, match="malformed backbone name"):
            create_backbone(bad)


@pytest.mark.parametrize(
    ("name", "message"),
    [("resnet5", r"did you mean resnet50.*known: resnet101, resnet50, tsm_r50"), ("hf:x", "unknown backbone prefix"),
     ("timm:resnet5", "timm:resnet50")],
)
def test_unknown_names_list_known_ones(name, message):
    with pytest.raises(UnknownNameError, match=message):
        create_backbone(name, weights="random")


def test_options_come_from_the_factories():
    """The stage passes `n_segment` to the backbones whose factory takes it (tsm_r50), whatever their name."""
    assert backbone_options("tsm_r50") == {"n_segment": 8}
    assert backbone_options("resnet50") == backbone_options("timm:resnet18") == backbone_options("tsm_r5") == {}


def test_unknown_options_are_config_errors():
    with pytest.raises(ConfigError, match="backbone 'resnet50' has no option n_segment"):
        create_backbone("resnet50", weights="random", n_segment=8)


def test_frames_must_be_rgb_batches(frames):
    backbone = create_backbone("timm:resnet18", weights="random")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        backbone(frames[0])


def test_named_weights_come_from_the_torch_hub_cache_without_network(tmp_path, monkeypatch):
    from videolt.extract.backbones.weights import download_state_dict

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    staging = tmp_path / "staging.pth"
    torch.save({"state_dict": {"w": torch.arange(3.0)}}, staging)
    sha = hashlib.sha256(staging.read_bytes()).hexdigest()
    staging.rename(tmp_path / "checkpoints" / f"tiny-{sha[:8]}.pth")
    state, got_sha = download_state_dict(f"https://weights.invalid/x/tiny-{sha[:8]}.pth", what="tiny")
    torch.testing.assert_close(state["w"], torch.arange(3.0))
    assert got_sha == sha
