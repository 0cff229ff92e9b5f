"""`videolt extract` builds its config one way: defaults ← `--config` files ← flags ← `--set`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.lists import small_lists
from videolt.cli import main
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir


def _extract(wd: Path, name: str, *extra: str) -> int:
    return main(["extract", str(wd), "--weights", "random", "--name", name, "--no-progress", "--json", *extra])


def test_config_file_then_flags_then_set(tmp_path, capsys):
    """No video is downloaded, so each run only creates its feature set, whose shape and provenance
    show the config it was given."""
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "lists", n_train=3, n_val=1, n_test=1)).root
    config = tmp_path / "extract.yaml"
    config.write_text(yaml.safe_dump({"frames": 4, "fps": 2.0, "resize": 40, "crop": 32}))

    def made(name: str) -> FeatureStore:
        assert json.loads(capsys.readouterr().out) == {"videos": 0, "done": 0, "failed": {}}
        return FeatureStore.open(Workdir.open(wd).features_path(name))

    assert _extract(wd, "file", "--config", str(config)) == 0
    store = made("file")
    assert store.frames == 4 and store.attrs["preprocessing"]["fps"] == 2.0  # fps: a key without a flag
    assert store.attrs["preprocessing"]["crop"] == 32
    assert _extract(wd, "flag", "--config", str(config), "--frames", "5") == 0
    assert made("flag").frames == 5
    assert _extract(wd, "set", "--config", str(config), "--frames", "5", "--set", "frames=6",
                    "--set", "timeout=60") == 0
    assert made("set").frames == 6
    assert _extract(wd, "defaults") == 0  # no file, no flag: the dataclass's defaults
    store = made("defaults")
    assert store.frames == 150 and store.attrs["preprocessing"]["fps"] == 1.0


def test_unknown_key_exits_2_with_one_line_naming_it(tmp_path, capsys):
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "lists", n_train=3, n_val=1, n_test=1)).root
    assert _extract(wd, "x", "--set", "fpz=2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("videolt extract: error: unknown config key 'fpz'"), err
    assert "did you mean 'fps'" in err[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("framez: 4\n")
    assert _extract(wd, "x", "--config", str(bad)) == 2
    assert "unknown config key 'framez'" in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("videolt ")]
    assert len(err) == 1, err
    return err[0]


def test_bad_backbones_exit_2_with_one_line_and_write_nothing(tmp_path, capsys):
    import timm
    import torch

    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "lists", n_train=3, n_val=1, n_test=1)).root
    r18 = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), r18)
    cases = [
        (["--backbone", "timm:vit_tiny_patch16_22"], "unknown timm model 'vit_tiny_patch16_22'; did you mean "
                                                     "timm:vit_tiny_patch16_224"),
        (["--backbone", "timm:vit_tiny_patch16_224", "--weights", str(r18)], "weights do not fit VisionTransformer"),
        # the first backbone is fine, the second is refused: neither feature set is created
        (["--backbone", "resnet50,timm:vit_base_patch16_sapiens2.fb"], "non-square 1024x768 (HxW) input; videolt "
                                                                       "feeds square centre crops: set crop (--crop) to 768"),
        (["--backbone", "timm:vit_tiny_patch16_224", "--crop", "100"], "16-px patches: set crop (--crop) to a "
                                                                      "multiple of 16 (e.g. 96 or 112)"),
        (["--backbone", "resnet50", "--resize", "200", "--crop", "224"], "set resize (--resize) at least the crop"),
    ]
    for args, message in cases:
        weights = [] if "--weights" in args else ["--weights", "random"]
        code = main(["extract", str(wd), *weights, *args, "--no-progress"])
        line = _one_error_line(capsys)
        assert code == 2 and line.startswith("videolt extract: error: ") and message in line, (args, line)
        assert not (wd / "features").exists() or not any((wd / "features").iterdir()), args


def test_verify_reports_each_video_and_fails_loudly_above_tolerance(tmp_path, capsys, caplog, monkeypatch):
    import logging

    import numpy as np

    from tests.test_backbone_families import make_workdir

    wd = make_workdir(tmp_path, n=3)
    base = ["extract", str(wd.root), "--backbone", "resnet50", "--weights", "random", "--name", "r", "--frames", "3",
            "--batch-size", "3", "--resize", "40", "--crop", "32", "--workers", "0", "--no-progress"]
    assert main(base) == 0
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="videolt.extract.verify"):
        assert main([*base, "--verify", "2"]) == 0  # nothing left to extract: it only verifies
    out = capsys.readouterr().out
    assert "extracted 0 of 0 videos" in out and "verified 2 video features against the reference path" in out
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("verify r ")]
    assert len(lines) == 2 and all("relative error" in line and line.endswith("ok") for line in lines)

    store = FeatureStore.open(wd.features_path("r"), mode="r+")
    row = store.read_rows([1])[0]
    store.write_row(1, (row.astype(np.float32) * 1.05).astype(np.float16), int(store.n_frames()[1]))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="videolt.extract.verify"):
        assert main([*base, "--verify", "3"]) == 1
    line = _one_error_line(capsys)
    assert "verify: 1 of 3 checked videos differ from the reference path by more than 2.0%" in line, line
    assert any("ABOVE TOLERANCE" in r.getMessage() for r in caplog.records)
    assert main([*base, "--verify", "3", "--verify-tolerance", "0.1"]) == 0  # the tolerance is settable
    capsys.readouterr()

    monkeypatch.setattr("videolt.extract.verify.shutil.which", lambda tool: None)
    assert main([*base, "--verify", "1"]) == 1
    line = _one_error_line(capsys)
    assert "--verify needs the ffmpeg CLI as its reference decoder, but ffmpeg is not on PATH" in line


def test_devices_that_cannot_be_had_exit_2_with_one_line(tmp_path, capsys):
    wd = Workdir.init(tmp_path / "wd", small_lists(tmp_path / "lists", n_train=3, n_val=1, n_test=1)).root
    cases = [(["--devices", "64"], "devices: 64 GPUs asked"),
             (["--devices", "cpu,cuda:0"], "devices: "),
             (["--device", "cpu", "--devices", "cpu,cpu"], "extract.devices and extract.device: set one")]
    for args, message in cases:
        assert main(["extract", str(wd), "--weights", "random", *args, "--no-progress"]) == 2, args
        line = _one_error_line(capsys)
        assert line.startswith("videolt extract: error: " + message), (args, line)
    assert not (wd / "features").exists() or not any((wd / "features").iterdir())
