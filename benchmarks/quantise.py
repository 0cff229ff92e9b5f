"""How much a compact feature cache changes the features: int8 (videolt's `quantise`) against fp8 and coarser scales.

    python benchmarks/quantise.py [--workdir WD --features NAME]... [--rows 64]

Schemes, each a scale per row and channel (over the row's frames) or one per row:
- int8 rc (the cache's): s = (max − min) / 255 over the channel's frames, read back as (q − z)·s, the grid on 0
  where the channel holds 0 (so zeros are exact), else starting at its min;
- int8 rc, 0 in every range: the same with lo = min(min, 0) and hi = max(max, 0) for every channel (this cache's
  first design);
- int8 row: one range per row, 0 in it;
- fp8 e4m3 rc / row: x / s cast to torch.float8_e4m3fn with s = max |x| / 448, read back × s.
All are exact for zeros and take one byte per value. Per feature set: the relative RMS error ‖x̂ − x‖ / ‖x‖,
the worst per-frame cosine similarity, the largest error relative to the row's largest |x|, and the
relative error of inner products with random unit directions (what a linear layer sees).

Feature sets: rows of any videolt feature set (`--workdir`, `--features`, repeatable), and three made here:
ResNet-50 features (random weights, ReLU, pooled) of a generated 150-frame video, signed Gaussian features
with per-channel scales (ViT/CLIP-like), and tests/synthetic.py's 2048-d weakly-labelled rows.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from videolt.train.quantise import dequantise, quantise  # noqa: E402


def int8_row(x: torch.Tensor, dims: tuple[int, ...] = (1, 2)) -> torch.Tensor:
    lo = x.amin(dim=dims, keepdim=True).clamp(max=0)
    hi = x.amax(dim=dims, keepdim=True).clamp(min=0)
    s = ((hi - lo) / 255).clamp(min=1e-30)
    z = torch.round(-lo / s)
    return (torch.clamp(torch.round(x / s) + z, 0, 255) - z) * s


def fp8(x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    dims = (1,) if per_channel else (1, 2)
    s = (x.abs().amax(dim=dims, keepdim=True) / 448.0).clamp(min=1e-30)
    return (x / s).to(torch.float8_e4m3fn).float() * s


SCHEMES = {
    "int8 rc (chosen)": lambda x: dequantise(*quantise(x)),
    "int8 rc, 0 in every range": lambda x: int8_row(x, dims=(1,)),
    "int8 row": int8_row,
    "fp8 e4m3 rc": lambda x: fp8(x, True),
    "fp8 e4m3 row": lambda x: fp8(x, False),
}


def errors(x: torch.Tensor, back: torch.Tensor, directions: torch.Tensor) -> dict[str, float]:
    d = back - x
    cos = torch.nn.functional.cosine_similarity(back.flatten(0, 1), x.flatten(0, 1), dim=1)
    cos = cos[x.flatten(0, 1).norm(dim=1) > 0]
    proj, proj_err = x @ directions, d @ directions  # [n, T, k]
    return {"rel_rms": float(d.norm() / x.norm()), "cos_min": float(cos.min()),
            "max_err_rel_row": float((d.abs().amax(dim=(1, 2)) / x.abs().amax(dim=(1, 2)).clamp(min=1e-30)).max()),
            "dot_rel_rms": float(proj_err.norm() / proj.norm())}


def made_sets(rows: int, seed: int) -> dict[str, torch.Tensor]:
    from tests.synthetic import _video
    from videolt.extract.backbones import create_backbone

    g = torch.Generator().manual_seed(seed)
    bb = create_backbone("resnet50", weights="random", seed=seed).eval()
    t = torch.linspace(0, 1, 150)[:, None, None]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 112), torch.linspace(0, 1, 112), indexing="ij")
    frames = torch.stack([torch.sin(6 * xx + 9 * t), torch.cos(5 * yy - 4 * t),
                          torch.sin(3 * (xx + yy) + 2 * t)], dim=1)  # a moving pattern [150, 3, 112, 112]
    frames = frames + 0.1 * torch.randn(frames.shape, generator=g)
    with torch.no_grad():
        resnet = torch.cat([bb(frames[i:i + 50]) for i in range(0, 150, 50)])[None]  # [1, 150, 2048]
    scales = torch.exp(torch.randn(1, 1, 768, generator=g))
    signed = torch.randn(rows, 150, 768, generator=g) * scales + 0.3 * scales * torch.randn(1, 1, 768, generator=g)
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((20, 2048)).astype(np.float32)
    synthetic = np.stack([_video(rng, protos, (int(rng.integers(20)),), 150, 0.04) for _ in range(rows)])
    return {"ResNet-50 (random weights), generated video": resnet.half().float(),
            "signed Gaussian, per-channel scales (ViT/CLIP-like)": signed.half().float(),
            "tests/synthetic.py 2048-d rows": torch.from_numpy(synthetic).half().float()}


def store_set(workdir: Path, name: str, rows: int, seed: int) -> torch.Tensor:
    from videolt.data.store import FeatureStore
    from videolt.data.workdir import Workdir

    store = FeatureStore.open(Workdir.open(workdir).features_path(name))
    done = store.done_indices()
    pick = np.sort(np.random.default_rng(seed).choice(done, size=min(rows, len(done)), replace=False))
    return torch.from_numpy(store.read_rows(pick).astype(np.float32))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, action="append", default=[])
    p.add_argument("--features", action="append", default=[], help="a feature set of the --workdir at the same place")
    p.add_argument("--rows", type=int, default=64, help="rows per feature set")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    sets = made_sets(args.rows, args.seed)
    for wd, name in zip(args.workdir, args.features):
        sets[f"{name} ({wd.name}, {args.rows} rows)"] = store_set(wd, name, args.rows, args.seed)
    print("| features | zeros | scheme | rel. RMS error | worst frame cosine | max error / row max | "
          "inner-product rel. RMS error |\n|---|---|---|---|---|---|---|")
    for label, x in sets.items():
        directions = torch.nn.functional.normalize(torch.randn(x.shape[-1], 64), dim=0)
        zeros = f"{float((x == 0).float().mean()):.0%}"
        for scheme, fn in SCHEMES.items():
            e = errors(x, fn(x), directions)
            print(f"| {label} {tuple(x.shape)} | {zeros} | {scheme} | {e['rel_rms']:.2e} | {e['cos_min']:.6f} | "
                  f"{e['max_err_rel_row']:.2e} | {e['dot_rel_rms']:.2e} |", flush=True)


if __name__ == "__main__":
    main()
