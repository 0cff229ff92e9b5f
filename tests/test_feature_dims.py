"""Any feature size end to end: a 384-d feature set (DINOv2 ViT-S/14's size) trains and evaluates with
NonLinear and NetVLAD exactly as a 2048-d one does; a paper config runs on a new backbone's set by
changing one line; one benchmark grid puts a 384-d and a 768-d set side by side in one report."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.synthetic import make_workdir
from videolt.cli import main
from videolt.data.labels import multi_hot
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.pipeline.benchmark import load_benchmark, run_benchmark

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METRICS = ("overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5")
MODELS = {"nonlinear": (), "netvlad": ("--set", "model_opts.clusters=8", "--set", "model_opts.hidden=32")}


@pytest.fixture(scope="module")
def dims(tmp_path_factory):
    """A workdir with a 384-d set `dino-s` and a 768-d set `clip-b` (a fixed projection of the same videos)."""
    root, syn = make_workdir(tmp_path_factory.mktemp("dims"), features="dino-s", num_classes=8,
                             videos=(160, 24, 48), dim=384, frames=30, signal=1.5)
    wd = Workdir.open(root)
    small = FeatureStore.open(wd.features_path("dino-s"))
    ids = [r.video_id for r in wd.manifest().videos()]
    big = FeatureStore.create(wd.features_path("clip-b"), ids, frames=30, dim=768, attrs={"backbone": "synthetic"})
    proj = np.random.default_rng(1).standard_normal((384, 768)).astype(np.float32) / np.sqrt(384)
    for i in range(len(ids)):
        big.write_row(i, (small.read_rows([i])[0].astype(np.float32) @ proj).astype(np.float16), 30)
    return root, syn


def _main(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


@pytest.mark.parametrize("model", MODELS)
def test_384d_set_trains_and_evaluates(dims, model):
    root, syn = dims
    run = f"{model}-384"
    code, out = _main("train", str(root), "--features", "dino-s", "--run", run, "--model", model, "--epochs", "3",
                      "--batch-size", "32", "--workers", "0", "--device", "cpu", "--no-progress", "--set", "lr=0.01",
                      "--set", f"group_head={syn.head}", "--set", f"group_tail={syn.tail}", "--set", "eval_every=3",
                      *MODELS[model], "--json")
    assert code == 0
    code, out = _main("evaluate", str(root), "--run", run, "--json")
    assert code == 0
    metrics = json.loads(out)
    wd = Workdir.open(root)
    chance = float(multi_hot([r.labels for r in wd.manifest().videos(["test"])], 8).mean(0).mean())
    assert all(0.0 <= metrics[k] <= 1.0 for k in METRICS) and metrics["overall_map"] > 1.5 * chance, metrics
    state = torch.load(wd.run_dir(run) / "best.pt", map_location="cpu", weights_only=False)
    weights = state.get("model", state)
    assert any(v.ndim >= 1 and v.shape[-1] == 384 for v in weights.values() if torch.is_tensor(v))  # it saw 384-d


def test_paper_config_runs_on_a_new_backbone_by_changing_one_line(dims, tmp_path):
    text = (CONFIGS / "table1_resnet50.yaml").read_text()
    assert text.count("  - name: resnet50") == 1
    grid = tmp_path / "table1_dino.yaml"
    grid.write_text(text.replace("  - name: resnet50", "  - name: dino-s"))
    dry = run_benchmark(dims[0], load_benchmark(grid), dry_run=True)
    assert len(dry["runs"]) == 9 * 3 and all("_dino-s_" in r["run"] for r in dry["runs"])
    assert {r["status"] for r in dry["runs"]} == {"todo"}


def test_one_report_puts_feature_sets_of_different_sizes_side_by_side(dims, tmp_path):
    root, syn = dims
    grid = tmp_path / "dims.yaml"
    grid.write_text(f"""
name: dims
table: table1
features:
  - {{name: dino-s, backbone: dinov2_vits14}}
  - {{name: clip-b, backbone: clip_vitb16}}
methods: [{{method: baseline, label: baseline (BCE)}}]
seeds: [1]
train: {{epochs: 2, batch_size: 32, lr: 0.01, workers: 0, eval_every: 2,
        group_head: {syn.head}, group_tail: {syn.tail}}}
bootstrap: 0
""")
    result = run_benchmark(root, load_benchmark(grid), progress=False)
    assert [r["status"] for r in result["runs"]] == ["done", "done"]
    out = Path(result["report"]["dir"])
    with open(out / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "ours"]
    assert sorted(r["features"] for r in rows) == ["clip-b", "dino-s"]
    report = (out / "report.md").read_text()
    assert "dinov2_vits14" in report and "clip_vitb16" in report
