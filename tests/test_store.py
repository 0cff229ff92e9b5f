"""The Zarr feature store: roundtrips, refusals, gathers, and concurrent writers."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zarr

from videolt.data.store import STATUS_DONE, STATUS_FAILED, STATUS_MISSING, FeatureStore
from videolt.errors import FeatureSetNotFound, IntegrityError, UsageError, VideoltError, describe

IDS = [f"vid{i:08d}" for i in range(12)]
FRAMES, DIM = 6, 5
ATTRS = {"backbone": "resnet50", "preprocessing": {"resize": 256, "crop": [256, 256]}}


@contextmanager
def internal(kind: type[Exception], match: str):
    """A caller's bug: a builtin error, which the CLI reports as an internal error (exit 1, traceback logged)."""
    with pytest.raises(kind, match=match) as info:
        yield info
    assert not isinstance(info.value, VideoltError)
    code, lines = describe(info.value)
    assert code == 1 and lines[0].startswith(f"internal error: {kind.__name__}: ")


def _row(i: int) -> np.ndarray:
    """Distinct, reproducible features for row i."""
    return np.random.default_rng(i).standard_normal((FRAMES, DIM)).astype(np.float32) * 3


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore.create(tmp_path / "features" / "r50.zarr", IDS, frames=FRAMES, dim=DIM, attrs=ATTRS)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_roundtrip_and_reopen(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "features" / "x.zarr"
    store = FeatureStore.create(path, IDS, frames=FRAMES, dim=DIM, dtype=dtype, attrs=ATTRS)
    for i in (0, 3, 7):
        store.write_row(i, _row(i), n_frames=100 + i)
    store.mark_failed(5)

    again = FeatureStore.open(path)
    assert (again.n, again.frames, again.dim, again.dtype) == (len(IDS), FRAMES, DIM, np.dtype(dtype))
    assert list(again.video_ids) == IDS
    expected_status = np.zeros(len(IDS), np.uint8)
    expected_status[[0, 3, 7]] = STATUS_DONE
    expected_status[5] = STATUS_FAILED
    np.testing.assert_array_equal(again.status(), expected_status)
    assert again.status().dtype == np.uint8 and again.n_frames().dtype == np.int32
    assert again.n_frames()[[0, 3, 7, 5, 1]].tolist() == [100, 103, 107, 0, 0]
    assert again.done_indices().tolist() == [0, 3, 7] and again.done_indices().dtype == np.int64
    rows = again.read_rows([7, 0, 3])
    assert rows.dtype == np.dtype(dtype)
    for k, i in enumerate([7, 0, 3]):
        np.testing.assert_array_equal(rows[k], _row(i).astype(dtype))
    assert again.attrs["backbone"] == "resnet50" and again.attrs["preprocessing"]["crop"] == [256, 256]
    assert again.attrs["versions"]["zarr"] == zarr.__version__ and again.attrs["versions"]["numpy"] == np.__version__
    assert again.attrs["created"].startswith("20")
    # the layout is plain zarr: other tools can read it
    group = zarr.open_group(str(path), mode="r")
    assert group["feats"].chunks == (1, FRAMES, DIM)
    assert group["status"][3] == STATUS_DONE


def test_create_is_idempotent_and_refuses_mismatch(tmp_path: Path, store: FeatureStore) -> None:
    store.write_row(2, _row(2), 10)
    same = FeatureStore.create(store.path, IDS, frames=FRAMES, dim=DIM, attrs=dict(ATTRS))
    assert same.status()[2] == STATUS_DONE and same.attrs["created"] == store.attrs["created"]
    with pytest.raises(UsageError, match="frames, dim"):
        FeatureStore.create(store.path, IDS, frames=FRAMES, dim=DIM + 1, attrs=ATTRS)
    with pytest.raises(UsageError, match="frames, dim"):
        FeatureStore.create(store.path, IDS, frames=FRAMES, dim=DIM, dtype="float32", attrs=ATTRS)
    with pytest.raises(UsageError, match="row 4"):
        FeatureStore.create(store.path, IDS[:4] + ["other000000"] + IDS[5:], frames=FRAMES, dim=DIM, attrs=ATTRS)
    with pytest.raises(UsageError, match="provenance for backbone"):
        FeatureStore.create(store.path, IDS, frames=FRAMES, dim=DIM, attrs={**ATTRS, "backbone": "resnet101"})
    with internal(ValueError, "dtype"):
        FeatureStore.create(tmp_path / "y.zarr", IDS, frames=FRAMES, dim=DIM, dtype="int8", attrs=ATTRS)


def test_concurrent_creators_share_one_set(tmp_path: Path) -> None:
    path = tmp_path / "features" / "race.zarr"
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: FeatureStore.create(path, IDS, frames=FRAMES, dim=DIM, attrs=ATTRS), range(4)))
    assert {s.attrs["created"] for s in stores} == {FeatureStore.open(path).attrs["created"]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["race.zarr"]  # no temporary group left behind


@pytest.mark.parametrize(
    ("feats", "kind", "match"),
    [
        (np.zeros((FRAMES, DIM + 1), np.float32), ValueError, "shape"),  # a caller's bug
        (np.zeros((FRAMES * DIM,), np.float32), ValueError, "shape"),
        (np.zeros((FRAMES, DIM), np.int32), TypeError, "float array"),
        (np.where(np.arange(FRAMES * DIM).reshape(FRAMES, DIM) == 13, np.nan, 0.0), UsageError,
         r"NaN/Inf \(first at frame 2\)"),  # the data's fault
        (np.where(np.arange(FRAMES * DIM).reshape(FRAMES, DIM) == 0, -np.inf, 0.0), UsageError,
         r"NaN/Inf \(first at frame 0\)"),
        (np.full((FRAMES, DIM), 1e6, np.float32), UsageError, "beyond the float16 range"),
    ],
)
def test_write_row_refuses_bad_rows(store: FeatureStore, feats: np.ndarray, kind: type, match: str) -> None:
    with (pytest.raises(kind, match=match) if kind is UsageError else internal(kind, match)) as info:
        store.write_row(4, feats, 10)
    assert "vid00000004 (row 4)" in str(info.value)
    assert store.status()[4] == STATUS_MISSING and store.n_frames()[4] == 0


def test_write_row_refuses_bad_index_and_n_frames(store: FeatureStore) -> None:
    with internal(IndexError, r"row 12 is not in \[0, 12\)"):
        store.write_row(len(IDS), _row(0), 1)
    with internal(ValueError, "n_frames"):
        store.write_row(0, _row(0), -1)
    assert store.status().sum() == 0


def test_read_only_refuses_writes(store: FeatureStore) -> None:
    reader = FeatureStore.open(store.path, mode="r")
    with internal(ValueError, "read-only"):
        reader.write_row(0, _row(0), 1)
    with internal(ValueError, "read-only"):
        reader.mark_failed(0)
    with pytest.raises(ValueError, match="read-only"):  # zarr itself refuses too
        zarr.open_group(str(store.path), mode="r")["status"][0] = STATUS_DONE
    assert store.status().sum() == 0
    with internal(ValueError, "mode"):
        FeatureStore.open(store.path, mode="w")


def test_missing_feature_set_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "features" / "nope.zarr"
    with pytest.raises(FeatureSetNotFound, match="nope.zarr") as info:
        FeatureStore.open(missing)
    assert isinstance(info.value, FileNotFoundError)


def test_read_frames_matches_numpy_fancy_indexing(store: FeatureStore) -> None:
    for i in range(len(IDS)):
        store.write_row(i, _row(i), 1)
    rng = np.random.default_rng(0)
    indices = np.array([9, 2, 2, 11, 0, 5, 9])  # unsorted, with repeats
    frame_idx = rng.integers(0, FRAMES, size=(len(indices), 4))
    rows = store.read_rows(indices)
    expected = rows[np.arange(len(indices))[:, None], frame_idx]
    got = store.read_frames(indices, frame_idx)
    assert got.shape == (len(indices), 4, DIM) and got.dtype == np.float16
    np.testing.assert_array_equal(got, expected)
    # and both agree with the values written
    np.testing.assert_array_equal(got[3], _row(11).astype(np.float16)[frame_idx[3]])
    np.testing.assert_array_equal(store.load_all(), store.read_rows(np.arange(len(IDS))))
    np.testing.assert_array_equal(store.load_all([4, 1]), np.stack([_row(4), _row(1)]).astype(np.float16))
    with internal(IndexError, "frame_idx"):
        store.read_frames(indices, np.full((len(indices), 2), FRAMES))
    with internal(IndexError, "row indices"):
        store.read_rows([0, len(IDS)])


def test_pickles_by_path(store: FeatureStore) -> None:
    store.write_row(1, _row(1), 3)
    clone = pickle.loads(pickle.dumps(FeatureStore.open(store.path)))
    np.testing.assert_array_equal(clone.read_rows([1])[0], _row(1).astype(np.float16))
    with internal(ValueError, "read-only"):
        clone.mark_failed(0)


def _writer(path: str, worker: int, workers: int, n: int) -> None:
    """One process writing every `workers`-th row; row 7 of each stride is failed instead."""
    store = FeatureStore.open(path, mode="r+")
    for i in range(worker, n, workers):
        if i % 7 == 0:
            store.mark_failed(i)
        else:
            store.write_row(i, np.full((FRAMES, DIM), i, np.float32), n_frames=1000 + i)


def test_processes_writing_disjoint_rows_lose_nothing(tmp_path: Path) -> None:
    n, workers = 90, 3  # all rows share one chunk of status/n_frames: the worst case
    ids = [f"id{i:09d}" for i in range(n)]
    path = tmp_path / "features" / "mp.zarr"
    FeatureStore.create(path, ids, frames=FRAMES, dim=DIM, attrs={})
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, workers, n)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * workers

    store = FeatureStore.open(path)
    failed = np.arange(n) % 7 == 0
    np.testing.assert_array_equal(store.status(), np.where(failed, STATUS_FAILED, STATUS_DONE))
    np.testing.assert_array_equal(store.n_frames(), np.where(failed, 0, 1000 + np.arange(n)))
    done = store.done_indices()
    np.testing.assert_array_equal(store.read_frames(done, np.zeros((len(done), 1), int))[:, 0, 0], done)


