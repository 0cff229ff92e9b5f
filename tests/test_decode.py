"""1-fps decoding against the ffmpeg CLI (byte for byte), per backend, and every failure class."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from dataclasses import FrozenInstanceError
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.videos import cli_encoder_formats, frame_image, h264_references, make_cli_video, make_video, read_counter, \
    vfr_intervals_ms
from videolt.errors import StageError, UnknownNameError, UsageError, VideoFailure
from videolt.extract.decoders import DECODERS, DecodedVideo, DecodeError, iter_frames, read_frames
from videolt.extract.decoders import _rgb, _selective, pyav as pyav_decoder
from videolt.extract.failures import ExtractFailure

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")

# name → make_video options; all tiny so the whole file runs in seconds.
CASES = {
    "h264_25": dict(fps=25, seconds=3.0),
    "h264_2997": dict(fps=29.97, seconds=3.0),
    "h264_30": dict(fps=30, seconds=2.5),
    "vp9_webm": dict(codec="vp9", fps=25, seconds=2.2),
    "mkv_start_offset": dict(fps=25, seconds=2.5, start_offset=0.72),
    "short": dict(fps=30, seconds=0.6),
    "vfr_mp4": dict(vfr=True, seconds=3.0),
    "vfr_mkv": dict(vfr=True, seconds=3.0, start_offset=0.3),
    # a stream starting late: Matroska/WebM count their duration from zero, mp4 from the first frame
    "mkv_late_start": dict(fps=25, seconds=3.0, start_offset=3.0),
    "mp4_late_start": dict(fps=25, seconds=3.0, start_offset=3.0),
    "webm_late_start": dict(codec="vp9", fps=25, seconds=2.5, start_offset=2.6),
    "rotate_90": dict(rotate=90, seconds=2.0),
    "rotate_270_wide": dict(rotate=-90, size=(96, 64), seconds=2.0),
    "rotate_180": dict(rotate=180, seconds=2.0),
    "bt709": dict(colorspace="itu709", seconds=2.0),
    # B-pyramids, open GOPs, streaming-like settings: where selective decoding discards frames
    "h264_pyramid_strict": dict(fps=25, seconds=3.0, encoder={"bf": "3", "x264-params": "b-pyramid=strict:b-adapt=0"}),
    "h264_pyramid_b4_2997": dict(fps=29.97, seconds=3.0,
                                 encoder={"bf": "4", "x264-params": "b-pyramid=normal:b-adapt=0"}),
    "h264_no_pyramid_30": dict(fps=30, seconds=2.5, encoder={"bf": "3", "x264-params": "b-pyramid=none:b-adapt=0"}),
    "h264_open_gop": dict(fps=25, seconds=3.0, encoder={
        "bf": "3", "x264-params": "open-gop=1:b-adapt=0:keyint=12:min-keyint=12:scenecut=0"}),
    "h264_main_streaming": dict(fps=25, seconds=3.0, encoder={"qp": None, "profile": "main", "crf": "30",
                                                               "preset": "medium"}),
    "mkv_pyramid_offset": dict(fps=25, seconds=2.5, start_offset=0.5,
                               encoder={"bf": "3", "x264-params": "b-pyramid=strict:b-adapt=0"}),
    "h264_no_bframes": dict(fps=25, seconds=2.0, bframes=False),
}
SUFFIX = {"vp9_webm": ".webm", "mkv_start_offset": ".mkv", "vfr_mkv": ".mkv", "mkv_late_start": ".mkv",
          "webm_late_start": ".webm", "mkv_pyramid_offset": ".mkv"}
# The cases where selective decoding cannot run, and why (the report's `fallback` starts so).
FULL_DECODE = {"vp9_webm": "codec vp9", "webm_late_start": "codec vp9"}
# H.264 cases with B-frames: some frame a tick shows is a non-reference one (checked below).
PYRAMIDS = ["h264_pyramid_strict", "h264_pyramid_b4_2997", "h264_no_pyramid_30", "h264_open_gop",
            "h264_main_streaming", "mkv_pyramid_offset", "h264_25"]

# Documented differences of the optional backends (see videolt/extract/decoders/decord.py, torchcodec.py).
EXPECTED_FAILURE = {("decord", "rotate_90"): "corrupt"}
DROPS_LAST_TICK = {("torchcodec", "vfr_mp4")}
WRONG_PIXELS = {("decord", "h264_open_gop")}  # its seeks decode open-GOP leading frames without their reference


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {name: make_video(root / f"{name}{SUFFIX.get(name, '.mp4')}", **opts) for name, opts in CASES.items()}


@functools.cache
def ffmpeg_frames(path: Path, fps: float = 1.0) -> np.ndarray:
    """The reference: ffmpeg's fps filter with round=up, autorotated, as RGB [n, H, W, 3] (once per file)."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height:stream_side_data=rotation", "-of", "json", str(path)],
        capture_output=True, check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    width, height = stream["width"], stream["height"]
    rotation = next((sd["rotation"] for sd in stream.get("side_data_list", []) if "rotation" in sd), 0)
    if rotation % 180:
        width, height = height, width
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-an", "-vf", f"fps=fps={fps}:round=up",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@needs_ffmpeg
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend,selective", [("pyav", True), ("pyav", False), ("decord", True),
                                               ("torchcodec", True)],
                         ids=["pyav-selective", "pyav-full", "decord", "torchcodec"])
