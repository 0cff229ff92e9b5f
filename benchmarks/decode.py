"""1-fps decoding against the bare decode floor, selective and full, on streaming-like sources.

    python benchmarks/decode.py [--repeats 3] [--cache DIR] [--sources a,b] [--routes r1,r2] [--threads 0]
    python benchmarks/decode.py --convert [--repeats 5] [--sources a,b]

Generates (once, cached) 150-s sources at streaming bitrates: 640×360 and 1280×720 H.264 (x264 high
profile, 3 B-frames with a B-pyramid, 30 fps; x264 main profile, 2 B-frames, 25 fps) and VP9
(libvpx-vp9, alt-ref frames, 30 fps). Times in fresh child processes (so each peak RSS is its own),
routes interleaved and their order rotated every repeat, all at the caller's `nice` level:
- floor: `ffmpeg -an -i V -f null -` (decode only, nothing converted or kept);
- read_full / read_selective: `read_frames` (the 1-fps frames as RGB at native size), every frame
  decoded (today's path) or selective decoding (frames no tick shows and none references discarded);
- job_full / job_selective: `decode_job` as the pipeline runs it (PyAV one pass, RGB only for
  candidate frames, antialiased bilinear resize to short side 256 and centre crop, `sample_indices`)
  → uint8 [150, 3, 256, 256];
- ffmpeg_cli: `ffmpeg -vf fps=fps=1:round=up,scale=W:256:flags=bilinear` piping rgb24 into numpy
  → the same sampling and centre crop (not in the default routes).
`--convert` times the RGB conversion alone, in this process, on each source's 1-fps frames (decoded
once): PyAV's `VideoReformatter` (the route before issue 25) against videolt's `RgbConverter` (the
CLI's filter graph, what `read_frames` runs); `h264_high10_360p` and `vp9_profile2_360p` are 10-bit
sources for it (x264 High 10 and VP9 profile 2, the format of HDR on YouTube).
Every decoder uses FFmpeg's automatic threading (cores + 1 frame threads), or `--threads N` for all
(the floor gets `-threads N`). Each measurement records wall time and CPU time (user + system of
the child and of the ffmpeg it runs): on a shared, loaded machine CPU time is the steadier measure
of work. Prints one JSON line per measurement and a Markdown table (medians) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SECONDS = 150
FRAMES, SIDE = 150, 256
_X264_HIGH = ["-c:v", "libx264", "-profile:v", "high", "-preset", "fast", "-bf", "3", "-b_strategy", "1"]
_X264_HIGH10 = ["-c:v", "libx264", "-profile:v", "high10", "-preset", "fast", "-bf", "3", "-b_strategy", "1"]
_X264_MAIN = ["-c:v", "libx264", "-profile:v", "main", "-preset", "fast", "-bf", "2"]
_VP9 = ["-c:v", "libvpx-vp9", "-deadline", "good", "-cpu-used", "5", "-row-mt", "1", "-auto-alt-ref", "1",
        "-lag-in-frames", "16"]
# name → (size, fps, encoder options with the bitrate, suffix): typical streaming settings per size.
SOURCES = {
    "h264_high_360p": ((640, 360), 30, _X264_HIGH + ["-b:v", "300k", "-maxrate", "450k", "-bufsize", "900k"], "mp4"),
    "h264_main_360p": ((640, 360), 25, _X264_MAIN + ["-b:v", "350k", "-maxrate", "500k", "-bufsize", "1M"], "mp4"),
    "vp9_360p": ((640, 360), 30, _VP9 + ["-b:v", "250k"], "webm"),
    "h264_high_720p": ((1280, 720), 30, _X264_HIGH + ["-b:v", "1500k", "-maxrate", "2M", "-bufsize", "4M"], "mp4"),
    "h264_main_720p": ((1280, 720), 25, _X264_MAIN + ["-b:v", "1500k", "-maxrate", "2M", "-bufsize", "4M"], "mp4"),
    "vp9_720p": ((1280, 720), 30, _VP9 + ["-b:v", "1000k"], "webm"),
    "h264_high10_360p": ((640, 360), 30, _X264_HIGH10 + ["-b:v", "300k", "-maxrate", "450k", "-bufsize", "900k"],
                         "mp4"),
    "vp9_profile2_360p": ((640, 360), 30, _VP9 + ["-profile:v", "2", "-b:v", "250k"], "webm"),
}
PIX_FMT = {"h264_high10_360p": "yuv420p10le", "vp9_profile2_360p": "yuv420p10le"}  # others: yuv420p
DEFAULT_SOURCES = [name for name in SOURCES if name not in PIX_FMT]


def make_source(cache: Path, name: str) -> Path:
    """Test pattern with light temporal noise, encoded as a streaming service would (see SOURCES)."""
    (width, height), fps, codec, suffix = SOURCES[name]
    path = cache / f"{name}_{SECONDS}s.{suffix}"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".part.{suffix}")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size={width}x{height}:rate={fps}:duration={SECONDS}",
             "-vf", "noise=alls=5:allf=t", *codec, "-g", str(10 * fps), "-pix_fmt", PIX_FMT.get(name, "yuv420p"),
             str(tmp)],
            check=True,
        )
        tmp.rename(path)
    return path


def _rss_mb() -> float:
    """This process's peak RSS so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tool(cmd: list[str]) -> tuple[bytes, float]:
    """Run a command, return its stdout and its own peak RSS in MB.

    The peak is polled from /proc/<pid>/status VmHWM (a high-water mark, reset at exec):
    RUSAGE_CHILDREN would also count the parent's pages that a forked child shares before exec.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    result: dict[str, tuple[bytes, bytes]] = {}
    reader = threading.Thread(target=lambda: result.update(io=proc.communicate()))
    reader.start()
    peak_kb = 0
    while reader.is_alive():
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.02)
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result['io'][1].decode(errors='replace')[-500:]}")
    return result["io"][0], peak_kb / 1024


def _cpu_seconds() -> float:
    """CPU time of this process and of the children it has waited for (user + system)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _job(video: Path, selective: bool, threads: int) -> tuple[int, tuple[int, ...], float]:
    from videolt.extract.decode_worker import DecodeJob, View, decode_job

    before = _rss_mb()
    d = decode_job(DecodeJob(0, video.stem, str(video), (View(SIDE, SIDE),), frames=FRAMES, selective=selective,
                             threads=threads))
    if d.failure is not None:
        raise RuntimeError(d.message)
    return d.n_frames, tuple(d.clips[0].shape), _rss_mb() - before


