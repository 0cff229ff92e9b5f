"""A run folder in every state it can be left in: a finished run rerun is a no-op that prints its metrics
(exit 0), a run that failed before its first checkpoint starts again, an interrupted one names --resume,
and a zero-byte or truncated checkpoint is one line."""

from __future__ import annotations

import json

import pytest

from tests.faults import error_line, run_cli
from tests.synthetic import make_workdir
from videolt.errors import ConfigError, StageError
from videolt.train import rundir


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    wd, _ = make_workdir(tmp_path_factory.mktemp("runs"), features="syn", num_classes=4, videos=(24, 6, 8), dim=16,
                         frames=20)
    return wd


def _train(root, run: str, *extra: str) -> list[str]:
    return ["train", str(root), "--features", "syn", "--run", run, "--epochs", "2", "--batch-size", "8",
            "--workers", "0", "--no-progress", *extra]


def test_finished_run_rerun_prints_its_metrics_and_trains_nothing(root, capsys):
    code, out, _ = run_cli(capsys, *_train(root, "done", "--json"))
    assert code == 0
    metrics = json.loads(out)
    run = root / "runs" / "done"
    files = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    code, out, _ = run_cli(capsys, *_train(root, "done", "--json"))
    assert code == 0 and json.loads(out) == metrics
    code, out, _ = run_cli(capsys, *_train(root, "done"))  # the table, as after training
    assert code == 0 and out.split("\n")[0].split() == ["overall_map", "head_map", "medium_map", "tail_map", "acc1",
                                                          "acc5"]
    assert f"{metrics['overall_map']:.4f}" in out
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == files  # nothing written again

    code, _, err = run_cli(capsys, *_train(root, "done", "--lr", "0.5"))
    assert code == 2 and error_line(err, "train").endswith(
        f"{run}: finished with other settings (lr); choose another --run name")
    code, _, err = run_cli(capsys, *_train(root, "done", "--epochs", "3"))
    assert code == 2 and error_line(err, "train").endswith(
        f"{run}: finished after 2 epochs; pass --resume to train it on to 3, or choose another --run name")
    code, out, _ = run_cli(capsys, *_train(root, "done", "--epochs", "3", "--resume", "--json"))
    assert code == 0 and json.loads(out)["epoch"] <= 2
    assert len((run / "train_log.csv").read_text().splitlines()) == 1 + 3


def test_failed_run_starts_again(root, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise StageError("feature read failed")

    for rerun in ([], ["--resume"]):
        name = f"failed{len(rerun)}"
        with monkeypatch.context() as m:
            m.setattr("videolt.train.trainer._train_epoch", fail)
            code, _, err = run_cli(capsys, *_train(root, name))
        assert code == 1 and error_line(err, "train").endswith("feature read failed")
        run = root / "runs" / name
        assert (run / "config.json").is_file() and not list(run.glob("*.pt"))  # a folder that used to be stuck
        code, out, _ = run_cli(capsys, *_train(root, name, "--json", *rerun))
        assert code == 0 and 0 <= json.loads(out)["overall_map"] <= 1
        assert len((run / "train_log.csv").read_text().splitlines()) == 1 + 2


def test_interrupted_run_names_resume_and_broken_checkpoints_are_one_line(root, capsys):
    assert run_cli(capsys, *_train(root, "cut"))[0] == 0
    run = root / "runs" / "cut"
    (run / "metrics.json").unlink()  # as if killed after its last checkpoint
    code, _, err = run_cli(capsys, *_train(root, "cut"))
    assert code == 2 and error_line(err, "train").endswith(
        f"{run}: interrupted before it finished (last.pt holds its last checkpoint); pass --resume to continue it, "
        "or choose another --run name")
    (run / "last.pt").write_bytes(b"")
    code, _, err = run_cli(capsys, *_train(root, "cut", "--resume"))
    assert code == 2 and f"{run / 'last.pt'}: not a readable checkpoint (0 bytes: " in error_line(err, "train")
    best = run / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    code, _, err = run_cli(capsys, "evaluate", str(root), "--run", "cut")
    assert code == 2 and f"{best}: not a readable checkpoint (1000 bytes: " in error_line(err, "evaluate")
    assert not (run / "metrics.json").exists()


def test_one_check_decides_reuse_and_resume(tmp_path):
    """`rundir.check_config`, the trainer's and the benchmark's one check: runtime fields never count,
    epochs and eval_every only when a run is not resumed, an int8 cache always (it reads other features)."""
    config = {"features": "f", "lr": 1e-4, "epochs": 2, "eval_every": 1, "workers": 0, "cache": "auto",
              "device": "auto"}
    run = tmp_path / "run"
    assert rundir.state(run) == "none"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": config}))
    assert rundir.state(run) == "started"
    (run / "last.pt").write_bytes(b"")
    assert rundir.state(run) == "interrupted"
    later = config | {"workers": 4, "device": "cpu", "epochs": 5, "eval_every": 2}
    assert rundir.start(run, later, resume=True) == "resume"
    with pytest.raises(ConfigError, match=r"cannot resume with a changed config \(cache, lr\)$"):
        rundir.start(run, config | {"lr": 0.1, "cache": "int8"}, resume=True)
    (run / "metrics.json").write_text('{"overall_map": 0.5}')
    assert rundir.state(run) == "finished"
    assert rundir.start(run, config | {"workers": 4, "cache": "fp16"}, resume=False) == {"overall_map": 0.5}
    for changed, key in (({"eval_every": 2}, "eval_every"), ({"cache": "int8"}, "cache")):
        with pytest.raises(ConfigError, match=rf"finished with other settings \({key}\); choose another --run name$"):
            rundir.start(run, config | changed, resume=False)
    assert rundir.start(run, config | {"epochs": 4, "eval_every": 2}, resume=True) == "resume"  # trained on
