"""Every registered component, from the registries' own `describe()`: the table of docs/components.md.

`videolt components` prints it; tests/test_registry.py checks that the file is what it prints, so a
new component (one new file, docs/architecture.md) shows there once the file is regenerated.
"""

from __future__ import annotations

from typing import Any

from videolt.extract.backbones import BACKBONE_PREFIXES, BACKBONES
from videolt.extract.decoders import DECODERS
from videolt.registry import REQUIRED, Description, Registry
from videolt.train.aggregators import AGGREGATORS
from videolt.train.losses import LOSSES
from videolt.train.methods import METHODS
from videolt.train.mixes import BATCH_MIXES
from videolt.train.samplers import SAMPLERS

__all__ = ["FAMILIES", "components_markdown"]

# (title, the config keys that choose one, its registries); prefix registries list as "<prefix>:<name>".
FAMILIES: tuple[tuple[str, str, tuple[Registry[Any], ...]], ...] = (
    ("Backbones", "`backbones` (extract)", (BACKBONES, BACKBONE_PREFIXES)),
    ("Decoders", "`decoder` (extract)", (DECODERS,)),
    ("Aggregators", "`model` (train); options in `model_opts`", (AGGREGATORS,)),
    ("Losses", "`loss` (train; else the method's own); options in `loss_opts`", (LOSSES,)),
    ("Batch mixes", "the method; options in `method_opts`", (BATCH_MIXES,)),
    ("Samplers", "the method", (SAMPLERS,)),
    ("Methods", "`method` (train); its loss's and batch mix's options in `method_opts`", (METHODS,)),
)

HEADER = ("# Components\n\n"
          "Every registered component with its options and their defaults, generated from the registries "
          "(`videolt components > docs/components.md`; a test checks that this file is current). "
          "docs/architecture.md says where a new one goes.\n")


def components_markdown() -> str:
    """One Markdown table per family: name, one-line summary, options with their defaults."""
    parts = [HEADER]
    for title, key, registries in FAMILIES:
        rows = [_row(d, prefix=r is BACKBONE_PREFIXES) for r in registries for d in r.describe()]
        parts.append(f"## {title}\n\nChosen by {key}.\n\n| name | what it is | options (defaults) |\n|---|---|---|\n"
                     + "".join(rows))
    return "\n".join(parts)


def _row(d: Description, *, prefix: bool) -> str:
    name = f"{d.name}:<name>" if prefix else d.name
    options = ", ".join(f"`{k}`" if v is REQUIRED else f"`{k}={v!r}`" for k, v in d.options.items())
    return f"| `{name}` | {_cell(d.summary)} | {options} |\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
