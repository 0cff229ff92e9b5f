"""Benchmark grids: config parsing, run naming, dry runs, reports from hand-made runs, and one real smoke grid."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.lists import small_lists
from tests.synthetic import make_workdir
from videolt.config import to_dict
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, UsageError
from videolt.evaluate import tables
from videolt.pipeline import benchmark
from videolt.pipeline.benchmark import (
    BenchmarkError,
    MethodEntry,
    load_benchmark,
    plan,
    run_benchmark,
    run_name,
    write_report,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER_CONFIGS = {"table1_resnet50.yaml": (1, 1, 9), "table1_resnet101.yaml": (1, 1, 9), "table2_tsm.yaml": (1, 2, 2),
                 "table3_beta.yaml": (1, 1, 3), "table4_losses.yaml": (1, 1, 4), "table5_eta.yaml": (1, 1, 5),
                 "table6_beyond.yaml": (1, 1, 9), "smoke.yaml": (1, 1, 3)}


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    return Workdir.init(root / "wd", small_lists(root / "labels", n_train=30, n_test=40, num_classes=4)).root


def write_grid(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GRID = """
name: fake
table: table1
features: [{name: feats, backbone: resnet50}]
methods:
  - {method: baseline, label: baseline (BCE)}
  - {method: framestack, label: FrameStack}
  - {method: focal, label: focal-only}
