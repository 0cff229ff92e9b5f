"""The demo: its generated data set, its loopback file server, and `videolt demo` end to end (tiny)."""

from __future__ import annotations

import colorsys
import http.client
import re
import urllib.error
import urllib.request
from collections import Counter

import av
import numpy as np
import pytest

from videolt.cli import main
from videolt.data.demo import DemoSpec, make_demo_dataset, render_clip, train_counts
from videolt.data.ids import is_valid_id
from videolt.data.labels import load_labels
from videolt.data.serve import FileServer
from videolt.errors import UsageError

TINY = DemoSpec(seed=3, classes=6, max_train=12, min_train=2, val_per_class=1, test_per_class=2,
                multi_label=0.2, min_seconds=2, max_seconds=3, width=32, height=32)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "set", TINY)


def test_dataset_is_long_tailed_multilabel_and_in_the_official_format(tiny_set):
    labels = load_labels(tiny_set.labels_dir)
    train = labels.splits["train"]
    per_class = Counter(c for lab in train.labels for c in lab)
    np.testing.assert_array_equal(labels.counts, [per_class[c] for c in range(TINY.classes)])
    np.testing.assert_array_equal(labels.counts, train_counts(TINY))
    assert labels.counts[0] == 12 and labels.counts[-1] == 2 and np.all(np.diff(labels.counts) <= 0)
    groups = labels.groups(head=8, tail=3)
    assert all(len(g) > 0 for g in groups.values())
    ids = [v for s in labels.splits.values() for v in s.ids]
    assert len(set(ids)) == len(ids) and all(is_valid_id(v) for v in ids)
    multi = [lab for s in labels.splits.values() for lab in s.labels if len(lab) > 1]
    assert 0 < len(multi) < 0.35 * len(ids) and all(len(set(lab)) == len(lab) == 2 for lab in multi)
    for line in (tiny_set.labels_dir / "count-labels-train.lst").read_text().splitlines():
        assert re.fullmatch(r"\w+ \d+ \d+\.0", line)
    for line in (tiny_set.labels_dir / "train.lst").read_text().splitlines():
        assert re.fullmatch(r"[A-Za-z0-9_-]{11} \d+(,\d+)?", line)
    assert sorted(p.stem for p in tiny_set.clips_dir.iterdir()) == sorted(ids)


def _decoded(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_lossless_clips_decode_to_the_rendered_frames(tiny_set):
    """qp 0: the decoded YUV planes are exactly the rendered frames after the RGB → YUV 4:2:0 conversion."""
    vid, labels = (tiny_set.labels_dir / "train.lst").read_text().splitlines()[0].split()
    rendered = render_clip(tuple(map(int, labels.split(","))), TINY, np.random.default_rng([TINY.seed, 0]))
    with av.open(str(tiny_set.clips_dir / f"{vid}.mp4")) as container:
        decoded = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    expected = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray() for f in rendered]
    assert len(decoded) == len(expected)
    for got, want in zip(decoded, expected):
        np.testing.assert_array_equal(got, want)


def test_dataset_is_deterministic_and_reused(tiny_set, tmp_path):
    again = make_demo_dataset(tmp_path / "again", TINY)
    for name in ("train.lst", "validate.lst", "test.lst", "count-labels-train.lst"):
        assert (again.labels_dir / name).read_bytes() == (tiny_set.labels_dir / name).read_bytes()
    for clip in sorted(tiny_set.clips_dir.iterdir()):  # same pixels (x264's bytes may vary; it is lossless)
        np.testing.assert_array_equal(_decoded(again.clips_dir / clip.name), _decoded(clip))
    other = make_demo_dataset(tmp_path / "other", DemoSpec(**{**TINY.__dict__, "seed": 4}))
    assert (other.labels_dir / "train.lst").read_text() != (tiny_set.labels_dir / "train.lst").read_text()
    with pytest.raises(UsageError, match="other settings"):
        make_demo_dataset(tmp_path / "again", DemoSpec(**{**TINY.__dict__, "seed": 5}))


