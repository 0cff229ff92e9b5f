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
