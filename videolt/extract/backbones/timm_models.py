"""Any timm model as a per-frame backbone: `timm:<name>` (a pretrained tag may follow, `resnet50.tv_in1k`).

`num_classes=0` makes timm return the pooled pre-classifier feature; the preprocessing comes from
the model's own pretrained config through `timm.data.resolve_data_config`, so nobody retypes it.
"""

from __future__ import annotations

import difflib
import math

import timm
from timm.data import resolve_data_config

from videolt.errors import ConfigError, StageError, UnknownNameError
from videolt.extract.backbones._registry import BACKBONE_PREFIXES, Backbone, BackboneCfg
from videolt.extract.backbones.weights import load_checked, parse_weights, read_weights_file, seeded


@BACKBONE_PREFIXES.register("timm")
def timm_backbone(model_name: str, *, weights: str, seed: int) -> Backbone:
    """weights "imagenet" = timm's default pretrained weights for the name (Hugging Face hub)."""
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown timm model {model_name!r}{hint} (see timm.list_models())")
    kind = parse_weights(weights, ("imagenet",), f"timm:{model_name}")
    with seeded(seed):
        try:
            model = timm.create_model(model_name, pretrained=kind == "named", num_classes=0)
        except OSError as e:  # hub offline, unreachable or file missing: all OSError subclasses
            raise StageError(
                f"could not download timm:{model_name} pretrained weights ({e}); pass --weights PATH to a local copy"
            ) from e
    pretrained = model.pretrained_cfg
    sha256 = None
    if kind == "named":
        weights = "timm:" + (pretrained.get("hf_hub_id") or f"{pretrained['architecture']}.{pretrained['tag']}")
    elif kind == "file":
        state, sha256, weights = read_weights_file(weights)
        heads = pretrained.get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        load_checked(model, state, source=weights, ignore=tuple(f"{h}." for h in heads))
    data = resolve_data_config(model=model)
    _, height, width = data["input_size"]
    if height != width:
        raise ConfigError(
            f"timm:{model_name} expects a non-square input {height}x{width}; only square crops are supported"
        )
    cfg = BackboneCfg(
        name=f"timm:{model_name}",
        arch=f"timm:{pretrained.get('architecture', model_name)}",
        weights=weights,
        weights_sha256=sha256,
        seed=seed if kind == "random" else None,
        dim=getattr(model, "head_hidden_size", None) or model.num_features,
        resize=math.floor(height / data["crop_pct"]),
        crop=height,
        interpolation=data["interpolation"],
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
    )
    return Backbone(model, cfg)