def test_matches_ffmpeg_cli(videos: dict[str, Path], case: str, backend: str, selective: bool) -> None:
    if backend != "pyav":
        pytest.importorskip(backend)
    reference = ffmpeg_frames(videos[case])
    if (backend, case) in EXPECTED_FAILURE:
        with pytest.raises(DecodeError) as err:
            read_frames(videos[case], backend=backend)
        assert err.value.failure == EXPECTED_FAILURE[backend, case]
        return
    decoded = read_frames(videos[case], backend=backend, selective=selective)
    if backend == "pyav":  # the path taken is the one expected, and said
        assert decoded.report.selective is (selective and case not in FULL_DECODE)
        if selective and case in FULL_DECODE:
            assert decoded.report.fallback.startswith(FULL_DECODE[case])
        else:
            assert decoded.report.fallback is None
    if (backend, case) in DROPS_LAST_TICK:
        reference = reference[:-1]
    assert decoded.frames.dtype == np.uint8
    assert decoded.frames.shape == reference.shape
    assert np.array_equal(decoded.frames, reference) is ((backend, case) not in WRONG_PIXELS)
    np.testing.assert_array_equal(decoded.timestamps, np.arange(len(reference), dtype=np.float64))


@needs_ffmpeg
@pytest.mark.parametrize("fps", [0.5, 2.0, Fraction(3, 2)])
def test_other_rates_match_ffmpeg(videos: dict[str, Path], fps: float) -> None:
    decoded = read_frames(videos["h264_2997"], fps=fps)
    assert np.array_equal(decoded.frames, ffmpeg_frames(videos["h264_2997"], fps=float(fps)))
    np.testing.assert_allclose(decoded.timestamps, np.arange(len(decoded)) / float(fps))


@needs_ffmpeg
@pytest.mark.parametrize("case", PYRAMIDS)
def test_selective_decodes_the_reference_frames_and_the_shown_ones(videos: dict[str, Path], case: str) -> None:
    """Exactly the planned frames are decoded: every reference frame, and the non-reference ones a tick
    shows (each case has at least one), plus the last two; every other frame is discarded."""
    refs = h264_references(videos[case])
    with av.open(str(videos[case])) as c:
        s = c.streams.video[0]
        plan = _selective.plan_selection(videos[case], c.format.name, s.index, "h264", s.start_time, s.time_base,
                                         Fraction(1))
    assert isinstance(plan, _selective.Plan) and plan.frames == set(refs)
    shown = set(plan.keep[:-2])
    assert any(not refs[p] for p in shown), "no shown frame is a non-reference one: the case tests nothing"
    decoded = read_frames(videos[case])
    assert decoded.report.selective and decoded.report.fallback is None
    assert decoded.report.frames == len(refs)
    assert decoded.report.decoded == sum(refs[p] or p in plan.keep for p in refs) < len(refs)
    assert np.array_equal(decoded.frames, ffmpeg_frames(videos[case]))


@needs_ffmpeg
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("fps", [1.0, 5.0])
def test_selective_with_decoder_threads(videos: dict[str, Path], threads: int, fps: float) -> None:
    """skip_frame is honoured per packet with frame threading too (each thread gets the packet's value)."""
    for case in ("h264_pyramid_b4_2997", "h264_open_gop"):
        decoded = read_frames(videos[case], fps=fps, threads=threads)
        assert decoded.report.selective
        assert np.array_equal(decoded.frames, ffmpeg_frames(videos[case], fps=fps))


