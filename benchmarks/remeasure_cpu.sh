#!/usr/bin/env bash
# Re-measure, in one run on one quiet machine, everything REPORT.md shows for the CPU host (issue 20): the rows
# committed under "2-core AMD EPYC, unknown machine" came from different machines that shared that name.
#
#   bash benchmarks/remeasure_cpu.sh            # from the repository root, with models/ and exported/ in place
#
# Needs: the four zoo models exported (models/*.pt, exported/*.onnx: `rtml-profile train-and-export ...`; the
# rows record the weights they ran), the data in $RTML_DATA_DIR (default ../shared/data), nothing else running.
# Every step writes into reports/data under this machine's fingerprint id; the last steps retire the unknown
# machine's rows this run re-measured (benchmarks/migrate_unknown_hosts.py --retire) and render the report.
# Expected time on 2 Zen cores, quiet: about 60-90 minutes (bench grid ~20, tuning and torch.compile ~30 (the
# committed faster-path rows took 30), precision ~10, load ~5 (the committed sweep took 4), limits, nodes and
# lifecycle ~3, profiled models ~5, training speed ~2). Every row records how quiet the machine was (loadavg_1m,
# others_cores, busy); afterwards check the report's Machines list for busy rows and re-run those steps.
set -uo pipefail  # a failed step is named and the run goes on: one failure must not cost the other hour
trap 'echo "!! FAILED (exit $?): $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, installed or not
DATA="${RTML_DATA_DIR:-../shared/data}"
RP=(python -m rtml_profile)
ZOO=(-m 1a -m 1b -m 2a -m 2b)
OLD="${OLD:-unknown-2x-AMD-EPYC}"  # the machine whose rows this run replaces (OLD=<fingerprint id> for another)
step() { echo; echo "== $(date -u +%H:%M:%S) $*  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"; }

for m in 1a 1b 2a 2b; do
  [[ -f "exported/$m.onnx" && -f "models/$m.pt" ]] || { echo "exported/$m.onnx or models/$m.pt is missing: run rtml-profile train-and-export $m first" >&2; exit 2; }
done
HOST=$(python -c "from rtml_profile.host import machine; m = machine(); print(m['id'])")
step "machine $HOST: $(python -c "from rtml_profile.host import host_label; print(host_label())")"

step "bench grid: ort-cpu fp32/int8 and torch-cpu fp32, compute and end-to-end, batches 1..1024"
"${RP[@]}" bench "${ZOO[@]}" -r ort-cpu -p fp32 -p int8 --scope compute --scope end-to-end \
  --batch 1,16,64,256,1024 --data-dir "$DATA" -q
"${RP[@]}" bench "${ZOO[@]}" -r torch-cpu -p fp32 --scope compute --scope end-to-end \
  --batch 1,16,64,256,1024 --data-dir "$DATA" -q

step "faster paths: tuned ort-cpu fp32/int8/int8-static (minmax, 512 rows or all, seed 0) and torch-cpu, batches 1 and 1024"
"${RP[@]}" bench "${ZOO[@]}" -r ort-cpu -p fp32 -p int8 -p int8-static --calibration minmax --calibration-seed 0 \
  --scope compute --batch 1,1024 --tune --data-dir "$DATA" -q
"${RP[@]}" bench "${ZOO[@]}" -r torch-cpu -p fp32 --scope compute --batch 1,1024 --tune --data-dir "$DATA" -q
step "torch.compile (default, max-autotune-no-cudagraphs), tuned, batches 1 and 1024"
"${RP[@]}" bench "${ZOO[@]}" -r torch-compile --variant default --variant max-autotune-no-cudagraphs -p fp32 \
  --scope compute --batch 1,1024 --tune --data-dir "$DATA" -q

step "precision: where fp16/int8/int8-static break (all models; 2a/2b also entropy and percentile calibration)"
"${RP[@]}" precision all --data-dir "$DATA"
for m in 2a 2b; do
  "${RP[@]}" precision "$m" -p int8-static --calibration entropy --calibration percentile --data-dir "$DATA"
done

step "load on MLPerf LoadGen: the whole committed sweep from an empty load.csv (benchmarks/load_sweep.sh: deadlines 10, 1, 16.7, 33.3 ms, batching off and <=8 within 500 us, the camera runs)"
RESET=1 bash benchmarks/load_sweep.sh

step "limits (twice: the report shows how well two runs agree), per-node profiles (2b) and lifecycle (2b)"
"${RP[@]}" limits
"${RP[@]}" limits
"${RP[@]}" profile-nodes -m 2b -r ort-cpu --batch 1,64,1024
"${RP[@]}" profile-nodes -m 2b -r torch-cpu --batch 1,64
"${RP[@]}" lifecycle -m 2b

step "profiled models (ort-cpu, fp32 and int8, batches 1 and 8): mobilenet_v2, resnet18 (seeded random weights), tiny-transformer"
for name in mobilenet_v2 resnet18; do
  "${RP[@]}" profile "torchvision:$name" --weights random -r ort-cpu -p fp32 -p int8 -q
done
TINY=$(mktemp -d)/tiny-transformer.onnx
python -c "import sys; sys.path.insert(0, 'tests'); from anymodels import transformer; transformer(sys.argv[1])" "$TINY"
"${RP[@]}" profile "$TINY" --shape ids=1,16 --input-range ids=0,1000 -r ort-cpu -p fp32 -p int8 -q || \
  echo "tiny-transformer: not re-profiled (see the message above); its rows stay under the unknown machine"

step "training speed (trainer vs a bare loop, 2b)"
python benchmarks/train_speed.py --data-dir "$DATA" --out reports/data/train_speed_cpu.json

step "fidelity: the harness's batch-1 p50 against a bare loop on the same session (the report's trust section)"
python -c "from rtml_profile.pipeline import trust_run; print(trust_run()['single_call']['ratio'])"

step "LoadGen alone against the toolkit (issue 21's acceptance) and the idle-frame penalty's mitigations, 30/s"
python benchmarks/loadgen_reference.py 2>&1 | tee reports/benchmarks/loadgen_reference_cpu.txt || echo "loadgen_reference: a check failed (above)"
python benchmarks/idle_penalty.py --save reports/benchmarks/idle_penalty_cpu.txt

step "retire what this run re-measured from $OLD, render the report"
python benchmarks/migrate_unknown_hosts.py --retire "$OLD" --by "$HOST" reports/data
"${RP[@]}" report
step "done: commit reports/ (git add -A reports)"
