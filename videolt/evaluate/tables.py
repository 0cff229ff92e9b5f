"""Paper-style tables from runs' metrics: pure builders (plain dicts in, rows out) and md/csv/json writers.

A *record* is one finished run: `{"run", "label", "backbone", "features", "aggregator", "seed", "method_key",
"metrics": {overall_map, ...}}`. Rows are grouped into *blocks* (one feature set and aggregator, as the
paper's column groups) and within a block into one row per label, with the mean ± sample standard
deviation (ddof=1) over seeds. With a single seed the standard deviation is undefined and left blank
(`None` in JSON). Paper rows are matched on (backbone, aggregator, method_key) and followed by the
difference ours − paper.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from videolt import atomic, jsonio
from videolt.evaluate.metrics import METRIC_KEYS
from videolt.evaluate.stats import paired_seed_comparison

__all__ = ["METRICS", "METRIC_TITLES", "SELECTION_METRICS", "TABLE_TITLES", "block_key", "markdown", "mean_std",
           "paired_rows", "result_rows", "selection_markdown", "selection_rows", "simple_markdown", "write_csv",
           "write_json", "write_markdown"]

METRICS = METRIC_KEYS  # the columns of every table
METRIC_TITLES = {"overall_map": "mAP", "head_map": "head", "medium_map": "medium", "tail_map": "tail",
                 "acc1": "Acc@1", "acc5": "Acc@5"}
TABLE_TITLES = {
    "table1": "Table 1: long-tail methods × backbones (NonLinear aggregator)",
    "table2": "Table 2: NonLinear vs NetVLAD aggregators",
    "table3": "Table 3: FrameStack's mixing weight β (AP, fixed 0.5, class frequency)",
    "table4": "Table 4: loss under FrameStack",
    "table5": "Table 5: FrameStack's mix ratio η",
    "table6": "Table 6 (beyond the paper): MOVE, multi-label long-tail losses, FrameStack, with their controls",
    "custom": "Benchmark results",
}
BACKBONE_TITLES = {"resnet50": "ResNet-50", "resnet101": "ResNet-101", "tsm_r50": "TSM-R50"}
AGGREGATOR_TITLES = {"nonlinear": "NonLinear", "netvlad": "NetVLAD", "move": "MOVE aggregator"}


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); the deviation is None for fewer than two values."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def block_key(record: Mapping) -> tuple[str, str, str]:
    """(backbone, features, aggregator): one column group of the paper's tables."""
    return record["backbone"], record["features"], record["aggregator"]


def control_block(block: tuple[str, str, str], control: str, present: Iterable[tuple]) -> tuple[str, str, str] | None:
    """The block holding a comparison's `control` label for a treatment in `block`: `block` itself if it
    has the label, else another aggregator's block of the same feature set (a row trained with an
    aggregator of its own, e.g. MOVE's, against a NonLinear control). `present`: (backbone, features,
    aggregator, label, ...) keys."""
    have = {tuple(k[:3]) for k in present if k[3] == control}
    if block in have:
        return block
    others = sorted(b for b in have if b[:2] == block[:2])
    return others[0] if others else None


def result_rows(records: Iterable[Mapping], paper: Sequence[Mapping] = ()) -> list[dict]:
    """One row per (block, label) in first-seen order: mean ± std over seeds, then paper and Δ rows.

    A paper entry holds `backbone`, `aggregator`, `method_key`, the metric keys it reports and `source`.
    """
    groups: dict[tuple, list[Mapping]] = {}
    for r in records:
        groups.setdefault((*block_key(r), r["label"]), []).append(r)
    rows = []
    for (backbone, features, aggregator, label), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        row = {"backbone": backbone, "features": features, "aggregator": aggregator, "method": label,
               "source": "ours", "seeds": len(runs), "runs": [r["run"] for r in runs]}
        for k in METRICS:
            values = [r["metrics"][k] for r in runs if r["metrics"].get(k) is not None]
            row[k], row[f"{k}_std"] = mean_std(values) if values else (None, None)
        rows.append(row)
        ref = _match(paper, backbone, aggregator, runs[0]["method_key"])
        if ref is not None:
            base = {"backbone": backbone, "features": features, "aggregator": aggregator, "seeds": None, "runs": []}
            rows.append(base | {"method": f"{label} (paper)", "source": "paper", "reference": ref.get("source", ""),
                                **{k: ref.get(k) for k in METRICS}, **{f"{k}_std": None for k in METRICS}})
            rows.append(base | {"method": f"{label} − paper", "source": "ours − paper",
                                **{k: _sub(row[k], ref.get(k)) for k in METRICS},
                                **{f"{k}_std": None for k in METRICS}})
    return rows


