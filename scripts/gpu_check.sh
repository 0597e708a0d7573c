#!/usr/bin/env bash
# The GPU path in one command (under 8 minutes on one GPU): the CUDA tests, then a short
# benchmark (bf16 training tokens/s and MFU against the matmul peak measured in the same
# run, the share of step time spent waiting for data, greedy and beam decoding of
# test_2016_flickr), printed as one table. From the repository root:
#
#     bash scripts/gpu_check.sh [--data DIR]      # DIR: Multi30k's files (.gz or plain)
#
# Uses .venv/bin/python when there is one, else $PYTHON, else python3; the package is run
# from this checkout (PYTHONPATH), so it needs no install beyond torch with CUDA,
# sentencepiece, numpy, pyyaml, typer, tqdm, sacrebleu and pytest. Logs and the JSON go to
# ${GPU_CHECK_OUT:-runs/gpu_check}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "gpu_check: $PY cannot import torch; make install, or set PYTHON to one that can" >&2
    exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device visible to $PY (torch.cuda.is_available() is false)" >&2
    exit 2
fi
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(0), "| torch",
          torch.__version__, "| CUDA", torch.version.cuda, "| GPUs", torch.cuda.device_count())'

echo "gpu_check: CUDA tests (log: $OUT/tests.log)" >&2
tests=0
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/integration/test_cuda.py \
    --junitxml="$OUT/cuda-tests.xml" -rA >"$OUT/tests.log" 2>&1 || tests=$?
tail -n 3 "$OUT/tests.log" >&2

echo "gpu_check: benchmark (log: $OUT/bench.log)" >&2
bench=0
timeout 300 "$PY" -m bench.gpu --tests "$OUT/cuda-tests.xml" --json "$OUT/gpu_check.json" \
    "$@" 2>"$OUT/bench.log" || bench=$?
if [ "$bench" -ne 0 ]; then
    tail -n 20 "$OUT/bench.log" >&2
fi
if [ "$tests" -ne 0 ] || [ "$bench" -ne 0 ]; then
    echo "gpu_check: FAILED (tests exit $tests, benchmark exit $bench; 124 = timed out)" >&2
    exit 1
fi
echo "gpu_check: all passed" >&2