def _write_same(path: Path, compression: str, dtype: str) -> FeatureStore:
    """Rows 0, 3, 7 written, 5 failed, 9 written as all zeros (its chunk file written all the same), others missing."""
    store = FeatureStore.create(path, IDS, frames=FRAMES, dim=DIM, dtype=dtype, compression=compression, attrs=ATTRS)
    for i in (0, 3, 7):
        store.write_row(i, _row(i), n_frames=i)
    store.write_row(9, np.zeros((FRAMES, DIM), np.float32), n_frames=9)
    store.mark_failed(5)
    return FeatureStore.open(path)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_uncompressed_set_reads_like_zstd(tmp_path: Path, dtype: str) -> None:
    zstd = _write_same(tmp_path / "zstd.zarr", "zstd", dtype)
    raw = _write_same(tmp_path / "raw.zarr", "none", dtype)
    assert (zstd.compression, raw.compression) == ("zstd", "none")
    assert raw._raw is not None and zstd._raw is None  # the fast path is taken for the raw set only
    chunk = raw._raw.chunk_path(3)
    assert chunk.is_file() and chunk.stat().st_size == FRAMES * DIM * np.dtype(dtype).itemsize
    assert not raw._raw.chunk_path(1).exists() and raw._raw.chunk_path(9).is_file()  # a done row always has its file

    every = np.arange(len(IDS))
    rows = raw.read_rows(every)
    assert rows.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(rows, zstd.read_rows(every))
    np.testing.assert_array_equal(rows[3], _row(3).astype(dtype))
    assert not rows[[1, 5, 9, 11]].any()  # missing, failed and all-zero rows read as the fill value
    indices = np.array([9, 3, 3, 11, 0, 7, 1])
    frame_idx = np.random.default_rng(1).integers(0, FRAMES, size=(len(indices), 8))
    got = raw.read_frames(indices, frame_idx)
    np.testing.assert_array_equal(got, zstd.read_frames(indices, frame_idx))
    np.testing.assert_array_equal(got, rows[indices[:, None], frame_idx])
    np.testing.assert_array_equal(raw.status(), zstd.status())
    assert raw.read_frames(indices, np.zeros((len(indices), 0), int)).shape == (len(indices), 0, DIM)


