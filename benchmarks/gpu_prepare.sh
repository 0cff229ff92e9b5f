#!/usr/bin/env bash
# Prepare what benchmarks/gpu.sh carries to a GPU machine (both folders are ignored by git):
#   .whl/    wheels of what the device image lacks, for its Python 3.12: PyAV, zarr and zarr's
#            dependencies (about 44 MB; the whole carried tree must stay under 64 MiB);
#   .bench/  one 150-s 640x360 H.264 source for the stage measurement (from benchmarks/extract.py's
#            cache, generated there if missing).
# Then, on the device: carry [".whl", ".bench"], command `bash benchmarks/gpu.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p .whl .bench
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl av==18.1.0 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
PYTHONPATH=. "$PYTHON" -c "
import shutil, sys, tempfile
from pathlib import Path
sys.path.insert(0, 'benchmarks')
from extract import make_sources
src = make_sources(Path(tempfile.gettempdir()) / 'videolt-bench-extract', 1, 150)[0]
shutil.copyfile(src, Path('.bench') / src.name)
"
du -sh .whl .bench