@needs_ffmpeg
def test_selective_falls_back_where_it_must(tmp_path: Path, videos: dict[str, Path]) -> None:
    """Codecs and containers without a safe plan are decoded in full, and the report says why."""
    avi = tmp_path / "pyramid.avi"  # AVI packets carry decode-order timestamps
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(videos["h264_pyramid_strict"]), "-c", "copy", str(avi)],
                   check=True)
    mpeg4 = make_video(tmp_path / "mpeg4.mp4", codec="mpeg4", seconds=2.0)
    for path, reason in [(avi, "container avi"), (mpeg4, "codec mpeg4"), (videos["vp9_webm"], "codec vp9")]:
        selective, full = read_frames(path), read_frames(path, selective=False)
        assert not selective.report.selective and selective.report.fallback.startswith(reason)
        assert selective.report.decoded == full.report.decoded and np.array_equal(selective.frames, full.frames)
    raw = tmp_path / "pyramid.h264"  # an elementary stream: no timestamps at all (and no frame placed: empty)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(videos["h264_pyramid_strict"]), "-c", "copy",
                    "-bsf:v", "h264_mp4toannexb", str(raw)], check=True)
    stream = iter_frames(raw)
    with pytest.raises(DecodeError, match="empty"):
        list(stream)
    assert not stream.report.selective and stream.report.fallback.startswith("container h264")
    off = read_frames(videos["h264_open_gop"], selective=False)  # switched off: no fallback to explain
    assert not off.report.selective and off.report.fallback is None
    assert off.report.to_info() == {"selective": False, "decoded_frames": 75}