def test_fast_path_agrees_with_zarr(tmp_path: Path) -> None:
    raw = _write_same(tmp_path / "raw.zarr", "none", "float16")
    via_zarr = FeatureStore.open(raw.path)
    via_zarr._raw = None
    rng = np.random.default_rng(2)
    for _ in range(20):
        indices = rng.integers(0, len(IDS), size=rng.integers(1, 10))
        frame_idx = np.sort(rng.integers(0, FRAMES, size=(len(indices), rng.integers(1, 2 * FRAMES))), axis=1)
        np.testing.assert_array_equal(raw.read_frames(indices, frame_idx), via_zarr.read_frames(indices, frame_idx))
    np.testing.assert_array_equal(raw.read_rows([7, 0]), via_zarr.read_rows([7, 0]))
    clone = pickle.loads(pickle.dumps(raw))  # a loader worker reopens the set and takes the fast path too
    assert clone._raw is not None
    np.testing.assert_array_equal(clone.read_rows([3]), via_zarr.read_rows([3]))
    raw._raw.chunk_path(3).write_bytes(b"\0" * 10)  # a damaged chunk file is an error, not zeros or garbage
    with pytest.raises(IntegrityError, match=f"video {IDS[3]} \\(row 3\\) is marked done but its feature chunk is "
                                             f"10 of {FRAMES * DIM * 2} bytes long"):
        raw.read_rows([3])