seeds: [1, 2]
train: {epochs: 2, group_head: %d, group_tail: %d}
comparisons: [{treatment: FrameStack, control: focal-only}, {treatment: FrameStack, control: baseline (BCE)}]
bootstrap: 100
"""


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_every_config_parses_and_lists_its_runs(name, tiny_workdir):
    config = load_benchmark(CONFIGS / name)
    n_features, n_aggregators, n_methods = PAPER_CONFIGS[name]
    assert (len(config.features), len(config.aggregators), len(config.methods)) == (n_features, n_aggregators,
                                                                                   n_methods)
    with pytest.raises(BenchmarkError) as refused:  # this workdir has no feature set: the dry run lists the
        run_benchmark(tiny_workdir, config, dry_run=True)  # runs and says what would fail them (exit 2)
    assert refused.value.exit_code == 2
    assert all(f"feature set {f.name!r} not found" in str(refused.value) for f in config.features)
    dry = refused.value.result
    runs = [r["run"] for r in dry["runs"]]
    assert len(runs) == n_features * n_aggregators * n_methods * len(config.seeds)
    assert len(set(runs)) == len(runs)
    assert runs == [c.run for c in plan(load_benchmark(CONFIGS / name))]  # deterministic
    assert {r["status"] for r in dry["runs"]} == {"todo"}
    assert not (Workdir.open(tiny_workdir).reports_dir / config.name).exists()  # a dry run writes nothing
    if name != "smoke.yaml":
        assert config.seeds == (2021, 2022, 2023)
        cell = plan(config)[0].config
        assert (cell.epochs, cell.batch_size, cell.lr, cell.milestones) == (100, 128, 1e-4, (30, 60))


def test_issue9_controls_are_in_table1_and_table4():
    for name in ("table1_resnet50.yaml", "table1_resnet101.yaml", "table4_losses.yaml"):
        config = load_benchmark(CONFIGS / name)
        assert "focal" in [m.method for m in config.methods]
        assert {(c.treatment, c.control) for c in config.comparisons} >= {("FrameStack", "focal-only"),
                                                                          ("FrameStack", "baseline (BCE)")}


def test_run_names_are_systematic_and_stable():
    assert run_name(MethodEntry(method="baseline"), "resnet50", "nonlinear", 2021) == "baseline_resnet50_nonlinear_s2021"
    assert run_name(MethodEntry(method="ldam_drw"), "tsm_r50", "netvlad", 7) == "ldam-drw_tsm-r50_netvlad_s7"
    assert (run_name(MethodEntry(method="framestack", options={"eta": 0.3}), "r50", "nonlinear", 1)
            == "framestack-eta0.3_r50_nonlinear_s1")
    assert (run_name(MethodEntry(method="framestack", options={"beta_rule": "cf"}, loss="bce"), "r50", "nonlinear", 1)
            == "framestack-lossbce-betarulecf_r50_nonlinear_s1")
    # Options equal to the method's defaults name the same experiment, hence the same run.
    assert (run_name(MethodEntry(method="framestack", options={"eta": 0.5, "beta_rule": "ap"}, loss="focal"),
                     "r50", "nonlinear", 1) == "framestack_r50_nonlinear_s1")
    long = MethodEntry(method="focal", loss_opts={"gamma": 2.0, "alpha": 0.25, "reduction": "sum_classes"})
    name = run_name(long, "r50", "nonlinear", 1)
    assert name == run_name(long, "r50", "nonlinear", 1) and len(name.split("_")[0]) <= len("focal-") + 32
    other = MethodEntry(method="focal", loss_opts={"gamma": 2.0, "alpha": 0.5, "reduction": "sum_classes"})
    assert run_name(other, "r50", "nonlinear", 1) != name


@pytest.mark.parametrize("text, message", [
    ("name: x\nfeatures: [{name: f}]\nmethods: [{method: baseline}]\nsedes: [1]\n", "unknown config key 'sedes'"),
    ("name: x\nfeatures: [{name: f}]\nmethods: [{method: baseline}]\ntrain: {seed: 3}\n", "train.seed"),
    ("name: x\nfeatures: [{name: f}]\nmethods: [{method: baseline}]\ntrain: {epoks: 3}\n", "unknown config key"),
    ("name: x\nfeatures: [{name: f}]\nmethods: [{method: baseline}]\ncomparisons: [{treatment: a, control: b}]\n",
     "not a method label"),
    ("name: x\nfeatures: [{name: f}]\nmethods: [{method: baseline}, {method: baseline}]\n", "used twice"),
    ("name: x\nfeatures: [{name: f}]\nmethods: [{method: framestak}]\n", "did you mean framestack"),
    ("name: a/b\nfeatures: [{name: f}]\nmethods: [{method: baseline}]\n", "name:"),
])
def test_bad_grids_are_usage_errors(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):  # ConfigError or UnknownNameError, both exit 2
        plan(load_benchmark(write_grid(tmp_path / "g.yaml", text)))


def _fake_run(wd: Workdir, cell, rng, targets, rows, group_of, boost: float) -> dict:
    """A finished run folder as the trainer leaves it; its metrics are made up, its scores are real."""
    run_dir = wd.run_dir(cell.run)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": to_dict(cell.config)}))
    metrics = {k: float(v) for k, v in zip(tables.METRICS, rng.uniform(0.3, 0.7, 6))}
    val_selected = {k: v - float(rng.uniform(0.0, 0.05)) for k, v in metrics.items()}  # test selection flatters
    (run_dir / "metrics.json").write_text(json.dumps(metrics | {"split": "test", "select_on": "test", "other_selection":
                                                                val_selected | {"select_on": "val", "epoch": 3}}))
    metrics["val_selected"] = val_selected
    scores = targets * boost + rng.normal(0, 1, targets.shape)
    from videolt.evaluate.metrics import average_precision

    ap = average_precision(scores.astype(np.float16).astype(np.float64), targets)
    with open(run_dir / "per_class_ap.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class_id", "name", "group", "train_count", "ap"])
        w.writerows([c, f"Class{c}", group_of[c], 0, f"{ap[c]:.6f}"] for c in range(len(ap)))
    np.save(run_dir / "scores_test.npy", scores.astype(np.float16))
    np.save(run_dir / "rows_test.npy", rows)
    return metrics


def _report_setup(tmp_path: Path, grid: str):
    """A 4-class workdir, the benchmark `grid` (with %d %d for the head and tail thresholds) planned on it,
    and a `fake(cell, boost)` that writes one finished run's scores and metrics."""
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "labels", n_train=30, n_test=40, num_classes=4))
    labels, test = wd.labels(), wd.manifest().videos(["test"])
    ranked = np.sort(labels.counts)
    head, tail = int(ranked[-2]), int(ranked[0])
    config = load_benchmark(write_grid(tmp_path / "g.yaml", grid % (head, tail)))
    targets = np.zeros((len(test), labels.num_classes))
    for i, v in enumerate(test):
        targets[i, list(v.labels)] = 1
    rows = np.array([v.index for v in test])
    rng = np.random.default_rng(0)

    def fake(cell, boost: float) -> dict:
        return _fake_run(wd, cell, rng, targets, rows, labels.group_of(head, tail), boost)

    return wd, config, plan(config), fake


