"""Tables, plots and run-vs-run comparisons from hand-made run folders (no training)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score

from tests.lists import small_lists
from videolt.data.workdir import Workdir
from videolt.evaluate import plots, tables
from videolt.evaluate.compare import compare_runs, format_comparison

METRICS = tables.METRICS


def record(label: str, seed: int, values: list[float], *, backbone: str = "resnet50", method_key: str = "s") -> dict:
    return {"run": f"{label}_s{seed}", "label": label, "backbone": backbone, "features": "feats",
            "aggregator": "nonlinear", "seed": seed, "method_key": method_key, "metrics": dict(zip(METRICS, values))}


def test_mean_std_is_the_sample_std_and_undefined_for_one_seed():
    mean, std = tables.mean_std([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(math.sqrt(((0.1) ** 2 + 0 + (0.1) ** 2) / 2))  # ddof=1: divide by n - 1
    assert tables.mean_std([0.42]) == (0.42, None)


def test_result_rows_average_seeds_and_match_the_paper():
    recs = [record("FrameStack", 1, [0.50, 0.70, 0.55, 0.40, 0.6, 0.8], method_key="fs"),
            record("FrameStack", 2, [0.52, 0.72, 0.57, 0.38, 0.7, 0.9], method_key="fs"),
            record("baseline", 1, [0.45, 0.60, 0.50, 0.35, 0.5, 0.7], method_key="bce")]
    paper = [{"backbone": "resnet50", "aggregator": "nonlinear", "method_key": "fs", "overall_map": 0.516,
              "head_map": 0.683, "medium_map": 0.569, "tail_map": 0.397, "source": "paper, Table 1"},
             {"backbone": "resnet101", "aggregator": "nonlinear", "method_key": "bce", "overall_map": 0.516}]
    rows = tables.result_rows(recs, paper)
    assert [r["source"] for r in rows] == ["ours", "paper", "ours − paper", "ours"]  # resnet101 row: no match
    fs, ref, delta, base = rows
    assert fs["seeds"] == 2 and fs["runs"] == ["FrameStack_s1", "FrameStack_s2"]
    assert fs["overall_map"] == pytest.approx(0.51)
    assert fs["overall_map_std"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))
    assert fs["tail_map"] == pytest.approx(0.39)
    assert ref["overall_map"] == 0.516 and ref["acc1"] is None and ref["reference"] == "paper, Table 1"
    assert delta["overall_map"] == pytest.approx(0.51 - 0.516)
    assert delta["head_map"] == pytest.approx(0.71 - 0.683)
    assert delta["acc1"] is None
    # One seed: the values are that run's metrics.json values, and no std.
    assert [base[k] for k in METRICS] == [0.45, 0.60, 0.50, 0.35, 0.5, 0.7]
    assert base["overall_map_std"] is None
    text = tables.markdown("T", rows)
    assert "| FrameStack | 2 | 0.510 ± 0.014 |" in text
    assert "| FrameStack − paper |  | -0.006 |" in text
    assert "| baseline | 1 | 0.450 | 0.600 |" in text


def test_paired_rows_use_shared_seeds_only():
    recs = [record("FS", s, [v] * 6) for s, v in ((1, 0.50), (2, 0.55), (3, 0.52))]
    recs += [record("focal", s, [v] * 6) for s, v in ((1, 0.48), (2, 0.56), (4, 0.10))]
    (row,) = tables.paired_rows(recs, [("FS", "focal")])
    assert row["comparison"] == "FS − focal" and row["seeds"] == 2
    assert row["pairs"] == [["FS_s1", "focal_s1"], ["FS_s2", "focal_s2"]]
    diffs = [0.02, -0.01]
    assert row["overall_map"] == pytest.approx(np.mean(diffs))
    assert row["overall_map_std"] == pytest.approx(np.std(diffs, ddof=1))
    assert row["overall_map_positive"] == 1
    assert "+0.005 ± 0.021 (1/2 > 0)" in tables.markdown("P", [row], kind="paired")
    assert tables.paired_rows(recs, [("FS", "missing")]) == []


def test_writers_round_trip(tmp_path):
    rows = tables.result_rows([record("a", 1, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])])
    tables.write_csv(tmp_path / "t.csv", rows)
    tables.write_json(tmp_path / "t.json", rows)
    with open(tmp_path / "t.csv", newline="") as f:
        (back,) = list(csv.DictReader(f))
    assert float(back["tail_map"]) == 0.4 and back["tail_map_std"] == "" and json.loads(back["runs"]) == ["a_s1"]
    assert json.loads((tmp_path / "t.json").read_text())[0]["acc5"] == 0.6
    tables.write_json(tmp_path / "nan.json", {"head": {"estimate": float("nan")}})  # an empty group's mAP
    assert json.loads((tmp_path / "nan.json").read_text()) == {"head": {"estimate": None}}


def _png(path):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


def test_plots_write_pngs(tmp_path):
    counts = np.round(2000 * np.arange(1, 201) ** -0.9).astype(int) + 40
    _png(plots.class_frequency(counts, tmp_path / "freq.png", head=500, tail=100))
    rows = [{"method": m, "seeds": 3, "overall_map": o, "overall_map_std": 0.004, "head_map": o + 0.17,
             "head_map_std": 0.003, "medium_map": o + 0.05, "medium_map_std": 0.002, "tail_map": o - 0.12,
             "tail_map_std": 0.006} for m, o in (("baseline (BCE)", 0.499), ("focal-only", 0.505), ("FrameStack", 0.516))]
    _png(plots.group_map_bars(rows, tmp_path / "bars.png", title="mAP by class group: resnet50"))
    rng = np.random.default_rng(0)
    ap_b = rng.uniform(0.2, 0.8, 60)
    ap_a = ap_b + rng.normal(0.01, 0.05, 60)
    names = [f"Class{c:03d}" for c in range(60)]
    _png(plots.ap_difference(ap_a, ap_b, names, np.arange(60) >= 40, tmp_path / "diff.png",
                             label_a="FrameStack", label_b="baseline"))


def _write_run(run_dir, scores, targets, groups, names):
    """A finished run's files as the trainer writes them, with AP computed independently (scikit-learn)."""
    run_dir.mkdir(parents=True)
    ap = [average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1])]
    with open(run_dir / "per_class_ap.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class_id", "name", "group", "train_count", "ap"])
        w.writerows([c, names[c], groups[c], 0, f"{ap[c]:.6f}"] for c in range(len(ap)))
    (run_dir / "metrics.json").write_text(json.dumps({"overall_map": float(np.mean(ap))}))
    np.save(run_dir / "scores_test.npy", scores.astype(np.float16))
    return np.array(ap)


