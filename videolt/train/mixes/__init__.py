"""Batch mixes, one file each, one registry: how a training batch is changed around the aggregator.

`create_batch_mix(name, class_counts, seed, **opts)` builds one; the hooks are described in
`_base.py`. A new mix (e.g. MOVE's embedding-space expansion, `vicinity`) is one file here with an
`@BATCH_MIXES.register("name")` class deriving from `BatchMix`, imported below.
"""

from videolt.train.mixes import framestack, mixup, vicinity  # noqa: F401  (register on import)
from videolt.train.mixes._base import BATCH_MIXES, BatchMix, Gather, create_batch_mix, mix_defaults
from videolt.train.mixes.framestack import FrameStack
from videolt.train.mixes.mixup import Mixup
from videolt.train.mixes.vicinity import VicinityExpansion

__all__ = ["BATCH_MIXES", "BatchMix", "FrameStack", "Gather", "Mixup", "VicinityExpansion", "create_batch_mix",
           "mix_defaults"]
