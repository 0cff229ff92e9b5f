"""Integrity: a row marked done has its data, and a feature set, its manifest and the label lists agree.

Three facts, each checked where it is cheap:
- A done feature row has its whole chunk file (`FeatureStore.chunk_stats` and `row_bytes`: one
  `stat` per row, no read). `extract` and `import-features` look at every done row when they start
  and make the damaged ones to do again; a read of one raises `IntegrityError` (the store).
- The manifest is what the workdir's label lists say, row for row (ID, split, labels): an edited
  manifest (a renamed ID, deleted rows, a changed split) would silently move videos between splits.
- A feature set's `video_id` array is the manifest's IDs in manifest order: row i is video i.
Training and evaluation check the last two when they open a feature set (`require_consistent`);
`videolt check` reports all three for every feature set (`videolt.data.check`).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from videolt.data.labels import LabelSet
from videolt.data.manifest import Manifest, VideoRow
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import WorkdirError

__all__ = ["chunk_damage", "damaged_rows", "ids_mismatch", "lists_mismatch", "redo_damaged", "require_consistent"]

log = logging.getLogger(__name__)


def damaged_rows(store: FeatureStore, rows: Sequence[int] | np.ndarray | None = None) -> dict[int, str]:
    """{row: what is wrong} for the done rows among `rows` (default: every done row) whose chunk file
    is missing or not one row long (any non-empty size for a compressed set)."""
    done = store.done_indices()
    rows = done if rows is None else np.intersect1d(np.asarray(rows, dtype=np.int64), done)
    if not store.row_chunks or not len(rows):
        return {}
    return {int(rows[k]): what for k, what in chunk_damage(store.chunk_stats(rows)[:, 0], store.row_bytes).items()}


def chunk_damage(sizes: np.ndarray, want: int | None) -> dict[int, str]:
    """{position: what is wrong} for chunk-file sizes (-1: missing) against one row's bytes (`want`;
    None for a compressed set, where any non-empty size will do)."""
    bad = {}
    for k, size in enumerate(sizes.tolist()):
        if size < 0:
            bad[k] = "missing"
        elif want is not None and size != want:
            bad[k] = f"{size} of {want} bytes long"
        elif size == 0:
            bad[k] = "empty"
    return bad


def redo_damaged(store: FeatureStore, manifest: Manifest, stage: str) -> dict[int, str]:
    """Make every done row whose data is missing or short to do again: store status back to missing,
    manifest state `stage` back to pending with the reason (no attempt counted). Returns what it found."""
    bad = damaged_rows(store)
    ids = store.video_ids
    for row, what in bad.items():
        store.mark_missing(row)
        manifest.record(stage, row, "pending", message=f"[{stage}] {ids[row]}: done, but its feature chunk was "
                                                       f"{what}; to do again", attempt=False)
    if bad:
        first = next(iter(bad.items()))
        log.warning("%s: %d done row(s) had missing or short data (e.g. %s: %s); doing them again", store.path,
                    len(bad), ids[first[0]], first[1])
    return bad


def lists_mismatch(videos: Sequence[VideoRow], labels: LabelSet) -> str | None:
    """How the manifest's videos differ from the workdir's label lists (the first difference), or None."""
    expected = [(vid, name, tuple(lab)) for name, split in labels.splits.items()
                for vid, lab in zip(split.ids, split.labels)]
    for k, (v, want) in enumerate(zip(videos, expected)):
        if v.index != k:
            return f"manifest row {k} (video {want[0]}) is gone"
        got = (v.video_id, v.split, tuple(v.labels))
        if got != want:
            f = next(f for f in range(3) if got[f] != want[f])
            return (f"manifest row {k} has {('ID', 'split', 'labels')[f]} {got[f]!r} where the label lists have "
                    f"{want[f]!r}")
    if len(videos) != len(expected):
        return f"the manifest has {len(videos)} videos, the label lists {len(expected)}"
    return None


def ids_mismatch(store: FeatureStore, videos: Sequence[VideoRow]) -> str | None:
    """How a feature set's `video_id` array differs from the manifest's IDs in order, or None."""
    ids = store.video_ids
    if len(ids) != len(videos):
        return f"{store.path.name} has {len(ids)} rows, the manifest {len(videos)} videos"
    manifest_ids = np.array([v.video_id for v in videos], dtype=str)
    differ = np.flatnonzero(ids != manifest_ids)
    if len(differ):
        row = int(differ[0])
        return (f"{store.path.name} row {row} is video {ids[row]!r}, manifest row {row} is {manifest_ids[row]!r} "
                f"({len(differ)} rows differ)")
    return None


def require_consistent(wd: Workdir, store: FeatureStore | None) -> None:
    """Refuse (WorkdirError, one line) a manifest that is not the label lists' or a feature set made
    for another (`store`: None when the set does not exist yet, which the caller reports)."""
    with wd.manifest() as m:
        videos = m.videos()
    problem = lists_mismatch(videos, wd.labels()) or (ids_mismatch(store, videos) if store is not None else None)
    if problem:
        raise WorkdirError(f"{wd.root}: {problem}; the manifest or the feature set was changed after the fact "
                           f"(`videolt check {wd.root}` says what to do)")
