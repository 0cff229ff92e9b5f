#!/usr/bin/env bash
# Set up everything videolt needs on a fresh Debian machine: ffmpeg (the tests' reference decoder),
# a virtual environment in .venv, and videolt with its optional extras. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.videolt-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # torch/torchvision pinned to the builds known to install on this machine kind (see README).
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
    # youtube: Deno (a ~40 MB wheel) and yt-dlp-ejs, so that this venv can rebuild the dataset from IDs
    .venv/bin/python -m pip install -q -e ".[dev,decord,torchcodec,ray,youtube]"
    touch "$stamp"
fi
