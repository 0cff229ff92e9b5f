"""`videolt init`, `import-features`, `train`, `evaluate` and `status` end to end on synthetic features.

Every long-tail method is trained with both aggregators for a few epochs on a tiny long-tailed,
weakly-labelled set (official .npy release format): each must score in [0, 1] and beat a constant
score, and the baseline must find tail classes harder than head classes. Most runs go through
`videolt.cli.main` in this process (no torch import per run); the baseline and the error exits also
run as real subprocesses.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.lists import write_lists
from tests.synthetic import Synthetic, make_synthetic
from videolt.cli import main
from videolt.data.labels import multi_hot
from videolt.data.workdir import Workdir
from videolt.train.methods import METHODS as REGISTERED

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
METRICS = ("overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5")
C = 10
# Every registered method; those built around an aggregator of their own (MOVE) train with it, the others with both
# of VideoLT's.
METHODS = tuple(m for m in REGISTERED.names() if not REGISTERED.get(m).model)
OWN_MODEL = tuple(m for m in REGISTERED.names() if REGISTERED.get(m).model)
MODELS = {"nonlinear": (), "netvlad": ("--set", "model_opts.clusters=8", "--set", "model_opts.hidden=32"),
          "move": ("--set", "model_opts.clusters=8", "--set", "model_opts.hidden=32", "--set", "model_opts.key_dim=8",
                   "--set", "model_opts.classifier_hidden=64")}
# Each method with its own aggregator (implied), MOVE's named too, and a few methods on MOVE's aggregator.
MOVE_CASES = [(m, "") for m in OWN_MODEL] + [("move", "move"), ("baseline", "move"), ("framestack", "move"),
                                              ("db", "move")]
# Options that matter in 3 epochs on 240 videos: DRW's class-balanced weights from epoch 1; EQL's
# default drop rate (0.18 % of tail negatives) gave the baseline's metrics to 3 decimals here.
METHOD_OPTS = {"ldam_drw": {"drw_epoch": 1}, "eql": {"drop_prob": 0.3}}


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videolt", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _main(*args: str) -> tuple[int, str]:
    """`videolt ARGS` in this process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A workdir with the synthetic release imported as feature set `syn`, through the real CLI."""
    root = tmp_path_factory.mktemp("cli_train")
    syn = make_synthetic(root / "src", num_classes=C, videos=(240, 40, 100), dim=32, signal=1.5)
    wd = root / "wd"
    res = _cli("init", str(wd), "--labels", str(syn.labels_dir))
    assert res.returncode == 0 and "380 videos" in res.stdout, res.stderr
    res = _cli("import-features", str(wd), "--npy-dir", str(syn.npy_dir), "--name", "syn", "--json",
               "--no-progress")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"videos": 380, "skipped": 0, "done": 380, "failed": {}}
    return wd, syn


@pytest.fixture(scope="module")
def chance(synth) -> float:
    """mAP of a constant score: each class's AP is then its prevalence in the test split."""
    wd, _ = synth
    y = multi_hot([r.labels for r in Workdir.open(wd).manifest().videos(["test"])], C)
    return float(y.mean(0).mean())


def _train_args(wd: Path, syn: Synthetic, run: str, method: str, model: str) -> list[str]:
    opts = [a for k, v in METHOD_OPTS.get(method, {}).items() for a in ("--set", f"method_opts.{k}={v}")]
    sizes = MODELS[model or REGISTERED.get(method).model]
    return ["train", str(wd), "--features", "syn", "--run", run, "--method", method,
            *(["--model", model] if model else []), "--epochs", "3", "--batch-size", "32", "--workers", "0",
            "--device", "cpu", "--no-progress",
            "--set", "lr=0.01", "--set", f"group_head={syn.head}", "--set", f"group_tail={syn.tail}",
            "--set", "eval_every=3", *sizes, *opts, "--json"]


def _check_metrics(metrics: dict, chance: float) -> None:
    assert all(0.0 <= metrics[k] <= 1.0 for k in METRICS), metrics
    assert metrics["overall_map"] > 2 * chance, metrics
    assert metrics["acc1"] > 2 / C and metrics["acc5"] >= metrics["acc1"], metrics
    assert metrics["split"] == "test" and metrics["videos"] == 100


@pytest.mark.parametrize("method,model", [(m, a) for a in ("nonlinear", "netvlad") for m in METHODS] + MOVE_CASES)
def test_every_method_trains_and_evaluates(synth, chance, method, model):
    wd, syn = synth
    run = f"{method}-{model or 'own'}"
    code, out = _main(*_train_args(wd, syn, run, method, model))
    assert code == 0
    trained = json.loads(out)
    code, out = _main("evaluate", str(wd), "--run", run, "--json")
    assert code == 0
    evaluated = json.loads(out)
    _check_metrics(evaluated, chance)
    assert all(evaluated[k] == pytest.approx(trained[k]) for k in METRICS)  # best.pt re-scored
    config = json.loads((wd / "runs" / run / "config.json").read_text())["config"]
    assert (config["method"], config["model"], config["epochs"]) == (method, model or REGISTERED.get(method).model, 3)
    assert config["method_opts"] == METHOD_OPTS.get(method, {})
    assert config["clip_grad"] == (0.0 if method == "move" else 20.0)  # the method's recipe, recorded resolved


