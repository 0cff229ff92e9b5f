"""Multi-label (sigmoid) losses of the long-tail methods, one file each, one registry (docs/semantics.md §6).

`create_loss(name, class_counts, **opts)` builds one; `LOSSES.names()` lists them: the VideoLT
paper's (bce, focal, cb, ldam, eql) and losses made for multi-label long tails since (db, asl,
logit_adjusted). A new loss is one file here with a `@LOSSES.register("name")` class deriving
from `MultiLabelLoss`, imported below.
"""

# Register on import.
from videolt.train.losses import asl, bce, cb, db, eql, focal, ldam, logit_adjusted  # noqa: F401
from videolt.train.losses._base import (
    LOSSES,
    REDUCTIONS,
    MultiLabelLoss,
    class_balanced_weights,
    create_loss,
    loss_defaults,
    loss_options,
)
from videolt.train.losses.asl import AsymmetricLoss
from videolt.train.losses.bce import BCELoss
from videolt.train.losses.cb import CBLoss
from videolt.train.losses.db import DBLoss
from videolt.train.losses.eql import EQLLoss
from videolt.train.losses.focal import FocalLoss
from videolt.train.losses.ldam import LDAMLoss
from videolt.train.losses.logit_adjusted import LogitAdjustedBCE

__all__ = ["LOSSES", "REDUCTIONS", "AsymmetricLoss", "BCELoss", "CBLoss", "DBLoss", "EQLLoss", "FocalLoss", "LDAMLoss",
           "LogitAdjustedBCE", "MultiLabelLoss", "class_balanced_weights", "create_loss", "loss_defaults",
           "loss_options"]
