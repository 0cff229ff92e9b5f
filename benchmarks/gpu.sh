#!/usr/bin/env bash
# Everything a GPU machine should measure for videolt, in at most 5 minutes: extraction frames/s
# (ResNet-50/101, TSM-R50; bf16, channels_last, eager and torch.compile), CPU-vs-GPU feature
# agreement, training steps/s fp32 vs bf16 at VideoLT shapes, and the whole extract stage with
# decoding when PyAV and zarr are there (benchmarks/gpu.py says what each part does).
#
#   bash benchmarks/gpu.sh              on the GPU machine; results in $OUT: gpu.json, gpu.md, log.txt
#   bash benchmarks/gpu.sh --dry-run    anywhere: the CPU at tiny sizes (tests/test_gpu_script.py)
#
# The device image has torch, torchvision, timm and numba but no PyAV or zarr, and no internet:
# run `bash benchmarks/gpu_prepare.sh` here first, then carry `.whl` (their wheels, ~44 MB) and
# `.bench` (one 150-s 360p H.264 source, ~6 MB) with the call. Without them the stage part is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/videolt-site .whl/*.whl; then
        export PYTHONPATH="/tmp/videolt-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "the wheels in .whl did not install: the stage part will be skipped"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{ nvidia-smi 2>&1 || echo "no nvidia-smi here"; } > "$OUT/nvidia-smi.txt"
args=(--out "$OUT" --budget 270)
for f in .bench/*.mp4; do
    [ -e "$f" ] && args+=(--sources "$f")
done
timeout 295 "$PYTHON" benchmarks/gpu.py "${args[@]}" "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