def test_baseline_through_subprocesses(synth, chance):
    wd, syn = synth
    res = _cli(*_train_args(wd, syn, "baseline-cli", "baseline", "nonlinear"))
    assert res.returncode == 0, res.stderr
    res = _cli("evaluate", str(wd), "--run", "baseline-cli", "--json")
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    _check_metrics(metrics, chance)
    assert metrics["tail_map"] < metrics["medium_map"] < metrics["head_map"], metrics
    assert metrics == json.loads((wd / "runs" / "baseline-cli" / "metrics.json").read_text())
    res = _cli("evaluate", str(wd), "--run", "baseline-cli")  # the human-readable table
    assert res.returncode == 0 and res.stdout.split("\n")[0].split() == list(METRICS)
    assert float(res.stdout.split("\n")[1].split()[0]) == pytest.approx(metrics["overall_map"], abs=1e-4)


def _error_line(res: subprocess.CompletedProcess, command: str) -> str:
    """The last stderr line, which must be the one `videolt CMD: error: ...` line."""
    lines = res.stderr.strip().splitlines()
    assert lines and lines[-1].startswith(f"videolt {command}: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[-1]


def test_usage_errors_exit_2_with_one_line(synth):
    wd, syn = synth
    base = ["train", str(wd), "--features", "syn", "--epochs", "1", "--workers", "0", "--no-progress"]
    res = _cli(*base, "--run", "bad-key", "--set", "method_opts_typo=1")
    assert res.returncode == 2 and "method_opts_typo" in _error_line(res, "train")
    res = _cli(*base, "--run", "bad-opt", "--method", "eql", "--set", "method_opts.drop_probb=0.3")
    line = _error_line(res, "train")
    assert res.returncode == 2 and "drop_probb" in line and "drop_prob" in line, line
    res = _cli(*base, "--run", "bad-method", "--method", "ldam")
    line = _error_line(res, "train")
    assert res.returncode == 2 and "ldam" in line and all(m in line for m in METHODS), line
    res = _cli(*base, "--run", "bad-model", "--method", "move", "--model", "nonlinear")
    line = _error_line(res, "train")
    assert res.returncode == 2 and "own aggregator 'move'" in line, line
    res = _cli("evaluate", str(wd), "--run", "never-trained")
    assert res.returncode == 2 and "never-trained" in _error_line(res, "evaluate")
    # A refused run leaves nothing that would block the same name later.
    assert not any((wd / "runs" / name).exists() for name in ("bad-key", "bad-opt", "bad-method", "bad-model"))


def test_import_features_counts_bad_files_and_status_shows_them(tmp_path):
    """200 release files: most good, some truncated, some of the wrong shape, one with a NaN, one absent."""
    rng = np.random.default_rng(1)
    ids = [f"imp{i:08d}" for i in range(200)]
    rows = [(vid, [i % 5]) for i, vid in enumerate(ids)]
    labels = write_lists(tmp_path / "lists", train=rows[:160], val=rows[160:180], test=rows[180:])
    npy = tmp_path / "npy"
    npy.mkdir()
    truncated, wrong_shape, nan, absent = set(ids[10:15]), set(ids[20:24]), ids[30], ids[199]
    for vid in ids:
        if vid == absent:
            continue
        shape = (150, 16) if vid in wrong_shape else (150, 32)
        x = rng.standard_normal(shape).astype(np.float32)
        if vid == nan:
            x[7, 3] = np.nan
        np.save(npy / f"{vid}.npy", x)
        if vid in truncated:
            data = (npy / f"{vid}.npy").read_bytes()
            (npy / f"{vid}.npy").write_bytes(data[: len(data) // 2])
    wd = tmp_path / "wd"
    assert _main("init", str(wd), "--labels", str(labels))[0] == 0
    failed = {"unreadable": 5, "wrong_shape": 4, "non_finite": 1, "missing": 1}
    res = _cli("import-features", str(wd), "--npy-dir", str(npy), "--name", "imp", "--json", "--no-progress",
               "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"videos": 200, "skipped": 0, "done": 189, "failed": failed}

    res = _cli("status", str(wd), "--json")
    assert res.returncode == 0, res.stderr
    features = json.loads(res.stdout)["features"]
    assert set(features) == {"imp"}
    assert (features["imp"]["done"], features["imp"]["missing"]) == (189, 0)
    assert features["imp"]["failed"] == failed

    # A rerun skips the imported rows and meets the same bad files again.
    code, out = _main("import-features", str(wd), "--npy-dir", str(npy), "--name", "imp", "--json",
                      "--no-progress")
    assert code == 0
    assert json.loads(out) == {"videos": 200, "skipped": 189, "done": 0, "failed": failed}
