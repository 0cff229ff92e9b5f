"""MOVE's code (wjun0830/MOVE, `VideoLT/`) next to videolt's: its classes at shrunk sizes, its draws
recorded and replayed into ours, weights copied between the two. Their files are imported unmodified;
everything here wraps them from outside.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import Reference, import_from, install_cpu_shim

# The components' class counts and clip labels (label 0 is the most frequent class, 8 and 9 the rarest).
COUNTS = np.array([175, 66, 31, 22, 16, 12, 9, 7, 5, 4])
LABELS = [[0, 1], [2], [1], [9], [0], [5, 7]]
# The end-to-end set and recipe of benchmarks/RESULTS.md ("End to end on a synthetic ... 2048-d set").
E2E_SET = dict(num_classes=20, videos=(600, 100, 300), dim=2048, frames=150, seed=0, signal=0.04)
E2E = dict(epochs=12, batch=16, eval_every=4, clusters=16, hidden=256, key_dim=128, lb=3.0, calib_bias=0.5)
# --smoke: the same code paths in seconds (their classes still take 2048-d features).
SMOKE_SET = dict(num_classes=6, videos=(48, 12, 24), signal=1.0)
SMOKE = dict(epochs=2, batch=8, eval_every=1, clusters=2, hidden=16, key_dim=8)


MOVE = Reference(
    repo="wjun0830/MOVE", commit="7928daae58d4197660a8d1ed70f8815836c280ac", subdir="VideoLT",
    env="VIDEOLT_SIDEBYSIDE_SOURCE_MOVE",
    files={
        "MOVE.py": "db14d0182602ea95fec7013e609ff141e040d10ed988d4a3e3555730a025f0c8",
        "opts.py": "09ee9125af874549a44bc5fb93713134c0f4b5afc88bda8ef0fd93925159b444",
        "base_main_Agg.py": "33d5edf68b43406e894e39a3163c0e0d062410e5b8d3992662f6c85223c6277c",
        "models/models.py": "126695a774c7fbf6227de8de55bcedc6fed0ab0bb76899f78a7b0bc4c1d1122d",
        "models/net_module.py": "52e5459460d0ff1fd4ba6f6d640bba66d94dcb660167180e07f20f7fc7853e33",
        "ops/Augment.py": "480e31e5e0f355dfde2246b964ed6dc48442536db9ef73101624b686aba20c6f",
        "ops/feature_loader.py": "bf70afb77e9ad2136107e8bea57492bc9dcf6ac9aa615e292a4c38f17b58a91b",
        "ops/losses.py": "8d5f3a42353f9c9a247ec409c59d5a5d28a75d40de02e74a76f1c7d95e7da2f4",
        "ops/mapmeter.py": "d06eb0e8dfea6e982ec3e55e7b965c2e2497da067b1c6d2b0c19dbe5d3dd6250",
        "ops/apmeter.py": "5b661372d9c72b6d681c8e5bd11edca61926fe60fa930cc51e7d3465d3fca203",
        "ops/utils.py": "a2ae614c3fd79e37df47f61a16379220dd90dbccc826947e9b5c39bece830a99",
        "tools/utils.py": "aae7518dadb0348bb8128904e0f6fdc8fc4ef814feb54cd62163d53ea28070dc",
        "dataset/dutils.py": "8f877aa9c2714d8a70df2caeb15c1fd91689d197e883b628e7f51b121166b171",
        "scripts/MOVE.sh": "2baee7fcc394a712b3cfa8b8945aca2452f58c50373141cfa253964b0a2e8f68",
    })

# Our aggregator's parameter and buffer names for theirs (MHA., vlad., cls. prefix their three modules).
WEIGHT_MAP = {
    "MHA.w_qs.weight": "attention.w_q.weight", "MHA.w_ks.weight": "attention.w_k.weight",
    "MHA.w_vs.weight": "attention.w_v.weight", "MHA.fc.weight": "attention.out.weight",
    "MHA.layer_norm.weight": "attention.norm.weight", "MHA.layer_norm.bias": "attention.norm.bias",
    "vlad.vlad.activation_fc.weight": "assign.weight", "vlad.vlad.gate_weight": "gate",
    "vlad.hidden_fc.weight": "project.weight", "cls.fc1.weight": "fc.weight", "cls.fc1.bias": "fc.bias",
    "cls.project.weight": "classifier.weight", "cls.project.bias": "classifier.bias",
    **{f"vlad.{theirs}.{k}": f"{ours}.{k}" for theirs, ours in
       (("bn1", "input_bn"), ("vlad.bn1", "assign_bn"), ("bn2", "project_bn"))
       for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
}


def load_theirs(work: Path) -> dict[str, Any]:
    """Their modules, imported from `work` under the CPU shim: {"models", "Augment", "losses", "mapmeter",
    "feature_loader"}."""
    install_cpu_shim()
    models, augment, losses, mapmeter, loader = import_from(work, "models.models", "ops.Augment", "ops.losses",
                                                            "ops.mapmeter", "ops.feature_loader")
    return {"models": models, "Augment": augment, "losses": losses, "mapmeter": mapmeter, "feature_loader": loader}


def sized_classes(models: Any, *, clusters: int, hidden: int, key_dim: int) -> dict[str, type]:
    """Their three classes at other sizes, built by their own code: NetVLAD clusters and hidden size
    (hard-coded 64 and 1024 in models.py:102-103: built as written, then replaced), attention key/value size
    (MOVE.py:119 passes 512), and the classifier's input D + hidden (MOVE.py:115 passes 3072). Subclasses, so
    their forwards run as written."""

    class NetVLAD(models.NetVLAD_Dynamic_Aggregator):
        def __init__(self, feature_dim: int = 2048, num_class: int = 1004):
            # Their own __init__ first, at their sizes, then the layers at ours: the random draws of those
            # initialisations are part of a seed's stream (with them the recorded runs' figures come back exactly).
            super().__init__(feature_dim, num_class)
            self.feature_size, self.add_batch_norm, self.relu = feature_dim, True, True
            self.vlad = models.NetVLAG_Dynamic_AGG(feature_size=feature_dim, cluster_size=clusters,
                                                   add_batch_norm=True, add_bias=False)
            self.hidden_fc = torch.nn.Linear(clusters * feature_dim, hidden, bias=False)
            self.bn1 = torch.nn.BatchNorm1d(feature_dim)
            self.bn2 = torch.nn.BatchNorm1d(hidden)
            self.relu1 = torch.nn.ReLU6()

    class Attention(models.MultiHeadAttention_Dynamic_Aggregator):
        def __init__(self, n_head: int = 4, d_model: int = 2048, d_k: int = 512, d_v: int = 512,
                     dropout: float = 0.1):
            super().__init__(n_head=n_head, d_model=d_model, d_k=key_dim, d_v=key_dim, dropout=dropout)

    class Classifier(models.NonlinearClassifier):
        def __init__(self, feature_dim: int = 3072, num_class: int = 1004):
            super().__init__(feature_dim - 3072 + 2048 + hidden, num_class)

    return {"NetVLAD_Dynamic_Aggregator": NetVLAD, "MultiHeadAttention_Dynamic_Aggregator": Attention,
            "NonlinearClassifier": Classifier}


class RecordedRandom:
    """A stand-in for the `random` module inside their models.py that records every draw it passes on:
    [(n, sampled frame indices)] in call order (`randint` gives n, the next `sample` its n frames)."""

    def __init__(self) -> None:
        self.draws: list[tuple[int, list[int]]] = []
        self.bounds: list[int] = []  # the lower bound each `randint` got (models.py:59, 166)

    def randint(self, a: int, b: int) -> int:
        self.bounds.append(int(a))
        return random.randint(a, b)

    def sample(self, population: Any, k: int) -> list[int]:
        out = random.sample(population, k)
        self.draws.append((k, list(out)))
        return out

    def clear(self) -> None:
        self.draws, self.bounds = [], []


class RecordedCalls:
    """A stand-in for a module inside their code (`np.random`, `torch` in Augment.py) that records what
    the named functions return: {name: [values]}."""

    def __init__(self, real: Any, *names: str, **attrs: Any):
        self._real, self._names, self._attrs = real, names, attrs
        self.calls: dict[str, list] = {name: [] for name in names}

    def __getattr__(self, name: str) -> Any:
        if name in self._attrs:
            return self._attrs[name]
        attr = getattr(self._real, name)
        if name not in self._names:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            self.calls[name].append(out)
            return out

        return call


class ReplayedDraws:
    """videolt's `FrameDraws` answering with their recorded draws of one training forward.

    Their order (models.py:58-67 then 165-173): for each clip the NetVLAD branch's two views; then for
    each clip the attention branch's two queries and its key mask. A NetVLAD view keeps its sampled
    frames (the others are zeroed), a query is the mean of its sampled frames, and the key mask masks
    out its sampled frames: every role's keep-mask is the sampled set."""

    def __init__(self, draws: list[tuple[int, list[int]]], batch: int, frames: int):
        if len(draws) != 5 * batch:
            raise ValueError(f"expected {5 * batch} recorded draws for {batch} clips, got {len(draws)}")
        vlad, attention = draws[:2 * batch], draws[2 * batch:]
        by_role = {"vlad_view1": vlad[0::2], "vlad_view2": vlad[1::2], "query1": attention[0::3],
                   "query2": attention[1::3], "key_mask": attention[2::3]}
        self.masks = {}
        for role, items in by_role.items():
            mask = torch.zeros(batch, frames, dtype=torch.bool)
            for i, (_, idx) in enumerate(items):
                mask[i, idx] = True
            self.masks[role] = mask

    def __call__(self, role: str, lower: torch.Tensor, frames: int) -> torch.Tensor:
        return self.masks[role]


