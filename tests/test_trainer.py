"""The training loop end to end on a tiny synthetic long-tailed set: outputs, learning, exact resume,
evaluation against scikit-learn, decoupling stages."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from tests.synthetic import make_workdir
from videolt.data.labels import multi_hot
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError, UsageError
from videolt.train import trainer
from videolt.train.config import TrainConfig
from videolt.train.decoupling import run_crt, run_lws, run_tau_norm
from videolt.train.evaluation import EvaluateConfig, run_evaluate
from videolt.train.methods import METHODS
from videolt.train.model import build_model
from videolt.train.trainer import run_train

METRICS = ("overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5")
C = 10
SMALL_MODEL_OPTS = {"netvlad": {"clusters": 8, "hidden": 64},
                    "move": {"clusters": 8, "hidden": 64, "key_dim": 16, "classifier_hidden": 128}}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root, syn = make_workdir(tmp_path_factory.mktemp("trainer"), num_classes=C, videos=(240, 60, 100), dim=32,
                              signal=1.5)
    return root, syn


@pytest.fixture(scope="module")
def base_config(synth) -> TrainConfig:
    _, syn = synth
    return TrainConfig(features="syn", epochs=3, batch_size=32, lr=1e-2, milestones=(2,), eval_every=1, workers=0,
                       group_head=syn.head, group_tail=syn.tail)


@pytest.fixture(scope="module")
def baseline(synth, base_config) -> tuple[str, dict]:
    root, _ = synth
    return "baseline", run_train(root, "baseline", base_config, progress=False)


def _chance(root) -> float:
    """mAP of a constant score: each class's AP is then its test prevalence."""
    wd = Workdir.open(root)
    y = multi_hot([r.labels for r in wd.manifest().videos(["test"])], C)
    return float(y.mean(0).mean())


def test_outputs_written_with_the_right_keys(synth, baseline):
    root, syn = synth
    name, result = baseline
    run_dir = root / "runs" / name
    for f in ("config.json", "train_log.csv", "metrics.json", "per_class_ap.csv", "last.pt", "best.pt",
              "scores_test.npy", "rows_test.npy"):
        assert (run_dir / f).is_file(), f
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["lr"] == 1e-2 and cfg["config"]["milestones"] == [2]
    assert cfg["provenance"]["feature_set"]["attrs"]["backbone"] == "synthetic"
    assert cfg["provenance"]["train_videos"] == 240 and "torch" in cfg["provenance"]["versions"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == result
    assert set(METRICS) <= set(saved) and saved["split"] == "test" and saved["videos"] == 100
    assert all(0.0 <= saved[k] <= 1.0 for k in METRICS)
    with open(run_dir / "train_log.csv") as f:
        log = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in log] == [0, 1, 2]
    assert [float(r["lr"]) for r in log] == pytest.approx([1e-2, 1e-2, 1e-3])  # ×0.1 at the milestone
    assert float(log[-1]["loss"]) < float(log[0]["loss"])
    best = max(range(3), key=lambda i: float(log[i]["overall_map"]))
    assert saved["epoch"] == best  # selection on test, as the reference does
    with open(run_dir / "per_class_ap.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["class_id"]) for r in rows] == list(range(C))
    assert {r["group"] for r in rows} == {"head", "medium", "tail"}
    assert [int(r["train_count"]) for r in rows] == Workdir.open(root).labels().counts.tolist()


def test_metrics_match_sklearn_on_an_independent_forward(synth, baseline):
    root, _ = synth
    name, result = baseline
    wd = Workdir.open(root)
    run_dir = wd.run_dir(name)
    test = wd.manifest().videos(["test"])
    feats = np.stack([np.load(root.parent / "src" / "npy" / f"{r.video_id}.npy") for r in test])
    feats = torch.from_numpy(feats.astype(np.float16).astype(np.float32))
    model = build_model("nonlinear", 32, C, {})
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True)["model"])
    with torch.no_grad():
        logits = model.eval()(feats).numpy()
    scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    saved = np.load(run_dir / "scores_test.npy")
    assert saved.dtype == np.float32 and saved.shape == (100, C)  # the float32 scores the metrics came from
    np.testing.assert_allclose(saved, scores, atol=1e-6)
    np.testing.assert_array_equal(np.load(run_dir / "rows_test.npy"), [r.index for r in test])
    y = multi_hot([r.labels for r in test], C)
    ap = np.array([average_precision_score(y[:, c], scores[:, c]) for c in range(C)])
    with open(run_dir / "per_class_ap.csv") as f:
        np.testing.assert_allclose([float(r["ap"]) for r in csv.DictReader(f)], ap, atol=1e-5)
    assert result["overall_map"] == pytest.approx(ap.mean(), abs=1e-6)
    top = np.argsort(-logits, axis=1)
    for k, key in ((1, "acc1"), (5, "acc5")):
        hits = [y[n, top[n, :k]].any() for n in range(len(y))]
        assert result[key] == pytest.approx(np.mean(hits))
    assert result["overall_map"] > _chance(root) + 0.3


