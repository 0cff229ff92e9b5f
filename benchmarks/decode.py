"""Decode → uint8 150×3×256×256 benchmark: videolt's decode stage vs the ffmpeg CLI route vs the bare decode floor.

    python benchmarks/decode.py [--repeats 3] [--cache DIR] [--routes ours,ffmpeg_cli,floor]

Generates (once, cached) a 3-minute 1280×720 25 fps H.264 video and its 640×360 version, then times
in fresh child processes (so each peak RSS is its own), routes interleaved and their order rotated
every repeat, all at the caller's `nice` level:
- ours: `decode_job` exactly as the pipeline runs it (PyAV one pass, RGB only for candidate frames,
  antialiased bilinear resize to short side 256 and centre crop per kept frame, `sample_indices`)
  → uint8 [150, 3, 256, 256]; float conversion and normalisation happen on the inference device;
- ffmpeg_cli: `ffmpeg -vf fps=fps=1:round=up,scale=W:256:flags=bilinear` piping rgb24 into numpy
  → the same sampling and centre crop → uint8 [150, 3, 256, 256];
- floor: `ffmpeg -an -i V -f null -` (decode only, nothing converted or kept).
Every decoder uses FFmpeg's automatic threading (cores + 1 frame threads). Each measurement records
wall time and CPU time (user + system of the child and of the ffmpeg it runs): on a shared, loaded
machine CPU time is the steadier measure of work. Prints one JSON line per measurement and a
Markdown table (medians) for benchmarks/RESULTS.md.
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

SECONDS = 180
SIZES = {"720p": (1280, 720), "360p": (640, 360)}
FRAMES, SIDE = 150, 256


def make_source(cache: Path, name: str) -> Path:
    """A test pattern with light temporal noise: about 1.6 Mb/s at 720p, like a YouTube 720p stream."""
    width, height = SIZES[name]
    path = cache / f"bench_{name}_{SECONDS}s.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size={width}x{height}:rate=25:duration={SECONDS}",
             "-vf", "noise=alls=4:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-crf", "26",
             "-bf", "2", "-g", "250", "-pix_fmt", "yuv420p", str(tmp)],
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


def run_ours(video: Path) -> tuple[int, tuple[int, ...], float]:
    from videolt.extract.runner import DecodeJob, View, decode_job

    before = _rss_mb()
    d = decode_job(DecodeJob(0, video.stem, str(video), (View(SIDE, SIDE),), frames=FRAMES))
    if d.failure is not None:
        raise RuntimeError(d.message)
    return d.n_frames, tuple(d.clips[0].shape), _rss_mb() - before


def run_ffmpeg_cli(video: Path) -> tuple[int, tuple[int, ...], float]:
    import numpy as np

    from videolt.extract.sampling import sample_indices

    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0", str(video)], capture_output=True, check=True, text=True,
    ).stdout.strip().split(",")
    width, height = int(probe[0]), int(probe[1])
    out_w = int(SIDE * width / height) // 2 * 2  # ffmpeg's -2: the even width that keeps the aspect
    raw, decoder_mb = run_tool(
        ["ffmpeg", "-v", "error", "-i", str(video), "-an", "-vf",
         f"fps=fps=1:round=up,scale={out_w}:{SIDE}:flags=bilinear", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    )
    frames = np.frombuffer(raw, np.uint8).reshape(-1, SIDE, out_w, 3)
    left = int(round((out_w - SIDE) / 2.0))
    picked = frames[sample_indices(len(frames), FRAMES), :, left:left + SIDE]
    out = np.ascontiguousarray(picked.transpose(0, 3, 1, 2))  # uint8 [150, 3, 256, 256]
    return len(frames), out.shape, decoder_mb


def run_floor(video: Path) -> tuple[int, tuple[int, ...], float]:
    _, decoder_mb = run_tool(["ffmpeg", "-v", "error", "-an", "-i", str(video), "-f", "null", "-"])
    return 0, (), decoder_mb


ROUTES = {"ours": run_ours, "ffmpeg_cli": run_ffmpeg_cli, "floor": run_floor}


def child(route: str, video: Path) -> dict:
    """One measurement inside this (fresh) process; imports happen before the clock starts."""
    import numpy  # noqa: F401  (import cost is not decode cost)

    import videolt.extract.runner  # noqa: F401

    baseline = _rss_mb()
    cpu, start = _cpu_seconds(), time.perf_counter()
    n, shape, decoder_mb = ROUTES[route](video)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    return {
        "route": route, "video": video.name, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
        "frames_1fps": n, "output": shape, "decoder_peak_mb": round(decoder_mb, 1),
        "route_growth_mb": round(_rss_mb() - baseline, 1), "baseline_rss_mb": round(baseline, 1),
        "nice": os.nice(0), "load": [round(x, 2) for x in os.getloadavg()],
    }


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videolt-bench-decode")
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--child", choices=list(ROUTES), help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.video)))
        return

    routes = args.routes.split(",")
    load_before = os.getloadavg()
    results: dict[tuple[str, str], list[dict]] = {}
    for name in SIZES:
        video = make_source(args.cache, name)
        for rep in range(args.repeats):
            for route in routes[rep % len(routes):] + routes[:rep % len(routes)]:  # rotate the order
                out = subprocess.run(
                    [sys.executable, __file__, "--child", route, "--video", str(video)],
                    capture_output=True, check=True, text=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                results.setdefault((name, route), []).append(row)

    print(f"\n{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
          f"repeats {args.repeats} · nice {os.nice(0)} · load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| video | route | wall s (median) | × floor | CPU s (median) | × floor | decoder peak MB | "
          "whole route, extra MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in SIZES:
        floor = results.get((name, "floor"))
        for route in routes:
            rows = results[name, route]
            wall, cpu = _median(rows, "seconds"), _median(rows, "cpu_seconds")
            wall_x = f"{wall / _median(floor, 'seconds'):.2f}" if floor else "–"
            cpu_x = f"{cpu / _median(floor, 'cpu_seconds'):.2f}" if floor else "–"
            decoder = max(r["decoder_peak_mb"] for r in rows)
            growth = max(r["route_growth_mb"] for r in rows)
            print(f"| {name} | {route} | {wall:.2f} | {wall_x} | {cpu:.2f} | {cpu_x} | {decoder:.0f} | {growth:.0f} |")


if __name__ == "__main__":
    main()