def test_fast_path_only_for_plain_chunks(tmp_path: Path) -> None:
    path = tmp_path / "other.zarr"
    _write_same(path, "none", "float16")
    group = zarr.open_group(str(path), mode="r+")
    del group["feats"]
    group.create_array("feats", shape=(len(IDS), FRAMES, DIM), chunks=(2, FRAMES, DIM), dtype="float16",
                       fill_value=0, compressors=None)
    group["feats"][3] = _row(3).astype(np.float16)
    store = FeatureStore.open(path)
    assert store._raw is None and store.compression == "none"
    np.testing.assert_array_equal(store.read_rows([3])[0], _row(3).astype(np.float16))


def test_compression_is_checked_and_recorded(tmp_path: Path) -> None:
    with internal(ValueError, r"compression must be one of \('none', 'zstd'\), got 'lz4'"):
        FeatureStore.create(tmp_path / "x.zarr", IDS, frames=FRAMES, dim=DIM, compression="lz4", attrs=ATTRS)
    assert not (tmp_path / "x.zarr").exists()
    raw = FeatureStore.create(tmp_path / "raw.zarr", IDS, frames=FRAMES, dim=DIM, attrs=ATTRS)  # the default
    assert raw.attrs["compression"] == "none" and raw.compression == "none"
    codecs = zarr.open_group(str(raw.path), mode="r")["feats"].metadata.to_dict()["codecs"]
    assert [c["name"] for c in codecs] == ["bytes"]
    zstd = FeatureStore.create(tmp_path / "z.zarr", IDS, frames=FRAMES, dim=DIM, compression="zstd", attrs=ATTRS)
    assert zstd.attrs["compression"] == "zstd" and zstd.compression == "zstd"
    assert FeatureStore.create(raw.path, IDS, frames=FRAMES, dim=DIM, compression="none", attrs=ATTRS).n == len(IDS)
    with pytest.raises(UsageError, match=r"compression\) = .*'none'\), requested .*'zstd'\)"):
        FeatureStore.create(raw.path, IDS, frames=FRAMES, dim=DIM, compression="zstd", attrs=ATTRS)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_chunk_stats_see_missing_short_and_rewritten_rows(tmp_path: Path, compression: str) -> None:
    store = FeatureStore.create(tmp_path / "s.zarr", IDS, frames=FRAMES, dim=DIM, compression=compression,
                                attrs=ATTRS)
    for i in (0, 1, 2):
        store.write_row(i, _row(i), n_frames=10)
    stats = store.chunk_stats()
    assert stats.shape == (len(IDS), 3) and stats.dtype == np.int64
    assert (stats[3:] == -1).all() and (stats[:3, 0] > 0).all()
    assert store.row_bytes == (FRAMES * DIM * 2 if compression == "none" else None)
    if compression == "none":
        assert (stats[:3, 0] == store.row_bytes).all()
    chunk = tmp_path / "s.zarr" / "feats" / "c" / "1" / "0" / "0"
    chunk.unlink()
    assert store.chunk_stats([1, 0]).tolist()[0] == [-1, -1, -1]
    before = store.chunk_stats([2])[0]
    store.write_row(2, _row(5), n_frames=10)
    after = store.chunk_stats([2])[0]
    assert after[2] != before[2] and after[1] >= before[1]  # a new file, whatever the clock did


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_done_row_without_its_chunk_is_an_error_naming_the_video(tmp_path: Path, compression: str) -> None:
    """Never zeros for a done row: a deleted chunk fails every read path; a row not done still reads as zeros;
    `mark_missing` makes the row one to do again."""
    store = _write_same(tmp_path / "s.zarr", compression, "float16")
    (store.path / "feats" / "c" / "3" / "0" / "0").unlink()
    for read in (lambda: store.read_rows([0, 3]), lambda: store.read_frames([3], np.zeros((1, 2), int)),
                 lambda: store.load_all()):
        with pytest.raises(IntegrityError, match=f"video {IDS[3]} \\(row 3\\) is marked done but its feature chunk "
                                                 "is missing; rerun `videolt extract`"):
            read()
    assert not store.read_rows([1, 5]).any()  # missing and failed rows: the fill value, as before
    writer = FeatureStore.open(store.path, mode="r+")
    writer.mark_missing(3)
    assert writer.status()[3] == STATUS_MISSING and writer.n_frames()[3] == 0
    assert not writer.read_rows([3]).any()


def test_damaged_zstd_chunk_names_the_video(tmp_path: Path) -> None:
    store = _write_same(tmp_path / "z.zarr", "zstd", "float16")
    chunk = store.path / "feats" / "c" / "7" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(IntegrityError, match=f"video {IDS[7]} \\(row 7\\) is marked done but its feature chunk is "
                                             "unreadable \\(Zstd decompression error"):
        store.read_rows([7])
