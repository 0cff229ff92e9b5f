"""What a run directory holds, written atomically: checkpoints, config.json, train_log.csv and the
evaluation outputs (metrics.json, per_class_ap.csv, scores_<split>.npy); the state a run is in; whether
a config may reuse or resume it (`check_config`, the one such check); and how a run starts in it.
The files' names are `data.runfiles`'.

Every file is written to a temporary name and moved into place with `os.replace`, so a run killed
at any moment leaves either the old file or the new one, never half of one. The run's driver holds
the run's lock (`Workdir.run_lock`) while it writes, so no two processes write one folder.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import pickle
import random
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch

from videolt import atomic, jsonio
from videolt.data.labels import LabelSet
from videolt.data.runfiles import (CHECKPOINTS, checkpoint_path, config_path, metrics_path, per_class_ap_path,
                                     rows_path, scores_path)
from videolt.errors import ConfigError, UsageError
from videolt.evaluate import metrics

__all__ = ["CHECKPOINTS", "CHECKPOINT_FORMAT", "RESUME_FIELDS", "RUNTIME_FIELDS", "capture_rng", "check_config",
           "checkpoint_path", "load_checkpoint", "read_config", "restore_rng", "save_checkpoint", "save_npy",
           "setting_changes", "start", "state", "write_csv", "write_json", "write_metrics"]

log = logging.getLogger(__name__)

def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (`jsonio`): an empty class group's NaN mAP is written as null."""
    atomic.replace(path, lambda tmp: tmp.write_text(jsonio.dumps(obj) + "\n"))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic.replace(path, lambda tmp: tmp.write_text(buf.getvalue()))


# Checkpoints hold tensors and plain data only, so they load with `weights_only=True`: a run folder
# from elsewhere (a colleague's run, `decouple --from`, `init_from`) can never run code on load.
# Format 1 (videolt 0.1) pickled numpy and Python RNG states and is refused with one line.
CHECKPOINT_FORMAT = 2


def save_checkpoint(path: Path, state: dict) -> None:
    atomic.replace(path, lambda tmp: torch.save({**state, "format": CHECKPOINT_FORMAT}, tmp))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint of ours, loaded with `weights_only=True`; anything else is a `UsageError`."""
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _unsafe_globals(path)
        if unsafe and all(g.startswith("numpy.") for g in unsafe):
            raise UsageError(f"{path}: written by an older videolt (checkpoint format 1, with pickled numpy "
                             "state), which this version does not load; train the run again") from None
        what = ", ".join(unsafe) if unsafe else _first_line(e)
        raise UsageError(f"{path}: refused: the checkpoint holds pickled Python objects ({what}); "
                         "videolt loads only tensors and plain data") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        size = path.stat().st_size
        raise UsageError(f"{path}: not a readable checkpoint ({size} bytes: {_first_line(e)}); it may be "
                         "truncated: remove it to train the run again, or use another") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format", "none") if isinstance(state, dict) else type(state).__name__
        raise UsageError(f"{path}: checkpoint format {got}, expected {CHECKPOINT_FORMAT}; "
                         "it was written by another videolt version")
    return state


def _first_line(e: BaseException) -> str:
    """An exception's first line of text, or its type where it has none (torch's EOFError on an empty file)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _unsafe_globals(path: Path) -> list[str]:
    """The pickled classes and functions a checkpoint would need, read without unpickling it."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - only for the error message
        return []


def read_config(run_dir: Path) -> dict:
    """The `config` section of a run's config.json."""
    path = config_path(run_dir)
    if not path.is_file():
        raise UsageError(f"{run_dir}: not a run (no config.json)")
    config = _read_json(path).get("config")
    if not isinstance(config, dict):
        raise UsageError(f"{path}: not a run config videolt wrote (no 'config' object)")
    return config


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: unreadable ({_first_line(e)})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a JSON object")
    return data


# Fields that never change what a run computes (the int8 cache aside: `setting_changes`): a finished
# run is reused, and an interrupted one resumed, whatever they say.
RUNTIME_FIELDS = frozenset({"workers", "preload", "cache", "device"})
# Fields that may change when a run is resumed (an interrupted one, or a finished one trained on to
# more epochs): how long it trains and how often it is evaluated from there on.
RESUME_FIELDS = frozenset({"epochs", "eval_every"})


def setting_changes(saved: Mapping[str, Any], now: Mapping[str, Any], *, resuming: bool) -> list[str]:
    """Keys whose values differ between a run's recorded config and a new one, `RUNTIME_FIELDS` aside
    (and `RESUME_FIELDS` when `resuming`), except that the cache counts when it changes the features a
    run reads (int8 against exact fp16)."""
    ignored = RUNTIME_FIELDS | RESUME_FIELDS if resuming else RUNTIME_FIELDS
    changed = {k for k in now if k not in ignored and saved.get(k) != now[k]}
    if (saved.get("cache") == "int8") != (now.get("cache") == "int8"):
        changed.add("cache")
    return sorted(changed)


