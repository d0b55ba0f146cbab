#!/usr/bin/env bash
# Re-measure every CPU row the report compares with the COMMITTED weights, in one run on one machine (issue 22,
# item 7): models/ and exported/ must already hold the committed training (`rtml-profile train-and-export all`
# with the HW2 recipe, done beforehand; this script never trains). Run it on an otherwise idle machine, from the
# repository root:
#
#     bash benchmarks/remeasure_committed.sh            # RTML_DATA_DIR (or ../shared/data) holds the data
#
# Expected time on the 2-core CPU host, idle: about 30 minutes (bench without tuning ~12 min; bench --tune at
# batch 1 and 1024 ~8 min; precision ~5 min; limits, profile-nodes, lifecycle, load and the fidelity check
# ~5 min). Every stage prints the load average, which belongs beside any figure quoted from the run.
set -euo pipefail
cd "$(dirname "$0")/.."
RTML=${RTML:-"python -m rtml_profile"}
DATA=${RTML_DATA_DIR:-../shared/data}
MODELS=(1a 1b 2a 2b)
stage() { echo "== $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg): $*"; }

for m in "${MODELS[@]}"; do
    test -f "exported/$m.onnx" || { echo "exported/$m.onnx is missing: export the committed weights first" >&2; exit 2; }
done
start=$(date +%s)
models=()
for m in "${MODELS[@]}"; do models+=(-m "$m"); done

stage "bench: torch-cpu fp32 and ort-cpu fp32/int8/int8-static, both scopes, batches 16,64,256"
$RTML bench "${models[@]}" -r torch-cpu -p fp32 --scope compute --scope end-to-end --batch 16,64,256 \
    --data-dir "$DATA" --quiet
$RTML bench "${models[@]}" -r ort-cpu -p fp32 -p int8 -p int8-static --scope compute --scope end-to-end \
    --batch 16,64,256 --data-dir "$DATA" --quiet

stage "bench --tune: the same at batches 1 and 1024 (default and tuned rows timed side by side)"
$RTML bench "${models[@]}" -r torch-cpu -p fp32 --scope compute --scope end-to-end --batch 1,1024 --tune \
    --data-dir "$DATA" --quiet
$RTML bench "${models[@]}" -r ort-cpu -p fp32 -p int8 -p int8-static --scope compute --scope end-to-end \
    --batch 1,1024 --tune --data-dir "$DATA" --quiet
# (all five batches together: 1,16,64,256,1024)

stage "limits (read ceilings per cache level, every thread)"
$RTML limits
stage "profile-nodes 2b"
$RTML profile-nodes -m 2b -r ort-cpu --batch 1,64,1024
stage "lifecycle"
$RTML lifecycle -m all -r ort-cpu -r torch-cpu
stage "precision (dynamic int8 exclusions now checked in the output graph)"
for m in "${MODELS[@]}"; do
    $RTML precision "$m" --data-dir "$DATA" --note "committed weights (remeasure_committed.sh)"
done
stage "load: 2b on ort-cpu, server scenario, 10 ms deadline, batching off and <= 8 within 500 us"
$RTML load -m 2b -m 2a -m 1b -m 1a -r ort-cpu -p fp32 -p int8 --deadline 10 --batching 1,8@500
stage "fidelity: harness p50 against a bare loop on the same session (pipeline.trust_run)"
python -c "from rtml_profile.pipeline import trust_run; print(trust_run()['single_call']['ratio'])"

stage "report"
$RTML report
stage "done in $(( ($(date +%s) - start) / 60 )) min"
