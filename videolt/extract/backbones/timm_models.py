"""Any timm model as a per-frame backbone: `timm:<name>` (a pretrained tag may follow, `resnet50.tv_in1k`).

`num_classes=0` makes timm return the pooled pre-classifier feature (for CLIP and SigLIP towers:
before the projection into the joint text-image space).

Preprocessing is timm's own resolution of the model's pretrained config (`resolve_data_config`):
input size, interpolation, mean/std, and crop_pct, which gives the short side as timm computes it
(floor(size / crop_pct)). Only centre crops of square inputs are supported; a model whose config
says otherwise is refused with what to pass instead. A `--crop` override is fed as is to a model
that takes any size (CNNs); a model with a fixed input size (ViTs) is built at that size with
`img_size`, its position embeddings resampled as timm does when it loads weights.

Weights: "imagenet" is timm's default pretrained tag for the name (from the Hugging Face hub), or
a local `.safetensors`/`.pth` file (a timm state dict, or a layout the model module's own
checkpoint filter converts, e.g. OpenAI CLIP's; position embeddings resampled to the size built),
loaded strictly with the classifier ignored; or "random".
"""

from __future__ import annotations

import difflib
import math
import sys
from typing import Any

import timm
import torch
from timm.data import resolve_data_config

from videolt.errors import ConfigError, StageError, UnknownNameError, UsageError
from videolt.extract.backbones._registry import BACKBONE_PREFIXES, Backbone, BackboneCfg, ReferenceFactory
from videolt.extract.backbones.weights import load_checked, parse_weights, read_weights_file, seeded
from videolt.extract.transforms import Preprocessing


@BACKBONE_PREFIXES.register("timm")
def timm_backbone(model_name: str, *, weights: str, seed: int, crop: int | None = None) -> Backbone:
    """Any timm model, as timm:<name>; weights "imagenet": timm's default pretrained weights for the name.

    Those weights come from the Hugging Face hub."""
    name = f"timm:{model_name}"
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown timm model {model_name!r}{hint} (see timm.list_models())")
    kind = parse_weights(weights, ("imagenet",), name)
    try:
        pretrained = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError as e:  # "Invalid pretrained tag (x) for arch."
        arch = model_name.split(".")[0]
        tags = ", ".join(timm.list_pretrained(f"{arch}.*")[:8]) or "none"
        raise UnknownNameError(f"timm:{model_name}: {e} (pretrained tags: {tags})") from None
    data = resolve_data_config(pretrained_cfg=pretrained.to_dict() if pretrained else {})
    own = _own_preprocessing(name, data, crop)
    size = crop or own.crop
    kwargs: dict[str, Any] = {}
    if pretrained is not None and pretrained.fixed_input_size and size != data["input_size"][1]:
        kwargs["img_size"] = size
    with seeded(seed):
        model = _create(name, model_name, pretrained=kind == "named", kwargs=kwargs, own=own)
    _check_input_size(name, model, size, kwargs, own)
    cfg_dict = model.pretrained_cfg
    sha256 = None
    if kind == "named":
        weights = "timm:" + (cfg_dict.get("hf_hub_id") or f"{cfg_dict['architecture']}.{cfg_dict['tag']}")
    elif kind == "file":
        state, sha256, weights = read_weights_file(weights)
        heads = cfg_dict.get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        state = _convert(model_name, model, state, source=weights)
        load_checked(model, state, source=weights, ignore=tuple(f"{h}." for h in heads))
    cfg = BackboneCfg(
        name=name,
        arch=f"timm:{cfg_dict.get('architecture', model_name)}",
        weights=weights,
        weights_sha256=sha256,
        seed=seed if kind == "random" else None,
        dim=getattr(model, "head_hidden_size", None) or model.num_features,
        preprocessing=own,
    )
    return Backbone(model, cfg, reference=_timm_reference(data))