def test_clip_shows_its_class_in_part_of_the_seconds_only(tiny_set):
    spec = DemoSpec(classes=6, min_seconds=8, max_seconds=8, width=32, height=32)
    frames = render_clip((2,), spec, np.random.default_rng(0))  # [80, 32, 32, 3]
    per_second = frames.reshape(8, spec.fps, 32, 32, 3).astype(np.float32).mean(axis=(1, 2, 3))  # [8, 3]
    saturation = np.array([colorsys.rgb_to_hsv(*(rgb / 255))[1] for rgb in per_second])
    coloured = saturation > 0.3  # grey noise has almost none
    assert 2 <= coloured.sum() <= 5, saturation
    # The encoded clip decodes (PyAV) to the same length at the spec's size and rate.
    clip = next(iter(sorted(tiny_set.clips_dir.iterdir())))
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        assert (s.codec_context.name, s.width, s.height, s.average_rate) == ("h264", 32, 32, TINY.fps)
    assert TINY.min_seconds * TINY.fps <= n <= TINY.max_seconds * TINY.fps


def test_file_server_serves_its_folder_only(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "abcdefghijk.mp4").write_bytes(b"\x00video bytes\xff")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    with FileServer(root) as server:
        url = server.url
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        with urllib.request.urlopen(f"{server.url}/abcdefghijk.mp4") as r:
            assert r.status == 200 and r.read() == b"\x00video bytes\xff"
        for path in ("/missing.mp4", "/", "/link.txt", "/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", path)  # http.client sends the path as written (no normalisation)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            assert response.status == 404 and b"outside" not in body, path
    with pytest.raises(urllib.error.URLError):  # stopped with its block
        urllib.request.urlopen(f"{url}/abcdefghijk.mp4", timeout=2)


TINY_DEMO = ["--set", "demo.classes=4", "--set", "demo.max_train=6", "--set", "demo.min_train=2",
             "--set", "demo.test_per_class=2", "--set", "demo.min_seconds=2", "--set", "demo.max_seconds=3",
             "--set", "demo.width=32", "--set", "demo.height=32",
             "--set", "extract=[{backbones: [resnet50], weights: random, names: [resnet50-random], resize: 32, "
                      "crop: 32, frames: 3, batch_size: 3, workers: 0}]",
             "--set", "benchmark.grid.train.epochs=2", "--set", "benchmark.grid.train.eval_every=1",
             "--set", "benchmark.grid.train.group_head=4", "--set", "benchmark.grid.train.group_tail=2",
             "--set", "benchmark.grid.bootstrap=0"]


@pytest.mark.slow
def test_demo_command_runs_everything_then_reuses_it(tmp_path, capsys):
    workdir = tmp_path / "demo-workdir"
    assert main(["demo", str(workdir), "--no-progress", *TINY_DEMO]) == 0
    out = capsys.readouterr().out
    assert "| baseline (BCE) | 1 |" in out and "| FrameStack | 1 |" in out
    assert "head > 4 (1 classes), medium (2), tail <= 2 (1)" in out  # counts 6, 4, 3, 2 and "random weights" in out
    report = workdir / "reports" / "demo"
    assert (report / "report.md").is_file() and list((report / "plots").glob("*.png"))
    assert (tmp_path / "demo-workdir-source" / "clips").is_dir()
    metrics = sorted((workdir / "runs").glob("*/metrics.json"))
    assert len(metrics) == 2
    stamps = [p.stat().st_mtime_ns for p in metrics]
    assert main(["demo", str(workdir), "--no-progress", "--json", *TINY_DEMO]) == 0
    second = capsys.readouterr().out
    assert '"seconds"' in second and [p.stat().st_mtime_ns for p in metrics] == stamps  # nothing retrained
