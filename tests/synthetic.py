"""A synthetic long-tailed, weakly-labelled feature set in the official release format.

`make_synthetic` writes one `<id>.npy` [frames, dim] float32 per video (as the official feature
release) plus the four VideoLT label lists. Train counts follow a power law, so classes fall into
head / medium / tail groups at the scaled-down thresholds it returns. The class signal (a fixed
random direction per class) is added to only a random part of each video's frames, so a model must
pool over time: the weak-label setting of VideoLT. `make_workdir` turns the same data into a
workdir with a Zarr feature set, which is what training reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videolt.data.labels import COUNT_FILE, SPLIT_FILES


@dataclass(frozen=True)
class Synthetic:
    labels_dir: Path
    npy_dir: Path
    ids: dict[str, list[str]]  # split -> video ids, in list order
    head: int  # group thresholds that give non-empty head / medium / tail groups
    tail: int


def make_synthetic(root: str | Path, *, num_classes: int = 12, videos: tuple[int, int, int] = (240, 60, 120),
                   dim: int = 64, frames: int = 150, seed: int = 0, signal: float = 0.8,
                   multi_label: float = 0.15) -> Synthetic:
    """Write `root/labels/*.lst` and `root/npy/<id>.npy`; `videos` = (train, val, test) sizes."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    labels_dir, npy_dir = root / "labels", root / "npy"
    labels_dir.mkdir(parents=True, exist_ok=True)
    npy_dir.mkdir(parents=True, exist_ok=True)
    protos = rng.standard_normal((num_classes, dim)).astype(np.float32)
    prior = (np.arange(num_classes) + 1.0) ** -1.3
    prior /= prior.sum()

    ids: dict[str, list[str]] = {}
    split_labels: dict[str, list[tuple[int, ...]]] = {}
    serial = 0
    for split, n in zip(SPLIT_FILES, videos):
        rows = []
        for k in range(n):
            # Train is long-tailed; val/test cycle through classes so every class has positives.
            first = int(rng.choice(num_classes, p=prior)) if split == "train" else k % num_classes
            labels = [first]
            if rng.random() < multi_label:
                other = int(rng.choice(num_classes, p=prior))
                if other != first:
                    labels.append(other)
            rows.append(tuple(labels))
        split_labels[split] = rows
        ids[split] = [f"s{serial + k:010d}" for k in range(n)]
        serial += n
        for vid, labels in zip(ids[split], rows):
            np.save(npy_dir / f"{vid}.npy", _video(rng, protos, labels, frames, signal))
        lines = [f"{vid} {','.join(map(str, lab))}" for vid, lab in zip(ids[split], rows)]
        (labels_dir / SPLIT_FILES[split]).write_text("\n".join(lines) + "\n")

    counts = np.zeros(num_classes, dtype=np.int64)
    for labels in split_labels["train"]:
        counts[list(labels)] += 1
    (labels_dir / COUNT_FILE).write_text(
        "".join(f"Class{c:03d} {c} {float(counts[c])}\n" for c in range(num_classes)))
    ranked = np.sort(counts)
    return Synthetic(labels_dir, npy_dir, ids, head=int(ranked[-3]), tail=int(ranked[num_classes // 3]))


def _video(rng: np.random.Generator, protos: np.ndarray, labels: tuple[int, ...], frames: int,
           signal: float) -> np.ndarray:
    """Noise frames; each label's direction added on a random 20–50 % of the frames."""
    x = rng.standard_normal((frames, protos.shape[1])).astype(np.float32)
    for c in labels:
        k = int(rng.integers(frames // 5, frames // 2 + 1))
        where = rng.choice(frames, size=k, replace=False)
        x[where] += signal * protos[c]
    return x


def random_store(path: str | Path, data: np.ndarray, *, done: int | None = None):
    """A feature set at `path` holding `data` [N, frames, dim] (its first `done` rows marked done; all by default)."""
    from videolt.data.store import FeatureStore

    n, frames, dim = data.shape
    store = FeatureStore.create(path, [f"v{i:010d}" for i in range(n)], frames=frames, dim=dim, attrs={})
    for i in range(n if done is None else done):
        store.write_row(i, data[i], frames)
    return FeatureStore.open(path)


def make_workdir(root: str | Path, *, features: str = "syn", **synthetic_opts) -> tuple[Path, Synthetic]:
    """A workdir at `root/wd` with the synthetic features imported as the float16 feature set `features`."""
    from videolt.data.store import FeatureStore
    from videolt.data.workdir import Workdir

    syn = make_synthetic(Path(root) / "src", **synthetic_opts)
    wd = Workdir.init(Path(root) / "wd", syn.labels_dir)
    rows = wd.manifest().videos()
    first = np.load(syn.npy_dir / f"{rows[0].video_id}.npy")
    store = FeatureStore.create(wd.features_path(features), [r.video_id for r in rows], frames=first.shape[0],
                                dim=first.shape[1], dtype="float16", attrs={"backbone": "synthetic"})
    for r in rows:
        feats = np.load(syn.npy_dir / f"{r.video_id}.npy").astype(np.float16)
        store.write_row(r.index, feats, feats.shape[0])
    return wd.root, syn
