#!/usr/bin/env bash
# The main job: sets everything up on a fresh machine (scripts/setup.sh), then runs the whole pipeline offline
# on a generated long-tailed video set (videolt demo). Extra arguments go to `videolt demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/videolt demo "$@"