def _own_preprocessing(name: str, data: dict, crop: int | None) -> Preprocessing:
    """The model's own preprocessing from timm's data config; refuse what videolt cannot feed it."""
    _, height, width = data["input_size"]
    pct = data["crop_pct"]
    if crop is None and height != width:
        raise ConfigError(
            f"{name} expects a non-square {height}x{width} (HxW) input; videolt feeds square centre crops: "
            f"set crop (--crop) to {min(height, width)} (or another square size, e.g. {max(height, width)})"
        )
    if crop is None and data.get("crop_mode", "center") != "center":
        side = math.floor(height / pct)
        raise ConfigError(
            f"{name}: its pretrained config resizes with crop_mode {data['crop_mode']!r}, which videolt does not "
            f"do; to feed it short-side-resized, centre-cropped frames instead set resize {side} and crop {height} "
            f"(--resize {side} --crop {height})"
        )
    if height != width:  # only with an explicit crop: the short side follows timm's crop_pct rule
        height = crop
    return Preprocessing(resize=math.floor(height / pct), crop=height, interpolation=data["interpolation"],
                         antialias=True, mean=tuple(data["mean"]), std=tuple(data["std"]))


def _create(name: str, model_name: str, *, pretrained: bool, kwargs: dict, own: Preprocessing) -> torch.nn.Module:
    try:
        return timm.create_model(model_name, pretrained=pretrained, num_classes=0, **kwargs)
    except OSError as e:  # hub offline, unreachable or file missing: all OSError subclasses
        raise StageError(
            f"could not download {name} pretrained weights ({e}); set weights (--weights) to the path of a local copy"
        ) from e
    except TypeError as e:
        if "img_size" not in kwargs:
            raise
        raise ConfigError(
            f"{name} takes a fixed {own.crop}x{own.crop} input and timm cannot build it at {kwargs['img_size']} "
            f"({e}); set crop (--crop) to {own.crop} or leave it unset"
        ) from e


def _check_input_size(name: str, model: torch.nn.Module, size: int, kwargs: dict, own: Preprocessing) -> None:
    """A patch model must get whole patches; a model built at another size must run at it."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    step = patch[0] if isinstance(patch, (tuple, list)) else patch
    if isinstance(step, int) and step > 1 and size % step:
        low, high = size - size % step, size - size % step + step
        raise ConfigError(
            f"{name} cuts its input into {step}-px patches: set crop (--crop) to a multiple of {step} "
            f"(e.g. {low or high} or {high}), or leave it unset ({own.crop})"
        )
    if kwargs:
        try:
            with torch.inference_mode():
                model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
        except Exception as e:  # the model's own shape checks: name the sizes it does take
            raise ConfigError(
                f"{name} was built for {size}x{size} input but does not run at it ({type(e).__name__}: {e}); "
                f"set crop (--crop) to {own.crop} or leave it unset"
            ) from e


def _convert(model_name: str, model: torch.nn.Module, state: dict, *, source: str) -> dict:
    """Apply the model module's own checkpoint filter, as timm does when it loads pretrained weights:
    other layouts (e.g. OpenAI CLIP) converted, position embeddings resampled to the size built."""
    module = sys.modules.get(timm.models.model_entrypoint(model_name.split(".")[0]).__module__)
    convert = getattr(module, "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return dict(convert(dict(state), model))
    except Exception as e:  # a foreign state dict can break the filter in many ways: one line, exit 2
        raise UsageError(
            f"{source}: weights do not fit timm:{model_name} (its checkpoint conversion failed: "
            f"{type(e).__name__}: {e})"
        ) from e


def _timm_reference(data: dict) -> ReferenceFactory:
    """timm's own eval transform (`timm.data.create_transform`) for a preprocessing of this model."""

    def build(pre: Preprocessing):
        from timm.data import create_transform

        pct = data["crop_pct"]
        if math.floor(pre.crop / pct) != pre.resize:  # sizes overridden: the crop_pct giving that short side
            pct = pre.crop / (pre.resize + 0.5)
        return create_transform(input_size=(3, pre.crop, pre.crop), is_training=False, interpolation=pre.interpolation,
                                mean=pre.mean, std=pre.std, crop_pct=pct, crop_mode="center")

    return build