def test_report_from_finished_runs(tmp_path):
    wd, config, cells, fake = _report_setup(tmp_path, GRID)
    boost = {"baseline (BCE)": 0.5, "FrameStack": 3.0, "focal-only": 0.5}
    done = cells[:-1]  # the last cell (focal-only, seed 2) never ran
    metrics = {c.run: fake(c, boost[c.label]) for c in done}
    (wd.run_dir(cells[-1].run)).mkdir()
    (wd.run_dir(cells[-1].run) / "last.pt").write_bytes(b"")
    assert [benchmark.run_status(wd, c) for c in cells] == ["done"] * 5 + ["partial"]

    report = write_report(wd, config, cells)
    out = Path(report["dir"])
    assert out == wd.reports_dir / "fake" and (report["finished"], report["total"]) == (5, 6)
    with open(out / "results.csv", newline="") as f:
        results = list(csv.DictReader(f))
    ours = {r["method"]: r for r in results if r["source"] == "ours"}
    fs = [metrics[c.run] for c in cells if c.label == "FrameStack"]
    assert float(ours["FrameStack"]["overall_map"]) == pytest.approx(np.mean([m["overall_map"] for m in fs]), abs=1e-6)
    assert float(ours["FrameStack"]["tail_map_std"]) == pytest.approx(np.std([m["tail_map"] for m in fs], ddof=1),
                                                                       abs=1e-6)
    focal = metrics[cells[4].run]  # one seed: exactly its metrics.json, std blank
    assert ours["focal-only"]["seeds"] == "1" and ours["focal-only"]["acc1_std"] == ""
    assert float(ours["focal-only"]["acc5"]) == pytest.approx(focal["acc5"], abs=1e-6)
    # Paper rows: backbone resnet50 + nonlinear + FrameStack's settings (Table 1: .516 .683 .569 .397).
    paper = {r["method"]: r for r in results if r["source"] == "paper"}
    assert set(paper) == {"baseline (BCE) (paper)", "FrameStack (paper)"}  # no paper row for focal-only
    assert float(paper["FrameStack (paper)"]["overall_map"]) == 0.516
    delta = next(r for r in results if r["method"] == "FrameStack − paper")
    assert float(delta["tail_map"]) == pytest.approx(np.mean([m["tail_map"] for m in fs]) - 0.397, abs=1e-6)

    doc = json.loads((out / "report.json").read_text())
    vs_focal = next(r for r in doc["paired"] if r["comparison"] == "FrameStack − focal-only")
    assert vs_focal["seeds"] == 1  # focal-only seed 2 is unfinished
    vs_base = next(r for r in doc["paired"] if r["comparison"] == "FrameStack − baseline (BCE)")
    d = [metrics[cells[i].run]["head_map"] - metrics[cells[j].run]["head_map"] for i, j in ((2, 0), (3, 1))]
    assert vs_base["seeds"] == 2 and vs_base["head_map"] == pytest.approx(np.mean(d))
    assert vs_base["head_map_positive"] == sum(x > 0 for x in d)
    assert {r["run"] for r in doc["intervals"]} == {c.run for c in done}
    overall = [r for r in doc["differences"] if r["group"] == "overall" and "baseline" in r["comparison"]]
    assert len(overall) == 2 and all(r["includes_zero"] is False and r["diff_low"] > 0 for r in overall)
    text = (out / "report.md").read_text()
    assert "FrameStack − focal-only" in text and "includes_zero" in text
    # test-selected next to validation-selected, both on test, with the per-seed difference
    assert "Checkpoint selection: test-selected / validation-selected" in text
    chosen = next(r for r in doc["selection"] if r["method"] == "FrameStack")
    assert chosen["seeds"] == 2
    assert chosen["tail_map_val_selected"] == pytest.approx(np.mean([m["val_selected"]["tail_map"] for m in fs]))
    assert chosen["tail_map_difference"] == pytest.approx(
        np.mean([m["tail_map"] - m["val_selected"]["tail_map"] for m in fs]))
    assert f"{chosen['overall_map_test_selected']:.3f} / {chosen['overall_map_val_selected']:.3f}" in text
    for png in (out / "plots").glob("*.png"):
        with Image.open(png) as im:
            assert im.format == "PNG"
    assert len(list((out / "plots").glob("ap_difference_*.png"))) == 2