def check_config(run_dir: Path, config: Mapping[str, Any], *, resuming: bool,
                 remedy: str = "choose another --run name") -> None:
    """Refuse `config` (a TrainConfig as a dict) for the run in `run_dir` where it would make another
    experiment: reusing a finished run (`remedy` says what to do instead) or resuming one."""
    changed = setting_changes(read_config(run_dir), config, resuming=resuming)
    if not changed:
        return
    if resuming:
        raise ConfigError(f"{run_dir}: cannot resume with a changed config ({', '.join(changed)})")
    raise ConfigError(f"{run_dir}: finished with other settings ({', '.join(changed)}); {remedy}")


RunState = Literal["finished", "interrupted", "started", "none"]


def state(run_dir: Path) -> RunState:
    """finished: its test metrics written; interrupted: a last checkpoint to resume from; started:
    its config.json only (it failed or was stopped before its first checkpoint); none: no run."""
    if metrics_path(run_dir).is_file():
        return "finished"
    if checkpoint_path(run_dir, "last").is_file():
        return "interrupted"
    return "started" if config_path(run_dir).is_file() else "none"


def start(run_dir: Path, config: dict, *, resume: bool, writer: bool = True) -> Literal["fresh", "resume"] | dict:
    """How a run starts in `run_dir` with `config` (a TrainConfig as a dict), from what the folder holds.

    - finished with this config: its metrics (dict); nothing is trained again. With other settings,
      refused; with other `epochs`, refused unless `resume` (then trained on, as `check_config` allows).
    - interrupted: "resume" with `resume` (refused if `check_config` refuses), else refused naming --resume.
    - started (failed or killed before its first checkpoint): "fresh", its stale best checkpoints
      removed (by the `writer`), whatever `resume` says.
    - no run: "fresh"; with `resume`, refused (nothing to resume).
    Only the writer changes anything, so every DDP rank reaches the same answer.
    """
    found = state(run_dir)
    if found == "finished":
        saved = read_config(run_dir)
        same_length = saved.get("epochs") == config.get("epochs")
        check_config(run_dir, config, resuming=not same_length)
        if same_length:
            return _read_json(metrics_path(run_dir))
        if not (resume and checkpoint_path(run_dir, "last").is_file()):
            raise UsageError(f"{run_dir}: finished after {saved.get('epochs')} epochs; pass --resume to train it on "
                             f"to {config.get('epochs')}, or choose another --run name")
        return "resume"
    if found == "interrupted":
        if resume:
            check_config(run_dir, config, resuming=True)
            return "resume"
        raise UsageError(f"{run_dir}: interrupted before it finished (last.pt holds its last checkpoint); "
                         "pass --resume to continue it, or choose another --run name")
    if found == "started":
        log.info("%s: no checkpoint yet (it failed or was stopped early); starting it again", run_dir)
        if writer:
            for which in CHECKPOINTS:
                checkpoint_path(run_dir, which).unlink(missing_ok=True)
        return "fresh"
    if resume:
        raise UsageError(f"{run_dir}: nothing to resume (no such run); drop --resume to start it")
    return "fresh"


def capture_rng() -> dict:
    """Global RNG states (torch, CUDA, numpy, python) as tensors and plain data, so a resumed run
    draws what an uninterrupted one would."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": py_gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["words"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_metrics(run_dir: Path, *, split: str, scores: np.ndarray, targets: np.ndarray, rows: np.ndarray,
                  labels: LabelSet, head: int, tail: int, extra: dict, tag: str = "") -> dict:
    """metrics.json (metrics_<split>.json for a non-test split; `tag` appended to every name, e.g.
    "_selected_on_val"), per_class_ap.csv, scores and rows.

    Scores are kept as float32, the very numbers the metrics were computed from, with the store rows
    they belong to, for later bootstraps and reports.
    """
    groups = labels.groups(head, tail)
    summary = metrics.summarize(scores, targets, groups)
    ap = metrics.average_precision(scores, targets)
    result = {k: float(summary[k]) for k in metrics.METRIC_KEYS} | {"split": split, "videos": int(len(rows))} | extra
    write_json(metrics_path(run_dir, split, tag), result)
    group_of = labels.group_of(head, tail)
    write_csv(per_class_ap_path(run_dir, split, tag), ["class_id", "name", "group", "train_count", "ap"],
              [[c.id, c.name, group_of[c.id], c.count, f"{ap[c.id]:.6f}"] for c in labels.classes])
    save_npy(scores_path(run_dir, split, tag), scores.astype(np.float32))
    save_npy(rows_path(run_dir, split, tag), np.asarray(rows, dtype=np.int64))
    return result


def save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a temporary name
            np.save(f, array)

    atomic.replace(path, write)
