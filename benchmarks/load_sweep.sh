#!/usr/bin/env bash
# The committed load rows (reports/data/load.csv and samples/load/), every run on MLPerf LoadGen, on this host:
# - the sweep: every zoo model x {ort-cpu fp32, ort-cpu int8, torch-cpu fp32} x batching {off, 8 within 500 us},
#   p99 deadline 10 ms, 1 intra-op thread;
# - the report's other deadlines (1 ms, one frame at 60 and at 30 fps) for ort-cpu fp32, batching off and on;
# - the camera runs (30 and 60 arrivals/s at one frame and at 1 ms) for ort-cpu fp32.
# Needs the exported models (rtml-profile train-and-export all). Old load rows are replaced by key only, so a
# regenerated sweep starts from an empty load.csv: RESET=1 removes load.csv and samples/load first.
set -eu
results=${RESULTS:-reports/data}
if [ -n "${RESET:-}" ]; then rm -rf "$results/load.csv" "$results/samples/load"; fi
models=(-m 1a -m 1b -m 2a -m 2b)
run() { python -m rtml_profile load "${models[@]}" --threads 1 --duration 1 --results "$results" "$@"; }
run -r ort-cpu -p fp32 -p int8 --deadline 10 --batching 1,8@500
run -r torch-cpu -p fp32 --deadline 10 --batching 1,8@500
for d in 1 16.7 33.3; do run -r ort-cpu -p fp32 --deadline "$d" --batching 1,8@500; done
run -r ort-cpu -p fp32 --camera