OWN_GRID = """
name: own
table: table6
features: [{name: feats, backbone: resnet50}]
aggregators: [nonlinear, netvlad]
model_opts: {netvlad: {clusters: 8}, move: {lb: 4.0}}
methods:
  - {method: baseline, label: baseline (BCE)}
  - {method: baseline, model: move, label: MOVE agg, model_opts: {sampling: none}}
  - {method: move, label: MOVE}
seeds: [1, 2]
train: {epochs: 2, group_head: %d, group_tail: %d}
comparisons: [{treatment: MOVE, control: MOVE agg}, {treatment: MOVE, control: baseline (BCE)}]
bootstrap: 50
"""


def test_rows_with_their_own_aggregator_run_once_in_their_block(tmp_path):
    cells = plan(load_benchmark(write_grid(tmp_path / "g.yaml", OWN_GRID % (10, 2))))
    assert [(c.label, c.aggregator) for c in cells[::2]] == [
        ("baseline (BCE)", "nonlinear"), ("baseline (BCE)", "netvlad"), ("MOVE agg", "move"), ("MOVE", "move")]
    assert [c.run for c in cells[4:]] == ["baseline-samplingnone_feats_move_s1", "baseline-samplingnone_feats_move_s2",
                                          "move_feats_move_s1", "move_feats_move_s2"]
    agg, move = cells[4].config, cells[6].config
    assert (agg.model, agg.model_opts, agg.method) == ("move", {"lb": 4.0, "sampling": "none"}, "baseline")
    assert (move.model, move.model_opts, move.method) == ("move", {"lb": 4.0}, "move")
    assert cells[2].config.model_opts == {"clusters": 8}
    assert json.loads(cells[4].method_key)["model_opts"] == {"lb": 4.0, "sampling": "none"}
    assert cells[0].method_key == benchmark.paper_reference()[0]["method_key"]  # the paper's keys are unchanged
    bad = OWN_GRID.replace("{method: move, label: MOVE}", "{method: move, model: nonlinear, label: MOVE}")
    with pytest.raises(ConfigError, match="own aggregator 'move'"):
        load_benchmark(write_grid(tmp_path / "b.yaml", bad % (10, 2)))
    bad = OWN_GRID.replace("{method: baseline, label: baseline (BCE)}",
                           "{method: baseline, label: baseline (BCE), model_opts: {lb: 2.0}}")
    with pytest.raises(ConfigError, match="model_opts"):
        load_benchmark(write_grid(tmp_path / "c.yaml", bad % (10, 2)))


def test_moves_paper_rows_match_its_recipes():
    """MOVE's Table 1 'Ours' matches --method move; its 'Baseline' with Agg matches the move aggregator
    without frame sampling (base_main_Agg.py), not the default (dynamic) one."""
    paper = [e for e in benchmark.paper_reference() if e["aggregator"] == "move"]
    assert {(e["method"], e["backbone"], e["overall_map"]) for e in paper} == {
        ("move", "resnet50", 0.705), ("move", "resnet101", 0.719), ("baseline", "resnet50", 0.676),
        ("baseline", "resnet101", 0.69)}
    assert all("exp1.png" in e["source"] and "Table 1" in e["source"] for e in paper)
    grid = load_benchmark(CONFIGS / "table6_beyond.yaml")
    by_label = {c.label: c for c in plan(grid) if c.seed == 2021}
    matched = {e["method_key"]: e for e in paper if e["backbone"] == "resnet50"}
    assert matched[by_label["MOVE"].method_key]["tail_map"] == 0.626
    assert matched[by_label["MOVE aggregator, no sampling (BCE)"].method_key]["tail_map"] == 0.585
    assert by_label["MOVE aggregator (BCE)"].method_key not in matched