def _read(video: Path, selective: bool, threads: int) -> tuple[int, tuple[int, ...], float]:
    from videolt.extract.decoders import read_frames

    before = _rss_mb()
    d = read_frames(video, selective=selective, threads=threads)
    return len(d), tuple(d.frames.shape), _rss_mb() - before


def run_job_full(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    return _job(video, False, threads)


def run_job_selective(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    return _job(video, True, threads)


def run_read_full(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    return _read(video, False, threads)


def run_read_selective(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    return _read(video, True, threads)


def run_ffmpeg_cli(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    import numpy as np

    from videolt.extract.sampling import sample_indices

    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0", str(video)], capture_output=True, check=True, text=True,
    ).stdout.strip().split(",")
    width, height = int(probe[0]), int(probe[1])
    out_w = int(SIDE * width / height) // 2 * 2  # ffmpeg's -2: the even width that keeps the aspect
    raw, decoder_mb = run_tool(
        ["ffmpeg", "-v", "error", *_threads(threads), "-i", str(video), "-an", "-vf",
         f"fps=fps=1:round=up,scale={out_w}:{SIDE}:flags=bilinear", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    )
    frames = np.frombuffer(raw, np.uint8).reshape(-1, SIDE, out_w, 3)
    left = int(round((out_w - SIDE) / 2.0))
    picked = frames[sample_indices(len(frames), FRAMES), :, left:left + SIDE]
    out = np.ascontiguousarray(picked.transpose(0, 3, 1, 2))  # uint8 [150, 3, 256, 256]
    return len(frames), out.shape, decoder_mb


def run_floor(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    _, decoder_mb = run_tool(["ffmpeg", "-v", "error", *_threads(threads), "-an", "-i", str(video), "-f", "null", "-"])
    return 0, (), decoder_mb


def _threads(threads: int) -> list[str]:
    """ffmpeg's decoder thread option (input side); 0: its automatic choice."""
    return ["-threads", str(threads)] if threads else []


ROUTES = {"floor": run_floor, "read_full": run_read_full, "read_selective": run_read_selective,
          "job_full": run_job_full, "job_selective": run_job_selective, "ffmpeg_cli": run_ffmpeg_cli}
DEFAULT_ROUTES = "floor,read_full,read_selective,job_full,job_selective"


def child(route: str, video: Path, threads: int) -> dict:
    """One measurement inside this (fresh) process; imports happen before the clock starts."""
    import numpy  # noqa: F401  (import cost is not decode cost)

    import videolt.extract.decode_worker  # noqa: F401

    baseline = _rss_mb()
    cpu, start = _cpu_seconds(), time.perf_counter()
    n, shape, decoder_mb = ROUTES[route](video, threads)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    return {
        "route": route, "video": video.name, "threads": threads, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
        "frames_1fps": n, "output": shape, "decoder_peak_mb": round(decoder_mb, 1),
        "route_growth_mb": round(_rss_mb() - baseline, 1), "baseline_rss_mb": round(baseline, 1),
        "nice": os.nice(0), "load": [round(x, 2) for x in os.getloadavg()],
    }


def convert_costs(videos: dict[str, Path], repeats: int) -> None:
    """CPU ms per frame of each RGB conversion on the 1-fps frames of each source, interleaved per repeat."""
    import av
    from av.video.reformatter import VideoReformatter

    from videolt.extract.decoders._rgb import RgbConverter

    ways = {"reformatter": lambda: (lambda f, r=VideoReformatter(): r.reformat(f, format="rgb24").to_ndarray()),
            "RgbConverter": RgbConverter}
    print("| video | pixel format | way | CPU ms / frame (median) | × reformatter |")
    print("|---|---|---|---|---|")
    for name, video in videos.items():
        with av.open(str(video)) as container:  # one frame a second, as many as a 1-fps decode converts
            frames = [f for i, f in enumerate(container.decode(video=0)) if i % SOURCES[name][1] == 0]
        costs: dict[str, list[float]] = {}
        for rep in range(repeats):
            for way in list(ways)[rep % len(ways):] + list(ways)[:rep % len(ways)]:
                convert = ways[way]()
                convert(frames[0])  # contexts and graphs are built before the clock
                cpu = time.process_time()
                for frame in frames:
                    convert(frame)
                costs.setdefault(way, []).append((time.process_time() - cpu) / len(frames) * 1e3)
        base = costs["reformatter"]
        for way, ms in costs.items():
            ratio = statistics.median(a / b for a, b in zip(ms, base))
            print(f"| {name} | {frames[0].format.name} | {way} | {statistics.median(ms):.3f} | {ratio:.2f} |",
                  flush=True)


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _paired(rows: list[dict], base: list[dict] | None, key: str) -> str:
    """Median over repeats of route ÷ base measured in the same repeat ("–" without a base)."""
    if not base:
        return "–"
    return f"{statistics.median(r[key] / b[key] for r, b in zip(rows, base) if b[key]):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videolt-bench-decode")
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES), help="comma-separated: " + ", ".join(SOURCES))
    parser.add_argument("--routes", default=DEFAULT_ROUTES, help="comma-separated: " + ", ".join(ROUTES))
    parser.add_argument("--threads", type=int, default=0, help="decoder threads for every route (0: FFmpeg's)")
    parser.add_argument("--convert", action="store_true", help="time the RGB conversion alone (see above)")
    parser.add_argument("--child", choices=list(ROUTES), help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.video, args.threads)))
        return

    routes, sources = args.routes.split(","), args.sources.split(",")
    videos = {name: make_source(args.cache, name) for name in sources}
    if args.convert:
        convert_costs(videos, args.repeats)
        return
    load_before, started = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M %Z")
    results: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.repeats):
        for name in sources:
            for route in routes[rep % len(routes):] + routes[:rep % len(routes)]:  # rotate the order
                out = subprocess.run(
                    [sys.executable, __file__, "--child", route, "--video", str(videos[name]),
                     "--threads", str(args.threads)], capture_output=True, check=True, text=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                results.setdefault((name, route), []).append(row)

    print(f"\n{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
          f"{started} · repeats {args.repeats} · threads {args.threads or 'auto'} · nice {os.nice(0)} · "
          f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("× floor and × full: the median over repeats of the ratio to that route in the same repeat.\n")
    print("| video | route | wall s | × floor | CPU s | × floor | × full | decoder peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in sources:
        floor = results.get((name, "floor"))
        for route in routes:
            rows = results[name, route]
            full = results.get((name, route.replace("selective", "full"))) if "selective" in route else None
            print(f"| {name} | {route} | {_median(rows, 'seconds'):.2f} | {_paired(rows, floor, 'seconds')} | "
                  f"{_median(rows, 'cpu_seconds'):.2f} | {_paired(rows, floor, 'cpu_seconds')} | "
                  f"{_paired(rows, full, 'cpu_seconds')} | {max(r['decoder_peak_mb'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
