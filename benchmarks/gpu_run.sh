#!/usr/bin/env bash
# The GPU checks, run on the lent GPU machine after onnxruntime-gpu and onnx-tool are unpacked into /tmp/site
# (../shared/GPU.md). Needs the trained models/, exported/ and a data folder ($RTML_DATA_DIR, default ./gpu-data)
# carried along. Writes to $OUT (merge them here with benchmarks/merge_results.py):
#   gpu.log                  probes, bench summary, training-speed log
#   results.tgz              a results folder: bench.csv (torch-cuda, torch-cuda-pipeline (pinned buffers,
#                            copies inside the CUDA graph) and ort-cuda rows, skipped rows for TensorRT)
#                            and the raw latency samples of those rows
#   train_speed_gpu.json     2b epoch time: trainer vs bare loop, eager vs CUDA graph (results compared)
#   gpu_train_2b.json        the full HW2 recipe for 2b trained with the CUDA-graph train step
set -u
export PYTHONPATH=/tmp/site:$PWD
export RTML_DATA_DIR=${RTML_DATA_DIR:-$PWD/gpu-data}
log="$OUT/gpu.log"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > "$log" 2>&1
python3 -m rtml_profile runtimes >> "$log" 2>&1
timeout "${BENCH_TIMEOUT:-300}" python3 -m rtml_profile bench -q --runtime torch-cuda --runtime torch-cuda-pipeline --runtime ort-cuda \
  --runtime ort-trt --runtime trt --min-time 0.3 --max-time 1 --results /tmp/results >> "$log" 2>&1
echo "bench rc=$?" >> "$log"
tar czf "$OUT/results.tgz" -C /tmp results
[ -n "${SKIP_TRAINING:-}" ] && exit 0  # bench only
timeout 120 python3 benchmarks/train_speed.py --device cuda --epochs 3 --graph-epochs 10 \
  --out "$OUT/train_speed_gpu.json" >> "$log" 2>&1
echo "train_speed rc=$?" >> "$log"
repo=$PWD
mkdir -p /tmp/full && cd /tmp/full && cp -r "$repo/models" "$repo/exported" .
timeout 150 python3 -m rtml_profile train-and-export 2b --device cuda --cuda-graph --quiet >> "$log" 2>&1 \
  && cp reports/data/train_2b.json "$OUT/gpu_train_2b.json"
echo "full 2b rc=$?" >> "$log"
