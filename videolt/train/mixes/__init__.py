"""Batch mixes, one file each, one registry: how a training batch is changed around the aggregator.

`create_batch_mix(name, class_counts, seed, **opts)` builds one; the hooks are described in
`_base.py`. A new mix (e.g. MOVE's embedding-space expansion, `vicinity`) is one file here with an
`@BATCH_MIXES.register("name")` class deriving from `BatchMix`; every module here is imported.
"""

from videolt.registry import import_modules
from videolt.train.mixes._base import BATCH_MIXES, BatchMix, Gather, create_batch_mix
from videolt.train.mixes.framestack import FrameStack
from videolt.train.mixes.mixup import Mixup
from videolt.train.mixes.vicinity import VicinityExpansion

__all__ = ["BATCH_MIXES", "BatchMix", "FrameStack", "Gather", "Mixup", "VicinityExpansion", "create_batch_mix"]

import_modules(__name__, __path__)  # every module registers its components: a new one is a new file
