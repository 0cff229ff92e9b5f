"""Decode → 150×3×256×256 benchmark: videolt's route vs the ffmpeg CLI route vs the bare decode floor.

    python benchmarks/decode.py [--repeats 3] [--cache DIR] [--routes ours,ffmpeg_cli,floor]

Generates (once, cached) a 3-minute 1280×720 25 fps H.264 video and its 640×360 version, then times
in fresh child processes (so each peak RSS is its own):
- ours: `iter_frames` (PyAV, one pass, RGB only for kept frames) → ResizeShortSide(256) per frame →
  `sample_indices(n, 150)` → CenterCrop(256) → [0, 1] → Normalize;
- ffmpeg_cli: `ffmpeg -vf fps=fps=1:round=up,scale=-2:256` piping rgb24 into numpy → the same
  sampling, crop and normalisation;
- floor: `ffmpeg -threads N -an -i V -f null -` (decode only, nothing kept).
Prints one JSON line per measurement and a Markdown table (medians) for benchmarks/RESULTS.md.
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


def _finish(frames_u8, n_decoded: int):  # type: ignore[no-untyped-def]
    """Shared tail of both routes: [n, 3, h, w] uint8 (short side 256) → [150, 3, 256, 256] float32."""
    import torch

    from videolt.extract.sampling import sample_indices
    from videolt.extract.transforms import CenterCrop, Normalize, ToFloat

    picked = frames_u8[torch.from_numpy(sample_indices(n_decoded, FRAMES))]
    return Normalize()(ToFloat()(CenterCrop(SIDE)(picked)))


def run_ours(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    import torch

    from videolt.extract.decode import iter_frames
    from videolt.extract.transforms import ResizeShortSide

    before = _rss_mb()
    resize = ResizeShortSide(SIDE)
    small = [resize(torch.from_numpy(rgb)[None]) for _, rgb in iter_frames(video)]
    decoder_mb = _rss_mb() - before  # decoder + the resized 1-fps frames it hands over
    out = _finish(torch.cat(small), len(small))
    return len(small), tuple(out.shape), decoder_mb


def run_ffmpeg_cli(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    import numpy as np
    import torch

    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0", str(video)], capture_output=True, check=True, text=True,
    ).stdout.strip().split(",")
    width, height = int(probe[0]), int(probe[1])
    out_w = int(SIDE * width / height) // 2 * 2  # ffmpeg's -2: the even width that keeps the aspect
    raw, decoder_mb = run_tool(
        ["ffmpeg", "-v", "error", "-threads", str(threads), "-i", str(video), "-an", "-vf",
         f"fps=fps=1:round=up,scale={out_w}:{SIDE}:flags=bilinear", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    )
    frames = torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(-1, SIDE, out_w, 3)).permute(0, 3, 1, 2)
    out = _finish(frames, len(frames))
    return len(frames), tuple(out.shape), decoder_mb


def run_floor(video: Path, threads: int) -> tuple[int, tuple[int, ...], float]:
    _, decoder_mb = run_tool(
        ["ffmpeg", "-v", "error", "-threads", str(threads), "-an", "-i", str(video), "-f", "null", "-"]
    )
    return 0, (), decoder_mb


ROUTES = {"ours": run_ours, "ffmpeg_cli": run_ffmpeg_cli, "floor": run_floor}


def child(route: str, video: Path, threads: int) -> dict:
    """One measurement inside this (fresh) process; imports happen before the clock starts."""
    import torch  # noqa: F401  (import cost is not decode cost)

    import videolt.extract.decode  # noqa: F401

    baseline = _rss_mb()
    start = time.perf_counter()
    n, shape, decoder_mb = ROUTES[route](video, threads)
    seconds = time.perf_counter() - start
    return {
        "route": route, "video": video.name, "seconds": round(seconds, 3), "frames_1fps": n, "output": shape,
        "decoder_peak_mb": round(decoder_mb, 1), "route_growth_mb": round(_rss_mb() - baseline, 1),
        "baseline_rss_mb": round(baseline, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videolt-bench-decode")
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", choices=list(ROUTES), help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.video, args.threads)))
        return

    results: dict[tuple[str, str], list[dict]] = {}
    for name in SIZES:
        video = make_source(args.cache, name)
        for _ in range(args.repeats):
            for route in args.routes.split(","):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", route, "--video", str(video), "--threads", str(args.threads)],
                    capture_output=True, check=True, text=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                results.setdefault((name, route), []).append(row)

    print(f"\n{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
          f"threads {args.threads} · repeats {args.repeats}\n")
    print("| video | route | seconds (median) | × floor | decoder peak MB | whole route, extra MB |")
    print("|---|---|---|---|---|---|")
    for name in SIZES:
        floor = results.get((name, "floor"))
        floor_s = statistics.median(r["seconds"] for r in floor) if floor else None
        for route in args.routes.split(","):
            rows = results[name, route]
            secs = statistics.median(r["seconds"] for r in rows)
            ratio = f"{secs / floor_s:.2f}" if floor_s else "–"
            decoder = max(r["decoder_peak_mb"] for r in rows)
            growth = max(r["route_growth_mb"] for r in rows)
            print(f"| {name} | {route} | {secs:.2f} | {ratio} | {decoder:.0f} | {growth:.0f} |")


if __name__ == "__main__":
    main()
