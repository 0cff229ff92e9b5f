"""Never silently wrong: damaged feature rows, edited manifests and a damaged manifest, each seen by
`videolt check`, refused in one line by the stage that would use them, and repaired by the command
the check names (a rerun of `extract`, `check --restore-manifest`)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from tests.faults import error_line, extract_args, run_cli, train_args, video_workdir
from videolt.data.manifest import Manifest
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import IntegrityError


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A workdir of 11 generated videos (6 train, 2 val, 3 test) with feature set `r` extracted."""
    from videolt.cli import main

    root = video_workdir(tmp_path_factory.mktemp("integrity"))
    assert main(extract_args(root)) == 0
    return root


@pytest.fixture
def wd(extracted, tmp_path):
    """A copy of the extracted workdir for one test to damage."""
    return shutil.copytree(extracted, tmp_path / "wd", symlinks=True)


def _states(root) -> dict:
    with Manifest(root / "manifest.sqlite") as m:
        return {stage: {i: (s.status, s.failure, s.attempts, s.info) for i, s in m.states(stage).items()}
                for stage in m.stages()}


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_damaged_chunk_is_refused_reported_and_redone(wd, capsys, damage):
    store = FeatureStore.open(Workdir(wd).features_path("r"))
    row, vid = 2, str(store.video_ids[2])  # a train video
    before = store.read_rows(np.arange(store.n))
    states = _states(wd)
    chunk = store.path / "feats" / "c" / str(row) / "0" / "0"
    if damage == "deleted":
        chunk.unlink()
        what = "missing"
    else:
        chunk.write_bytes(chunk.read_bytes()[:1000])
        what = f"1000 of {store.row_bytes} bytes long"

    with pytest.raises(IntegrityError, match=f"video {vid} \\(row {row}\\) is marked done but its feature chunk is "
                                             f"{what}"):
        store.read_rows([row])
    code, out, _ = run_cli(capsys, "check", str(wd))
    assert code == 3, out
    assert f"problem: feature set r: 1 done row(s) without their data: {vid} ({what})" in out
    assert f"fix: `videolt extract {wd} --backbone resnet50 --name r" in out
    code, out, _ = run_cli(capsys, "check", str(wd), "--json")
    assert code == 3 and json.loads(out)["feature_sets"][0]["damaged"] == {vid: what}

    code, out, err = run_cli(capsys, *train_args(wd, "a"))  # never trains on zeros
    assert code == 1 and out == ""
    line = error_line(err, "train")
    assert f"video {vid} (row {row}) is marked done but its feature chunk is {what}; rerun `videolt extract`" in line

    code, out, _ = run_cli(capsys, *extract_args(wd))  # the rerun finds the row and does it again, only it
    assert code == 0 and json.loads(out)["done"] == 1 and json.loads(out)["videos"] == 1, out
    store = FeatureStore.open(store.path)
    np.testing.assert_array_equal(store.read_rows(np.arange(store.n)), before)  # bit for bit
    assert (store.status() == STATUS_DONE).all()
    after = _states(wd)
    for stage in ("download", "decode", "features:r"):  # one more attempt for that video, none for the others
        for i, (status, failure, attempts, _) in after[stage].items():
            assert (status, failure) == ("done", None)
            assert attempts == states[stage][i][2] + (i == row and stage != "download")
    assert run_cli(capsys, "check", str(wd))[0] == 0
    code, out, _ = run_cli(capsys, *train_args(wd, "a"))  # the failed run's folder starts again cleanly
    assert code == 0 and 0 <= json.loads(out)["overall_map"] <= 1


def _edit(root, sql: str, *params) -> None:
    db = sqlite3.connect(root / "manifest.sqlite")
    with db:
        db.execute(sql, params)
    db.close()


EDITS = {
    "renamed": ("UPDATE videos SET video_id = 'AAAAAAAAAAA' WHERE idx = 1", "manifest row 1 has ID 'AAAAAAAAAAA' "
                "where the label lists have"),
    "deleted": ("DELETE FROM videos WHERE idx = 10", "the manifest has 10 videos, the label lists 11"),
    "split": ("UPDATE videos SET split = 'test' WHERE idx = 0", "manifest row 0 has split 'test' where the label "
              "lists have 'train'"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_manifest_is_refused_in_one_line(wd, capsys, edit):
    sql, message = EDITS[edit]
    _edit(wd, sql)
    code, out, _ = run_cli(capsys, "check", str(wd))
    assert code == 3 and f"problem: manifest: {message}" in out, out
    if edit == "renamed":  # the feature set no longer matches the manifest either
        assert "problem: feature set r: r.zarr row 1 is video" in out
    code, out, err = run_cli(capsys, *train_args(wd, "b"))
    assert code == 2 and out == "" and message in error_line(err, "train")
    assert not (wd / "runs" / "b").exists()  # refused before anything is written


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "deleted"])
def test_damaged_manifest_is_one_line_and_restored_from_its_backup(wd, capsys, damage):
    """The backup made at the end of the last stage (extract) restores every outcome it recorded."""
    states = _states(wd)
    manifest = wd / "manifest.sqlite"
    data = manifest.read_bytes()
    damaged = {"truncated": data[:4096], "overwritten": b"\x00" * 100 + data[100:], "deleted": None}[damage]
    if damaged is None:
        manifest.unlink()
    else:
        manifest.write_bytes(damaged)
    for args in (["status", str(wd)], extract_args(wd)):
        code, out, err = run_cli(capsys, *args)
        line = error_line(err, args[0])
        assert code == 1 and "the manifest is damaged (" in line, line
        assert line.endswith(f"restore its backup from the end of the last stage (manifest.sqlite.bak, "
                             f"{line.split('manifest.sqlite.bak, ')[1].split(')')[0]}) with "
                             f"`videolt check {wd} --restore-manifest`")
    code, out, _ = run_cli(capsys, "check", str(wd))
    assert code == 3 and f"fix: `videolt check {wd} --restore-manifest`" in out

    code, out, _ = run_cli(capsys, "check", str(wd), "--restore-manifest")
    assert code == 0, out
    assert out.startswith("manifest restored from its backup of ")
    assert ("manifest.sqlite.damaged-" in out) == (damaged is not None)
    assert _states(wd) == states  # nothing the stages recorded is lost
    kept = [p for p in wd.glob("manifest.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert [p.read_bytes() for p in kept] == ([damaged] if damaged else [])  # kept, not deleted
    code, out, _ = run_cli(capsys, *extract_args(wd))
    assert code == 0 and json.loads(out)["videos"] == 0  # nothing to do twice