def test_compare_runs_differences_intervals_and_plot(tmp_path):
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "labels", n_train=30, n_test=40, num_classes=4))
    labels, test = wd.labels(), wd.manifest().videos(["test"])
    rows = np.array([v.index for v in test])
    targets = np.zeros((len(test), labels.num_classes))
    for i, v in enumerate(test):
        targets[i, list(v.labels)] = 1
    rng = np.random.default_rng(1)
    good = targets * 2 + rng.normal(0, 0.3, targets.shape)  # ranks positives first: AP near 1
    bad = rng.normal(0, 1, targets.shape)
    ranked = np.sort(labels.counts)
    group_of = labels.group_of(head=int(ranked[-2]), tail=int(ranked[0]))  # non-empty head and tail
    ap = {}
    for run, scores in (("good", good), ("bad", bad), ("same", good)):
        ap[run] = _write_run(wd.run_dir(run), scores, targets, group_of, labels.names)
        np.save(wd.run_dir(run) / "rows_test.npy", rows)
    result = compare_runs(wd.root, ["good", "bad", "same"], tmp_path / "out", n_resamples=200)
    vs_bad, vs_same = result["comparisons"]
    overall = vs_bad["groups"]["overall"]
    assert overall["difference"] == pytest.approx(ap["good"].mean() - ap["bad"].mean(), abs=1e-5)
    assert overall["low"] <= overall["difference"] <= overall["high"]
    assert overall["includes_zero"] is False
    tail_ids = [c for c, g in enumerate(group_of) if g == "tail"]
    assert vs_bad["groups"]["tail"]["treatment"] == pytest.approx(ap["good"][tail_ids].mean(), abs=1e-5)
    same = vs_same["groups"]["overall"]
    assert same["difference"] == 0 and same["includes_zero"] is True
    text = format_comparison(result)
    assert "excludes zero" in text and "includes zero: no evidence of a difference" in text
    _png(tmp_path / "out" / "ap_difference_good__bad.png")
