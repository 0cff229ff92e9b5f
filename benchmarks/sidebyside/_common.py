"""What the side-by-side harnesses share: the authors' code at its pinned commit, a CPU shim to run it
unmodified, the synthetic sets both sides train on, and the statistics of the comparisons.

The authors' code is never part of this repository. A harness reads it from a checkout the user
names (`--source DIR`, or the environment variable of that reference), or clones it with `--clone`
into a cache folder outside the repository (`--cache`, default `~/.cache/videolt-sidebyside`) on a
machine with internet. The files a harness imports are checked against their SHA-256 at the pinned
commit, so a checkout at another commit is refused in one line instead of giving other numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # videolt, and tests/synthetic.py (the data maker)

PYTHON = sys.executable


@dataclass(frozen=True)
class Reference:
    """An authors' repository at the commit the side-by-side figures were recorded with."""

    repo: str  # owner/name on GitHub
    commit: str
    subdir: str  # the folder their scripts run from ("" for the repository root)
    env: str  # environment variable naming an existing checkout
    files: dict[str, str]  # path under `subdir` → SHA-256 of the file at `commit`


def add_source_args(parser: argparse.ArgumentParser, ref: Reference) -> None:
    parser.add_argument("--source", help=f"a checkout of {ref.repo} at {ref.commit[:7]} (default: ${ref.env})")
    parser.add_argument("--clone", action="store_true", help="clone it into --cache when no checkout is given")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "videolt-sidebyside",
                        help="where --clone puts it (outside the repository)")


def checkout(ref: Reference, source: str | None, *, clone: bool = False, cache: Path | None = None) -> Path:
    """The folder of the authors' code their scripts run from, verified against the pinned commit."""
    path = source or os.environ.get(ref.env)
    if not path and clone:
        path = str(_clone(ref, cache or Path.home() / ".cache" / "videolt-sidebyside"))
    if not path:
        sys.exit(f"no checkout of {ref.repo}: pass --source DIR (at {ref.commit[:7]}), set {ref.env}, or --clone")
    root = Path(path).expanduser().resolve()
    work = root / ref.subdir if ref.subdir and (root / ref.subdir).is_dir() else root
    for rel, digest in ref.files.items():
        f = work / rel
        if not f.is_file():
            sys.exit(f"{f}: missing; {root} is not a checkout of {ref.repo} at {ref.commit[:7]}")
        if hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            sys.exit(f"{f}: differs from {ref.repo} at {ref.commit[:7]} (the figures were recorded with that commit)")
    return work


def _clone(ref: Reference, cache: Path) -> Path:
    dest = cache / f"{ref.repo.replace('/', '+')}-{ref.commit[:7]}"
    if not (dest / ".git").is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", f"https://github.com/{ref.repo}.git", str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", ref.commit], check=True)
    return dest


def install_cpu_shim() -> None:
    """Let CUDA-only research code run on the CPU without editing it: `.cuda()` returns its object
    unchanged, `torch.load` maps to the CPU, and `tensorboardX` (logging only) is a stub."""
    import torch

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    load = torch.load
    torch.load = lambda *args, **kwargs: load(*args, **{**kwargs, "map_location": "cpu"})  # type: ignore[assignment]

    class SummaryWriter:  # noqa: D401 - a stand-in that records nothing
        def __init__(self, *args: object, **kwargs: object) -> None: ...

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return lambda *args, **kwargs: None

    sys.modules["tensorboardX"] = types.SimpleNamespace(SummaryWriter=SummaryWriter)  # type: ignore[assignment]


def import_from(work: Path, *modules: str) -> list[types.ModuleType]:
    """Import the authors' modules (their top-level packages `models`, `ops`, ...) from `work`."""
    import importlib

    if str(work) not in sys.path:
        sys.path.insert(0, str(work))
    return [importlib.import_module(name) for name in modules]


