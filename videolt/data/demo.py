"""A small generated long-tailed, weakly-labelled video set for the offline demo and tests.

Each class has a visual signature (its own hue and spatial pattern) that shows in only part of
each clip, as in real VideoLT videos whose label describes a few seconds of them; the other
seconds are grey noise. Train counts fall off exponentially from `max_train` to `min_train`, so
with thresholds scaled to it (the demo uses head > 20, tail <= 8) the classes split into head,
medium and tail groups. About
`multi_label` of the videos carry two labels (both signatures, one after the other). IDs are
well-formed 11-character YouTube IDs and the lists use the official format, so every stage runs
on this set exactly as on VideoLT. Everything follows from the spec's seed.
"""

from __future__ import annotations

import colorsys
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from videolt import atomic
from videolt.config import field
from videolt.data.labels import COUNT_FILE, SPLIT_FILES
from videolt.errors import UsageError

log = logging.getLogger(__name__)

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
PATTERNS = ("hstripes", "vstripes", "checker", "disc")
SPEC_FILE = "demo.json"


@dataclass(frozen=True, kw_only=True)
class DemoSpec:
    """What the generated set looks like; equal specs give byte-identical label lists."""

    seed: int = field(0, "seed of IDs, labels, durations, segments and noise")
    classes: int = field(20, "number of classes")
    max_train: int = field(36, "train videos of the largest class")
    min_train: int = field(3, "train videos of the smallest class")
    val_per_class: int = field(1, "validate videos per class")
    test_per_class: int = field(3, "test videos per class")
    multi_label: float = field(0.1, "fraction of videos with two labels")
    min_seconds: int = field(6, "shortest clip in seconds")
    max_seconds: int = field(9, "longest clip in seconds")
    fps: int = field(10, "frame rate of the clips")
    width: int = field(96, "frame width")
    height: int = field(64, "frame height")

    def __post_init__(self) -> None:
        if self.classes < 2 or not 1 <= self.min_train <= self.max_train:
            raise UsageError("demo: need classes >= 2 and 1 <= min_train <= max_train")
        if not 2 <= self.min_seconds <= self.max_seconds or self.fps < 1:
            raise UsageError("demo: need 2 <= min_seconds <= max_seconds and fps >= 1")
        if not 0 <= self.multi_label < 1 or self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise UsageError("demo: multi_label must be in [0, 1); width and height even and >= 16")


@dataclass(frozen=True)
class DemoPaths:
    """Where a generated set lives: the four official lists and one `<id>.mp4` per video."""

    root: Path
    labels_dir: Path
    clips_dir: Path


def train_counts(spec: DemoSpec) -> np.ndarray:
    """Train videos per class, an exponential fall from `max_train` to `min_train` (class 0 largest)."""
    c = np.arange(spec.classes) / max(spec.classes - 1, 1)
    return np.rint(spec.max_train * (spec.min_train / spec.max_train) ** c).astype(np.int64)


def class_names(spec: DemoSpec) -> list[str]:
    return [f"{PATTERNS[c % len(PATTERNS)].capitalize()}Hue{_hue_degrees(c, spec.classes):03d}"
            for c in range(spec.classes)]


def make_demo_dataset(root: str | Path, spec: DemoSpec = DemoSpec(), *, progress: bool = False) -> DemoPaths:
    """Write the lists and clips under `root`; a complete set made with the same spec is reused."""
    root = Path(root)
    paths = DemoPaths(root, root / "labels", root / "clips")
    marker = root / SPEC_FILE
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved != asdict(spec):
            raise UsageError(f"{root}: holds a demo set made with other settings; remove it or choose another folder")
        return paths
    rng = np.random.default_rng(spec.seed)
    splits = _split_labels(spec, rng)
    ids = _unique_ids(sum(len(v) for v in splits.values()), rng)
    paths.labels_dir.mkdir(parents=True, exist_ok=True)
    paths.clips_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    videos = []
    for split, labels in splits.items():
        split_ids = ids[start:start + len(labels)]
        start += len(labels)
        lines = [f"{vid} {','.join(map(str, lab))}" for vid, lab in zip(split_ids, labels)]
        (paths.labels_dir / SPLIT_FILES[split]).write_text("\n".join(lines) + "\n")
        videos += list(zip(split_ids, labels))
    counts = train_counts(spec)
    (paths.labels_dir / COUNT_FILE).write_text(
        "".join(f"{name} {c} {float(n)}\n" for c, (name, n) in enumerate(zip(class_names(spec), counts))))
    for i, (vid, labels) in enumerate(tqdm(videos, desc="demo clips", unit="clip", disable=not progress)):
        clip_rng = np.random.default_rng([spec.seed, i])
        _write_clip(paths.clips_dir / f"{vid}.mp4", render_clip(labels, spec, clip_rng), spec.fps)
    marker.write_text(json.dumps(asdict(spec), indent=2) + "\n")  # last: the set is complete
    return paths