def test_report_pairs_a_control_from_another_block(tmp_path):
    grid = OWN_GRID.replace(", move: {lb: 4.0}", "")  # MOVE's defaults, so its paper rows match
    wd, config, cells, fake = _report_setup(tmp_path, grid)
    boost = {"baseline (BCE)": 0.5, "MOVE agg": 1.0, "MOVE": 3.0}
    metrics = {c.run: fake(c, boost[c.label]) for c in cells}
    report = write_report(wd, config, cells)
    doc = json.loads((Path(report["dir"]) / "report.json").read_text())
    paired = {(r["aggregator"], r["comparison"]): r for r in doc["paired"]}
    assert set(paired) == {("move", "MOVE − MOVE agg"), ("move", "MOVE − baseline (BCE) [netvlad]")}
    across = paired[("move", "MOVE − baseline (BCE) [netvlad]")]
    move = [c for c in cells if c.label == "MOVE"]
    base = [c for c in cells if c.label == "baseline (BCE)" and c.aggregator == "netvlad"]
    assert across["pairs"] == [[m.run, b.run] for m, b in zip(move, base)]
    d = [metrics[m.run]["overall_map"] - metrics[b.run]["overall_map"] for m, b in zip(move, base)]
    assert across["overall_map"] == pytest.approx(np.mean(d))
    assert {r["comparison"] for r in doc["differences"]} == {"MOVE − MOVE agg (feats, move)",
                                                             "MOVE − baseline (BCE) (feats, move)"}
    assert len(list((Path(report["dir"]) / "plots").glob("ap_difference_*.png"))) == 2
    paper = {r["method"]: r for r in doc["results"] if r["source"] == "paper"}
    assert paper["MOVE (paper)"]["overall_map"] == 0.705 and paper["MOVE agg (paper)"]["overall_map"] == 0.676
    assert "MOVE aggregator" in (Path(report["dir"]) / "report.md").read_text()


def test_changed_settings_do_not_reuse_a_finished_run(tmp_path, tiny_workdir):
    config = load_benchmark(write_grid(tmp_path / "g.yaml", GRID % (10, 2)))
    cell = plan(config)[0]
    wd = Workdir.open(tiny_workdir)
    run_dir = wd.run_dir(cell.run)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": to_dict(cell.config) | {"epochs": 99}}))
    (run_dir / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="epochs"):
        benchmark.run_status(wd, cell)