@needs_ffmpeg
def test_selective_decodes_again_when_the_decoder_surprises(videos: dict[str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A planned frame that never comes out (here: a plan with a frame the file does not have) stops the
    selective pass before any wrong tick; the video is decoded again in full, ticks given are not repeated."""
    path = videos["h264_pyramid_strict"]
    real = _selective.plan_selection

    def with_phantom(*args):
        plan = real(*args)
        phantom = sorted(plan.frames)[55] + 1  # between two frames, after a couple of ticks
        return _selective.Plan(plan.frames | {phantom}, tuple(sorted(plan.keep + (phantom,))))

    monkeypatch.setattr(pyav_decoder, "plan_selection", with_phantom)
    stream = iter_frames(path)
    items = list(stream)
    assert not stream.report.selective and "decoded again in full" in stream.report.fallback
    assert [t for t, _ in items] == [0.0, 1.0, 2.0]
    assert np.array_equal(np.stack([f for _, f in items]), ffmpeg_frames(path))


# ---- 10-bit sources (HDR on YouTube is VP9 profile 2) and other pixel formats: the CLI's conversion --------

_709 = ("-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709")
# name → (encoders, first available; pixel format; suffix; CLI args; the PyAV decoders that read it)
CLI_ENCODED = {
    "h264_high10_pyramid": (("libx264",), "yuv420p10le", ".mp4",
                            ("-qp", "12", "-bf", "3", "-x264-params", "b-pyramid=strict:b-adapt=0"), ("h264",)),
    "h264_high10_full_range_709": (("libx264",), "yuv420p10le", ".mkv", ("-qp", "12", "-color_range", "pc", *_709),
                                   ("h264",)),
    "h264_high422_10": (("libx264",), "yuv422p10le", ".mp4", ("-qp", "12"), ("h264",)),
    "vp9_profile2": (("libvpx-vp9",), "yuv420p10le", ".webm",
                     ("-deadline", "realtime", "-cpu-used", "8", "-crf", "10", "-b:v", "0"), ("vp9",)),
    "vp9_profile2_hdr_pq": (("libvpx-vp9",), "yuv420p10le", ".webm",
                            ("-deadline", "realtime", "-cpu-used", "8", "-crf", "10", "-b:v", "0", "-color_range", "tv",
                             "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"),
                            ("vp9",)),
    "av1_10bit": (("libaom-av1", "libsvtav1"), "yuv420p10le", ".mkv", (), ("libdav1d", "av1", "libaom-av1")),
    "h264_high444_8bit": (("libx264",), "yuv444p", ".mp4", ("-qp", "12"), ("h264",)),
    "h264_full_range_8bit": (("libx264",), "yuvj420p", ".mp4", ("-qp", "12"), ("h264",)),
}
_AV1_ARGS = {"libaom-av1": ("-cpu-used", "8", "-crf", "30", "-b:v", "0"), "libsvtav1": ("-preset", "12", "-crf", "30")}


@pytest.fixture(scope="module")
def cli_video(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """case → its video, encoded once; skips, naming what is missing, where the CLI or PyAV cannot."""
    root, made = tmp_path_factory.mktemp("cli_encoded"), {}

    def get(case: str) -> Path:
        encoders, pix_fmt, suffix, args, decoders = CLI_ENCODED[case]
        encoder = next((e for e in encoders if pix_fmt in cli_encoder_formats(e)), None)
        if encoder is None:
            pytest.skip(f"the ffmpeg CLI has no {' or '.join(encoders)} encoder for {pix_fmt}")
        if not set(decoders) & set(av.codecs_available):
            pytest.skip(f"PyAV has no {' or '.join(decoders)} decoder")
        if case not in made:
            made[case] = make_cli_video(root / f"{case}{suffix}", encoder, pix_fmt,
                                        args=(*args, *_AV1_ARGS.get(encoder, ())))
        return made[case]

    return get


@needs_ffmpeg
@pytest.mark.parametrize("case", list(CLI_ENCODED))
@pytest.mark.parametrize("selective", [True, False], ids=["selective", "full"])
def test_pixel_formats_match_ffmpeg_cli(cli_video, case: str, selective: bool) -> None:  # type: ignore[no-untyped-def]
    path = cli_video(case)
    decoded = read_frames(path, selective=selective)
    reference = ffmpeg_frames(path)
    assert decoded.report.selective is (selective and case.startswith("h264"))
    assert decoded.frames.shape == reference.shape
    assert np.array_equal(decoded.frames, reference)


@needs_ffmpeg
def test_ten_bit_needs_the_cli_conversion(cli_video) -> None:  # type: ignore[no-untyped-def]
    """PyAV's plain reformat (the route before issue 25) is far off on a 10-bit source: the test above can fail."""
    path = cli_video("h264_high10_pyramid")
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    plain = frame.reformat(format="rgb24").to_ndarray().astype(int)
    assert np.abs(plain - ffmpeg_frames(path)[0].astype(int)).max() > 10
    assert np.array_equal(_rgb.RgbConverter()(frame), ffmpeg_frames(path)[0])


def test_converter_follows_a_change_of_size_or_format() -> None:
    """A stream that changes size or pixel format mid-way gets a new graph, as the CLI reconfigures its filters."""
    frames = []
    for size, pix_fmt in [((64, 48), "yuv420p"), ((32, 24), "yuv420p"), ((32, 24), "yuv420p10le")]:
        frame = av.VideoFrame.from_ndarray(frame_image(3, size), format="rgb24").reformat(format=pix_fmt)
        frame.pts, frame.time_base = 0, Fraction(1, 25)
        frames.append(frame)
    one = _rgb.RgbConverter()
    for frame in frames:
        assert np.array_equal(one(frame), _rgb.RgbConverter()(frame))


def expected_indices(pts_seconds: list[float], end: float, fps: float = 1.0) -> list[int]:
    """By hand: the last frame with pts ≤ k / fps, for every k / fps < end."""
    ticks = [k / fps for k in range(int(np.ceil(end * fps - 1e-9)))]
    return [max(i for i, p in enumerate(pts_seconds) if p <= t + 1e-9) for t in ticks]


@pytest.mark.parametrize("case", ["h264_25", "h264_2997", "mkv_start_offset", "short", "vfr_mp4", "vfr_mkv"])
def test_selected_frames_by_hand(videos: dict[str, Path], case: str) -> None:
    """The frame counters picked equal the rule computed from the generated timestamps."""
    opts = CASES[case]
    if opts.get("vfr"):
        durations = [d / 1000 for d in vfr_intervals_ms(int(opts["seconds"] * 1000 / 50))]
        pts = list(np.concatenate([[0.0], np.cumsum(durations)[:-1]]))
        end = float(np.sum(durations))
    else:
        rate = {29.97: 30000 / 1001}.get(opts["fps"], opts["fps"])
        n = int(round(opts["seconds"] * rate))
        pts, end = [i / rate for i in range(n)], n / rate
    decoded = read_frames(videos[case])
    assert [read_counter(f) for f in decoded.frames] == expected_indices(pts, end)


def test_rotation_turns_the_stored_pixels(videos: dict[str, Path]) -> None:
    stored = read_frames(videos["h264_25"]).frames[0]  # same content, no rotation
    turned = read_frames(videos["rotate_90"]).frames[0]
    assert turned.shape == (64, 48, 3)
    # 90° counter-clockwise display rotation: the stored top row becomes the left column.
    assert np.abs(np.rot90(stored).astype(int) - turned.astype(int)).mean() < 4


def test_iter_frames_streams_the_same_frames(videos: dict[str, Path]) -> None:
    decoded = read_frames(videos["vfr_mkv"])
    items = list(iter_frames(videos["vfr_mkv"]))
    assert [t for t, _ in items] == decoded.timestamps.tolist()
    assert all(np.array_equal(a, b) for (_, a), b in zip(items, decoded.frames))


def test_decoded_video_is_frozen(videos: dict[str, Path]) -> None:
    decoded = read_frames(videos["short"])
    assert isinstance(decoded, DecodedVideo) and len(decoded) == 1
    with pytest.raises(FrozenInstanceError):
        decoded.frames = np.zeros(1)  # type: ignore[misc]


# ---- failures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken")
    good = make_video(root / "good.mp4", seconds=3.0).read_bytes()
    good_mkv = make_video(root / "good.mkv", seconds=3.0).read_bytes()
    files = {
        "truncated_mp4": good[: len(good) // 2],  # moov atom (written last) is gone
        "truncated_mkv": good_mkv[: len(good_mkv) // 2],  # cluster data cut mid-stream
        "zero_bytes": b"",
        "text": b"this is not a video\n" * 20,
    }
    paths = {name: root / f"{name}.{'mkv' if 'mkv' in name else 'mp4'}" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    garbled = bytearray(good)
    middle = len(garbled) // 3
    garbled[middle:middle + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    paths["garbled"] = root / "garbled.mp4"
    paths["garbled"].write_bytes(bytes(garbled))
    paths["audio_only"] = _write_audio(root / "audio_only.m4a", with_video_stream=False)
    paths["no_frames"] = _write_audio(root / "no_frames.mkv", with_video_stream=True)
    paths["missing"] = root / "missing.mp4"
    return paths


def _write_audio(path: Path, *, with_video_stream: bool) -> Path:
    """An audio file; with `with_video_stream`, it also declares a video stream that has no packet."""
    with av.open(str(path), "w") as container:
        if with_video_stream:
            video = container.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


PYAV_FAILURES = {
    "truncated_mp4": "unreadable",
    "truncated_mkv": "corrupt",
    "garbled": "corrupt",
    "zero_bytes": "unreadable",
    "text": "unreadable",
    "missing": "unreadable",
    "audio_only": "no_video_stream",
    "no_frames": "empty",
}
# Where an optional backend classifies differently (or does not notice), documented in its decoders/ module.
BACKEND_FAILURES = {
    "decord": {**PYAV_FAILURES, "truncated_mkv": None, "no_frames": "unreadable"},
    "torchcodec": {**PYAV_FAILURES, "truncated_mkv": None, "no_frames": "unreadable"},
}


@pytest.mark.parametrize("name", list(PYAV_FAILURES))
@pytest.mark.parametrize("backend", ["pyav", "decord", "torchcodec"])
def test_failure_classes(broken: dict[str, Path], name: str, backend: str) -> None:
    if backend != "pyav":
        pytest.importorskip(backend)
    expected = (PYAV_FAILURES if backend == "pyav" else BACKEND_FAILURES[backend])[name]
    if expected is None:  # decodes what is there without noticing the cut
        assert len(read_frames(broken[name], backend=backend)) >= 1
        return
    with pytest.raises(DecodeError) as err:
        read_frames(broken[name], backend=backend)
    assert err.value.failure == expected
    # A per-video failure, recorded with its class while the batch goes on; never a stage stop.
    assert isinstance(err.value, VideoFailure) and not isinstance(err.value, StageError)
    assert isinstance(err.value.failure, ExtractFailure)
    assert str(broken[name]) in str(err.value)


def test_corrupt_message_counts_frames_and_streaming_yields_first(broken: dict[str, Path]) -> None:
    got = []
    with pytest.raises(DecodeError, match=r"after \d+ frames") as err:
        for item in iter_frames(broken["truncated_mkv"]):
            got.append(item)
    assert err.value.failure == "corrupt"
    assert len(got) >= 1  # frames before the cut were streamed out


def test_timeout(videos: dict[str, Path]) -> None:
    with pytest.raises(DecodeError) as err:
        read_frames(videos["h264_25"], timeout=0.0)
    assert err.value.failure == "timeout"


def test_backend_registry_and_missing_extra(videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"pyav", "decord", "torchcodec"} <= set(DECODERS.names())
    pyav = DECODERS.get("pyav")  # each entry names the package whose version the feature set records
    assert (pyav.name, pyav.package, pyav.version()) == ("pyav", "av", av.__version__)
    with pytest.raises(UnknownNameError, match="pyav"):
        read_frames(videos["short"], backend="pyva")
    monkeypatch.setitem(sys.modules, "decord", None)  # import decord now fails
    with pytest.raises(UsageError, match=r"pip install videolt\[decord\]"):
        read_frames(videos["short"], backend="decord")


def test_bad_fps_is_rejected(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="fps"):
        read_frames(videos["short"], fps=0)
