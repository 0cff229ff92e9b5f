"""The VideoLT label lists: split files `<id> <c1,c2,..>` and the train count file.

Parsing is strict: every problem is an `InputFileError` naming the file and line, because a silently
skipped line would shift manifest indices and every feature row after it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from videolt.data.ids import LIST_ID, is_valid_id
from videolt.data.protocol import GROUP_HEAD, GROUP_TAIL
from videolt.errors import InputFileError, UsageError

SPLIT_FILES = {"train": "train.lst", "val": "validate.lst", "test": "test.lst"}
COUNT_FILE = "count-labels-train.lst"


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    count: int


@dataclass(frozen=True)
class Split:
    name: str
    ids: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class LabelSet:
    classes: tuple[ClassInfo, ...]
    splits: dict[str, Split] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def counts(self) -> np.ndarray:
        return np.array([c.count for c in self.classes], dtype=np.int64)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def groups(self, head: int = GROUP_HEAD, tail: int = GROUP_TAIL) -> dict[str, np.ndarray]:
        """Class ids per group by train count: head > `head`, tail ≤ `tail`, medium in between."""
        if not 0 <= tail <= head:
            raise UsageError(f"group thresholds: expected 0 <= tail <= head (train videos), got head {head}, tail {tail}")
        counts = self.counts
        return {
            "head": np.flatnonzero(counts > head),
            "medium": np.flatnonzero((counts > tail) & (counts <= head)),
            "tail": np.flatnonzero(counts <= tail),
        }

    def group_of(self, head: int = GROUP_HEAD, tail: int = GROUP_TAIL) -> list[str]:
        """The group name of every class, in class-id order."""
        out = [""] * self.num_classes
        for name, ids in self.groups(head, tail).items():
            for c in ids:
                out[int(c)] = name
        return out


def suggest_thresholds(counts: np.ndarray) -> tuple[int, int] | None:
    """(head, tail) train-count thresholds giving every group a class, in about VideoLT's proportions
    (47 / 617 / 340 of 1,004 classes: the top 5 % head, the bottom third tail); None when the counts
    take fewer than three distinct values, so no thresholds can make three groups."""
    v = np.sort(np.asarray(counts, dtype=np.int64))
    distinct = np.unique(v)
    if len(distinct) < 3:
        return None
    n = len(v)
    tail = min(int(v[max(0, round(n * 0.34) - 1)]), int(distinct[-3]))
    head = int(v[n - max(1, round(n * 0.047)) - 1])
    head = min(max(head, int(distinct[distinct > tail][0])), int(distinct[-2]))
    return head, tail


def group_warning(labels: LabelSet, head: int, tail: int, fix: str) -> str | None:
    """None when the thresholds give every group a class; else one line naming the empty groups, the
    thresholds and, through `fix` (a template with {head} and {tail}, e.g. the `--set` of the
    command at hand), thresholds that would fill them. Their mAP would otherwise be NaN (null in JSON)."""
    empty = [g for g, ids in labels.groups(head, tail).items() if not len(ids)]
    if not empty:
        return None
    which = " and ".join(empty)
    line = (f"the {which} group{'s are' if len(empty) > 1 else ' is'} empty under the thresholds in force (head > "
            f"{head}, tail <= {tail} train videos; the most frequent of the {labels.num_classes} classes has "
            f"{int(labels.counts.max())}), so {'their' if len(empty) > 1 else 'its'} mAP is n/a")
    better = suggest_thresholds(labels.counts)
    if better is None:
        return f"{line}; the class counts take fewer than three values, so no thresholds fill all three groups"
    return f"{line}; {fix.format(head=better[0], tail=better[1])} gives " + ", ".join(
        f"{g} {len(ids)}" for g, ids in labels.groups(*better).items())


def read_counts(path: Path) -> tuple[ClassInfo, ...]:
    """Parse `count-labels-train.lst`: `<ClassName> <class_id> <count>` with ids 0..C-1 in file order."""
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    classes = []
    for lineno, line in enumerate(_lines(path), start=1):
        parts = line.split()
        if len(parts) != 3:
            raise InputFileError(path, lineno, f"expected '<name> <id> <count>', got {line!r}")
        name, cid, count = parts
        if not cid.isdigit() or int(cid) != len(classes):
            raise InputFileError(path, lineno, f"class id {cid!r} is not the next id {len(classes)}")
        try:
            value = float(count)
        except ValueError:
            raise InputFileError(path, lineno, f"count {count!r} is not a number") from None
        if value < 0 or value != int(value):
            raise InputFileError(path, lineno, f"count {count!r} is not a non-negative whole number")
        classes.append(ClassInfo(int(cid), name, int(value)))
    if not classes:
        raise InputFileError(path, None, "no classes")
    return tuple(classes)


def read_split(path: Path, name: str, num_classes: int) -> Split:
    """Parse one split list: `<video_id> <c1>[,<c2>...]` a line."""
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    ids: list[str] = []
    labels: list[tuple[int, ...]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(_lines(path), start=1):
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise InputFileError(path, lineno, f"expected '<video_id> <class ids>', got {line!r}")
        vid, cls = parts
        if not LIST_ID.match(vid):
            raise InputFileError(path, lineno, f"video id {vid!r} has characters outside [A-Za-z0-9_-]")
        if vid in seen:
            raise InputFileError(path, lineno, f"video id {vid} repeats line {seen[vid]}")
        try:
            row = tuple(int(c) for c in cls.split(","))
        except ValueError:
            raise InputFileError(path, lineno, f"class ids {cls!r} are not comma-separated integers") from None
        bad = [c for c in row if not 0 <= c < num_classes]
        if bad:
            raise InputFileError(path, lineno, f"class id {bad[0]} out of range 0..{num_classes - 1}")
        if len(set(row)) != len(row):
            raise InputFileError(path, lineno, f"class ids {cls!r} repeat")
        seen[vid] = lineno
        ids.append(vid)
        labels.append(row)
    return Split(name, tuple(ids), tuple(labels))


def load_labels(labels_dir: str | Path) -> LabelSet:
    """Read the count file and the three split lists; IDs must be unique across splits."""
    root = Path(labels_dir)
    if not root.is_dir():
        raise InputFileError(root, None, "label directory not found")
    classes = read_counts(root / COUNT_FILE)
    splits: dict[str, Split] = {}
    owner: dict[str, str] = {}
    for name, fname in SPLIT_FILES.items():
        split = read_split(root / fname, name, len(classes))
        for lineno, vid in enumerate(split.ids, start=1):
            if vid in owner:
                raise InputFileError(root / fname, lineno, f"video id {vid} is also in split {owner[vid]}")
            owner[vid] = name
        splits[name] = split
    return LabelSet(classes, splits)


def multi_hot(labels: Sequence[tuple[int, ...]], num_classes: int) -> np.ndarray:
    """Multi-hot float32 targets [N, C]."""
    out = np.zeros((len(labels), num_classes), dtype=np.float32)
    for i, row in enumerate(labels):
        out[i, list(row)] = 1.0
    return out


def summary(labelset: LabelSet, head: int = GROUP_HEAD, tail: int = GROUP_TAIL) -> dict:
    """What `videolt labels` prints: split sizes, classes, groups, labels-per-video, invalid IDs."""
    hist: Counter[int] = Counter()
    invalid = 0
    for split in labelset.splits.values():
        hist.update(len(row) for row in split.labels)
        invalid += sum(not is_valid_id(v) for v in split.ids)
    groups = labelset.groups(head, tail)
    train_hist = Counter(len(row) for row in labelset.splits["train"].labels)
    counts = labelset.counts
    return {
        "splits": {name: len(s) for name, s in labelset.splits.items()},
        "videos": sum(len(s) for s in labelset.splits.values()),
        "classes": labelset.num_classes,
        "groups": {name: int(len(ids)) for name, ids in groups.items()},
        "group_thresholds": {"head_gt": head, "tail_le": tail},
        "train_counts": {"min": int(counts.min()), "median": float(np.median(counts)),
                         "max": int(counts.max()), "sum": int(counts.sum())},
        "labels_per_video": {str(k): hist[k] for k in sorted(hist)},
        "labels_per_train_video": {str(k): train_hist[k] for k in sorted(train_hist)},
        "invalid_ids": invalid,
        "warnings": [w for w in [group_warning(labelset, head, tail, "--head {head} --tail {tail}")] if w],
    }


def _lines(path: Path):
    """Lines without their newline; the last may lack one. A blank line is an error of its own.

    A UTF-8 byte-order mark (lists saved on Windows) is dropped and CRLF line ends are read as LF,
    so neither changes an ID or a class name."""
    with open(path, encoding="utf-8-sig") as f:
        lineno = 0
        try:
            for lineno, raw in enumerate(f, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    raise InputFileError(path, lineno, "empty line")
                yield line
        except UnicodeDecodeError:
            raise InputFileError(path, lineno + 1, "not UTF-8 text") from None