@pytest.mark.slow
def test_smoke_grid_end_to_end_and_rerun_trains_nothing(tmp_path, monkeypatch):
    root, syn = make_workdir(tmp_path, num_classes=8, videos=(160, 24, 48), dim=32)
    config = load_benchmark(CONFIGS / "smoke.yaml", [f"train.group_head={syn.head}", f"train.group_tail={syn.tail}"])
    result = run_benchmark(root, config, progress=False)
    assert [r["status"] for r in result["runs"]] == ["done"] * 6
    out = Path(result["report"]["dir"])
    for name in ("report.md", "results.csv", "paired.csv", "intervals.csv", "report.json"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    # issue 9: the focal-only control row, the paired comparisons, the seed spread and the intervals
    assert "| focal-only | 2 |" in report
    assert "FrameStack − focal-only" in report and "FrameStack − baseline (BCE)" in report
    assert "±" in report and "Bootstrap 95% intervals" in report and "includes_zero" in report
    assert "Features `syn`: measured on 100.0% of the test list (48 of 48 videos" in report
    wd = Workdir.open(root)
    results = json.loads((out / "report.json").read_text())["results"]
    base = next(r for r in results if r["method"] == "baseline (BCE)")
    runs = [json.loads((wd.run_dir(r) / "metrics.json").read_text()) for r in base["runs"]]
    assert base["overall_map"] == pytest.approx(np.mean([m["overall_map"] for m in runs]))
    mtimes = {p: p.stat().st_mtime_ns for p in wd.runs_dir.rglob("metrics.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    with monkeypatch.context() as m:
        m.setattr(benchmark, "run_train", no_training)
        again = run_benchmark(root, config, progress=False)
    assert [r["status"] for r in again["runs"]] == ["done"] * 6
    assert {p: p.stat().st_mtime_ns for p in wd.runs_dir.rglob("metrics.json")} == mtimes

    # A run with a checkpoint but no metrics.json (killed at the very end) is resumed, not restarted.
    partial = wd.run_dir(result["runs"][0]["run"])
    (partial / "metrics.json").unlink()
    calls = []
    real = benchmark.run_train
    monkeypatch.setattr(benchmark, "run_train", lambda *a, **k: calls.append((a[1], k["resume"])) or real(*a, **k))
    assert run_benchmark(root, config, dry_run=True)["runs"][0]["status"] == "partial"
    run_benchmark(root, config, progress=False)
    assert calls == [(partial.name, True)] and (partial / "metrics.json").is_file()


@pytest.mark.slow
def test_table6_runs_end_to_end_on_a_synthetic_set(tmp_path):
    """configs/table6_beyond.yaml, shrunk with --set as its header shows: every row trains, MOVE's rows in their
    own block, every comparison (one across blocks) paired and bootstrapped, the plots drawn."""
    root, syn = make_workdir(tmp_path, num_classes=8, videos=(160, 24, 48), dim=32)
    config = load_benchmark(CONFIGS / "table6_beyond.yaml", [
        "features=[{name: syn, backbone: synthetic}]", "seeds=[1]", "train.epochs=2", "train.lr=1.0e-3",
        "train.batch_size=32", "train.eval_every=1", "train.milestones=[1]", "train.workers=0",
        f"train.group_head={syn.head}", f"train.group_tail={syn.tail}", "bootstrap=50",
        "model_opts.move={lb: 3.0, clusters: 8, hidden: 32, key_dim: 8, classifier_hidden: 64}"])
    result = run_benchmark(root, config, progress=False)
    assert [r["status"] for r in result["runs"]] == ["done"] * 9
    assert [r["aggregator"] for r in result["runs"]] == ["nonlinear"] * 6 + ["move"] * 3
    out = Path(result["report"]["dir"])
    doc = json.loads((out / "report.json").read_text())
    assert {r["method"] for r in doc["results"] if r["source"] == "ours"} == {m.display for m in config.methods}
    assert len(doc["paired"]) == len(config.comparisons)
    assert "MOVE aggregator (BCE) − baseline (BCE) [nonlinear]" in {r["comparison"] for r in doc["paired"]}
    assert len({r["comparison"] for r in doc["differences"]}) == len(config.comparisons)
    report = (out / "report.md").read_text()
    assert "MOVE aggregator" in report and "Bootstrap 95% intervals" in report
    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert {"group_map_syn_nonlinear.png", "group_map_syn_move.png"} <= plots
    assert len([p for p in plots if p.startswith("ap_difference_")]) == len(config.comparisons)


def _benchmark_cli(root: Path, syn) -> list[str]:
    return [sys.executable, "-m", "videolt", "benchmark", str(root), "--config", str(CONFIGS / "smoke.yaml"),
            "--set", f"train.group_head={syn.head}", "--set", f"train.group_tail={syn.tail}", "--no-progress"]


@pytest.mark.slow
def test_benchmark_killed_with_sigkill_then_rerun_completes_the_grid(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a, syn = make_workdir(tmp_path / "a", num_classes=8, videos=(160, 24, 48), dim=32)
    b, _ = make_workdir(tmp_path / "b", num_classes=8, videos=(160, 24, 48), dim=32)
    r = subprocess.run(_benchmark_cli(a, syn), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(_benchmark_cli(b, syn), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    runs = Workdir.open(b).runs_dir
    deadline = time.time() + 300
    while time.time() < deadline and len(list(runs.glob("*/metrics.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(runs.glob("*/metrics.json")))
    assert 2 <= finished < 6, "killed too late to test anything"
    r = subprocess.run(_benchmark_cli(b, syn), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    done_a = sorted(p.parent.name for p in Workdir.open(a).runs_dir.glob("*/metrics.json"))
    done_b = sorted(p.parent.name for p in runs.glob("*/metrics.json"))
    assert done_a == done_b and len(done_b) == 6
    keys = ("overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5")
    for run in done_b:
        ma = json.loads((Workdir.open(a).run_dir(run) / "metrics.json").read_text())
        mb = json.loads((runs / run / "metrics.json").read_text())
        assert {k: ma[k] for k in keys} == {k: mb[k] for k in keys}, run
    assert (Workdir.open(b).reports_dir / "smoke" / "report.md").is_file()
