"""What a training run needs, checked before it starts: by `videolt train` and by `videolt benchmark`
(also with `--dry-run`), so that a missing feature set or an empty split is one line up front rather
than a failure after hours, or 27 failures of a grid.

`check_run` reads only the label lists, the manifest and the feature set's status column, and builds
the run's model (on the meta device: shapes, no weights), loss and batch mix once to validate their
names and options; it trains nothing and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from videolt.data.labels import SPLIT_FILES, LabelSet, group_warning
from videolt.data.runfiles import checkpoint_path
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import FeatureSetNotFound, VideoltError
from videolt.train.config import TrainConfig
from videolt.train.losses import create_loss
from videolt.train.methods import resolve_method
from videolt.train.mixes import create_batch_mix
from videolt.train.model import build_model

__all__ = ["Findings", "GROUP_FIX", "check_run", "split_indices"]

#: How `videolt train` changes the group thresholds; a benchmark grid passes its own (train.group_head).
GROUP_FIX = "--set group_head={head} --set group_tail={tail}"


@dataclass
class Findings:
    """What would fail a run (`errors`) and what would make its numbers misleading (`warnings`), one line each."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def split_indices(wd: Workdir) -> dict[str, np.ndarray]:
    """The manifest indices of each split's videos (every split of the lists, empty ones too)."""
    out: dict[str, list[int]] = {split: [] for split in SPLIT_FILES}
    with wd.manifest() as m:
        for v in m.videos():
            out.setdefault(v.split, []).append(v.index)
    return {split: np.array(ix, dtype=np.int64) for split, ix in out.items()}


def check_run(wd: Workdir, config: TrainConfig, *, group_fix: str = GROUP_FIX, labels: LabelSet | None = None,
              splits: Mapping[str, np.ndarray] | None = None) -> Findings:
    """Every input `config` needs on `wd`: the feature set and its shape, the train and selection
    splits listed and with features, the model, loss and batch mix buildable, and class groups that
    are not empty under the thresholds in force (a warning naming `group_fix`). `labels` and `splits`
    (`split_indices`) may be given, read once for many runs."""
    found = Findings()
    labels = labels or wd.labels()
    warning = group_warning(labels, config.group_head, config.group_tail, group_fix)
    if warning:
        found.warnings.append(warning)
    path = wd.features_path(config.features)
    try:
        store = FeatureStore.open(path)
    except FeatureSetNotFound:
        found.errors.append(f"feature set {config.features!r} not found ({path}): make it with `videolt extract "
                            f"--name {config.features}` or `videolt import-features --name {config.features}`")
        return found
    except VideoltError as e:
        found.errors.append(str(e))
        return found
    splits = split_indices(wd) if splits is None else splits
    videos = sum(len(ix) for ix in splits.values())
    if store.n != videos or store.frames < 1 or store.dim < 1:
        found.errors.append(f"feature set {config.features!r} has shape ({store.n}, {store.frames}, {store.dim}); the "
                            f"manifest has {videos} videos (is it from another workdir?)")
        return found
    done = store.status() == STATUS_DONE
    for split in dict.fromkeys(("train", config.select_on)):
        listed = splits.get(split, np.zeros(0, dtype=np.int64))
        have = int(done[listed].sum())
        if not len(listed):
            found.errors.append(f"split {split} is empty: {wd.labels_dir / SPLIT_FILES[split]} lists no videos")
        elif not have:
            found.errors.append(f"split {split}: none of its {len(listed):,} videos has features in "
                                f"{config.features!r}; extract or import them first")
        elif have < len(listed):
            found.warnings.append(f"split {split}: {len(listed) - have:,} of {len(listed):,} videos have no features "
                                  f"in {config.features!r} and are left out")
    try:
        spec = resolve_method(config.method, config.method_opts, config.loss, config.loss_opts)
        with torch.device("meta"):  # shapes and options only: no memory, no initialisation (MOVE's takes seconds)
            build_model(config.model, store.dim, labels.num_classes, config.model_opts, config.decouple,
                        class_counts=labels.counts, seed=config.seed)
        create_loss(spec.loss, labels.counts, train_videos=len(labels.splits["train"]), **spec.loss_opts)
        create_batch_mix(spec.batch_mix, labels.counts, config.seed, **spec.mix_opts)
    except VideoltError as e:
        found.errors.append(str(e))
    if config.init_from and not (best := checkpoint_path(wd.run_dir(config.init_from), "best")).is_file():
        found.errors.append(f"init_from: {best} does not exist")
    return found
