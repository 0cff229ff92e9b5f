"""Importers: the official .npy release into a feature set, and local video folders as downloads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tests.lists import small_lists
from tests.videos import make_video
from videolt.data.importers import ImportFeaturesConfig, ImportVideosConfig, import_features, import_videos
from videolt.data.store import STATUS_DONE, STATUS_FAILED, STATUS_MISSING, FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import UsageError

FRAMES, DIM = 150, 8
STAGE = "features:official"


def _kind(i: int) -> str:
    """What the release file of manifest row i looks like (row 0 has 149 frames: D comes from row 1)."""
    if i == 0 or i % 20 == 11:
        return "wrong_shape"
    if i in (15, 55, 95):
        return "non_finite"
    return {3: "missing", 7: "truncated", 17: "text"}.get(i % 20, "good")


def _features(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((FRAMES, DIM)).astype(np.float32)


def _write_release(npy_dir: Path, ids: list[str]) -> dict[str, str]:
    """200 `<id>.npy` files with every kind of damage; returns the expected manifest outcome per ID."""
    npy_dir.mkdir()
    expected = {}
    for i, vid in enumerate(ids):
        kind, path, data = _kind(i), npy_dir / f"{vid}.npy", _features(i)
        if kind == "good":
            np.save(path, data)
        elif kind == "wrong_shape":
            np.save(path, np.concatenate([data, data[:, :1]], axis=1) if i % 40 == 11 else data[:-1])
        elif kind == "non_finite":
            data[9, 2] = {15: np.nan, 55: np.inf, 95: 1e6}[i]  # 1e6 is finite in float32, inf in float16
            np.save(path, data)
        elif kind == "truncated":
            np.save(path, data)
            path.write_bytes(path.read_bytes()[:1000])
        elif kind == "text":
            path.write_text("not an array\n")
        expected[vid] = {"good": "done", "truncated": "unreadable", "text": "unreadable"}.get(kind, kind)
    np.save(npy_dir / "notInTheList.npy", _features(0))
    return expected


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, str], Path]:
    """Label lists of 200 videos, their IDs in manifest order, expected outcomes, the release folder."""
    root = tmp_path_factory.mktemp("release")
    labels = small_lists(root / "labels", n_train=120, n_val=30, n_test=50)
    with Workdir.init(root / "probe", labels).manifest() as m:
        ids = [v.video_id for v in m.videos()]
    return labels, ids, _write_release(root / "npy", ids), root / "npy"


def _outcome(wd: Workdir, stage: str = STAGE) -> dict[int, str]:
    with wd.manifest() as m:
        return {i: s.status if s.status == "done" else s.failure for i, s in m.states(stage).items()}


def test_import_features_records_every_outcome(tmp_path: Path, release) -> None:
    labels, ids, expected, npy = release
    wd = Workdir.init(tmp_path / "wd", labels)
    counts = import_features(wd, ImportFeaturesConfig(name="official", npy_dir=str(npy), workers=2), progress=False)

    n_good = sum(e == "done" for e in expected.values())
    failed = {c: sum(e == c for e in expected.values()) for c in set(expected.values()) - {"done"}}
    assert counts == {"videos": 200, "skipped": 0, "done": n_good, "failed": failed}
    assert failed == {"missing": 10, "unreadable": 20, "wrong_shape": 11, "non_finite": 3}
    assert _outcome(wd) == {i: expected[vid] for i, vid in enumerate(ids)}

    store = FeatureStore.open(wd.features_path("official"))
    assert (store.n, store.frames, store.dim, str(store.dtype)) == (200, FRAMES, DIM, "float16")
    assert list(store.video_ids) == ids
    want_status = [STATUS_DONE if e == "done" else STATUS_MISSING if e == "missing" else STATUS_FAILED
                   for e in expected.values()]
    np.testing.assert_array_equal(store.status(), want_status)
    good = store.done_indices()
    np.testing.assert_array_equal(store.read_rows(good), np.stack([_features(i) for i in good]).astype(np.float16))
    assert set(store.n_frames()[good]) == {FRAMES}
    assert store.attrs["source"] == "import" and store.attrs["dtype"] == "float16"
    assert store.attrs["npy_dir"] == str((npy).resolve())
    with wd.manifest() as m:
        state = m.states(STAGE, [11])[11]
    assert state.message.startswith(f"[{STAGE}] {ids[11]}: ") and "expected float [150, 8]" in state.message

    again = import_features(wd, ImportFeaturesConfig(name="official", npy_dir=str(npy)), progress=False)
    assert again == {"videos": 200, "skipped": n_good, "done": 0, "failed": failed}
    np.testing.assert_array_equal(store.status(), want_status)
    with pytest.raises(UsageError, match="provenance for npy_dir"):
        import_features(wd, ImportFeaturesConfig(name="official", npy_dir=str(tmp_path)), progress=False)
    with pytest.raises(UsageError, match="no readable"):
        import_features(wd, ImportFeaturesConfig(name="other", npy_dir=str(tmp_path)), progress=False)


def test_import_features_float32_and_splits(tmp_path: Path, release) -> None:
    labels, ids, expected, npy = release
    wd = Workdir.init(tmp_path / "wd", labels)
    config = ImportFeaturesConfig(name="val32", npy_dir=str(npy), dtype="float32", compression="none",
                                  splits=("val",), workers=1)
    counts = import_features(wd, config, progress=False)
    with wd.manifest() as m:
        val = [v.index for v in m.videos(["val"])]
    assert counts["videos"] == len(val) == 30
    store = FeatureStore.open(wd.features_path("val32"))
    assert store.n == 200 and store.dtype == np.float32 and store.compression == "none"
    done = [i for i in val if expected[ids[i]] == "done"]
    assert store.done_indices().tolist() == done
    np.testing.assert_array_equal(store.read_rows(done), np.stack([_features(i) for i in done]))
    assert _outcome(wd, "features:val32") == {i: expected[ids[i]] for i in val}


_SLOW_IMPORT = """
import sys, time
import videolt.data.importers as imp
read = imp._read_npy
def slow(*args):  # slow enough that the test can kill the run midway
    time.sleep(0.05)
    return read(*args)
