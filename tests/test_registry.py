"""Registries build and describe: one `create` checks options against the factory's signature, and the
CLI help, the config docs and docs/components.md are derived from `describe()`.

The newcomer's check (docs/architecture.md): a toy loss written as one file into a folder of the
losses package's path is found by the same `import_modules` call the package makes on import; it then
trains, shows in `videolt train --help` and in the components table, and leaves all three when removed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import videolt.train.losses as losses_package
from tests.synthetic import make_workdir
from videolt.cli import main
from videolt.errors import ConfigError, UnknownNameError
from videolt.extract.backbones import list_backbones
from videolt.extract.decoders import DECODERS
from videolt.pipeline.components import components_markdown
from videolt.registry import REQUIRED, Registry, import_modules
from videolt.train.aggregators import AGGREGATORS
from videolt.train.losses import LOSSES
from videolt.train.methods import METHODS

REPO = Path(__file__).resolve().parents[1]


def _toy_registry() -> Registry:
    reg: Registry = Registry("widget", facts=("seed", "counts"), key="widget_opts")

    @reg.register("plain")
    def plain(size: int, *, seed: int = 0, width: int = 3, height: int = 4) -> dict:
        """A plain widget.

        Its second paragraph is not its summary."""
        return {"size": size, "seed": seed, "width": width, "height": height}

    @reg.register("counted")
    def counted(size: int, *, counts: np.ndarray, depth: int) -> dict:
        return {"size": size, "counts": counts, "depth": depth}

    return reg


def test_create_checks_options_and_hands_facts_only_to_takers() -> None:
    reg = _toy_registry()
    assert reg.create("plain", 5, facts={"seed": 7, "counts": None}, width=9) == {
        "size": 5, "seed": 7, "width": 9, "height": 4}  # counts: not taken, so not passed
    with pytest.raises(ConfigError) as err:
        reg.create("plain", 5, widht=9, colour=1)
    assert str(err.value) == ("widget_opts: widget 'plain' has no option colour, widht; did you mean width? "
                              "(options: width, height)")
    assert err.value.exit_code == 2
    with pytest.raises(ConfigError, match="widget_opts: widget 'plain' has no option seed"):  # a fact is no option
        reg.create("plain", 5, seed=1)
    with pytest.raises(ConfigError, match="widget 'counted' needs counts"):
        reg.create("counted", 5, facts={"counts": None}, depth=1)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'plian'; did you mean plain\? \(known: counted, plain"):
        reg.create("plian", 5)


def test_describe_gives_summaries_and_defaults() -> None:
    reg = _toy_registry()
    plain, counted = reg.describe()[::-1]
    assert (plain.name, plain.summary, plain.options) == ("plain", "A plain widget.", {"width": 3, "height": 4})
    assert (counted.summary, counted.options) == ("", {"depth": REQUIRED})
    reg.unregister("counted")
    assert reg.names() == ["plain"]


def _help(command: str, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # one line: argparse wraps the help at spaces


def test_help_and_config_docs_list_every_registered_name(capsys) -> None:
    train = _help("train", capsys)
    for flag, names in (("--model", AGGREGATORS.names()), ("--method", METHODS.names()), ("--loss", LOSSES.names())):
        listed = train.split(f"{flag} ", 2)[2].split(" [")[0]  # the flag's help, after its usage mention
        assert all(name in listed.replace(",", " ").split() for name in names), (flag, listed)
    extract = _help("extract", capsys)
    assert ", ".join(list_backbones()) in extract and ", ".join(DECODERS.names()) in extract


def test_docs_table_is_current(capsys) -> None:
    """docs/components.md is `videolt components`' output; regenerate it when a component changes."""
    assert main(["components"]) == 0
    assert capsys.readouterr().out == components_markdown()
    assert (REPO / "docs" / "components.md").read_text() == components_markdown(), \
        "docs/components.md is out of date: run `videolt components > docs/components.md`"


TOY_LOSS = '''
"""A toy loss: the Brier score of the sigmoid scores, in one file."""

import torch

from videolt.train.losses._base import LOSSES, MultiLabelLoss


@LOSSES.register("toy_brier")
class ToyBrier(MultiLabelLoss):
    """Brier score (σ(z) − y)², scaled by `weight`: the newcomer's toy loss."""

    def __init__(self, class_counts, *, weight: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.weight = weight

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * (torch.sigmoid(logits) - targets) ** 2
'''


@contextlib.contextmanager
def toy_loss_file(tmp_path: Path):
    """`toy_brier.py` in a folder of the losses package's path, imported as the package imports its modules;
    removed again (file, module, registration) on the way out."""
    folder = tmp_path / "losses"
    folder.mkdir()
    (folder / "toy_brier.py").write_text(textwrap.dedent(TOY_LOSS))
    losses_package.__path__.append(str(folder))
    try:
        import_modules(losses_package.__name__, losses_package.__path__)
        yield "toy_brier"
    finally:
        losses_package.__path__.remove(str(folder))
        sys.modules.pop(f"{losses_package.__name__}.toy_brier", None)
        if "toy_brier" in LOSSES:
            LOSSES.unregister("toy_brier")


def test_a_new_loss_is_one_file_and_trains_shows_in_help_and_in_the_table(tmp_path, capsys) -> None:
    with toy_loss_file(tmp_path) as toy_loss:
        _check_toy_loss(toy_loss, tmp_path, capsys)
    assert "toy_brier" not in LOSSES and "toy_brier" not in _help("train", capsys)
    assert "toy_brier" not in components_markdown()


def _check_toy_loss(toy_loss: str, tmp_path: Path, capsys) -> None:
    assert toy_loss in LOSSES
    assert f"`{toy_loss}`" not in (REPO / "docs" / "components.md").read_text()
    row = next(line for line in components_markdown().splitlines() if line.startswith(f"| `{toy_loss}` |"))
    assert "Brier score" in row and "`weight=1.0`" in row and "`reduction='mean'`" in row
    assert toy_loss in _help("train", capsys).split("--loss ", 2)[2].split(" [")[0]

    wd, syn = make_workdir(tmp_path / "synth", num_classes=6, videos=(60, 20, 30), dim=16)
    base = ["train", str(wd), "--features", "syn", "--loss", toy_loss, "--epochs", "1", "--batch-size", "16",
            "--workers", "0", "--device", "cpu", "--no-progress", "--set", f"group_head={syn.head}",
            "--set", f"group_tail={syn.tail}"]
    capsys.readouterr()
    assert main([*base, "--run", "typo", "--set", "loss_opts.wieght=2.0"]) == 2
    assert ("loss_opts: loss 'toy_brier' has no option wieght; did you mean weight? (options: weight, reduction)"
            in capsys.readouterr().err)
    assert main([*base, "--run", "toy", "--set", "loss_opts.weight=2.0", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and 0.0 <= metrics["overall_map"] <= 1.0
    config = json.loads((wd / "runs" / "toy" / "config.json").read_text())["config"]
    assert (config["loss"], config["loss_opts"], config["method"]) == (toy_loss, {"weight": 2.0}, "baseline")

