"""The pipelined feature sink (`videolt.extract.sink`): the rows it writes against a plain forward of one
video at a time, several whole videos per forward (fp32: float rounding only; bf16: within the tolerance
`--verify` uses), TSM's clips kept whole, one failing video isolated from its batch, and a device error
breaking the sink (every video it holds fails with SinkLost, nothing more is taken)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from videolt.data.store import FeatureStore
from videolt.executor import SinkLost, SinkPlace
from videolt.extract.backbones import create_backbone
from videolt.extract.config import ExtractConfig
from videolt.extract.decode_worker import Decoded
from videolt.extract.sink import FeatureSink, SinkSpec, check_probe
from videolt.errors import StageError

FRAMES, CROP = 6, 32
TOLERANCE = ExtractConfig().verify_tolerance  # what --verify accepts


def _clips(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (FRAMES, 3, CROP, CROP), dtype=np.uint8) for _ in range(n)]


def _sink(tmp_path, backbone: str = "resnet50", **kw) -> FeatureSink:
    opts = (("n_segment", 4),) if backbone.startswith("tsm") else ()
    path = tmp_path / f"{backbone}-{len(list(tmp_path.iterdir()))}.zarr"
    dim = create_backbone(backbone, weights="random", resize=CROP, crop=CROP, **dict(opts)).cfg.dim
    FeatureStore.create(path, [f"v{i:010d}" for i in range(8)], frames=FRAMES, dim=dim, dtype="float32", attrs={})
    spec = SinkSpec("f", backbone, "random", str(path), 0, opts=opts, resize=CROP, crop=CROP)
    return FeatureSink([spec], threads=1, **{"room": 7, **kw})


def _run(sink: FeatureSink, clips: list[np.ndarray], close: bool = True) -> np.ndarray:
    futures = [sink.submit(Decoded(i, f"v{i:010d}", 40 + i, (c,))) for i, c in enumerate(clips)]
    results = [f.result(timeout=120) for f in futures]
    if close:
        sink.close()
    assert all(r.sets == {"f": None} for r in results), [r.message for r in results]
    assert [r.sink.index for r in results] == [0] * len(clips) and all(r.infer_seconds > 0 for r in results)
    return FeatureStore.open(sink.specs[0].store_path).read_rows(range(len(clips)))


def _batches(sink: FeatureSink, total: int) -> list[int]:
    """Record the frames of each forward; the first waits until the other videos are staged (so they pack)."""
    bb, forward = sink.models[0]
    seen: list[int] = []

    def first_waits(videos: int) -> None:
        deadline = time.monotonic() + 10
        while not seen and sink._staged.qsize() < total - videos and time.monotonic() < deadline:
            time.sleep(0.01)

    def recorded(x: torch.Tensor) -> torch.Tensor:
        first_waits(1)
        seen.append(len(x))
        return forward(x)

    def recorded_clips(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        first_waits(len(lengths))
        seen.append(len(x))
        return type(bb).forward_clips(bb, x, lengths)

    sink.models[0] = (bb, recorded)
    bb.forward_clips = recorded_clips
    return seen


def test_one_video_per_forward_is_the_plain_forward_bit_for_bit_and_leaves_status_to_the_driver(tmp_path):
    clips = _clips(4)
    sink = _sink(tmp_path, batch_size=4)  # also chunked: 6 frames in forwards of 4 and 2
    rows = _run(sink, clips)
    bb = create_backbone("resnet50", weights="random", resize=CROP, crop=CROP)
    normalise = bb.preprocessing.normalise()
    with torch.inference_mode():
        ref = [torch.cat([bb(normalise(torch.from_numpy(c[i:i + 4]))) for i in (0, 4)]).numpy() for c in clips]
    np.testing.assert_array_equal(rows, np.stack(ref))
    assert FeatureStore.open(sink.specs[0].store_path).status().tolist() == [0] * 8  # chunks only


@pytest.mark.parametrize("backbone", ["resnet50", "tsm_r50"])
def test_several_videos_per_forward_agree_with_one_per_forward(tmp_path, backbone):
    clips = _clips(7, seed=1)
    sink = _sink(tmp_path, backbone, batch_size=3 * FRAMES, pack=True)

    def rows(batch_size: int, amp: bool) -> np.ndarray:  # the same sink, rerun with another batch and precision
        sink.batch_size, sink.amp = batch_size, amp
        return _run(sink, clips, close=False)

    batches = _batches(sink, total=len(clips))
    packed = rows(3 * FRAMES, False)
    assert max(batches) == 3 * FRAMES, batches  # three whole videos in one forward
    alone = rows(FRAMES, False)
    # fp32 on the CPU: oneDNN may pick another kernel for another batch size; only float rounding differs
    np.testing.assert_allclose(packed, alone, rtol=1e-4, atol=1e-5 * np.abs(alone).max())
    bf_alone, bf_packed = rows(FRAMES, True), rows(3 * FRAMES, True)
    sink.close()
    for a, b in zip(bf_packed, bf_alone):
        assert np.linalg.norm(a - b) / np.linalg.norm(b) <= TOLERANCE
    for a, b in zip(bf_alone, alone):  # and bf16 itself is within it of fp32, so the bound means something
        assert np.linalg.norm(a - b) / np.linalg.norm(b) <= TOLERANCE


def test_tsm_packs_whole_clips_with_the_segments_of_one_video_each():
    bb = create_backbone("tsm_r50", weights="random", resize=CROP, crop=CROP, n_segment=4)
    torch.manual_seed(0)
    lengths = [10, 3, 8, 13, 4]  # a remainder window, a short clip, whole segments
    xs = [torch.randn(n, 3, CROP, CROP) for n in lengths]
    with torch.inference_mode():
        one_by_one = torch.cat([bb(x) for x in xs])
        packed = bb.forward_clips(torch.cat(xs), lengths)
        assert torch.equal(bb.forward_clips(xs[0], [10]), bb(xs[0]))
    torch.testing.assert_close(packed, one_by_one, rtol=1e-4, atol=1e-5 * one_by_one.abs().max().item())


def test_a_failing_video_fails_alone_in_its_packed_batch(tmp_path):
    clips = _clips(4, seed=2)
    clips[2][:] = 0  # the backbone below refuses an all-black clip
    sink = _sink(tmp_path, batch_size=4 * FRAMES, pack=True)
    bb, forward = sink.models[0]

    def picky(x: torch.Tensor) -> torch.Tensor:
        clips = x.view(-1, FRAMES, *x.shape[1:])  # [videos, T, 3, c, c]
        if any(bool((c == c[:1, :, :1, :1]).all()) for c in clips):  # one colour per channel throughout
            raise ValueError("an all-black clip")
        return forward(x)

    sink.models[0] = (bb, picky)
    futures = [sink.submit(Decoded(i, f"v{i:010d}", 9, (c,))) for i, c in enumerate(clips)]
    results = [f.result(timeout=120) for f in futures]
    sink.close()
    assert [r.sets["f"] for r in results] == [None, None, "inference", None]
    assert "all-black" in results[2].message


def test_a_device_error_breaks_the_sink_and_fails_what_it_holds(tmp_path):
    sink = _sink(tmp_path, room=3)

    def gone(*args):
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")

    sink._features = gone
    futures = [sink.submit(Decoded(i, f"v{i:010d}", 9, (c,))) for i, c in enumerate(_clips(2))]
    for f in futures:
        with pytest.raises(SinkLost, match="illegal memory access"):
            f.result(timeout=60)
    with pytest.raises(SinkLost, match="broken"):
        sink.submit(Decoded(3, "v0000000003", 9, (_clips(1)[0],)))
    sink.close()
    store = FeatureStore.open(sink.specs[0].store_path)
    assert store.chunk_stats()[:, 0].tolist() == [-1] * 8  # nothing written


def test_the_probe_says_which_sink_cannot_see_the_workdir(tmp_path):
    place = SinkPlace(1, "cuda:0", "10.0.0.7:ab12cd", "GPU 3")
    probe = tmp_path / ".sink-check"
    probe.write_text("token\n")
    check_probe(str(probe), "token", place)
    for token, why in (("other", "another run"), ("token", "missing")):
        if why == "missing":
            probe.unlink()
        with pytest.raises(StageError) as info:
            check_probe(str(probe), token, place)
        assert str(info.value).startswith(f"sink 10.0.0.7:ab12cd/GPU 3 cannot see the workdir {tmp_path} "
                                          f"(.sink-check is {why})")
