"""Weights for backbones: parse the `--weights` value, read local files, download named weights.

Every path into a model goes through `load_checked`, so a checkpoint that does not fit the
architecture is refused with the missing and unexpected keys named, never half-loaded.
Named weights are downloaded by `torch.hub` (the same cache and hash check torchvision uses),
after a short reachability probe: without it an offline machine whose packets are dropped
would wait minutes on a TCP connect with no timeout.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import socket
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse
from urllib.request import getproxies

import torch
from torch import nn

from videolt.errors import StageError, UsageError

log = logging.getLogger(__name__)

RANDOM = "random"
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
PROBE_TIMEOUT_S = 10.0
_NESTING_KEYS = ("state_dict", "model")
_SHOWN = 5  # keys listed per category in an error message

WeightsKind = Literal["random", "named", "file"]


def parse_weights(weights: str, named: Collection[str], backbone: str) -> WeightsKind:
    """Classify a `--weights` value: "random", one of the backbone's named weights, or a file path."""
    if weights == RANDOM:
        return "random"
    if weights in named:
        return "named"
    path = Path(weights).expanduser()
    if path.suffix in WEIGHT_SUFFIXES or path.exists() or "/" in weights:
        if not path.is_file():
            raise UsageError(f"weights file not found: {weights}")
        return "file"
    forms = ", ".join([*sorted(named), RANDOM, "or a path to a " + "/".join(WEIGHT_SUFFIXES) + " file"])
    raise UsageError(f"unknown weights {weights!r} for backbone {backbone} (expected {forms})")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the CPU generator for a model's init without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or a torch pickle (tensors only: `weights_only=True`).

    A dict nested under "state_dict" or "model" (training checkpoints) is unwrapped.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(path, device="cpu")
        except SafetensorError as e:
            raise UsageError(f"{path}: not a readable safetensors file ({e})") from e
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(
                f"{path}: not a plain weights file; torch.load(weights_only=True) refused it ({first}). "
                "Save a state dict of tensors (torch.save(model.state_dict(), ...)) or a .safetensors file"
            ) from e
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for key in _NESTING_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise UsageError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise UsageError(f"{path}: {len(bad)} entries are not tensors ({_few(bad)}); expected a state dict")
    return dict(obj)


def read_weights_file(path: str) -> tuple[dict[str, torch.Tensor], str, str]:
    """(state dict, sha256, absolute path) of a local weights file, for loading and provenance."""
    resolved = Path(path).expanduser().resolve()
    return read_state_dict(resolved), sha256_file(resolved), str(resolved)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop `prefix` from the keys that carry it (e.g. DataParallel's "module.")."""
    return {k.removeprefix(prefix): v for k, v in state.items()}


def load_checked(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, ignore: Collection[str] = ()
) -> None:
    """Load `state` strictly into `model`, ignoring keys under the `ignore` prefixes (classifier heads).

    Raises UsageError naming a few missing, unexpected and mis-shaped keys.
    """
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore))}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{len(items)} {what} ({_few(items)})"
            for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
            if items
        ]
        raise UsageError(f"{source}: weights do not fit {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def download_state_dict(url: str, *, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """Fetch named weights through `torch.hub` (cached, hash-checked); return (state dict, sha256).

    Fails fast with StageError when the host cannot be reached and nothing is cached.
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    hint = f"set weights (--weights) to the path of a local copy, or put the file at {cached}"
    if not cached.is_file():
        _probe(url, what=what, hint=hint)
        log.info("downloading %s weights from %s", what, url)
    try:
        obj = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as e:
        raise StageError(f"could not download {what} weights from {url} ({e}); {hint}") from e
    return _unwrap(obj, cached), sha256_file(cached)


def _probe(url: str, *, what: str, hint: str) -> None:
    """Open (and close) a TCP connection to the host, or its proxy, within PROBE_TIMEOUT_S."""
    parsed = urlparse(url)
    proxy = getproxies().get(parsed.scheme)
    target = urlparse(proxy if "://" in (proxy or "") else f"http://{proxy}") if proxy else parsed
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise StageError(f"could not download {what} weights: cannot reach {host}:{port} ({e}); {hint}") from e


def _few(items: list[str]) -> str:
    more = f", ... {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more