def make_set(root: Path, *, features: str, **synthetic: object) -> dict:
    """The synthetic set of `tests/synthetic.py` as both sides read it: `<id>.npy` files and label lists
    (theirs) and a videolt workdir holding the same numbers as a float32 feature set (ours). Made once
    per `root`; a `root` made with other settings is refused."""
    from tests.synthetic import make_synthetic

    stamp = root / "set.json"
    wanted = {"features": features, **{k: list(v) if isinstance(v, tuple) else v for k, v in synthetic.items()}}
    if stamp.is_file():
        made = json.loads(stamp.read_text())
        if made["settings"] != wanted:
            sys.exit(f"{root}: holds a set made with {made['settings']}, not {wanted}; use another --work folder")
        return made
    syn = make_synthetic(root / "src", **synthetic)  # type: ignore[arg-type]
    wd = root / "wd"
    run_videolt("init", str(wd), "--labels", str(syn.labels_dir), log=root / "init.log")
    run_videolt("import-features", str(wd), "--name", features, "--npy-dir", str(syn.npy_dir), "--dtype", "float32",
                log=root / "import.log")
    made = {"settings": wanted, "labels": str(syn.labels_dir), "npy": str(syn.npy_dir), "workdir": str(wd),
            "head": syn.head, "tail": syn.tail}
    stamp.write_text(json.dumps(made, indent=1))
    return made


def run_videolt(*args: str, log: Path | None = None) -> None:
    """`python -m videolt ARGS` with this repository's code, stdout and stderr to `log` (or inherited)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = open(log, "w") if log else None
    try:
        subprocess.run([PYTHON, "-m", "videolt", *args], check=True, env=env, stdout=out, stderr=out)
    finally:
        if out:
            out.close()


METRICS = ("overall_map", "head_map", "medium_map", "tail_map", "acc1", "acc5")


def print_runs(rows: dict[str, dict[int, dict]], seeds: list[int]) -> None:
    """The per-seed table of both codes ({"theirs" | "ours": {seed: metrics + "epoch"}}), then the means ± std,
    their difference and Welch's p over the seeds both have."""
    print("| seed | code | mAP | head | medium | tail | Acc@1 | Acc@5 | best epoch |\n|---|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        for code in ("theirs", "ours"):
            if seed in rows[code]:
                r = rows[code][seed]
                print(f"| {seed} | {code} | " + " | ".join(f"{r[k]:.4f}" for k in METRICS) + f" | {r['epoch']} |")
    shared = [s for s in seeds if s in rows["theirs"] and s in rows["ours"]]
    if shared:
        print(f"\nseeds {', '.join(map(str, shared))}:\n\n| metric | theirs | ours | ours − theirs | Welch p |"
              "\n|---|---|---|---|---|")
        for k in METRICS:
            a, b = [rows["theirs"][s][k] for s in shared], [rows["ours"][s][k] for s in shared]
            print(f"| {k} | {mean_std(a)} | {mean_std(b)} | {statistics.mean(b) - statistics.mean(a):+.4f} | "
                  f"{welch_p(a, b):.2f} |")


TEST_LINE = re.compile(r"Test Epoch (\d+): Acc@1: ([\d.]+) \| Acc@5: ([\d.]+) \| mAP: ([\d.]+)")  # both codes print it


def best_logged_test(log: Path, groups_line: re.Pattern, evaluations: int) -> dict | None:
    """The best of their `Test Epoch` lines in `log` (epoch, Acc@1 %, Acc@5 %, mAP) with its group mAPs (the
    `groups_line` their validate printed before it: overall, head, medium, tail); None until the run logged
    all its `evaluations`."""
    if not log.is_file():
        return None
    text = log.read_text()
    tests, groups = TEST_LINE.findall(text), groups_line.findall(text)
    if len(tests) < evaluations or len(groups) != len(tests):
        return None
    best = max(range(len(tests)), key=lambda i: (float(tests[i][3]), -i))
    epoch, acc1, acc5, overall = tests[best]
    _, head, medium, tail = groups[best]
    return {"overall_map": float(overall), "head_map": float(head), "medium_map": float(medium),
            "tail_map": float(tail), "acc1": float(acc1) / 100, "acc5": float(acc5) / 100, "epoch": int(epoch) + 1}


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "–"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value (NaN with fewer than two values on a side)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def file_hashes(work: Path, files: list[str]) -> dict[str, str]:
    """SHA-256 of `files` under `work` (how the pinned hashes of a Reference were made)."""
    return {f: hashlib.sha256((work / f).read_bytes()).hexdigest() for f in files}
