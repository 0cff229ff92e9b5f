"""Helpers for the fault tests: a tiny workdir of generated videos, the CLI in this process or as
real processes, and the one-line error check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.lists import small_lists
from tests.videos import make_video
from videolt.cli import main
from videolt.data.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def video_workdir(root: Path, *, n_train: int = 6, n_val: int = 2, n_test: int = 3) -> Path:
    """A workdir whose videos (2-3 s, 64x48, 10 fps) are all recorded as downloaded."""
    wd = Workdir.init(root / "wd", small_lists(root / "lists", n_train=n_train, n_val=n_val, n_test=n_test))
    with wd.manifest() as m:
        for v in m.videos():
            path = wd.video_path(v.video_id, "mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            make_video(path, seconds=2.0 + (v.index % 3) * 0.5, fps=10, pattern=f"class-{v.index % 5}")
            m.record("download", v.index, "done", info={"path": str(path.relative_to(wd.root))})
    return wd.root


def extract_args(wd: Path, *extra: str) -> list[str]:
    """`videolt extract` of the feature set `r`: random ResNet-50 on 3 frames of 32x32, in one process."""
    return ["extract", str(wd), "--backbone", "resnet50", "--weights", "random", "--name", "r", "--frames", "3",
            "--batch-size", "3", "--resize", "40", "--crop", "32", "--workers", "0", "--no-progress", "--json", *extra]


def train_args(wd: Path, run: str, *extra: str) -> list[str]:
    """`videolt train` of a small NonLinear baseline on feature set `r` for 2 epochs."""
    return ["train", str(wd), "--features", "r", "--run", run, "--epochs", "2", "--batch-size", "4",
            "--workers", "0", "--no-progress", "--json", *extra]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`videolt ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def spawn(*args: str, **kw) -> subprocess.Popen:
    """`videolt ARGS` as a process of its own (stdout and stderr to pipes, text)."""
    return subprocess.Popen([sys.executable, "-m", "videolt", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def error_line(err: str, command: str) -> str:
    """The one error line of `videolt COMMAND` in `err` (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"videolt {command}: ")]
    assert len(lines) == 1, err
    return lines[0]
