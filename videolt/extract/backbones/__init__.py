"""Frame backbones: `create_backbone(name, weights=...)` → a frozen per-frame feature extractor.

Names: `resnet50`, `resnet101`, `tsm_r50`, and `timm:<any timm model>` (`list_backbones()`). Importing
this package imports every module in it, which registers them all: a new backbone is a new file.
Each backbone carries the `Preprocessing` it is fed (`backbone.preprocessing`) and its library's
reference transform (`backbone.reference_transform()`).
"""

from videolt.extract.backbones._registry import (
    BACKBONE_PREFIXES,
    BACKBONES,
    PAPER_PREPROCESSING,
    Backbone,
    BackboneCfg,
    backbone_options,
    create_backbone,
    list_backbones,
    parse_backbone_name,
)
from videolt.extract.backbones.tsm import temporal_shift
from videolt.registry import import_modules

__all__ = [
    "BACKBONES",
    "BACKBONE_PREFIXES",
    "PAPER_PREPROCESSING",
    "Backbone",
    "BackboneCfg",
    "backbone_options",
    "create_backbone",
    "list_backbones",
    "parse_backbone_name",
    "temporal_shift",
]

import_modules(__name__, __path__)  # every module registers its components: a new one is a new file
