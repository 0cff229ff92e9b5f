"""Frame backbones: `create_backbone(name, weights=...)` → a frozen per-frame feature extractor.

Names: `resnet50`, `resnet101`, `tsm_r50`, and `timm:<any timm model>`. Importing this package
registers them all. Each backbone carries the `Preprocessing` it is fed (`backbone.preprocessing`)
and its library's reference transform (`backbone.reference_transform()`).
"""

from videolt.extract.backbones import resnet, timm_models, tsm  # noqa: F401  (register on import)
from videolt.extract.backbones._registry import (
    BACKBONE_PREFIXES,
    BACKBONES,
    PAPER_PREPROCESSING,
    Backbone,
    BackboneCfg,
    create_backbone,
    parse_backbone_name,
)
from videolt.extract.backbones.tsm import temporal_shift

__all__ = [
    "BACKBONES",
    "BACKBONE_PREFIXES",
    "PAPER_PREPROCESSING",
    "Backbone",
    "BackboneCfg",
    "create_backbone",
    "list_backbones",
    "parse_backbone_name",
    "temporal_shift",
]


def list_backbones() -> list[str]:
    """Registered plain names plus the prefix forms, e.g. ["resnet101", ..., "timm:<name>"]."""
    return [*BACKBONES.names(), *(f"{p}:<name>" for p in BACKBONE_PREFIXES.names())]