imp._read_npy = slow
imp.import_features(sys.argv[1], imp.ImportFeaturesConfig(name="official", npy_dir=sys.argv[2], workers=2),
                    progress=False)
"""


def test_killed_import_resumes_to_the_same_result(tmp_path: Path, release) -> None:
    labels, ids, expected, npy = release
    killed, clean = Workdir.init(tmp_path / "killed", labels), Workdir.init(tmp_path / "clean", labels)
    path = killed.features_path("official")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_IMPORT, str(killed.root), str(npy)])
    try:
        deadline = time.monotonic() + 60
        while not (path.exists() and (FeatureStore.open(path).status() == STATUS_DONE).sum() >= 20):
            assert proc.poll() is None and time.monotonic() < deadline, "import ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_good = sum(e == "done" for e in expected.values())
    assert 20 <= (FeatureStore.open(path).status() == STATUS_DONE).sum() < n_good

    import_features(killed, ImportFeaturesConfig(name="official", npy_dir=str(npy), workers=2), progress=False)
    import_features(clean, ImportFeaturesConfig(name="official", npy_dir=str(npy), workers=2), progress=False)
    assert _outcome(killed) == _outcome(clean) == {i: expected[vid] for i, vid in enumerate(ids)}
    a, b = FeatureStore.open(path), FeatureStore.open(clean.features_path("official"))
    np.testing.assert_array_equal(a.status(), b.status())
    np.testing.assert_array_equal(a.n_frames(), b.n_frames())
    np.testing.assert_array_equal(a.load_all(a.done_indices()), b.load_all(b.done_indices()))


# -- videos --------------------------------------------------------------------------------------


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    return path


@pytest.mark.parametrize("mode", ["link", "symlink", "copy"])
def test_import_videos(tmp_path: Path, mode: str) -> None:
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "labels", n_train=4, n_val=1, n_test=1))
    with wd.manifest() as m:
        ids = [v.video_id for v in m.videos()]
    src = tmp_path / "src"
    src.mkdir()
    make_video(src / f"{ids[0]}.mp4", seconds=1.0)
    make_video(src / f"{ids[1]}.MKV", seconds=1.0)
    (src / f"{ids[2]}.mp4").write_text("this is not a video\n")
    _audio_only(src / f"{ids[3]}.wav")
    make_video(src / "unknownId12.mp4", seconds=1.0)
    (src / "notes.txt").write_text("hello\n")

    counts = import_videos(wd, ImportVideosConfig(dir=str(src), mode=mode), progress=False)
    assert counts == {"files": 6, "unknown_id": 2, "skipped": 0, "done": 2,
                      "failed": {"unreadable": 1, "no_video_stream": 1}}
    with wd.manifest() as m:
        states = m.states("download")
    assert set(states) == {0, 1, 2, 3}
    for i, name, ext in ((0, f"{ids[0]}.mp4", "mp4"), (1, f"{ids[1]}.MKV", "mkv")):
        dst = wd.video_path(ids[i], ext)
        assert states[i].status == "done"
        assert states[i].info == {"path": str(dst.relative_to(wd.root)), "bytes": (src / name).stat().st_size,
                                  "source": "import"}
        assert wd.find_video(ids[i]) == dst and dst.read_bytes() == (src / name).read_bytes()
        assert dst.is_symlink() == (mode == "symlink")
        assert os.path.samefile(dst, src / name) == (mode != "copy")
    assert (states[2].status, states[2].failure) == ("failed", "unreadable")
    assert (states[3].status, states[3].failure) == ("failed", "no_video_stream")
    assert states[3].message.startswith(f"[download] {ids[3]}: ")

    again = import_videos(wd, ImportVideosConfig(dir=str(src), mode=mode), progress=False)
    assert again == {**counts, "skipped": 2, "done": 0}
    with wd.manifest() as m:
        assert m.counts("download") == {"done": 2, "pending": 2, "failed": {"unreadable": 1, "no_video_stream": 1}}


def test_import_videos_refuses_bad_arguments(tmp_path: Path) -> None:
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "labels", n_train=3, n_val=1, n_test=1))
    with pytest.raises(UsageError, match="mode"):
        import_videos(wd, ImportVideosConfig(dir=str(tmp_path), mode="move"))
    with pytest.raises(UsageError, match="not a directory"):
        import_videos(wd, ImportVideosConfig(dir=str(tmp_path / "absent")))
