#!/usr/bin/env bash
# The GPU checks, run on the lent GPU machine after onnxruntime-gpu and onnx-tool are unpacked into /tmp/site
# (../shared/GPU.md). Needs the trained models/, exported/ and a data folder carried along; writes to $OUT:
#   runtimes.txt        what the probes found there
#   bench_gpu.csv       torch-cuda / ort-cuda rows (and skipped rows for TensorRT), merged into reports/data later
#   samples.tgz         the raw latency samples of those rows
#   train_speed_gpu.json 2b epoch time: trainer vs bare loop, eager vs CUDA graph (results compared)
#   train_2b_cuda_graph.json  the full HW2 recipe for 2b trained with the CUDA-graph step
set -u
export PYTHONPATH=/tmp/site:$PWD
export RTML_DATA_DIR=${RTML_DATA_DIR:-$PWD/gpu-data}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > "$OUT/runtimes.txt" 2>&1
python3 -m rtml_profile runtimes >> "$OUT/runtimes.txt" 2>&1
timeout 300 python3 -m rtml_profile bench -q --runtime torch-cuda --runtime ort-cuda --runtime ort-trt --runtime trt \
  --min-time 0.3 --max-time 1 --results "$OUT/bench_gpu.csv" > "$OUT/bench.log" 2>&1
echo "bench rc=$?" >> "$OUT/bench.log"
(cd reports/data/samples && tar czf "$OUT/samples.tgz" .)
timeout 120 python3 benchmarks/train_speed.py --device cuda --epochs 3 --graph-epochs 10 \
  --out "$OUT/train_speed_gpu.json" > "$OUT/train_speed.log" 2>&1
echo "train_speed rc=$?" >> "$OUT/train_speed.log"
mkdir -p /tmp/full && cd /tmp/full && cp -r "$OLDPWD"/{models,exported} . 2>/dev/null
timeout 120 python3 -m rtml_profile train-and-export 2b --device cuda --cuda-graph --quiet >> "$OUT/train_speed.log" 2>&1 \
  && cp reports/data/train_2b.json "$OUT/train_2b_cuda_graph.json"
echo "full 2b rc=$?" >> "$OUT/train_speed.log"
