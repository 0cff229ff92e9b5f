"""Strict JSON for every file videolt writes and everything `--json` prints.

Python's `json` writes a float NaN or infinity as the bare words `NaN` and `Infinity`, which no
strict JSON reader accepts; an empty class group's mAP is such a NaN. Here they become `null`, and
`allow_nan=False` makes any that slips through an error rather than a file other tools cannot read.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

__all__ = ["dumps", "finite"]


def finite(data: Any) -> Any:
    """`data` with every non-finite float (NaN, ±inf) replaced by None, through dicts, lists and tuples."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def dumps(data: Any, *, indent: int | None = 2, sort_keys: bool = False,
          default: Callable[[Any], Any] | None = None) -> str:
    """`json.dumps` of `finite(data)`, refusing any NaN left (e.g. one a `default` returned)."""
    return json.dumps(finite(data), indent=indent, sort_keys=sort_keys, allow_nan=False, default=default)
