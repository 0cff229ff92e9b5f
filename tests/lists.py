"""Write small label lists in the official VideoLT format (for tests that need a workdir)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Sequence

Row = tuple[str, Sequence[int]]


def official_labels() -> Path:
    """The official label lists (never in this repository): $VIDEOLT_LABELS, else ../shared/videolt-labels
    beside the repository's root. Tests using them skip when the folder is absent."""
    return Path(os.environ.get("VIDEOLT_LABELS") or Path(__file__).resolve().parents[2] / "shared" / "videolt-labels")


def write_lists(root: Path, train: Sequence[Row], val: Sequence[Row], test: Sequence[Row],
                counts: Sequence[int] | None = None, trailing_newline: bool = True) -> Path:
    """Write train/validate/test lists and the count file; counts default to the train label counts."""
    root.mkdir(parents=True, exist_ok=True)
    num_classes = 1 + max(c for _, labels in (*train, *val, *test) for c in labels)
    if counts is None:
        counts = [sum(c in labels for _, labels in train) for c in range(num_classes)]
    for name, rows in (("train.lst", train), ("validate.lst", val), ("test.lst", test)):
        text = "\n".join(f"{vid} {','.join(map(str, labels))}" for vid, labels in rows)
        (root / name).write_text(text + ("\n" if trailing_newline and rows else ""))
    (root / "count-labels-train.lst").write_text(
        "".join(f"Class{c} {c} {float(n)}\n" for c, n in enumerate(counts)))
    return root


def random_id(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(11))


def small_lists(root: Path, n_train: int = 12, n_val: int = 4, n_test: int = 6, num_classes: int = 3,
                seed: int = 0) -> Path:
    """Random valid IDs with 1–2 labels each; every class appears in train."""
    rng = random.Random(seed)
    ids = set()
    while len(ids) < n_train + n_val + n_test:
        ids.add(random_id(rng))
    ids_l = sorted(ids)
    rng.shuffle(ids_l)

    def rows(chunk: list[str], offset: int) -> list[Row]:
        out = []
        for i, vid in enumerate(chunk):
            first = (i + offset) % num_classes
            labels = [first] if rng.random() < 0.7 else sorted({first, rng.randrange(num_classes)})
            out.append((vid, labels))
        return out

    return write_lists(root, rows(ids_l[:n_train], 0), rows(ids_l[n_train:n_train + n_val], 1),
                       rows(ids_l[n_train + n_val:], 2))
