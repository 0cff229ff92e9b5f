"""`videolt run CONFIG`: config checking, the shipped configs, and every stage end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from videolt.cli import main
from videolt.config import read_file
from videolt.data.store import STATUS_DONE, FeatureStore
from videolt.data.workdir import Workdir
from videolt.errors import ConfigError
from videolt.pipeline.demo import demo_config
from videolt.pipeline.run import load_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_yaml_is_what_the_demo_command_runs():
    assert load_run_config(CONFIGS / "demo.yaml") == demo_config("demo-workdir")


def test_videolt_yaml_loads_with_every_stage():
    cfg = load_run_config(CONFIGS / "videolt.yaml")
    assert [s.backbones for s in cfg.extract] == [("resnet50", "resnet101"), ("tsm_r50",)]
    assert cfg.extract[1].weights == "kinetics400" and cfg.download.rate_per_hour == 250.0
    assert cfg.benchmark.files == ("configs/table1_resnet50.yaml", "configs/table1_resnet101.yaml")
    for f in cfg.benchmark.files:  # the grid files it names exist in the repository
        assert (CONFIGS.parent / f).is_file()


@pytest.mark.parametrize("change, message", [
    ({"extract": [{"backbone": ["resnet50"]}]},
     "unknown config key 'extract\\[0\\].backbone'.*did you mean 'backbones'"),
    ({"benchmark": {"jobz": 2}}, "unknown config key 'benchmark.jobz'"),
    ({"labels": "lists"}, "either `labels` or a `demo` section"),
    ({"demo": None}, "either `labels` or a `demo` section"),
    ({"demo": None, "labels": "lists", "download": {"url_template": "http://127.0.0.1:{port}/{id}.mp4"}},
     "there is no demo section"),
    ({"import_videos": {"dir": "v"}}, "choose one way to get the videos"),
    ({"download": {"workers": "two"}}, "download.workers: expected an integer"),
])
def test_bad_configs_are_errors_naming_the_key(tmp_path, change, message):
    data = {**read_file(CONFIGS / "demo.yaml"), **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_run_config(path)


def _tiny_config(tmp_path: Path) -> Path:
    data = {
        "workdir": str(tmp_path / "wd"),
        "threads": 1,
        "demo": {"dir": str(tmp_path / "src"), "seed": 1, "classes": 3, "max_train": 4, "min_train": 2,
                 "test_per_class": 2, "min_seconds": 2, "max_seconds": 2, "width": 32, "height": 32},
        "download": {"url_template": "http://127.0.0.1:{port}/{id}.mp4", "rate_per_hour": 1.0e6, "burst": 100,
                     "jitter_s": 0.0, "min_free_gb": 0.0},
        "extract": [{"backbones": ["resnet50"], "weights": "random", "names": ["r50"], "resize": 32, "crop": 32,
                     "frames": 2, "batch_size": 2, "workers": 0}],
        "benchmark": {"grid": {"name": "tiny", "features": [{"name": "r50", "backbone": "tiny"}],
                               "methods": [{"method": "baseline"}], "seeds": [0], "bootstrap": 0,
                               "train": {"epochs": 1, "batch_size": 8, "clip_len": 2, "workers": 0,
                                         "group_head": 3, "group_tail": 2}}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_run_completes_every_stage_and_a_rerun_does_nothing(tmp_path, capsys):
    config = _tiny_config(tmp_path)
    assert main(["run", str(config), "--no-progress", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    videos = 4 + 3 + 2 + 3 + 6  # train 4+3+2 labels (some paired), val 3, test 6: at most this many
    assert 0 < first["download"]["done"] == first["download"]["todo"] <= videos
    assert first["extract"][0]["done"] == first["download"]["done"]
    assert first["extract"][0]["split"]["torch_threads"] == 1  # the run's `threads`, not one per core
    assert [r["status"] for r in first["benchmarks"][0]["runs"]] == ["done"]
    wd = Workdir.open(tmp_path / "wd")
    with wd.manifest() as m:
        assert m.counts("download")["done"] == len(m.videos())
    assert (FeatureStore.open(wd.features_path("r50")).status() == STATUS_DONE).all()
    metrics = json.loads((wd.run_dir("baseline_r50_nonlinear_s0") / "metrics.json").read_text())
    assert 0.0 <= metrics["overall_map"] <= 1.0
    assert (wd.reports_dir / "tiny" / "report.md").is_file()

    assert main(["run", str(config), "--no-progress", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["download"]["todo"] == 0 and second["extract"][0]["videos"] == 0
    assert json.loads((wd.run_dir("baseline_r50_nonlinear_s0") / "metrics.json").read_text()) == metrics

    assert main(["run", str(config), "--no-progress"]) == 0  # the plain-text summary
    assert "download: 0 of 0 fetched" in capsys.readouterr().out