def copy_weights(theirs: dict[str, torch.nn.Module], ours: torch.nn.Module) -> None:
    """Our aggregator takes their three modules' weights (theirs: {"MHA", "vlad", "cls"})."""
    state = {f"{prefix}.{k}": v for prefix, module in theirs.items() for k, v in module.state_dict().items()}
    target = ours.state_dict()
    for theirs_key, ours_key in WEIGHT_MAP.items():
        if ours_key in target and theirs_key in state:
            target[ours_key] = state[theirs_key].clone()
    ours.load_state_dict(target)


def grads_as_ours(theirs: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Their parameters' gradients under our names (parameters without one left out)."""
    out = {}
    for prefix, module in theirs.items():
        for k, p in module.named_parameters():
            name = WEIGHT_MAP.get(f"{prefix}.{k}")
            if name and p.grad is not None:
                out[name] = p.grad
    return out


def sampling_prob_and_smooth(move_module: Any, work_lists: Path, counts: np.ndarray, *, frames: int, lb: float,
                             calib_bias: float) -> tuple[np.ndarray, torch.Tensor]:
    """Their `MOVE.load_data` (MOVE.py:60-86) on a train list with these class counts: the frame lower
    bounds per class and the calibration factors."""
    work_lists.mkdir(parents=True, exist_ok=True)
    rows = [f"v{c:03d}{i:05d} {c}" for c, n in enumerate(counts) for i in range(int(n))]
    (work_lists / "train.lst").write_text("\n".join(rows) + "\n")
    move_module.args = argparse.Namespace(train_list=str(work_lists / "train.lst"),
                                          val_list=str(work_lists / "train.lst"), train_num_frames=frames,
                                          val_num_frames=150, batch_size=2, workers=0, lb=lb, calib_bias=calib_bias)
    _, _, sampling_prob, smooth = move_module.load_data(len(counts), str(work_lists))
    return sampling_prob, smooth


def lt_meters(num_classes: int) -> tuple[type, type]:
    """Their per-group accuracy and confidence meters (ops/utils.py) sized for `num_classes` (they hard-code
    1,004) and taking a label as `int(l)` of each element (numpy 2 refuses `int()` of a 1-element array).
    They only feed their progress prints."""

    class LTAverageMeter:
        def __init__(self, indices: list) -> None:
            self.tail, self.medium, self.head = indices
            self.sum, self.count = torch.zeros(num_classes), torch.zeros(num_classes)

        def update(self, val: torch.Tensor, target: list, n: int = 1) -> None:
            for idx, labels in enumerate(target):
                for label in np.atleast_1d(labels):
                    self.sum[int(label)] += float(val[idx])
                    self.count[int(label)] += 1

        def value(self) -> dict:
            avg = self.sum / self.count
            return {g: avg[getattr(self, g)][~torch.isnan(avg[getattr(self, g)])].mean()
                    for g in ("head", "medium", "tail")}

    class LTconfMeter(LTAverageMeter):
        def update(self, val: torch.Tensor, target: list, n: int = 1) -> None:
            for idx, labels in enumerate(target):
                for label in np.atleast_1d(labels):
                    self.sum[int(label)] += float(val[idx][int(label)])
                    self.count[int(label)] += 1

        def value(self) -> dict:
            out = super().value()
            return {**out, **{f"{g}_c": v for g, v in out.items()}}

    return LTAverageMeter, LTconfMeter


def their_modules(their: dict, d: int, c: int, *, dynamic: bool = True) -> dict[str, torch.nn.Module]:
    m = their["models"]
    if dynamic:
        return {"MHA": m.MultiHeadAttention_Dynamic_Aggregator(n_head=4, d_model=d, d_k=512, d_v=512, dropout=0.1),
                "vlad": m.NetVLAD_Dynamic_Aggregator(d, c), "cls": m.NonlinearClassifier(d + 1024, c)}
    return {"MHA": m.MultiHeadAttention_Aggregator(n_head=4, d_model=d, d_k=512, d_v=512, dropout=0.1),
            "vlad": m.NetVLADModel_Aggregator(d, c), "cls": m.NonlinearClassifier(d + 1024, c)}


def their_views(mods: dict, x: torch.Tensor, prob: np.ndarray, labels: list[str]) -> torch.Tensor:
    """MOVE.py:214-219: the two views [B, 2, E] of a training batch (attention first)."""
    v1, v2 = mods["vlad"](x, prob, label=labels, train=True)
    q, _ = mods["MHA"](x, x, x, prob, label=labels, train=True)
    return torch.stack([torch.cat([q[:, 0], v1], dim=1), torch.cat([q[:, 1], v2], dim=1)], dim=1)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def their_args(made: dict, seed: int, lr: float, out: Path) -> list[str]:
    """Their MOVE.py flags for the same recipe (scripts/MOVE.sh, shrunk as in benchmarks/RESULTS.md)."""
    return ["--feature_name", "ResNet101", "--num_class", str(E2E_SET["num_classes"]), "--lr", str(lr),
            "--lr_steps", "30", "60", "--epochs", str(E2E["epochs"]), "-b", str(E2E["batch"]), "-j", "0",
            "--eval-freq", str(E2E["eval_every"]), "--model_name", "NonlinearClassifier", "--train_num_frames", "60",
            "--val_num_frames", "150", "--loss_func", "BCELoss", "--lb", str(E2E["lb"]),
            "--calib_bias", str(E2E["calib_bias"]), "--head", str(made["head"]), "--tail", str(made["tail"]),
            "--seed", str(seed), "--root_log", str(out / "log"), "--root_model", str(out / "model"),
            "--store_name", f"s{seed}", "--print-freq", "100000"]
