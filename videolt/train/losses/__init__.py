"""Multi-label (sigmoid) losses of the long-tail methods, one file each, one registry (docs/semantics.md §6).

`create_loss(name, class_counts, **opts)` builds one; `LOSSES.describe()` lists them: the VideoLT
paper's (bce, focal, cb, ldam, eql) and losses made for multi-label long tails since (db, asl,
logit_adjusted). A new loss is one file here with a `@LOSSES.register("name")` class deriving
from `MultiLabelLoss`; every module here is imported, so nothing else is touched.
"""

from videolt.registry import import_modules
from videolt.train.losses._base import (
    LOSSES,
    REDUCTIONS,
    MultiLabelLoss,
    class_balanced_weights,
    create_loss,
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
           "LogitAdjustedBCE", "MultiLabelLoss", "class_balanced_weights", "create_loss"]

import_modules(__name__, __path__)  # every module registers its components: a new one is a new file
