"""Temporal aggregators, one file each, one registry: a clip of frame features [B, T, D] in, logits [B, C] out.

`create_aggregator(name, in_dim, num_classes, **opts)` builds one: nonlinear and netvlad (VideoLT),
move (MOVE's attentive aggregation). A new aggregator is one file here with an
`@AGGREGATORS.register("name")` class deriving from `Aggregator`; every module here is imported.
"""

from videolt.registry import import_modules
from videolt.train.aggregators._base import (
    AGGREGATORS,
    Aggregator,
    EmbeddingHook,
    create_aggregator,
)
from videolt.train.aggregators.move import MoveAggregator
from videolt.train.aggregators.netvlad import NetVLAD
from videolt.train.aggregators.nonlinear import NonLinear

__all__ = ["AGGREGATORS", "Aggregator", "EmbeddingHook", "MoveAggregator", "NetVLAD", "NonLinear",
           "create_aggregator"]

import_modules(__name__, __path__)  # every module registers its components: a new one is a new file
