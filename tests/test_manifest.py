import multiprocessing as mp
import sqlite3
import pytest

from tests.lists import official_labels, small_lists
from videolt.data.manifest import Manifest
from videolt.data.workdir import Workdir
from videolt.errors import UsageError, WorkdirError

OFFICIAL = official_labels()


@pytest.fixture
def wd(tmp_path):
    return Workdir.init(tmp_path / "wd", small_lists(tmp_path / "lists"))


def test_init_layout_and_rows(wd):
    for d in ("labels", "videos", "features", "runs", "reports"):
        assert (wd.root / d).is_dir()
    assert (wd.root / "videolt.json").is_file()
    assert sorted(p.name for p in wd.labels_dir.iterdir()) == [
        "count-labels-train.lst", "test.lst", "train.lst", "validate.lst"]
    with wd.manifest() as m:
        rows = m.videos()
        assert [r.index for r in rows] == list(range(22))
        assert [r.split for r in rows] == ["train"] * 12 + ["val"] * 4 + ["test"] * 6
        assert rows[0].labels == wd.labels().splits["train"].labels[0]
        assert m.by_id(rows[5].video_id) == rows[5]
        assert len(m.videos(["val"])) == 4
        journal = m._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"


def test_reinit_same_lists_is_noop_and_other_lists_refused(tmp_path, wd):
    with wd.manifest() as m:
        m.record("download", 0, "done", info={"bytes": 5})
    again = Workdir.init(wd.root, tmp_path / "lists")
    with again.manifest() as m:
        assert m.states("download")[0].info == {"bytes": 5}
    other = small_lists(tmp_path / "other", seed=1)
    with pytest.raises(WorkdirError, match="other label lists"):
        Workdir.init(wd.root, other)


def test_init_refuses_foreign_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "thesis.tex").write_text("no")
    with pytest.raises(WorkdirError, match="not empty"):
        Workdir.init(tmp_path / "x", small_lists(tmp_path / "lists"))
    with pytest.raises(WorkdirError, match="not a videolt workdir"):
        Workdir.open(tmp_path / "x")


def test_record_todo_counts(wd):
    with wd.manifest() as m:
        m.record("download", 0, "done", info={"path": "a"})
        m.record("download", 1, "failed", failure="transient", message="timeout")
        m.record("download", 1, "failed", failure="transient", message="timeout again")
        m.record("download", 2, "failed", failure="private", message="Private video")
        s = m.states("download")
        assert s[1].attempts == 2 and s[1].message == "timeout again"
        assert m.counts("download") == {"done": 1, "pending": 19, "failed": {"transient": 1, "private": 1}}
        todo = {v.index for v in m.todo("download")}
        assert 0 not in todo and 1 not in todo and 2 not in todo and len(todo) == 19
        assert 1 in {v.index for v in m.todo("download", retry={"transient"})}
        assert 1 not in {v.index for v in m.todo("download", retry={"transient"}, max_attempts=2)}
        assert {v.index for v in m.todo("download", splits=["val"])} == set(range(12, 16))
        m.record("download", 0, "done", info={"bytes": 3}, attempt=False)
        assert m.states("download")[0].info == {"path": "a", "bytes": 3}
        assert m.stages() == ["download"]
        with pytest.raises(ValueError):
            m.record("download", 0, "weird")


def test_paths_stay_inside(wd):
    assert wd.video_path("-abcdefghij", "mp4") == wd.root / "videos" / "-a" / "-abcdefghij.mp4"
    with pytest.raises(UsageError):
        wd.video_path("../../x", "mp4")
    with pytest.raises(UsageError):
        wd.features_path("../evil")
    with pytest.raises(UsageError):
        wd.inside("/etc/passwd")
    assert wd.run_dir("base_r50") == wd.root / "runs" / "base_r50"


def _hammer(path: str, worker: int, n: int) -> None:
    m = Manifest(path)
    for i in range(n):
        m.record("download", i, "failed", failure="transient", message=f"w{worker}", info={f"w{worker}": i})
        m.record(f"features:w{worker}", i, "done")


def test_concurrent_processes_lose_no_update(wd):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(wd.manifest_path), w, 22)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with wd.manifest() as m:
        states = m.states("download")
        assert len(states) == 22
        for s in states.values():
            assert s.attempts == 4  # every increment landed
            assert set(s.info) == {"w0", "w1", "w2", "w3"}  # every merge landed
        for w in range(4):
            assert m.counts(f"features:w{w}")["done"] == 22


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official label lists not available")
def test_init_official_lists(tmp_path):
    wd = Workdir.init(tmp_path / "wd", OFFICIAL)
    db = sqlite3.connect(wd.manifest_path)
    assert db.execute("SELECT COUNT(*) FROM videos").fetchone()[0] == 256192
    assert db.execute("SELECT COUNT(*) FROM videos WHERE id_valid = 0").fetchone()[0] == 162
    assert db.execute("SELECT split, COUNT(*) FROM videos GROUP BY split ORDER BY split").fetchall() == [
        ("test", 51239), ("train", 179334), ("val", 25619)]


def test_symlinked_video_inside_workdir_is_inside(tmp_path, wd):
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x")
    link = wd.video_path("abcdefghijk", "mp4")
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    assert wd.inside(link.relative_to(wd.root)) == link
    with pytest.raises(UsageError):
        wd.inside("videos/../../elsewhere.mp4")