def paired_rows(records: Iterable[Mapping], comparisons: Sequence[tuple[str, str]]) -> list[dict]:
    """Treatment − control per block over the seeds both have: mean ± std of the differences, n positive."""
    by: dict[tuple, dict[int, Mapping]] = {}
    for r in records:
        by.setdefault((*block_key(r), r["label"]), {})[r["seed"]] = r
    blocks = list(dict.fromkeys(k[:3] for k in by))
    rows = []
    for block in blocks:
        for treatment, control in comparisons:
            other = control_block(block, control, by)
            a, b = by.get((*block, treatment), {}), by.get((*other, control), {}) if other else {}
            seeds = sorted(set(a) & set(b))
            if not seeds:
                continue
            name = f"{control} [{other[2]}]" if other != block else control
            row = {"backbone": block[0], "features": block[1], "aggregator": block[2],
                   "comparison": f"{treatment} − {name}", "treatment": treatment, "control": control,
                   "seeds": len(seeds), "pairs": [[a[s]["run"], b[s]["run"]] for s in seeds]}
            for k in METRICS:
                have = [s for s in seeds if a[s]["metrics"].get(k) is not None and b[s]["metrics"].get(k) is not None]
                if not have:
                    row[k], row[f"{k}_std"], row[f"{k}_positive"] = None, None, 0
                    continue
                stats = paired_seed_comparison({s: a[s]["metrics"][k] for s in have},
                                               {s: b[s]["metrics"][k] for s in have})
                std = stats["std_difference"]
                row[k], row[f"{k}_std"] = stats["mean_difference"], None if math.isnan(std) else std
                row[f"{k}_positive"] = stats["n_positive"]
            rows.append(row)
    return rows


SELECTION_METRICS = ("overall_map", "head_map", "medium_map", "tail_map")


def selection_rows(records: Iterable[Mapping]) -> list[dict]:
    """Per (block, label): test mAPs of the test-selected and the validation-selected checkpoints.

    A record's `selection` maps "test" and "val" to the test metrics of the checkpoint each split
    picked. Each row holds, per group, the mean over seeds of both and the mean ± std of their
    per-seed difference (test-selected − validation-selected: how much test selection flatters).
    """
    groups: dict[tuple, list[Mapping]] = {}
    for r in records:
        if {"test", "val"} <= set(r.get("selection") or {}):
            groups.setdefault((*block_key(r), r["label"]), []).append(r)
    rows = []
    for (backbone, features, aggregator, label), runs in groups.items():
        row = {"backbone": backbone, "features": features, "aggregator": aggregator, "method": label,
               "seeds": len(runs), "runs": [r["run"] for r in sorted(runs, key=lambda r: r["seed"])]}
        for k in SELECTION_METRICS:
            pairs = [(r["selection"]["test"].get(k), r["selection"]["val"].get(k)) for r in runs]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            row[f"{k}_test_selected"] = mean_std([a for a, _ in pairs])[0] if pairs else None
            row[f"{k}_val_selected"] = mean_std([b for _, b in pairs])[0] if pairs else None
            row[f"{k}_difference"], row[f"{k}_difference_std"] = (mean_std([a - b for a, b in pairs]) if pairs
                                                                  else (None, None))
        rows.append(row)
    return rows


