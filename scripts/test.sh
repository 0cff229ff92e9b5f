#!/usr/bin/env bash
# The test command: sets everything up on a fresh machine (scripts/setup.sh), then runs the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
