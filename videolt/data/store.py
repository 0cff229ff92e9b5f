"""The Zarr v3 feature set: one row of per-frame features per manifest video.

Layout of the group `features/<name>.zarr` (row i is the video with manifest index i):

- `feats` (N, frames, dim) float16 (or float32), one chunk per row (a row has one writer),
  stored raw (default) or zstd-compressed (`compression`, chosen at creation and read back from the array's
  codecs; the store also records it in attrs).
- `video_id` (N,) variable-length str, written once at creation.
- `n_frames` (N,) int32: 1-fps frames decoded before temporal sampling.
- `status` (N,) uint8: 0 missing, 1 done, 2 failed: the completion record. Every row written has
  its chunk file, an all-zero row too (`write_empty_chunks`), so a done row without its chunk file,
  or with a short one, is damage: reading it raises `IntegrityError` naming the video, never zeros
  (the raw path sees it in the file it opens anyway; the zarr path looks only at a row it read as all zeros).

`status` and `n_frames` hold many rows per chunk so reading them stays fast at 256k videos
(one file per row would take about a minute to read). Setting one element of such a chunk is a
read-modify-write, so concurrent writers of disjoint rows would lose each other's updates; every
update therefore holds an exclusive `flock` on a lock file per chunk, kept beside the group in
`features/.<name>.zarr.locks/` (zarr warns about foreign entries inside a group). Chunk files
are replaced atomically by zarr, so readers need no lock. A row's data is written first, then
`n_frames`, then `status`: a writer killed at any point leaves the row "missing", never "done"
with partial data.

Zstd saves little on float features (nothing on random float16) and its decode bounds streaming
training on few cores. A raw set (`compression="none"`) is read without zarr: the chunk file of a
`bytes`-only array is the C-order little-endian row, so `read_frames` reads just the frames it
needs with one `preadv`, several times faster than zarr (benchmarks/RESULTS.md "## train"). Any
other layout goes through zarr.

What a user can mend is a `UsageError`: a folder that is not a feature set, a set that exists with
other settings, rows of non-finite features. A caller's bug (a row out of range, a mis-shaped array,
a write to a set opened read-only, an unknown dtype) raises the builtin error: an internal error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from videolt import __version__ as _videolt_version
from videolt.data.protocol import FRAMES
from videolt.errors import FeatureSetNotFound, IntegrityError, UsageError

__all__ = ["STATUS_DONE", "STATUS_FAILED", "STATUS_MISSING", "FeatureStore"]

logger = logging.getLogger(__name__)

STATUS_MISSING, STATUS_DONE, STATUS_FAILED = 0, 1, 2

_DTYPES = ("float16", "float32")
_COMPRESSORS = {"none": None, "zstd": (ZstdCodec(level=0, checksum=False),)}  # `compression` -> zarr compressors
_RAW_CODECS = ({"name": "bytes", "configuration": {"endian": "little"}},)  # the only codecs the raw path reads
_ROW_BLOCK = 4096  # rows per chunk of `status` / `n_frames` (one lock file each)
_ID_BLOCK = 65536  # rows per chunk of `video_id` (written once, by the creator)
_READ_THREADS = 8  # measured: 128 random rows x 60 frames, see benchmarks/RESULTS.md "## store" and "## train"
_AUTO_ATTRS = ("created", "versions", "compression")  # attrs the store adds; not part of the provenance check


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    """Normalise attrs as they will read back from zarr.json (tuples become lists, ...)."""
    try:
        return json.loads(json.dumps(attrs))
    except TypeError as exc:
        raise TypeError(f"feature set attrs must be JSON-serialisable: {exc}") from None


class FeatureStore:
    """A feature set on disk; create it once, then open it per process (mode "r" or "r+")."""

    def __init__(self, path: Path, group: zarr.Group, mode: str):
        """Use `FeatureStore.create` or `FeatureStore.open`; this only wraps an open group."""
        self._path = path
        self._mode = mode
        try:
            self._feats = group["feats"].with_config({"write_empty_chunks": True})
            self._ids = group["video_id"]
            self._n_frames = group["n_frames"]
            self._status = group["status"]
        except KeyError as exc:
            raise UsageError(f"{path}: not a videolt feature set (no array {exc})") from None
        self._attrs = dict(group.attrs)
        self._raw = _raw_layout(path, self._feats)
        self._video_ids: np.ndarray | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = -1

    # -- creation and opening ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        video_ids: Sequence[str],
        *,
        frames: int = FRAMES,
        dim: int = 2048,
        dtype: str = "float16",
        compression: str = "none",
        attrs: dict[str, Any],
    ) -> FeatureStore:
        """Create the feature set, or open it for writing if it exists with the same layout.

        The group is built under a temporary name and renamed into place, so concurrent
        creators race safely: one rename wins and the others open and check its result.
        An existing set with other ids, shape, dtype, compression or provenance attrs is refused.
        `compression` is "none" (default: raw chunks stream several times faster in training,
        see the module docstring) or "zstd".
        `attrs` is the caller's provenance (JSON); the store adds `created` (UTC, ISO 8601),
        `compression` and `versions` (zarr, numpy, videolt, over any `versions` the caller gives).
        """
        path = Path(path)
        if dtype not in _DTYPES:
            raise ValueError(f"feature dtype must be one of {_DTYPES}, got {dtype!r}")
        if compression not in _COMPRESSORS:
            raise ValueError(f"feature compression must be one of {tuple(_COMPRESSORS)}, got {compression!r}")
        if frames < 1 or dim < 1:
            raise ValueError(f"feature shape must be positive, got frames={frames}, dim={dim}")
        ids = np.asarray([str(v) for v in video_ids], dtype=object)
        provenance = _jsonable(attrs)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
            try:
                _build(tmp, ids, frames, dim, dtype, compression, provenance)
                os.rename(tmp, path)
                logger.info("created feature set %s (%d rows, %dx%d %s, compression %s)", path, len(ids), frames,
                            dim, dtype, compression)
            except OSError:
                if not path.exists():
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        store = cls.open(path, mode="r+")
        store._check_layout(ids, frames, dim, dtype, compression, provenance)
        return store

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> FeatureStore:
        """Open an existing feature set; mode "r" refuses every write, "r+" allows row writes."""
        path = Path(path)
        if mode not in ("r", "r+"):
            raise ValueError(f"feature set mode must be 'r' or 'r+', got {mode!r}")
        if not (path / "zarr.json").is_file():
            raise FeatureSetNotFound(f"feature set not found: {path}")
        try:
            return cls(path, zarr.open_group(str(path), mode=mode), mode)
        except ValueError as e:  # a damaged zarr.json (JSON or metadata errors are ValueErrors)
            raise UsageError(f"{path}: not a readable feature set ({type(e).__name__}: {e})") from None

    def _check_layout(self, ids: np.ndarray, frames: int, dim: int, dtype: str, compression: str,
                      attrs: dict[str, Any]) -> None:
        """Refuse to reuse an existing set whose rows would mean something else or be stored otherwise."""
        have = (self.n, self.frames, self.dim, str(self.dtype), self.compression)
        want = (len(ids), frames, dim, dtype, compression)
        if have != want:
            raise UsageError(
                f"{self._path}: exists with (rows, frames, dim, dtype, compression) = {have}, requested {want}"
            )
        if not np.array_equal(self.video_ids, ids.astype(str)):
            first = int(np.flatnonzero(self.video_ids != ids.astype(str))[0])
            raise UsageError(
                f"{self._path}: exists with other video ids (row {first}: "
                f"{self.video_ids[first]!r}, requested {ids[first]!r})"
            )
        stored = {k: v for k, v in self._attrs.items() if k not in _AUTO_ATTRS}
        given = {k: v for k, v in attrs.items() if k not in _AUTO_ATTRS}
        if stored != given:
            keys = sorted(k for k in stored.keys() | given.keys() if stored.get(k) != given.get(k))
            raise UsageError(f"{self._path}: exists with other provenance for {', '.join(keys)}")

    # -- properties -------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def n(self) -> int:
        return int(self._feats.shape[0])

    @property
    def frames(self) -> int:
        return int(self._feats.shape[1])

    @property
    def dim(self) -> int:
        return int(self._feats.shape[2])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._feats.dtype)

    @property
    def compression(self) -> str:
        """How `feats` chunks are compressed, from the array's own codecs: "zstd", "none" or their names."""
        names = [c["name"] for c in self._feats.metadata.to_dict()["codecs"] if c["name"] != "bytes"]
        return "+".join(names) or "none"

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    @property
    def video_ids(self) -> np.ndarray:
        """Row i's video ID (read once, then cached: the array never changes)."""
        if self._video_ids is None:
            # zarr returns numpy's variable-width StringDType; callers get a plain str array
            self._video_ids = np.array(self._ids[:].tolist(), dtype=str).reshape(-1)
            self._video_ids.flags.writeable = False
        return self._video_ids

    def __repr__(self) -> str:
        shape = f"{self.frames}x{self.dim} {self.dtype}"
        return f"FeatureStore({str(self._path)!r}, n={self.n}, {shape}, mode={self._mode!r})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle as (path, mode): a worker process reopens the set itself."""
        return {"path": str(self._path), "mode": self._mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        path = Path(state["path"])
        self.__init__(path, zarr.open_group(str(path), mode=state["mode"]), state["mode"])  # type: ignore[misc]

    # -- status -----------------------------------------------------------------------------

    def status(self) -> np.ndarray:
        """Per-row status (uint8 [N]): STATUS_MISSING, STATUS_DONE or STATUS_FAILED."""
        return np.asarray(self._status[:], dtype=np.uint8)

    def n_frames(self) -> np.ndarray:
        """Per-row count of decoded frames before sampling (int32 [N])."""
        return np.asarray(self._n_frames[:], dtype=np.int32)

    def done_indices(self) -> np.ndarray:
        """Rows whose features are complete (int64, ascending)."""
        return np.flatnonzero(self.status() == STATUS_DONE).astype(np.int64)

    # -- integrity facts --------------------------------------------------------------------

    @property
    def row_chunks(self) -> bool:
        """Whether each row has its own chunk file (the layout videolt writes), which `chunk_stats` describes."""
        return tuple(self._feats.chunks) == (1, self.frames, self.dim)

    @property
    def row_bytes(self) -> int | None:
        """Size of one row's chunk file when it is stored raw; None when compressed (size varies)."""
        return None if self._raw is None else self.frames * self.dim * self.dtype.itemsize

    def chunk_stats(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(size, mtime_ns, inode) of each row's chunk file, int64 [len, 3]; all -1 where it is missing.

        One `stat` per row and no read: the facts an integrity check or a cache key needs without
        reading 110 GB. zarr replaces a chunk by writing a new file and renaming it into place, so
        a rewritten row has a new inode even when the clock has not moved.
        """
        idx = np.arange(self.n) if rows is None else self._check_indices(rows)
        key = self._feats.metadata.to_dict().get("chunk_key_encoding", {})
        sep = key.get("configuration", {}).get("separator", "/")
        base = self._path / "feats"
        out = np.full((len(idx), 3), -1, dtype=np.int64)
        for k, row in enumerate(idx):
            try:
                st = os.stat(base / sep.join(("c", str(int(row)), "0", "0")))
            except FileNotFoundError:
                continue
            out[k] = st.st_size, st.st_mtime_ns, st.st_ino
        return out

    # -- writing ----------------------------------------------------------------------------

    def write_row(self, i: int, feats: np.ndarray, n_frames: int) -> None:
        """Store row i's features [frames, dim], then n_frames, then mark it done."""
        self._check_n_frames(self._check_row(i), n_frames)
        self.write_feats(i, feats)
        self.mark_done(i, n_frames)

    def write_feats(self, i: int, feats: np.ndarray) -> None:
        """Store row i's features [frames, dim] (its chunk, replaced whole) and nothing else.

        For writers that leave the row's status to another process (the extract stage's sinks: the
        driver alone sets status and n_frames, once the chunk is written); `mark_done` completes it.
        """
        self._check_writable()
        i = self._check_row(i)
        feats = np.asarray(feats)
        where = f"{self.video_ids[i]} (row {i})"
        if feats.dtype.kind != "f":
            raise TypeError(f"{where}: features must be a float array, got dtype {feats.dtype}")
        if feats.shape != (self.frames, self.dim):
            raise ValueError(f"{where}: features must have shape {(self.frames, self.dim)}, got {feats.shape}")
        with np.errstate(over="ignore"):  # overflow is reported below, with the row named
            data = feats.astype(self.dtype, copy=False)
        finite = np.isfinite(data).all(axis=1)
        if not finite.all():
            frame = int(np.flatnonzero(~finite)[0])
            why = "NaN/Inf" if not np.isfinite(feats[frame]).all() else f"values beyond the {self.dtype} range"
            raise UsageError(f"{where}: features contain {why} (first at frame {frame})")
        self._feats[i] = data

    def mark_done(self, i: int, n_frames: int) -> None:
        """Record that row i's features are written (`write_feats`): n_frames, then status."""
        self._check_writable()
        i = self._check_row(i)
        self._check_n_frames(i, n_frames)
        self._set_flags(i, STATUS_DONE, n_frames)

    def _check_n_frames(self, i: int, n_frames: int) -> None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 0:
            raise ValueError(f"{self.video_ids[i]} (row {i}): n_frames must be a non-negative int, got {n_frames!r}")

    def mark_failed(self, i: int) -> None:
        """Record that row i could not be produced (its data, if any, is not to be read)."""
        self._check_writable()
        self._set_flags(self._check_row(i), STATUS_FAILED, None)

    def mark_missing(self, i: int) -> None:
        """Make row i to do again (its data was found missing or damaged)."""
        self._check_writable()
        self._set_flags(self._check_row(i), STATUS_MISSING, 0)

    def _check_writable(self) -> None:
        if self._mode != "r+":
            raise ValueError(f"{self._path}: feature set is open read-only (open it with mode 'r+' to write)")

    def _check_row(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n:
            raise IndexError(f"{self._path}: row {i!r} is not in [0, {self.n})")
        return int(i)

    def _set_flags(self, i: int, status: int, n_frames: int | None) -> None:
        """Update n_frames (if given) and then status, under the row block's lock."""
        with self._block_lock(i // self._status.chunks[0]):
            if n_frames is not None:
                self._n_frames[i] = n_frames
            self._status[i] = status

    @contextlib.contextmanager
    def _block_lock(self, block: int) -> Iterator[None]:
        """Exclusive flock on one lock file per chunk of the small arrays.

        A fresh descriptor per call makes the lock exclusive between threads of one process too.
        """
        lock_dir = self._path.with_name(f".{self._path.name}.locks")
        lock_dir.mkdir(exist_ok=True)
        fd = os.open(lock_dir / f"{block}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # -- reading ----------------------------------------------------------------------------

    def read_rows(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows `indices` in the given order ([len, frames, dim], store dtype); each row read once."""
        idx = self._check_indices(indices)
        out = np.empty((len(idx), self.frames, self.dim), dtype=self.dtype)

        def put(row: int, at: np.ndarray) -> None:
            out[at] = self._row_frames(row, 0, self.frames)

        self._for_each_row(idx, put)
        return out

    def read_frames(self, indices: Sequence[int] | np.ndarray, frame_idx: np.ndarray) -> np.ndarray:
        """out[k, t] = row indices[k], frame frame_idx[k, t] ([len, T, dim], store dtype)."""
        idx = self._check_indices(indices)
        frame_idx = np.asarray(frame_idx)
        if frame_idx.ndim != 2 or frame_idx.shape[0] != len(idx) or frame_idx.dtype.kind not in "iu":
            raise TypeError(f"frame_idx must be an int array [{len(idx)}, T], got {frame_idx.dtype} {frame_idx.shape}")
        if frame_idx.size and (frame_idx.min() < 0 or frame_idx.max() >= self.frames):
            raise IndexError(f"frame_idx must lie in [0, {self.frames})")
        out = np.empty((len(idx), frame_idx.shape[1], self.dim), dtype=self.dtype)
        if not frame_idx.size:
            return out

        def put(row: int, at: np.ndarray) -> None:
            want = frame_idx[at]  # [len(at), T]
            lo = int(want.min())
            out[at] = self._row_frames(row, lo, int(want.max()) + 1)[want - lo]

        self._for_each_row(idx, put)
        return out

    def load_all(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Preload rows (all by default) into RAM, e.g. for training without disk reads."""
        idx = np.arange(self.n) if indices is None else indices
        logger.info("loading %d rows of %s (%.2f GiB)", len(idx), self._path,
                    len(idx) * self.frames * self.dim * self.dtype.itemsize / 2**30)
        return self.read_rows(idx)

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError(f"row indices must be a 1-D int array, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self._path}: row indices must lie in [0, {self.n})")
        return idx

    def _for_each_row(self, idx: np.ndarray, put: Callable[[int, np.ndarray], None]) -> None:
        """Call `put(row, output positions)` once per distinct row, concurrently.

        Per-row reads from a thread pool beat one orthogonal selection over all rows (measured
        in benchmarks/RESULTS.md "## store"): zarr then decodes the chunks concurrently. Each
        thread takes one contiguous part of the rows: a task per row cost more than a raw read.
        """
        rows, inverse = np.unique(idx, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(rows)))[:-1])

        def some(ks: np.ndarray) -> None:
            for k in ks:
                put(int(rows[k]), groups[k])

        parts = [p for p in np.array_split(np.arange(len(rows)), _READ_THREADS) if len(p)]
        if len(parts) <= 1:
            some(np.arange(len(rows)))
            return
        list(self._threads().map(some, parts))

    def _row_frames(self, row: int, lo: int, hi: int) -> np.ndarray:
        """Frames [lo, hi) of `row` ([hi - lo, dim]): from the raw chunk file when the layout allows.

        A row without its chunk file reads as the fill value unless it is done (`damage`)."""
        if self._raw is None:
            try:
                out = self._feats[row, lo:hi]
            except (RuntimeError, ValueError) as e:  # what the codecs raise on a damaged chunk
                if self._is_done(row):
                    raise self.damage(row, f"unreadable ({e})") from None
                raise
            # zarr reads a missing chunk as the fill value (0): only a row read as all zeros is looked at
            if out.size and not out.flat[0] and not out.any() and self.row_chunks \
                    and self.chunk_stats([row])[0, 0] < 0 and self._is_done(row):
                raise self.damage(row, "missing")
            return out
        try:
            return self._raw.read(row, lo, hi)
        except FileNotFoundError:
            if self._is_done(row):
                raise self.damage(row, "missing") from None
            return np.full((hi - lo, self.dim), self._raw.fill, dtype=self.dtype)
        except _ShortChunk as e:
            raise self.damage(row, f"{e.size} of {self.row_bytes} bytes long") from None

    def _is_done(self, row: int) -> bool:
        return int(self._status[row]) == STATUS_DONE

    def damage(self, row: int, what: str) -> IntegrityError:
        """The error for a done row whose chunk file is `what` ("missing", "N of M bytes long")."""
        redo = "import-features" if self._attrs.get("source") == "import" else "extract"
        return IntegrityError(
            f"{self._path}: video {self.video_ids[row]} (row {row}) is marked done but its feature chunk is {what}; "
            f"rerun `videolt {redo}` for this feature set to redo it (`videolt check WORKDIR` lists every such row)")

    def _threads(self) -> ThreadPoolExecutor:
        """The read pool, recreated after a fork (a forked child inherits no pool threads)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="featurestore")
            self._pool_pid = os.getpid()
        return self._pool


class _RawRows:
    """Reads rows of an uncompressed `feats` array straight from its chunk files (one per row).

    Only built for arrays whose metadata makes each chunk file exactly the C-order little-endian
    row (see `_raw_layout`); zarr writes chunk files atomically, so a read sees an old or a new
    row, never a mix. A missing file raises FileNotFoundError, a file of another size `_ShortChunk`:
    the store decides what they mean from the row's status.
    """

    def __init__(self, array_dir: Path, separator: str, frames: int, dim: int, dtype: np.dtype, fill: float):
        self._dir, self._sep = array_dir, separator
        self._dim, self._dtype, self.fill = dim, dtype.newbyteorder("<"), fill
        self._frame_bytes = dim * dtype.itemsize
        self._row_bytes = frames * self._frame_bytes

    def chunk_path(self, row: int) -> Path:
        """Row `row`'s chunk file: `c/<row>/0/0` below the array's folder (no part comes from outside)."""
        return self._dir / self._sep.join(("c", str(int(row)), "0", "0"))

    def read(self, row: int, lo: int, hi: int) -> np.ndarray:
        """Frames [lo, hi) of `row` with one positioned read."""
        out = np.empty((hi - lo, self._dim), dtype=self._dtype)
        fd = os.open(self.chunk_path(row), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            got = os.preadv(fd, [out], lo * self._frame_bytes)
        finally:
            os.close(fd)
        if size != self._row_bytes or got != out.nbytes:
            raise _ShortChunk(size)
        return out


class _ShortChunk(Exception):
    """A raw chunk file whose size is not one row's."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


def _raw_layout(path: Path, feats: zarr.Array) -> _RawRows | None:
    """A raw reader for `feats` if its chunk files are plain rows (bytes codec only, one row per chunk)."""
    meta = feats.metadata.to_dict()
    key = meta.get("chunk_key_encoding", {})
    separator = key.get("configuration", {}).get("separator", "/")
    plain = (meta.get("zarr_format") == 3 and tuple(meta.get("codecs", ())) == _RAW_CODECS
             and not meta.get("storage_transformers") and key.get("name") == "default" and separator in ("/", ".")
             and tuple(feats.chunks) == (1, *feats.shape[1:]) and isinstance(feats.store, LocalStore)
             and feats.path == "feats" and Path(feats.store.root).resolve() == path.resolve())
    if not plain:
        return None
    return _RawRows(path / "feats", separator, feats.shape[1], feats.shape[2], np.dtype(feats.dtype),
                    float(feats.metadata.fill_value))


def _build(path: Path, ids: np.ndarray, frames: int, dim: int, dtype: str, compression: str,
           attrs: dict[str, Any]) -> None:
    """Write a complete, empty feature set at `path` (a fresh temporary directory)."""
    versions = {**attrs.get("versions", {}), "zarr": zarr.__version__, "numpy": np.__version__,
                "videolt": _videolt_version}
    full = {**attrs, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "compression": compression, "versions": versions}
    group = zarr.open_group(str(path), mode="w-", attributes=full)
    n = len(ids)
    group.create_array("feats", shape=(n, frames, dim), chunks=(1, frames, dim), dtype=dtype, fill_value=0,
                       compressors=_COMPRESSORS[compression])
    names = group.create_array("video_id", shape=(n,), chunks=(_ID_BLOCK,), dtype=str)
    if n:
        names[:] = ids
    group.create_array("n_frames", shape=(n,), chunks=(_ROW_BLOCK,), dtype="int32", fill_value=0)
    group.create_array("status", shape=(n,), chunks=(_ROW_BLOCK,), dtype="uint8", fill_value=STATUS_MISSING)
