"""The availability report: survival per class and group, test-set coverage, the shareable CSV and the plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.lists import official_labels, write_lists
from videolt import cli
from videolt.data.availability import (
    CSV_COLUMNS,
    availability,
    format_availability,
    split_coverage,
    video_outcomes,
    write_csv,
)
from videolt.data.simulate import simulate_outcomes
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir

OFFICIAL = official_labels()
SECRET = "s3cret-token-in-a-message"

# class 0: head-like (6 train videos), class 1: medium, class 2: tail (counts given below)
TRAIN = [("trainVid000", [0]), ("trainVid001", [0]), ("trainVid002", [0]), ("trainVid003", [0]),
         ("trainVid004", [0, 2]), ("trainVid005", [1]), ("trainVid006", [1]), ("trainVid007", [2]),
         ("1234567890", [2])]
VAL = [("valVideo000", [1])]
TEST = [("testVideo00", [0]), ("testVideo01", [1]), ("testVideo02", [2]), ("testVideo03", [2])]
# video -> (status, failure, info)
STATES = {
    "trainVid000": ("done", None, {"ytdlp_version": "2026.10.26"}),
    "trainVid001": ("done", None, {"ytdlp_version": "2026.10.26"}),
    "trainVid002": ("failed", "removed", {"ytdlp_version": "2026.10.26"}),
    "trainVid003": ("failed", "private", {"ytdlp_version": "2026.11.30"}),
    "trainVid004": ("failed", "age_restricted", {"ytdlp_version": "2026.10.26"}),
    "trainVid005": ("done", None, {"source": "import"}),
    "trainVid006": ("failed", "bot_check", {"ytdlp_version": "2026.10.26"}),
    "trainVid007": ("done", None, {"ytdlp_version": "2026.10.26"}),
    "1234567890": ("failed", "invalid_id", {"ytdlp_version": "2026.10.26"}),
    "testVideo00": ("done", None, {"ytdlp_version": "2026.10.26"}),
    "testVideo01": ("failed", "copyright", {"ytdlp_version": "2026.10.26"}),
    "testVideo02": ("done", None, {"ytdlp_version": "2026.10.26"}),
    # valVideo000, testVideo03: never tried
}


@pytest.fixture
def workdir(tmp_path) -> Workdir:
    lists = write_lists(tmp_path / "lists", TRAIN, VAL, TEST, counts=[600, 300, 50])
    wd = Workdir.init(tmp_path / "wd", lists)
    with wd.manifest() as m:
        for vid, (status, failure, info) in STATES.items():
            m.record("download", m.by_id(vid).index, status, failure=failure, info=info,
                     message=f"[download] {vid}: {failure} {SECRET}" if failure else None)
    return wd


def test_outcomes_per_video(workdir):
    outcomes = {o.video_id: o for o in video_outcomes(workdir)}
    assert {v: o.outcome for v, o in outcomes.items()} == {
        "trainVid000": "fetched", "trainVid001": "fetched", "trainVid002": "lost", "trainVid003": "lost",
        "trainVid004": "lost", "trainVid005": "imported", "trainVid006": "retryable", "trainVid007": "fetched",
        "1234567890": "lost", "valVideo000": "not_tried", "testVideo00": "fetched", "testVideo01": "lost",
        "testVideo02": "fetched", "testVideo03": "not_tried"}
    assert outcomes["trainVid003"].ytdlp_version == "2026.11.30" and outcomes["testVideo03"].date is None
    assert all(o.date for o in outcomes.values() if o.outcome != "not_tried")


def test_report_per_class_group_and_split(workdir):
    report = availability(workdir, head=500, tail=100)
    assert not report["simulated"] and report["ytdlp_versions"] == {"2026.10.26": 10, "2026.11.30": 1}
    overall = report["overall"]
    assert (overall["listed"], overall["fetched"], overall["imported"], overall["lost"], overall["retryable"],
            overall["not_tried"]) == (14, 5, 1, 5, 1, 2)
    assert overall["survival"] == 5 / 10 and overall["coverage"] == 6 / 14
    assert overall["lost_by_class"] == {"removed": 1, "private": 1, "age_restricted": 1, "invalid_id": 1,
                                        "copyright": 1}
    assert overall["recoverable"] == 1  # age_restricted: perhaps with the user's own cookies
    head, medium, tail = (report["classes"][c] for c in range(3))
    assert (head["group"], medium["group"], tail["group"]) == ("head", "medium", "tail")
    # class 0: trainVid000-004 + testVideo00; trainVid004 also counts for class 2
    assert (head["listed"], head["fetched"], head["lost"], head["survival"]) == (6, 3, 3, 0.5)
    assert head["lost_by_class"] == {"removed": 1, "private": 1, "age_restricted": 1}
    assert (tail["listed"], tail["fetched"], tail["lost"], tail["not_tried"]) == (5, 2, 2, 1)
    assert (medium["imported"], medium["retryable"], medium["survival"]) == (1, 1, 0.0)
    assert report["groups"]["head"]["listed"] == 6 and report["groups"]["tail"]["listed"] == 5
    assert [c["train_fetched"] for c in report["classes"]] == [2, 1, 1]  # an imported video counts: it is there
    assert report["groups"]["head"]["train_fetched_min"] == 2
    assert report["splits"]["test"]["listed"] == 4 and report["splits"]["val"]["not_tried"] == 1
    assert [c["class"] for c in report["lost_most"]] == [0, 2, 1]  # by the share lost: 3/6, 2/5, 1/4
    tc = report["test_coverage"]
    assert (tc["listed"], tc["measured"], tc["fraction"]) == (4, 2, 0.5)
    assert tc["groups"]["tail"] == {"listed": 2, "measured": 1, "fraction": 0.5}


def test_coverage_of_a_feature_set(workdir):
    with workdir.manifest() as m:
        ids = [v.video_id for v in m.videos()]
        test = [v.index for v in m.videos(["test"])]
    store = FeatureStore.create(workdir.features_path("r50"), ids, frames=2, dim=4, attrs={})
    store.write_row(test[0], np.zeros((2, 4), np.float16), 2)
    cov = split_coverage(workdir, features="r50")
    assert (cov["split"], cov["features"], cov["listed"], cov["measured"]) == ("test", "r50", 4, 1)
    assert cov["fraction"] == 0.25
    assert split_coverage(workdir, features="r50", split="val")["measured"] == 0


def test_csv_is_shareable(workdir, tmp_path):
    path = write_csv(video_outcomes(workdir), tmp_path / "out" / "availability.csv")
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 14
    assert {r["video_id"]: (r["split"], r["outcome"], r["failure"]) for r in rows}["trainVid002"] == (
        "train", "lost", "removed")
    assert SECRET not in path.read_text()  # messages stay in the manifest


def test_cli_availability(workdir, tmp_path, capsys):
    assert cli.main(["availability", str(workdir.root), "--json", "--csv", str(tmp_path / "a.csv"),
                     "--head", "500", "--tail", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"]["listed"] == 14 and Path(report["csv"]).is_file()
    plot = Path(report["plot"])
    assert plot.parent == workdir.reports_dir / "availability" and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["availability", str(workdir.root), "--plot", str(tmp_path / "s.png")]) == 0
    text = capsys.readouterr().out
    assert "survival 50.0%" in text and "test set: 2 of 4" in text and "SIMULATED" not in text


@pytest.mark.slow
@pytest.mark.skipif(not (OFFICIAL / "train.lst").is_file(), reason="the official VideoLT lists are not here")
def test_availability_on_the_official_lists_simulated(tmp_path, capsys):
    """A workdir from the official lists with simulated outcomes: every output says it is simulated."""
    wd = Workdir.init(tmp_path / "official", OFFICIAL)
    counts = simulate_outcomes(wd, seed=0)
    assert sum(counts.values()) == 256_192 and counts["invalid_id"] == 162
    csv_path = tmp_path / "availability.csv"
    assert cli.main(["availability", str(wd.root), "--json", "--csv", str(csv_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["simulated"] and report["overall"]["listed"] == 256_192
    o = report["overall"]
    assert o["fetched"] + o["imported"] + o["lost"] + o["retryable"] + o["not_tried"] == 256_192
    assert 0.70 < o["survival"] < 0.90 and len(report["classes"]) == 1004
    assert sum(g["classes"] for g in report["groups"].values()) == 1004
    assert report["test_coverage"]["listed"] == 51_239
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    assert len(rows) == 256_193 and {r[4] for r in rows[1:]} == {"simulated"}
    assert format_availability(report).startswith("SIMULATED outcomes (not a measurement)")