@pytest.mark.parametrize("method,model,opts", [
    ("framestack", "nonlinear", {}),
    ("ldam_drw", "nonlinear", {"drw_epoch": 1}),
    ("cbs", "nonlinear", {}),
    ("mixup", "nonlinear", {}),
    ("baseline", "netvlad", {}),
    ("framestack", "netvlad", {}),
    ("move", "move", {}),
    ("baseline", "move", {}),
])
def test_methods_learn(synth, base_config, method, model, opts):
    root, _ = synth
    config = dataclasses.replace(base_config, method=method, method_opts=opts, model=model,
                                 model_opts=SMALL_MODEL_OPTS.get(model, {}))
    result = run_train(root, f"{method}-{model}", config, progress=False)
    assert result["overall_map"] > _chance(root) + 0.2
    assert result["acc1"] > 1.5 / C


# AP vector / EQL's drop generator / MOVE's frame-draw and expansion generators in the checkpoint; an int8 cache
@pytest.mark.parametrize("method,cache", [("framestack", "auto"), ("eql", "auto"), ("move", "auto"),
                                          ("framestack", "int8")])
def test_killed_run_resumes_to_exactly_the_uninterrupted_result(synth, base_config, monkeypatch, method, cache):
    root, _ = synth
    model = "move" if method == "move" else base_config.model
    config = dataclasses.replace(base_config, method=method, epochs=4, eval_every=2, workers=0, model=model,
                                 model_opts=SMALL_MODEL_OPTS.get(model, {}), cache=cache)
    method = f"{method}-{cache}"
    straight = run_train(root, f"{method}-straight", config, progress=False)

    real_epoch = trainer._train_epoch

    def killed_at_2(run, epoch, progress):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(run, epoch, progress)

    monkeypatch.setattr(trainer, "_train_epoch", killed_at_2)
    with pytest.raises(KeyboardInterrupt):
        run_train(root, f"{method}-resumed", config, progress=False)
    monkeypatch.setattr(trainer, "_train_epoch", real_epoch)
    killed = torch.load(root / "runs" / f"{method}-resumed" / "last.pt", weights_only=True)
    assert killed["epoch"] == 1
    if method.startswith("framestack"):
        assert killed["batch_mix"]["running_ap"]["value"].any()  # the AP vector is in the checkpoint
    if method.startswith("move"):
        assert killed["model"]["_extra_state"]["generator"].dtype == torch.uint8  # the frame draws' generator
    with pytest.raises(UsageError):
        run_train(root, f"{method}-resumed", config, progress=False)  # exists: must be resumed
    with pytest.raises(ConfigError):
        run_train(root, f"{method}-resumed", dataclasses.replace(config, lr=1.0), resume=True, progress=False)
    resumed = run_train(root, f"{method}-resumed", config, resume=True, progress=False)

    assert resumed == straight
    a = torch.load(root / "runs" / f"{method}-straight" / "last.pt", weights_only=True)
    b = torch.load(root / "runs" / f"{method}-resumed" / "last.pt", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    torch.testing.assert_close(a["batch_mix"], b["batch_mix"], rtol=0, atol=0)  # running AP, mix generator
    logs = [(root / "runs" / r / "train_log.csv").read_text().splitlines() for r in (f"{method}-straight", f"{method}-resumed")]
    strip = [[",".join(line.split(",")[:3] + line.split(",")[5:]) for line in log] for log in logs]  # no timings
    assert strip[0] == strip[1] and len(strip[0]) == 5


def test_resume_without_checkpoint_is_a_usage_error(synth, base_config):
    root, _ = synth
    with pytest.raises(UsageError, match="nothing to resume"):
        run_train(root, "never-ran", base_config, resume=True, progress=False)


def test_evaluate_run_other_split_and_checkpoint(synth, baseline):
    root, _ = synth
    name, _ = baseline
    result = run_evaluate(root, name, EvaluateConfig(split="val", checkpoint="last"))
    run_dir = root / "runs" / name
    assert result["split"] == "val" and result["epoch"] == 2 and result["checkpoint"] == "last"
    assert json.loads((run_dir / "metrics_val.json").read_text()) == result
    assert np.load(run_dir / "scores_val.npy").shape == (60, C)
    assert (run_dir / "per_class_ap_val.csv").is_file()
    again = run_evaluate(root, name)  # re-scoring the test split reproduces run_train's metrics
    assert again == json.loads((run_dir / "metrics.json").read_text()) == baseline[1]


def test_decoupling_stages_keep_the_frozen_model(synth, baseline):
    root, _ = synth
    name, _ = baseline
    source = torch.load(root / "runs" / name / "best.pt", weights_only=True)["model"]

    crt = run_crt(root, name, "crt", epochs=2, progress=False)
    state = torch.load(root / "runs" / "crt" / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(state["base.fc.weight"], source["fc.weight"], rtol=0, atol=0)
    assert not torch.equal(state["base.classifier.weight"], source["classifier.weight"])
    assert crt["overall_map"] > _chance(root) + 0.2

    lws = run_lws(root, name, "lws", epochs=2, progress=False)
    state = torch.load(root / "runs" / "lws" / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(state["base.classifier.weight"], source["classifier.weight"], rtol=0, atol=0)
    assert not torch.equal(state["scale"], torch.ones(C))
    assert lws["overall_map"] > _chance(root) + 0.2

    tau = run_tau_norm(root, name, "tau")
    state = torch.load(root / "runs" / "tau" / "best.pt", weights_only=True)["model"]
    torch.testing.assert_close(state["classifier.weight"].norm(dim=1), torch.ones(C))
    torch.testing.assert_close(state["classifier.weight"],
                               source["classifier.weight"] / source["classifier.weight"].norm(dim=1, keepdim=True))
    assert tau["overall_map"] > _chance(root) + 0.2
    assert json.loads((root / "runs" / "tau" / "config.json").read_text())["config"]["decouple"] == "tau_norm"


class _Payload:
    """Any pickled object: unpickling it could run code, so it must never be loaded."""


def test_a_checkpoint_holding_a_pickled_object_is_refused_with_one_line(synth, baseline, tmp_path, capsys):
    from videolt.cli import main

    root, _ = synth
    name, _ = baseline
    run_dir = root / "runs" / name
    state = torch.load(run_dir / "best.pt", weights_only=True)
    assert state["format"] == 2 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)
    planted = root / "runs" / "planted"
    planted.mkdir()
    (planted / "config.json").write_text((run_dir / "config.json").read_text())
    torch.save({**state, "payload": _Payload()}, planted / "best.pt")
    assert main(["evaluate", str(root), "--run", "planted"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "_Payload" in err[0], err


def test_a_run_folder_of_an_older_videolt_is_refused_with_one_line(synth, baseline, capsys):
    from videolt.cli import main

    root, _ = synth
    name, _ = baseline
    run_dir = root / "runs" / name
    old = root / "runs" / "old-format"
    old.mkdir()
    (old / "config.json").write_text((run_dir / "config.json").read_text())
    state = torch.load(run_dir / "best.pt", weights_only=True)
    state.pop("format")
    state["rng"]["numpy"] = np.random.get_state()  # what videolt 0.1 pickled
    torch.save(state, old / "best.pt")
    assert main(["evaluate", str(root), "--run", "old-format"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "older videolt" in err[0], err


def test_the_trained_spec_is_the_one_the_benchmark_matches(synth, base_config):
    """Training and the benchmark's paper matching resolve method + loss + options in one function."""
    from videolt.train.methods import METHODS, MethodSpec, method_key, resolve_method

    root, _ = synth
    config = dataclasses.replace(base_config, epochs=1, method="framestack", loss="focal", loss_opts={"gamma": 1.0},
                                 method_opts={"eta": 0.5})
    run_train(root, "recipe", config, progress=False)
    recorded = json.loads((root / "runs" / "recipe" / "config.json").read_text())["provenance"]["recipe"]
    assert recorded == {"model": "", "loss": "focal", "loss_opts": {"gamma": 1.0}, "sampler": "none",
                        "batch_mix": "framestack",
                        "mix_opts": {"eta": 0.5, "beta_rule": "ap", "warmup_epochs": 1},
                        "train": {}, "source": METHODS.get("framestack").source}
    assert method_key(MethodSpec(**recorded)) == method_key(resolve_method("framestack"))  # the paper's row
    assert method_key(MethodSpec(**recorded)) != method_key(resolve_method("framestack", loss="bce"))


def test_evaluate_and_decouple_take_config_files_flags_and_set(synth, baseline, tmp_path, capsys):
    from videolt.cli import main

    root, _ = synth
    name, _ = baseline
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("split: val\ncheckpoint: last\n")
    assert main(["evaluate", str(root), "--run", name, "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((root / "runs" / name / "metrics_val.json").read_text())
    assert main(["evaluate", str(root), "--run", name, "--config", str(cfg), "--split", "test", "--set",
                 "checkpoint=best", "--json"]) == 0  # a flag wins over the file, --set over both
    assert json.loads(capsys.readouterr().out)["split"] == "test"
    assert main(["decouple", str(root), "--from", name, "--run", "tau-cli", "--set", "stage=tau_norm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == "best"
    assert main(["evaluate", str(root), "--run", name, "--set", "splitt=val"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "splitt" in err[0]


def test_bf16_training_evaluates_in_float32(synth, base_config):
    """amp=bf16 (CPU autocast standing in for CUDA) changes the training forward only: the running-AP
    forward and every evaluation run in float32, and the saved scores are the float32 ones."""
    root, _ = synth
    config = dataclasses.replace(base_config, method="framestack", epochs=2, amp="bf16")
    seen: list[tuple[bool, bool, torch.dtype]] = []  # (train mode, grad enabled, classifier output dtype)
    real_setup = trainer._setup

    def watched_setup(*args, **kwargs):
        run = real_setup(*args, **kwargs)
        run.model.classifier.register_forward_hook(
            lambda mod, inp, out: seen.append((mod.training, torch.is_grad_enabled(), out.dtype)))
        return run

    trainer._setup = watched_setup
    try:
        run_train(root, "bf16", config, progress=False)
    finally:
        trainer._setup = real_setup
    assert {d for train, grad, d in seen if train and grad} == {torch.bfloat16}  # the training forward
    assert {d for train, grad, d in seen if train and not grad} == {torch.float32}  # FrameStack's running AP
    assert {d for train, grad, d in seen if not train} == {torch.float32}  # evaluation
    run_dir = root / "runs" / "bf16"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["amp"] == "bf16" and saved["provenance"]["amp"] == "bfloat16"
    assert saved["provenance"]["evaluation_precision"] == "float32"
    scores = np.load(run_dir / "scores_test.npy")
    assert scores.dtype == np.float32
    wd = Workdir.open(root)
    model = build_model("nonlinear", 32, C, {})
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True)["model"])
    store_rows = np.load(run_dir / "rows_test.npy")
    from videolt.data.store import FeatureStore

    x = torch.from_numpy(FeatureStore.open(wd.features_path("syn")).read_rows(store_rows).astype(np.float32))
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(x)).numpy()
    np.testing.assert_array_equal(scores, expected)


def test_default_precision_is_float32():
    from videolt.config import from_dict

    assert TrainConfig(features="f").amp == "off" and TrainConfig(features="f").tf32
    with pytest.raises(ConfigError, match="amp"):
        from_dict(TrainConfig, {"features": "f", "amp": "auto"})


def test_test_selected_and_validation_selected_checkpoints_side_by_side(synth, base_config):
    """Every run keeps the epoch the test list picks (best.pt, the reference's protocol) and the one the
    validation list picks (best_val.pt), and reports the test metrics of both."""
    root, _ = synth
    config = dataclasses.replace(base_config, epochs=4, eval_every=1, lr=3e-2)
    result = run_train(root, "both-selections", config, progress=False)
    run_dir = root / "runs" / "both-selections"
    with open(run_dir / "train_log.csv") as f:
        log_rows = list(csv.DictReader(f))
    by_test = max(range(4), key=lambda e: (float(log_rows[e]["overall_map"]), -e))
    by_val = max(range(4), key=lambda e: (float(log_rows[e]["val_map"]), -e))
    assert (result["select_on"], result["epoch"]) == ("test", by_test)
    other = result["other_selection"]
    assert (other["select_on"], other["epoch"]) == ("val", by_val)
    assert torch.load(run_dir / "best_val.pt", weights_only=True)["epoch"] == by_val
    alone = json.loads((run_dir / "metrics_selected_on_val.json").read_text())
    assert alone["split"] == "test" and alone["checkpoint"] == "best_val"
    assert {k: alone[k] for k in METRICS} == {k: other[k] for k in METRICS}
    assert json.loads((run_dir / "metrics.json").read_text()) == result


def test_lws_and_tau_norm_leave_every_ap_unchanged(synth, baseline, capsys):
    """Both rescale each class's logits by a positive factor: per-class AP (so every mAP) is the source
    run's, only Acc@k may move; the runs say so next to their numbers."""
    from videolt.cli import main

    root, _ = synth
    name, _ = baseline

    def per_class_ap(run: str) -> np.ndarray:
        with open(root / "runs" / run / "per_class_ap.csv") as f:
            return np.array([float(r["ap"]) for r in csv.DictReader(f)])

    source = per_class_ap(name)
    assert main(["decouple", str(root), "--from", name, "--run", "tau-inv", "--stage", "tau_norm"]) == 0
    assert "only Acc@k can change" in capsys.readouterr().out
    np.testing.assert_allclose(per_class_ap("tau-inv"), source, atol=1e-6)
    lws = run_lws(root, name, "lws-inv", epochs=2, progress=False)
    scale = torch.load(root / "runs" / "lws-inv" / "best.pt", weights_only=True)["model"]["scale"]
    assert (scale > 0).all() and not torch.equal(scale, torch.ones_like(scale))
    np.testing.assert_allclose(per_class_ap("lws-inv"), source, atol=1e-6)
    assert "only Acc@k can change" in lws["note"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root, syn = make_workdir(tmp_path_factory.mktemp("tiny"), num_classes=6, videos=(48, 12, 24), dim=16, frames=30,
                              signal=1.5)
    return root, TrainConfig(features="syn", epochs=2, batch_size=16, lr=1e-2, eval_every=1, workers=0, clip_len=10,
                             group_head=syn.head, group_tail=syn.tail)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_fp16_cache_gives_the_streaming_bits_for_every_method(tiny, method):
    """The same clips, mixes and draws (FrameStack's running AP, MOVE's frame sampling, CBS's masks) from a
    cache as from the store: identical metrics, scores and weights."""
    root, base = tiny
    model = METHODS.get(method).model or "nonlinear"
    opts = {"drw_epoch": 1} if method == "ldam_drw" else {}
    runs = {}
    for cache in ("stream", "fp16"):
        config = dataclasses.replace(base, method=method, method_opts=opts, model=model, cache=cache,
                                     model_opts=SMALL_MODEL_OPTS.get(model, {}))
        runs[cache] = (run_train(root, f"{method}-{cache}", config, progress=False),
                       np.load(root / "runs" / f"{method}-{cache}" / "scores_test.npy"),
                       torch.load(root / "runs" / f"{method}-{cache}" / "last.pt", weights_only=True))
    assert runs["fp16"][0] == runs["stream"][0]
    np.testing.assert_array_equal(runs["fp16"][1], runs["stream"][1])
    for k, v in runs["stream"][2]["model"].items():
        torch.testing.assert_close(runs["fp16"][2]["model"][k], v, rtol=0, atol=0)
    torch.testing.assert_close(runs["fp16"][2]["batch_mix"], runs["stream"][2]["batch_mix"], rtol=0, atol=0)
    logs = [(root / "runs" / f"{method}-{c}" / "train_log.csv").read_text().splitlines() for c in ("stream", "fp16")]
    assert [line.split(",")[1] for line in logs[0]] == [line.split(",")[1] for line in logs[1]]  # the epoch losses


def test_a_cache_that_does_not_fit_streams_with_the_same_result(tiny, monkeypatch, caplog):
    from videolt.train import memory

    root, base = tiny
    config = dataclasses.replace(base, method="framestack", cache="fp16")
    cached = run_train(root, "fits", config, progress=False)
    monkeypatch.setattr(memory, "host_available", lambda: 0)
    with caplog.at_level(logging.WARNING, logger="videolt.train.cache"):
        streamed = run_train(root, "does-not-fit", config, progress=False)
    assert streamed == cached
    lines = [r.getMessage() for r in caplog.records if "does not fit" in r.getMessage()]
    assert [line.split(" (")[0] for line in lines] == ["cache fp16 of train", "cache fp16 of test", "cache fp16 of val"]


def test_preload_is_read_as_cache_fp16_and_int8_is_a_setting_change():
    from videolt.config import from_dict
    from videolt.train.rundir import setting_changes

    assert from_dict(TrainConfig, {"features": "f", "preload": True}).cache == "fp16"  # an older config
    with pytest.raises(ConfigError, match="preload: superseded by cache"):
        TrainConfig(features="f", preload=True, cache="int8")
    old = {"features": "f", "preload": False, "lr": 1e-4}  # an older run's config.json: no cache key
    assert setting_changes(old, {"features": "f", "cache": "fp16", "lr": 1e-4}, resuming=True) == []
    assert setting_changes(old, {"features": "f", "cache": "int8", "lr": 1e-4}, resuming=True) == ["cache"]
