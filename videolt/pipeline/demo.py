"""`videolt demo`: the whole pipeline offline, in minutes, on a generated long-tailed video set.

The demo is an ordinary run config (the same one as `configs/demo.yaml`): generate the set, serve
its clips on 127.0.0.1 and fetch them with the real download stage, extract random-weight ResNet-50
features at a small size, train the baseline and FrameStack, and report head/medium/tail mAP.
Every stage skips finished work, so a second run only rebuilds the report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from videolt.config import from_dict, merge, parse_overrides
from videolt.data.labels import multi_hot
from videolt.data.protocol import FRAMES, GROUP_HEAD, GROUP_TAIL
from videolt.data.workdir import Workdir
from videolt.evaluate import tables
from videolt.extract.config import ExtractConfig, feature_set_names
from videolt.pipeline.run import RunConfig, run_pipeline
from videolt.train.config import TrainConfig

__all__ = ["DEMO_WORKDIR", "demo_config", "demo_settings", "format_demo", "run_demo"]

DEMO_WORKDIR = "demo-workdir"


def demo_settings(workdir: str | Path = DEMO_WORKDIR, *, seed: int = 0, weights: str = "random",
                  workers: int = 0) -> dict:
    """The demo's run config as plain data; `configs/demo.yaml` is this with the defaults."""
    features = feature_set_names(ExtractConfig(backbones=("resnet50",), weights=weights))[0]
    return {
        "workdir": str(workdir),
        "threads": 1,
        "demo": {"dir": f"{workdir}-source", "seed": seed},
        "download": {"url_template": "http://127.0.0.1:{port}/{id}.mp4", "workers": 4, "rate_per_hour": 1.0e6,
                     "burst": 1000, "jitter_s": 0.0, "socket_timeout": 10.0, "backoff_base_s": 1.0,
                     "min_free_gb": 0.5},
        "extract": [{"backbones": ["resnet50"], "weights": weights, "names": [features], "seed": seed,
                     "resize": 64, "crop": 64, "frames": 6, "batch_size": 6, "workers": workers, "device": "auto"}],
        "benchmark": {"jobs": 1, "grid": {
            "name": "demo", "table": "custom",
            "features": [{"name": features, "backbone": f"demo-{features}"}],
            "aggregators": ["nonlinear"],
            "methods": [{"method": "baseline", "label": "baseline (BCE)"},
                        {"method": "framestack", "label": "FrameStack"}],
            "seeds": [seed],
            "train": {"epochs": 40, "batch_size": 32, "lr": 1.0e-4, "milestones": [30], "eval_every": 5,
                      "clip_len": 6, "workers": 0, "cache": "fp16", "group_head": 20, "group_tail": 8},
            "comparisons": [{"treatment": "FrameStack", "control": "baseline (BCE)"}],
            "bootstrap": 200}},
    }


def demo_config(workdir: str | Path = DEMO_WORKDIR, *, seed: int = 0, weights: str = "random", workers: int = 0,
                overrides: Sequence[str] = ()) -> RunConfig:
    """The demo's `RunConfig` with `--set key=value` overrides applied (e.g. `demo.classes=4`)."""
    data = merge(demo_settings(workdir, seed=seed, weights=weights, workers=workers), parse_overrides(overrides))
    return from_dict(RunConfig, data)


def run_demo(config: RunConfig, *, progress: bool = True) -> dict:
    """Run the demo config; returns the stage summary, the result rows, the groups and chance level."""
    start = time.perf_counter()
    summary = run_pipeline(config, progress=progress)
    grid = config.benchmark.grid if config.benchmark is not None else None
    if grid is None:
        return {"summary": summary, "rows": []}
    report_dir = Path(summary["benchmarks"][-1]["report"]["dir"])
    rows = [r for r in json.loads((report_dir / "report.json").read_text())["results"] if r["source"] == "ours"]
    head, tail = grid.train.get("group_head", GROUP_HEAD), grid.train.get("group_tail", GROUP_TAIL)
    labels = Workdir.open(config.workdir).labels()
    groups = {g: len(ids) for g, ids in labels.groups(head, tail).items()}
    test = multi_hot(labels.splits["test"].labels, labels.num_classes)
    return {"summary": summary, "rows": rows, "report_dir": str(report_dir), "head": head, "tail": tail,
            "groups": groups, "chance_map": float(np.mean(test.mean(axis=0))), "deviations": deviations(config),
            "seconds": time.perf_counter() - start}


def deviations(config: RunConfig) -> list[str]:
    """How this run differs from the paper's recipe, read off the config (so overrides show)."""
    out = []
    for ex in config.extract:
        out.append(f"{', '.join(ex.backbones)} with {ex.weights} weights (paper: ImageNet)")
        out.append(f"frames resized to {ex.resize} and cropped to {ex.crop} px (paper: 256/256)")
        out.append(f"{ex.frames} frames per video (paper: {FRAMES})")
    grid = config.benchmark.grid if config.benchmark is not None else None
    if grid is not None:
        t = {f.name: f.default for f in dataclasses.fields(TrainConfig)} | grid.train  # the defaults, as overridden
        out.append(f"{t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']:g}, "
                   f"{t['clip_len']}-frame clips (paper: 100, 128, 1e-4, 60)")
        out.append(f"groups head > {t['group_head']}, tail <= {t['group_tail']} "
                   f"train videos (paper: {GROUP_HEAD}, {GROUP_TAIL})")
        out.append(f"best checkpoint picked on the {t['select_on']} list every "
                   f"{t['eval_every']} epochs (the reference's protocol)")
    return out


def format_demo(result: dict) -> str:
    """The printed report: the head/medium/tail table, groups, chance level and deviations."""
    if not result["rows"]:
        return "no benchmark in this config"
    lines = [tables.markdown("videolt demo: overall / head / medium / tail mAP on the test list", result["rows"])]
    g = result["groups"]
    lines.append(f"class groups by train videos: head > {result['head']} ({g['head']} classes), "
                 f"medium ({g['medium']}), tail <= {result['tail']} ({g['tail']})")
    lines.append(f"chance level (random scores): mAP ~ {result['chance_map']:.3f}")
    lines.append("deviations from the paper's recipe, to fit a few CPU minutes:")
    lines += [f"  - {d}" for d in result["deviations"]]
    lines.append(f"report and plots: {result['report_dir']}  ({result['seconds']:.0f} s)")
    return "\n".join(lines)

