"""Feature caches: int8 round trip within its bound, reads equal to the store's, the key and its
staleness, the row checks, the one-line fallback when a cache does not fit, sharing in a benchmark."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.synthetic import make_workdir, random_store
from videolt.data.store import FeatureStore
from videolt.errors import IntegrityError, VideoltError
from videolt.train import cache, memory
from videolt.train.cache import FeatureCache, open_sources
from videolt.train.quantise import dequantise, quantise

N, FRAMES, DIM = 12, 150, 16


def _bound_holds(x: torch.Tensor) -> tuple[float, float]:
    """Check |x̂ − x| ≤ s/2 (up to float32 rounding) and exact zeros; return (max error / s, RMS error / RMS x)."""
    codes, scale, zero = quantise(x)
    back = dequantise(codes, scale, zero)
    err = (back - x.float()).abs()
    assert (err <= scale[:, None] * (0.5 + 1e-4) + 1e-30).all()
    assert (back[x == 0] == 0).all()  # zeros are exact
    return float((err / scale[:, None]).max()), float(err.pow(2).mean().sqrt() / x.float().pow(2).mean().sqrt())


def test_int8_round_trip_within_half_a_step_on_signed_and_relu_features():
    g = torch.Generator().manual_seed(0)
    signed = (torch.randn(8, FRAMES, 64, generator=g) * torch.rand(1, 1, 64, generator=g) * 5).half()  # ViT/CLIP-like
    relu = torch.relu(torch.randn(8, FRAMES, 64, generator=g)).pow(3).half()  # sparse, heavy-tailed
    relu[:, :, :4] = 0  # dead channels
    relu[0, :, 4] = 7.0  # a constant channel
    for x in (signed, relu):
        worst, rel = _bound_holds(x)
        assert 0.4 < worst <= 0.5 + 1e-4 and rel < 0.02


def test_int8_round_trip_on_extracted_features():
    """Pooled ResNet-50 features (random weights: ReLU outputs, many exact zeros) of generated frames."""
    from videolt.extract.backbones import create_backbone

    torch.manual_seed(0)
    bb = create_backbone("resnet50", weights="random", seed=0).eval()
    frames = torch.rand(12, 3, 32, 32).cumsum(dim=0) / 6  # slowly changing frames, as a video's
    with torch.no_grad():
        x = bb(frames)[None].half()  # [1, 30, 2048]
    assert (x == 0).float().mean() > 0.01
    worst, rel = _bound_holds(x)
    assert worst <= 0.5 + 1e-4 and rel < 0.02


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[FeatureStore, np.ndarray]:
    data = np.random.default_rng(0).standard_normal((N, FRAMES, DIM)).astype(np.float16)
    return random_store(tmp_path_factory.mktemp("feats") / "f.zarr", data), data


def test_fp16_cache_reads_exactly_like_the_store_and_int8_within_its_bound(store):
    st, data = store
    rows = np.array([9, 4, 30 % N, 4])
    frame_idx = np.array([[0, 149, 3], [5, 5, 5], [7, 8, 9], [1, 1, 0]])
    fp16 = open_sources(st, {"x": rows}, "fp16", torch.device("cpu"))["x"]
    assert isinstance(fp16, FeatureCache) and fp16.codes.dtype == torch.float16 and len(fp16.rows) == 3
    np.testing.assert_array_equal(fp16.read_frames(rows, frame_idx).numpy(), st.read_frames(rows, frame_idx))
    np.testing.assert_array_equal(fp16.read_rows(np.array([4])).numpy(), data[[4]])
    with pytest.raises(KeyError):
        fp16.read_rows(np.array([5]))
    int8 = open_sources(st, {"x": rows}, "int8", torch.device("cpu"))["x"]
    assert int8.codes.dtype == torch.uint8 and int8.nbytes == cache.cache_bytes("int8", 3, FRAMES, DIM)
    step = int8.scale[int8.positions(rows)]  # [4, D]
    got = int8.read_frames(rows, frame_idx)  # gathered and dequantised by numpy on the host
    err = (got - torch.from_numpy(st.read_frames(rows, frame_idx)).float()).abs()
    assert (err <= step[:, None] * (0.5 + 1e-4)).all()
    pos = int8.positions(rows)  # the torch path a GPU runs gives the same bits
    codes = int8.codes[torch.as_tensor(pos)[:, None], torch.as_tensor(frame_idx)]
    torch.testing.assert_close(got, dequantise(codes, int8.scale[pos], int8.zero[pos]), rtol=0, atol=0)


def test_stale_int8_cache_is_detected_and_rebuilt(tmp_path, store):
    st = random_store(tmp_path / "s.zarr", store[1])
    rows = np.arange(N)
    first = open_sources(st, {"train": rows}, "int8", torch.device("cpu"))["train"]
    root = cache.cache_root(st)
    [entry] = root.glob("train-int8-*")
    again = open_sources(FeatureStore.open(st.path), {"train": rows}, "int8", torch.device("cpu"))["train"]
    assert again.key == first.key and [*root.glob("train-int8-*")] == [entry]  # mapped, not rebuilt
    FeatureStore.open(st.path, mode="r+").write_row(3, -store[1][3], FRAMES)  # rewritten: same size, new chunk file
    fresh = open_sources(FeatureStore.open(st.path), {"train": rows}, "int8", torch.device("cpu"))["train"]
    assert fresh.key != first.key and [p.name for p in root.glob("train-int8-*")] == [f"train-int8-{fresh.key}"]
    torch.testing.assert_close(fresh.read_rows(np.array([3])), -first.read_rows(np.array([3])), atol=0.05, rtol=0)


def test_rows_are_checked_when_the_cache_is_built(tmp_path, store):
    st = random_store(tmp_path / "s.zarr", store[1][:4], done=3)
    with pytest.raises(VideoltError, match="row 3 .*v0000000003.* status 0"):
        open_sources(st, {"train": np.arange(4)}, "fp16", torch.device("cpu"))
    nan = np.full((FRAMES, DIM), np.nan, dtype=np.float16)
    (st.path / "feats" / "c" / "2" / "0" / "0").write_bytes(nan.tobytes())  # right size, NaN values
    with pytest.raises(VideoltError, match=r"row 2 \(v0000000002\) holds NaN/Inf"):
        open_sources(st, {"train": np.arange(3)}, "fp16", torch.device("cpu"))
    (st.path / "feats" / "c" / "1" / "0" / "0").write_bytes(b"short")  # a damaged chunk of a done row
    with pytest.raises(IntegrityError, match=r"v0000000001 \(row 1\) is marked done .*5 of \d+ bytes long"):
        open_sources(st, {"train": np.arange(3)}, "int8", torch.device("cpu"))
    assert not [*cache.cache_root(st).glob("train-int8-*")]


def test_a_cache_that_does_not_fit_says_so_in_one_line_and_streams(store, monkeypatch, caplog):
    st, _ = store
    per_row = cache.cache_bytes("fp16", 1, FRAMES, DIM)
    monkeypatch.setattr(memory, "host_available", lambda: 5 * per_row)  # room for train, not for test
    with caplog.at_level(logging.INFO, logger="videolt.train.cache"):
        got = open_sources(st, {"train": np.arange(5), "test": np.arange(5, 8)}, "fp16", torch.device("cpu"))
    assert isinstance(got["train"], FeatureCache) and got["test"] is st
    [line] = [r for r in caplog.records if "does not fit" in r.getMessage()]
    assert line.levelno == logging.WARNING and "cache fp16 of test" in line.getMessage() and "\n" not in line.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="videolt.train.cache"):
        got = open_sources(st, {"test": np.arange(6)}, "auto", torch.device("cpu"))  # auto: info, not a warning
    assert got["test"] is st and [r.levelno for r in caplog.records if "does not fit" in r.getMessage()] == [logging.INFO]
    assert open_sources(st, {"train": np.arange(3)}, "stream", torch.device("cpu")) == {"train": st}


def test_a_benchmark_builds_each_cache_once(tmp_path, caplog):
    from videolt.pipeline.benchmark import load_benchmark, run_benchmark

    root, syn = make_workdir(tmp_path, num_classes=4, videos=(40, 8, 16), dim=8, frames=20)
    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: g\nfeatures: [{{name: syn}}]\nmethods: [{{method: baseline}}]\nseeds: [1, 2]\n"
                    f"bootstrap: 0\ntrain: {{epochs: 1, batch_size: 8, clip_len: 4, workers: 0, group_head: "
                    f"{syn.head}, group_tail: {syn.tail}}}\n")
    with caplog.at_level(logging.INFO, logger="videolt.train.cache"):
        result = run_benchmark(root, load_benchmark(grid), progress=False)
    assert [r["status"] for r in result["runs"]] == ["done", "done"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cache fp16 of train: 40 rows" in m for m in messages) == 1
    assert sum("cache fp16 of train: reused" in m for m in messages) == 1
    with cache.shared():
        pass
    assert cache._shared is None  # nothing is held once the grid is done
