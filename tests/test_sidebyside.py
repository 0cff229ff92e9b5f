"""The side-by-side harnesses (benchmarks/sidebyside/) run: a one-seed smoke of each against the authors' code.

The authors' code is never in this repository: these tests need a checkout at the pinned commit, named by
`VIDEOLT_SIDEBYSIDE_SOURCE_MOVE` (wjun0830/MOVE at 7928daa) or `VIDEOLT_SIDEBYSIDE_SOURCE_VIDEOLT`
(17Skye17/VideoLT at 1732d5c), and are skipped without one. The refusal of a wrong checkout needs none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "benchmarks" / "sidebyside"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(HARNESS / script), *args], capture_output=True, text=True, env=env,
                          timeout=1500)


def _source(env: str) -> str:
    source = os.environ.get(env)
    if not source:
        pytest.skip(f"no checkout of the authors' code: set {env}")
    return source


@pytest.mark.parametrize("script,env", [("move.py", "VIDEOLT_SIDEBYSIDE_SOURCE_MOVE"),
                                        ("videolt_core.py", "VIDEOLT_SIDEBYSIDE_SOURCE_VIDEOLT")])
def test_a_checkout_at_another_commit_is_refused(tmp_path: Path, script: str, env: str) -> None:
    (tmp_path / "MOVE.py").write_text("# not their file\n")
    res = _run(script, "components", "--source", str(tmp_path))
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith(str(tmp_path)), res.stderr
    assert "at 7928daa" in res.stderr or "at 1732d5c" in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script,env,extra", [
    ("move.py", "VIDEOLT_SIDEBYSIDE_SOURCE_MOVE", []),
    ("videolt_core.py", "VIDEOLT_SIDEBYSIDE_SOURCE_VIDEOLT", ["--method", "baseline"]),
    ("videolt_core.py", "VIDEOLT_SIDEBYSIDE_SOURCE_VIDEOLT", ["--method", "framestack"]),
], ids=["move", "videolt-baseline", "videolt-framestack"])
def test_one_seed_smoke_of_each_harness(tmp_path: Path, script: str, env: str, extra: list[str]) -> None:
    """Both codes train one seed on a tiny set and the collector reads both results."""
    res = _run(script, "e2e", "--smoke", "--source", _source(env), "--work", str(tmp_path), "--seeds", "1", *extra)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| 1 | ")]
    assert [row.split(" | ")[1] for row in rows] == ["theirs", "ours"], res.stdout
    for row in rows:
        values = [float(v) for v in row.strip(" |").split(" | ")[2:8]]
        assert all(0.0 <= v <= 1.0 for v in values), row


@pytest.mark.slow
def test_videolt_components_are_identical() -> None:
    """Every component of the training core gives their numbers on the same weights, inputs and draws."""
    res = _run("videolt_core.py", "components", "--source", _source("VIDEOLT_SIDEBYSIDE_SOURCE_VIDEOLT"))
    assert res.returncode == 0, res.stderr[-3000:]
    table = [line for line in res.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(table) == 13
    for line in table:
        for value in line.rstrip(" |").rsplit(" | ", 1)[1].replace(";", ",").split(","):
            assert float(value) < 1e-6, line


@pytest.mark.slow
def test_move_lockstep_smoke(tmp_path: Path) -> None:
    """Both MOVE codes trained on one set of random streams give the same test mAP at every evaluation."""
    res = _run("move.py", "lockstep", "--smoke", "--source", _source("VIDEOLT_SIDEBYSIDE_SOURCE_MOVE"),
               "--work", str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    evaluations = [line.split("test mAP theirs ")[1].split(";")[0].split(" / ours ")
                   for line in res.stdout.splitlines() if "test mAP theirs" in line]
    assert len(evaluations) == 2 and all(a == b for a, b in evaluations), res.stdout
