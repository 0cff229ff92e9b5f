"""The extract stage end to end: features equal an independent computation; failures are recorded;
a run killed with SIGKILL and rerun gives the arrays of an uninterrupted run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import torch
import torchvision
from torchvision.transforms import v2

from tests.lists import small_lists
from tests.videos import make_video
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.extract.config import ExtractConfig
from videolt.pipeline.extract import run_extract

SMALL = dict(frames=6, resize=40, crop=32)


def _workdir(root: Path, broken: dict[int, bytes] | None = None, n: int = 5) -> Workdir:
    wd = Workdir.init(root / "wd", small_lists(root / "lists", n_train=n - 2, n_val=1, n_test=1))
    broken = broken or {}
    with wd.manifest() as m:
        for v in m.videos():
            path = wd.video_path(v.video_id, "mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            if v.index in broken:
                path.write_bytes(broken[v.index])
            else:
                make_video(path, seconds=2.5 + v.index, size=(48, 40), fps=10)
            m.record("download", v.index, "done", info={"path": str(path.relative_to(wd.root))})
    return wd


def _ffmpeg_frames(path: Path) -> np.ndarray:
    size = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                           "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    w, h = map(int, size.strip().split(","))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-an", "-vf", "fps=fps=1:round=up",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def test_features_equal_independent_torchvision_computation(tmp_path):
    wd = _workdir(tmp_path, n=3)
    weights = tmp_path / "r50.pth"
    torch.manual_seed(3)
    ref_model = torchvision.models.resnet50()
    for mod in ref_model.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    torch.save(ref_model.state_dict(), weights)
    cfg = ExtractConfig(backbones=("resnet50",), weights=str(weights), names=("r50",), workers=0, **SMALL)
    counts = run_extract(wd, cfg, progress=False)
    assert counts["done"] == 3 and counts["failed"] == {}
    store = FeatureStore.open(wd.features_path("r50"))
    assert store.attrs["weights"]["sha256"] is not None
    assert store.attrs["preprocessing"]["crop"] == 32
    # which decoding path ran is recorded per video and in the run's split, not as provenance (no pixel differs)
    assert "selective" not in store.attrs["decoder"]
    with wd.manifest() as m:
        for state in m.states("decode").values():
            assert state.info["selective"] is True and state.info["decoded_frames"] <= state.info["frames"]
            assert state.info["cpu_seconds"] > 0
    split = counts["split"]
    assert split["videos"] == split["selective_videos"] == 3 and split["workers"] == 0
    assert split["inference_s"] > 0 and split["wall_s"] >= split["inference_s"]
    ref_model.fc = torch.nn.Identity()
    ref_model.eval()
    tf = v2.Compose([v2.Resize(40, antialias=True), v2.CenterCrop(32), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with wd.manifest() as m:
        for v in m.videos():
            frames = _ffmpeg_frames(wd.find_video(v.video_id))
            n = len(frames)
            picks = [int(np.floor(k * (n - 1) / (SMALL["frames"] - 1))) for k in range(SMALL["frames"])]
            x = tf(torch.from_numpy(frames[picks]).permute(0, 3, 1, 2))
            with torch.no_grad():
                ref = ref_model(x).numpy()
            got = store.read_rows([v.index])[0].astype(np.float32)
            assert store.n_frames()[v.index] == n
            np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())


def test_failures_recorded_and_batch_goes_on(tmp_path):
    wd = _workdir(tmp_path, broken={1: b"", 3: b"this is text, not a video\n"})
    good = wd.find_video(wd.manifest().video(0).video_id).read_bytes()
    cut = wd.find_video(wd.manifest().video(2).video_id)
    cut.write_bytes(good[: len(good) // 3])  # truncated mp4
    cfg = ExtractConfig(backbones=("resnet50",), weights="random", names=("r50",), workers=1, **SMALL)
    counts = run_extract(wd, cfg, progress=False)
    assert counts["done"] == 2
    with wd.manifest() as m:
        dec = m.states("decode")
        assert dec[1].failure == "unreadable" and dec[3].failure == "unreadable"
        assert dec[0].info["selective"] is True and dec[1].info["selective"] is False
        assert dec[2].status == "failed" and dec[2].failure in ("corrupt", "unreadable")
        assert m.counts("features:r50")["done"] == 2
    st = FeatureStore.open(wd.features_path("r50")).status().tolist()
    assert st == [1, 2, 2, 2, 1]
    assert run_extract(wd, cfg, progress=False)["videos"] == 0  # nothing done twice, failures not retried


def _cli(wd: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "videolt", "extract", str(wd), "--backbone", "resnet50", "--weights", "random",
            "--name", name, "--workers", "1", "--frames", "6", "--resize", "40", "--crop", "32", "--no-progress",
            "--set", "torch_threads=1"]  # one thread in every sink: the same float sums in every run


def test_sigkill_midway_then_rerun_equals_uninterrupted(tmp_path):
    """The killed run has two sink processes writing rows (`--devices cpu,cpu`, each decoding its own jobs:
    `--workers 0`, no decode process to start); the rerun has one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a = _workdir(tmp_path / "a", n=6)
    b = _workdir(tmp_path / "b", n=6)
    r = subprocess.run(_cli(a.root, "f"), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(_cli(b.root, "f") + ["--devices", "cpu,cpu", "--workers", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    path = b.features_path("f")
    deadline = time.time() + 300
    while time.time() < deadline:
        if (path / "zarr.json").exists() and (FeatureStore.open(path).status() == 1).sum() >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its decoders and its sink processes
    proc.wait()
    assert (FeatureStore.open(path).status() == 1).sum() < 6, "killed too late to test anything"
    r = subprocess.run(_cli(b.root, "f") + ["--json"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    sa, sb = FeatureStore.open(a.features_path("f")), FeatureStore.open(path)
    assert sa.status().tolist() == sb.status().tolist() == [1] * 6
    np.testing.assert_array_equal(sa.read_rows(range(6)), sb.read_rows(range(6)))
    np.testing.assert_array_equal(sa.n_frames(), sb.n_frames())
    with b.manifest() as m:
        assert m.counts("features:f")["done"] == 6


def test_two_cpu_sinks_in_two_processes_write_the_bits_of_one(tmp_path, capsys):
    from videolt.cli import main

    one, two = _workdir(tmp_path / "one", n=4), _workdir(tmp_path / "two", n=4)
    flags = ["--backbone", "resnet50", "--weights", "random", "--name", "f", "--workers", "0", "--frames", "6",
             "--resize", "40", "--crop", "32", "--set", "torch_threads=1", "--no-progress", "--json"]
    assert main(["extract", str(one.root), *flags]) == 0
    assert json.loads(capsys.readouterr().out)["split"]["sinks"] == [
        {"sink": 0, "node": socket.gethostname(), "device": "cpu", "videos": 4, "frames_s": ANY, "busy": ANY}]
    assert main(["extract", str(two.root), *flags, "--devices", "cpu,cpu"]) == 0
    sinks = json.loads(capsys.readouterr().out)["split"]["sinks"]
    assert [(s["sink"], s["device"]) for s in sinks] == [(0, "cpu"), (1, "cpu")]
    assert all(s["videos"] >= 1 and s["frames_s"] > 0 and 0 < s["busy"] <= 1 for s in sinks), sinks
    assert sum(s["videos"] for s in sinks) == 4
    a, b = FeatureStore.open(one.features_path("f")), FeatureStore.open(two.features_path("f"))
    assert a.status().tolist() == b.status().tolist() == [1] * 4
    np.testing.assert_array_equal(a.read_rows(range(4)), b.read_rows(range(4)))  # bit for bit
    np.testing.assert_array_equal(a.n_frames(), b.n_frames())
    with two.manifest() as m:
        assert m.counts("features:f")["done"] == 4 and m.counts("decode")["done"] == 4


def test_long_video_window_matches_full_decode(tmp_path):
    """The bounded-memory path (keep only candidate frames) picks exactly the frames of a full decode."""
    from videolt.extract.decode_worker import DecodeJob, View, decode_job

    path = make_video(tmp_path / "v.mp4", seconds=40, size=(32, 24), fps=5)
    job = DecodeJob(0, "x", str(path), (View(24, 24),), frames=7)
    d = decode_job(job)
    frames = _ffmpeg_frames(path)
    assert d.failure is None and d.n_frames == len(frames) == 40
    picks = np.floor(np.linspace(0, 39, 7)).astype(int)
    ref = v2.CenterCrop(24)(v2.Resize(24, antialias=True)(torch.from_numpy(frames[picks]).permute(0, 3, 1, 2)))
    np.testing.assert_array_equal(d.clips[0], ref.numpy())


def test_decode_job_one_torch_thread_restored_and_every_view_exact(tmp_path, monkeypatch):
    """Per-frame preprocessing runs on one torch thread (one decode worker per core), the caller's
    thread count comes back, and each view's clip is the contiguous torchvision reference."""
    from videolt.extract import decode_worker

    path = make_video(tmp_path / "v.mp4", seconds=4, size=(48, 40), fps=10)
    seen: list[int] = []
    resize = decode_worker.ResizeShortSide.__call__
    monkeypatch.setattr(decode_worker.ResizeShortSide, "__call__",
                        lambda self, x: seen.append(torch.get_num_threads()) or resize(self, x))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        views = (decode_worker.View(40, 32), decode_worker.View(36, 36))
        d = decode_worker.decode_job(decode_worker.DecodeJob(0, "x", str(path), views, frames=3))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert d.failure is None and seen and set(seen) == {1}
    frames = torch.from_numpy(_ffmpeg_frames(path)[np.floor(np.linspace(0, 3, 3)).astype(int)]).permute(0, 3, 1, 2)
    for clip, (size, crop) in zip(d.clips, [(40, 32), (36, 36)]):
        ref = v2.CenterCrop(crop)(v2.Resize(size, antialias=True)(frames))
        assert clip.dtype == np.uint8 and clip.flags.c_contiguous
        np.testing.assert_array_equal(clip, ref.numpy())