def _split_labels(spec: DemoSpec, rng: np.random.Generator) -> dict[str, list[tuple[int, ...]]]:
    """Label tuples per split; train hits `train_counts` exactly, with ~`multi_label` pairs."""
    out = {}
    for split, per_class in (("train", train_counts(spec)), ("val", np.full(spec.classes, spec.val_per_class)),
                             ("test", np.full(spec.classes, spec.test_per_class))):
        slots = list(rng.permutation(np.repeat(np.arange(spec.classes), per_class)))
        pairs = int(round(spec.multi_label * len(slots) / (1 + spec.multi_label)))
        videos: list[tuple[int, ...]] = []
        while slots:
            first = int(slots.pop())
            partner = next((i for i in range(len(slots) - 1, -1, -1) if slots[i] != first), None)
            if pairs > 0 and partner is not None:
                videos.append(tuple(sorted((first, int(slots.pop(partner))))))
                pairs -= 1
            else:
                videos.append((first,))
        out[split] = [videos[i] for i in rng.permutation(len(videos))]
    return out


def _unique_ids(n: int, rng: np.random.Generator) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        vid = "".join(ID_ALPHABET[i] for i in rng.integers(0, len(ID_ALPHABET), 11))
        if vid not in seen:
            seen.add(vid)
            ids.append(vid)
    return ids


def render_clip(labels: tuple[int, ...], spec: DemoSpec, rng: np.random.Generator) -> np.ndarray:
    """uint8 [frames, H, W, 3]: grey noise, with each label's signature shown in its own segment."""
    seconds = int(rng.integers(spec.min_seconds, spec.max_seconds + 1))
    n = seconds * spec.fps
    base = rng.integers(60, 140)
    video = np.clip(base + rng.normal(0, 25, (n, spec.height, spec.width, 1)), 0, 255).repeat(3, axis=3)
    share = seconds // len(labels)  # each label gets its own stretch of the clip
    for k, c in enumerate(labels):
        low = max(1, round(0.4 * share))
        length = int(rng.integers(low, max(low, round(0.6 * share)) + 1))  # 40-60% of its stretch
        begin = k * share + int(rng.integers(0, share - length + 1))
        for s in range(begin, begin + length):
            for f in range(s * spec.fps, (s + 1) * spec.fps):
                video[f] = _signature(c, spec, phase=f / spec.fps) + rng.normal(0, 12, video[f].shape)
    return np.clip(video, 0, 255).astype(np.uint8)


def _signature(c: int, spec: DemoSpec, *, phase: float) -> np.ndarray:
    """Class c's frame: its hue on a dark ground in its spatial pattern, drifting slowly."""
    h, w = spec.height, spec.width
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = 8 + 4 * ((c // len(PATTERNS)) % 3)
    shift = 2 * phase
    kind = PATTERNS[c % len(PATTERNS)]
    if kind == "hstripes":
        mask = ((y + shift) // (period / 2)) % 2 == 0
    elif kind == "vstripes":
        mask = ((x + shift) // (period / 2)) % 2 == 0
    elif kind == "checker":
        mask = (((x + shift) // period) + (y // period)) % 2 == 0
    else:
        mask = (x - w / 2 - shift) ** 2 + (y - h / 2) ** 2 < (min(h, w) * (0.25 + 0.02 * (c // 4))) ** 2
    rgb = np.array(colorsys.hsv_to_rgb(_hue_degrees(c, spec.classes) / 360, 0.9, 0.95), dtype=np.float32) * 255
    return np.where(mask[..., None], rgb, 0.15 * rgb)


def _hue_degrees(c: int, classes: int) -> int:
    """Hues spread around the circle with neighbouring class ids far apart."""
    step = next(s for s in range(classes // 2 + 1, classes) if np.gcd(s, classes) == 1) if classes > 2 else 1
    return int(360 * ((c * step) % classes) / classes)


def _write_clip(path: Path, frames: np.ndarray, fps: int) -> None:
    """Lossless H.264 MP4 via PyAV.

    x264's output bytes were seen to vary between runs on a loaded machine even on one thread, so
    the clips are encoded losslessly (qp 0): whatever the encoder decides, the decoded pixels are
    exactly the rendered frames (after the deterministic RGB → YUV 4:2:0 conversion), and the demo
    is deterministic for a seed.
    """

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps,
                                          options={"preset": "veryfast", "qp": "0", "threads": "1"})
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.codec_context.thread_count = 1  # PyAV's default (0, auto) overrides the x264 option
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic.replace(path, write, suffix=".tmp.mp4")
