"""`videolt doctor`: one screen saying what will work on this machine and what will not, each with its fix.

The download stage's own checks (`videolt.data.download.preflight`: yt-dlp and its age, the
JavaScript runtime, yt-dlp-ejs, plugins, the session, write access, free disk against the pending
videos' need) come first, exactly as `videolt download` runs them before it starts; then whether the
download host resolves and answers (`tooling.check_host`: offline, every download would fail); then what the
other stages need: Python and the packages, PyAV and its FFmpeg, every registered decoder, torch and
the GPU. Nothing here fetches, decodes or changes anything (write access is tested with a temp file).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
from pathlib import Path

from videolt import __version__
from videolt.data.download import DownloadConfig, preflight
from videolt.data import tooling
from videolt.data.tooling import Check, python_check
from videolt.data.workdir import Workdir

__all__ = ["doctor", "format_doctor"]

PACKAGES = ("torch", "torchvision", "av", "timm", "numpy", "numba", "zarr", "matplotlib")
_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": "--"}


def doctor(workdir: str | Path | None, config: DownloadConfig, *, search_path: str | None = None) -> dict:
    """Every check, as plain data: `{"ok": no check failed, "workdir": path or None, "checks": [...]}`."""
    wd = Workdir.open(workdir) if workdir is not None else None
    checks = [python_check(), _packages(), *preflight(wd, config, search_path=search_path),
              tooling.check_host(config.url_template), _ffmpeg_cli(), *_decoders(), _torch()]
    return {"ok": not any(c.status == "fail" for c in checks), "videolt": __version__,
            "workdir": str(wd.root) if wd else None, "checks": [c.to_dict() for c in checks]}


def _packages() -> Check:
    found, missing = [], []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return Check("packages", "fail", f"missing: {', '.join(missing)}",
                     "bash scripts/setup.sh (or pip install -e .)")
    return Check("packages", "ok", f"videolt {__version__}; " + ", ".join(found))


def _ffmpeg_cli() -> Check:
    path = shutil.which("ffmpeg")
    if path:
        return Check("ffmpeg (CLI)", "info", f"{path}: the tests' reference decoder; no stage needs it")
    return Check("ffmpeg (CLI)", "info", "not found: no stage needs it (one video-only stream, no merge; PyAV "
                 "bundles FFmpeg); the tests use it as their reference", "apt-get install ffmpeg (tests only)")


def _decoders() -> list[Check]:
    from videolt.extract.decoders import DECODERS

    checks = []
    for name in DECODERS:
        entry = DECODERS.get(name)
        version = entry.version()
        try:
            module = importlib.import_module(entry.package)
        except Exception as e:  # a missing or broken optional backend: say so, go on
            fix = "bash scripts/setup.sh" if name == "pyav" else f"pip install 'videolt[{name}]'"
            status = "fail" if name == "pyav" else "info"
            why = "not installed" if version == "not installed" else f"{version}, fails to load: {type(e).__name__}"
            checks.append(Check(f"decoder {name}", status, why, fix))
            continue
        detail = f"{entry.package} {version}"
        if name == "pyav":
            detail += f", FFmpeg {getattr(module, 'ffmpeg_version_info', 'unknown')}"
        checks.append(Check(f"decoder {name}", "ok", detail))
    return checks


def _torch() -> Check:
    import torch

    build = f"torch {torch.__version__}" + (f" (CUDA {torch.version.cuda})" if torch.version.cuda else " (CPU build)")
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        names = ", ".join(f"{p.name} {p.total_memory / 2**30:.0f} GiB" for p in gpus)
        return Check("torch and GPU", "ok", f"{build}; {len(gpus)} GPU(s): {names}")
    return Check("torch and GPU", "warn", f"{build}; no GPU: extraction runs on the CPU (slow at scale; training "
                 "on features is fine)", "a CUDA GPU with a matching driver and a CUDA build of torch")


def format_doctor(result: dict) -> str:
    """The one screen: a line per check, its fix under it."""
    checks = result["checks"]
    fails = sum(c["status"] == "fail" for c in checks)
    warns = sum(c["status"] == "warn" for c in checks)
    head = "everything needed is in place" if not fails else f"{fails} problem(s) that stop a stage"
    lines = [f"videolt doctor ({result['workdir'] or 'no workdir'}): {head}"
             + (f", {warns} warning(s)" if warns else "")]
    width = max(len(c["name"]) for c in checks)
    for c in checks:
        lines.append(f"  {_MARK[c['status']]:<4}  {c['name']:<{width}}  {c['detail']}")
        if c["fix"] and c["status"] != "ok":
            lines.append(f"  {'':<4}  {'':<{width}}  fix: {c['fix']}")
    return "\n".join(lines)