def _blocks(rows: Sequence[Mapping]) -> list[tuple[str, list[Mapping]]]:
    """Rows grouped by block in first-seen order, each with its Markdown heading."""
    blocks: dict[tuple, list[Mapping]] = {}
    for r in rows:
        blocks.setdefault(block_key(r), []).append(r)
    return [(f"### {BACKBONE_TITLES.get(b, b)} · {AGGREGATOR_TITLES.get(a, a)} (features `{f}`)", block)
            for (b, f, a), block in blocks.items()]


def selection_markdown(title: str, rows: Sequence[Mapping]) -> str:
    """One table per block: per group "test-selected / validation-selected (difference ± std)"."""
    out = [f"## {title}", ""]
    for heading, block in _blocks(rows):
        header = ["method", "seeds", *(METRIC_TITLES[k] for k in SELECTION_METRICS)]
        out += [heading, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in block:
            cells = []
            for k in SELECTION_METRICS:
                if r[f"{k}_test_selected"] is None:
                    cells.append("–")
                    continue
                diff = f"{r[f'{k}_difference']:+.3f}"
                if r[f"{k}_difference_std"] is not None:
                    diff += f" ± {r[f'{k}_difference_std']:.3f}"
                cells.append(f"{r[f'{k}_test_selected']:.3f} / {r[f'{k}_val_selected']:.3f} ({diff})")
            out.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def markdown(title: str, rows: Sequence[Mapping], *, kind: str = "results") -> str:
    """A Markdown section: one table per block, metrics as `mean ± std` (3 decimals)."""
    out = [f"## {title}", ""]
    label_col = "comparison" if kind == "paired" else "method"
    for heading, block in _blocks(rows):
        header = [label_col, "seeds", *(METRIC_TITLES[k] for k in METRICS)]
        out += [heading, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in block:
            signed = kind == "paired" or r.get("source") == "ours − paper"
            cells = [_md_value(r, k, signed=signed, paired=kind == "paired") for k in METRICS]
            out.append(f"| {r[label_col]} | {'' if r.get('seeds') is None else r['seeds']} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def write_markdown(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def write_csv(path: Path, rows: Sequence[Mapping]) -> None:
    """All keys of all rows as columns (lists as JSON); None as an empty cell."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else json.dumps(r[c]) if isinstance(r.get(c), (list, dict))
                    else _csv_value(r[c]) for c in columns])
    atomic.write_text(path, buf.getvalue())


def write_json(path: Path, data: object) -> None:
    """Strict JSON: NaN (e.g. the mAP of an empty class group) is written as null."""
    atomic.write_text(path, jsonio.dumps(data, default=_json_default) + "\n")


def _match(paper: Sequence[Mapping], backbone: str, aggregator: str, key: str) -> Mapping | None:
    for p in paper:
        if p["backbone"] == backbone and p["aggregator"] == aggregator and p["method_key"] == key:
            return p
    return None


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _md_value(row: Mapping, key: str, *, signed: bool, paired: bool) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    text = f"{v:+.3f}" if signed else f"{v:.3f}"
    std = row.get(f"{key}_std")
    if std is not None:
        text += f" ± {std:.3f}"
    if paired:
        text += f" ({row[f'{key}_positive']}/{row['seeds']} > 0)"
    return text


def _csv_value(v: object) -> str:
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def simple_markdown(title: str, columns: Sequence[str], rows: Sequence[Mapping]) -> str:
    """A plain Markdown table of `columns` (floats to 4 decimals, signed where the column says so)."""
    out = [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_plain(r.get(c), signed=c in _SIGNED) for c in columns) + " |")
    return "\n".join(out) + "\n"


_SIGNED = {"difference", "diff_low", "diff_high"}


def _plain(v: object, *, signed: bool) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:+.4f}" if signed else f"{v:.4f}"
    return str(v)
