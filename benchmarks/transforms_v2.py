"""videolt's frame transforms against torchvision.transforms.v2's: bit-identical, and which is faster.

For each piece of the chain the v2 transform that would replace it runs on the same input in the same
process, alternating, and the script prints whether the outputs are bit-identical (`torch.equal`)
and the ratio of median times (v2 / ours: above 1, v2 is slower). The input is one batch as the stage
sees it: 32 decoded 360p frames, channels last, for the uint8 part; their 256×256 crops for the float
part. A piece was replaced only where both held: `Compose` and `Normalize` are v2's since issue 26
(their hand-written versions are kept below as the reference), `CenterCrop` and `ToFloat` stay ours.
benchmarks/RESULTS.md ("## transforms: torchvision v2 (issue 26)") records the outcome.

    nice -n 10 python benchmarks/transforms_v2.py [--threads 1] [--reps 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import torch
from torchvision.transforms import v2

from videolt.extract.transforms import IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Preprocessing, ToFloat


class Compose:
    """videolt's own Compose before issue 26."""

    def __init__(self, transforms: list[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x)
        return x


class Normalize:
    """videolt's own Normalize before issue 26 (on channels-first float batches)."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return torch.sub(x, mean).div_(std)


def _times(fn: Callable[[], torch.Tensor], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return times


def compare(name: str, ours: Callable, theirs: Callable, x: torch.Tensor, reps: int) -> None:
    """Bit-identity and the v2 / ours ratio of median times, the two alternating in blocks of 5."""
    a, b = ours(x), theirs(x)
    identical = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    differing = 0 if identical else int((a != b).sum()) if a.shape == b.shape else -1
    t_ours: list[float] = []
    t_theirs: list[float] = []
    for block in range(max(2, reps // 5)):  # ABBA: neither always runs first (warm caches, allocator)
        first, second = (ours, theirs) if block % 2 == 0 else (theirs, ours)
        t_first, t_second = _times(lambda: first(x), 5), _times(lambda: second(x), 5)
        t_ours += t_first if first is ours else t_second
        t_theirs += t_second if first is ours else t_first
    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"{name:<34} bit-identical {str(identical):<5} (differing values {differing:>8,}) "
          f"ours {m_ours * 1e3:8.3f} ms  v2 {m_theirs * 1e3:8.3f} ms  v2/ours {m_theirs / m_ours:5.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {platform.processor() or platform.machine()}; "
          f"torch {torch.__version__}; "
          f"{args.threads} thread(s); {args.frames} frames of 640x360 per batch; {args.reps} reps each", flush=True)
    g = torch.Generator().manual_seed(0)
    decoded = torch.randint(0, 256, (args.frames, 360, 640, 3), dtype=torch.uint8, generator=g)
    prep = Preprocessing()
    spatial = prep.spatial()
    crops = spatial(decoded)  # uint8 [N, 3, 256, 256], a view of the resized batch
    as_float = ToFloat()(crops)
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    resized = spatial.transforms[0](decoded)

    compare("CenterCrop(256) vs v2.CenterCrop", CenterCrop(256), v2.CenterCrop(256), resized, args.reps)
    compare("ToFloat vs v2.ToDtype(scale=True)", ToFloat(), v2.ToDtype(torch.float32, scale=True), crops, args.reps)
    compare("Normalize vs v2.Normalize", Normalize(mean, std), v2.Normalize(mean, std), as_float, args.reps)
    compare("Compose vs v2.Compose (normalise)", Compose([ToFloat(), Normalize(mean, std)]), prep.normalise(), crops,
            args.reps)
    compare("Compose vs v2.Compose (spatial)", Compose(list(spatial.transforms)), spatial, decoded, args.reps)
    ours_all = Compose([*spatial.transforms, ToFloat(), Normalize(mean, std)])
    compare("before #26 vs build() now", ours_all, prep.build(), decoded, args.reps)
    all_v2 = v2.Compose([spatial.transforms[0], v2.CenterCrop(256), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(mean, std)])
    compare("before #26 vs the all-v2 chain", ours_all, all_v2, decoded, args.reps)

if __name__ == "__main__":
    main()
