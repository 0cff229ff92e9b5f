"""benchmarks/gpu.sh, the script for the day a GPU machine is lent, in its CPU dry run: every part runs
at tiny sizes or says why it was skipped, and the results land in $OUT as JSON and Markdown."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_script_dry_run(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry-run", "--budget", "240"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["dry_run"] and result["environment"]["device"] == "cpu"
    eager = [row for row in result["extraction"] if not row["compile"]]
    assert {row["backbone"] for row in eager} == {"resnet50", "tsm_r50"} and all(row["fps"] > 0 for row in eager)
    assert all("dry run" in row["skipped"] for row in result["extraction"] if row["compile"])
    assert result["agreement"] == [{"skipped": "no CUDA device: nothing to compare the CPU with"}]
    assert {(row["model"], row["amp"]) for row in result["training"]} == {
        ("nonlinear", "fp32 (tf32)"), ("nonlinear", "bf16"), ("netvlad", "fp32 (tf32)"), ("netvlad", "bf16")}
    assert all(row["steps_s"] > 0 for row in result["training"])
    if importlib.util.find_spec("zarr"):
        one, four, multi = result["sinks"]
        assert (one["videos_per_forward"], four["videos_per_forward"]) == (1, 4)
        assert all(r["sink_fps"] > 0 and r["bare_fps"] > 0 and 0 < r["busy"] <= 1 for r in (one, four))
        assert multi["skipped"] == "0 GPU(s) here: N sinks against N x one sink unmeasured"
        assert "| pipelined | 4 |" in (tmp_path / "gpu.md").read_text()
    if all(importlib.util.find_spec(m) for m in ("av", "zarr")):
        assert result["stage"]["done"] == 2 and result["stage"]["split"]["selective_videos"] == 2
    else:
        assert "not installed" in result["stage"]["skipped"]
    cache = result["cache"]  # the VideoLT-sized int8 cache part, at dry-run sizes
    assert cache["clips_same_on_cpu_and_device"] and cache["host_cache_reads_like_device_cache"]
    assert cache["step_ms"] > 0 and cache["evaluation_s"] > 0
    assert cache["run_minutes"] > 0 and cache["table1_hours"] == pytest.approx(27 * cache["run_minutes"] / 60)
    table = (tmp_path / "gpu.md").read_text()
    assert "| projected epoch / 100-epoch run (20 evaluations) / Table 1 (27 runs) |" in table
    assert "| resnet50 | False | fp32 |" in table and "(dry run: CPU, tiny sizes)" in table
    assert (tmp_path / "log.txt").is_file() and (tmp_path / "nvidia-smi.txt").is_file()
