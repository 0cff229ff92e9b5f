"""DDP training through torchrun (2 CPU processes, gloo) against the same run in one process.

The single-process run is the reference: with dropout off, two ranks that split every global
batch (the last one unevenly, or leaving a rank empty) must end with its weights, its metrics and,
for FrameStack, its running-AP vector.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.synthetic import make_workdir
from videolt.train.config import TrainConfig
from videolt.train.datasets import rank_share
from videolt.train.model import build_model
from videolt.train.trainer import rank_loss_weight, run_train

C = 6
TRAIN = 101  # batch 16: six full batches and one of 5 (3 + 2); batch 20: five full and one of 1 (1 + 0)


@pytest.mark.parametrize("n,world", [(16, 2), (5, 2), (1, 2), (0, 2), (7, 3), (2, 4), (9, 1)])
def test_rank_shares_tile_the_global_batch_in_order(n, world):
    batch = np.arange(100, 100 + n)
    shares = [rank_share(batch, r, world) for r in range(world)]
    np.testing.assert_array_equal(np.concatenate(shares), batch)  # together: the batch, in order
    sizes = [len(s) for s in shares]
    assert sizes == [n // world + (r < n % world) for r in range(world)]  # larger shares first


def test_rank_share_rejects_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank"):
        rank_share(np.arange(4), 2, 2)


def test_weighted_rank_gradients_average_to_the_global_batch_gradient():
    """DDP's average of the ranks' weighted-mean gradients equals one process's mean over the batch."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 4, generator=gen), (torch.rand(5, 3, generator=gen) > 0.5).float()
    w = torch.randn(4, 3, generator=gen, requires_grad=True)

    def grad(rows: np.ndarray, weight: float) -> torch.Tensor:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x[rows] @ w, y[rows])  # mean over B·C
        return torch.autograd.grad(loss * weight, w)[0]

    world = 2
    batch = np.arange(5)
    shares = [rank_share(batch, r, world) for r in range(world)]  # 3 + 2
    ddp = sum(grad(s, rank_loss_weight(len(s), len(batch), world)) for s in shares) / world
    torch.testing.assert_close(ddp, grad(batch, 1.0))
    unweighted = sum(grad(s, 1.0) for s in shares) / world
    assert not torch.allclose(unweighted, grad(batch, 1.0))  # what plain DDP averaging would give


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root, syn = make_workdir(tmp_path_factory.mktemp("ddp"), num_classes=C, videos=(TRAIN, 12, 24), dim=16,
                              frames=40, signal=1.5)
    return root, syn


def _config(syn, **changes) -> TrainConfig:
    fields = dict(features="syn", model_opts={"dropout": 0.0}, epochs=2, batch_size=16, lr=1e-2, eval_every=10,
                  workers=0, device="cpu", clip_len=20, group_head=syn.head, group_tail=syn.tail)
    return TrainConfig(**{**fields, **changes})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(root, run: str, config: TrainConfig) -> None:
    """`torchrun --nproc_per_node=2 -m videolt -- train ...` with the config given as flags and --set.

    The `--` is needed: torchrun's parser (Python 3.11 argparse) rejects `--run` anywhere on its
    command line as an ambiguous abbreviation of its own `--run-path`.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "videolt", "--", "train", str(root), "--features", config.features,
           "--run", run, "--method", config.method, "--epochs", str(config.epochs), "--batch-size",
           str(config.batch_size), "--lr", str(config.lr), "--workers", "0", "--device", "cpu", "--cache", config.cache,
           "--no-progress"]
    for key in ("eval_every", "clip_len", "group_head", "group_tail"):
        cmd += ["--set", f"{key}={getattr(config, key)}"]
    cmd += ["--set", f"model_opts.dropout={config.model_opts['dropout']}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("overall_map") == 1, proc.stdout  # rank 0 prints the metrics, rank 1 returns None


def _last(root, run: str) -> dict:
    return torch.load(root / "runs" / run / "last.pt", weights_only=True)


@pytest.mark.parametrize("method,batch_size,epochs,cache", [
    ("baseline", 16, 2, "int8"),  # last batch 5 → shares 3 and 2; the ranks share one int8 cache on disk
    ("framestack", 20, 1, "stream"),  # last batch 1 → rank 1's share is empty; epoch 0 measures the AP, mixes nothing
])
def test_two_ranks_match_one_process(synth, method, batch_size, epochs, cache):
    root, syn = synth
    config = _config(syn, method=method, batch_size=batch_size, epochs=epochs, cache=cache)
    single = run_train(root, f"{method}-single", config, progress=False)
    _torchrun(root, f"{method}-ddp", config)

    a, b = _last(root, f"{method}-single"), _last(root, f"{method}-ddp")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(a["model"]["fc.weight"], _fresh_fc(config))  # it did train
    ddp = json.loads((root / "runs" / f"{method}-ddp" / "metrics.json").read_text())
    assert ddp.keys() == single.keys()
    for k, v in single.items():
        assert ddp[k] == (pytest.approx(v, abs=1e-4) if isinstance(v, float) else v), k
    saved = json.loads((root / "runs" / f"{method}-ddp" / "config.json").read_text())
    assert saved["provenance"]["world_size"] == 2
    if method == "framestack":
        ap = a["batch_mix"]["running_ap"]["value"]
        assert ap.shape == (C,) and ap.min() > 0  # every class has train positives, so AP > 0
        np.testing.assert_allclose(b["batch_mix"]["running_ap"]["value"], ap, atol=1e-6)


def _fresh_fc(config: TrainConfig) -> torch.Tensor:
    torch.manual_seed(config.seed)
    return build_model(config.model, 16, C, config.model_opts).state_dict()["fc.weight"]
