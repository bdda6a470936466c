#!/usr/bin/env bash
# The GPU checks of one lent device session (~9 minutes on an H200), results under $OUT (default ./gpu_out):
#   tests that need CUDA (CUDA-graph steps, the benchmarks' replay checks, the CUDA-graph stream pool),
#   precision agreement (bf16/fp16/TF32 vs fp32 top-1 on synthetic validation videos, prepared on CPU
#   by `benchmarks/precision_agreement.py prepare` into $AGREEMENT_DATA),
#   the X3D step-vs-clip benchmark with the compiled CUDA-graph step at batch 1 and 64,
#   and real-time streams per GPU through the stream pool in fp32, TF32 and bf16.
# Each stage has its own time limit so a slow one cannot starve the rest; each writes as it goes.
set -u
OUT=${OUT:-gpu_out}
AGREEMENT_DATA=${AGREEMENT_DATA:-.gpu/agreement}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LOG=$OUT/log.txt  # one log (a device session brings back few files)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$LOG" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" >> "$LOG"
STAGES=""

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, appending to the log
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "===== $name (limit $limit s)" >> "$LOG"
  timeout "$limit" "$@" >> "$LOG" 2>&1
  local line="$name: exit $? in $((SECONDS - start)) s"
  echo "$line"; STAGES+="$line"$'\n'
}

stage pytest 120 python3 -m pytest -p no:cacheprovider -rfs tests/test_continual_graph.py \
    tests/test_benchmarks.py tests/test_inference_pool.py::test_cuda_graph_pool_equals_streams_alone
if [ -d "$AGREEMENT_DATA" ]; then
  stage agreement 45 python3 benchmarks/precision_agreement.py measure --data "$AGREEMENT_DATA" \
      --device cuda --out "$OUT/precision_agreement_cuda.json"
fi
stage x3d_compile 220 python3 benchmarks/run.py --device cuda --models x3d_xs,x3d_s,x3d_m,x3d_l \
    --batches 1,64 --seconds 0.2 --no-peer --compile --compile-models x3d_s,x3d_l --compile-batches 1,64 \
    --note "issue 20 goal 3: X3D with the compiled CUDA-graph step" --out "$OUT/"
stage streams "${STREAMS_SECONDS:-170}" python3 benchmarks/streams.py --device cuda --quiet \
    --models x3d_xs,x3d_s,x3d_m,x3d_l,i3d_r50 --capacities 1,32,256,1024,4096 --seconds 0.2 \
    --out "$OUT/streams_cuda.json"
echo "===== stages" >> "$LOG"; printf %s "$STAGES" | tee -a "$LOG"
