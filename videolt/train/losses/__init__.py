"""Multi-label (sigmoid) losses of the long-tail methods, one file each, one registry (semantics §6).

`create_loss(name, class_counts, **opts)` builds one; `LOSSES.names()` lists them. A new loss is one
file here with a `@LOSSES.register("name")` class deriving from `MultiLabelLoss`, imported below.
"""

from videolt.train.losses import bce, cb, eql, focal, ldam  # noqa: F401  (register on import)
from videolt.train.losses._base import (
    LOSSES,
    REDUCTIONS,
    MultiLabelLoss,
    class_balanced_weights,
    create_loss,
    loss_defaults,
    loss_options,
)
from videolt.train.losses.bce import BCELoss
from videolt.train.losses.cb import CBLoss
from videolt.train.losses.eql import EQLLoss
from videolt.train.losses.focal import FocalLoss
from videolt.train.losses.ldam import LDAMLoss

__all__ = ["LOSSES", "REDUCTIONS", "BCELoss", "CBLoss", "EQLLoss", "FocalLoss", "LDAMLoss", "MultiLabelLoss",
           "class_balanced_weights", "create_loss", "loss_defaults", "loss_options"]
