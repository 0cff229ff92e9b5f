from dataclasses import dataclass
from typing import Literal

import pytest

from videolt.config import field, from_dict, load_config, parse_overrides, to_dict
from videolt.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    clusters: int = field(64, "NetVLAD clusters")


@dataclass(frozen=True)
class Cfg:
    epochs: int = field(100, "epochs")
    lr: float = field(1e-4, "learning rate")
    model: Literal["nonlinear", "netvlad"] = field("nonlinear", "aggregator")
    milestones: tuple[int, ...] = field((30, 60), "lr steps")
    amp: bool | None = field(None, "autocast; None = on CUDA only")
    inner: Inner = field(Inner(), "nested section")
    opts: dict = field({}, "free-form options")


def test_defaults_file_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("epochs: 5\ninner:\n  clusters: 8\n")
    (tmp_path / "b.toml").write_text('model = "netvlad"\nlr = 1\n')
    cfg = load_config(Cfg, [tmp_path / "a.yaml", tmp_path / "b.toml"], ["milestones=[1, 2]", "inner.clusters=4",
                                                                         "amp=true", "opts.gamma=2"])
    assert cfg == Cfg(epochs=5, lr=1.0, model="netvlad", milestones=(1, 2), amp=True, inner=Inner(4),
                      opts={"gamma": 2})
    assert to_dict(cfg)["milestones"] == [1, 2]
    assert load_config(Cfg) == Cfg()


@pytest.mark.parametrize("data,fragment", [
    ({"epoch": 3}, "unknown config key 'epoch' (did you mean 'epochs'?)"),
    ({"epochs": "3"}, "epochs: expected an integer"),
    ({"epochs": True}, "epochs: expected an integer"),
    ({"lr": "fast"}, "lr: expected a number"),
    ({"model": "rnn"}, "model: expected one of 'nonlinear', 'netvlad'"),
    ({"milestones": 30}, "milestones: expected a list"),
    ({"milestones": [30, "x"]}, "milestones[1]: expected an integer"),
    ({"inner": {"cluster": 3}}, "unknown config key 'inner.cluster'"),
    ({"amp": "yes"}, "amp: expected true or false"),
])
def test_errors_name_the_key(data, fragment):
    with pytest.raises(ConfigError) as e:
        from_dict(Cfg, data)
    assert fragment in str(e.value)


def test_bad_override_and_files(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["epochs"])
    (tmp_path / "bad.yaml").write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Cfg, [tmp_path / "bad.yaml"])
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(Cfg, [tmp_path / "none.yaml"])
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Cfg, [tmp_path / "list.yaml"])
