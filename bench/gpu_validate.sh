#!/usr/bin/env bash
# GPU validation, one command, for the rare machine with a GPU (device time is scarce: every step
# is time-boxed and the independent ones overlap):
#   - the tensor-core wrappers (python_tests/native/simt/ptx_test) built and run on the GPU: hardware ldmatrix/mma
#     against the PTX ISA layouts and against the shuffle emulation, from the start, beside the build;
#   - the extension built in place for this GPU (torch and nvcc of the machine, no pip);
#   - the CUDA tests (pytest -m cuda), with compute-sanitizer memcheck and racecheck over the
#     small cases running beside them;
#   - bench/gpu_bench.py on the otherwise idle GPU, with the greedy masked_confidence kernel's
#     variants timed A/B on the same inputs (DK_MC_KERNEL=v1, v2: rows "ours DK_MC_KERNEL=...") and
#     the attention step in one launch or several (DK_ATTENTION_LAUNCH=fused, separate);
#   - its block-causal attention rows (issue 17), appended to the same log and JSON;
#   - bench/bench_graphs.py: generate() with and without cuda_graph on a LLaDA-8B-shaped model
#     (its rows under "graphs" in gpu_bench.json, its table at the end of bench.log).
# Logs go to $OUT (the device tool's folder) or $DK_GPU_LOGS, at most 8 files.
#   bash bench/gpu_validate.sh        (from anywhere; needs nvidia-smi, nvcc and torch with CUDA)
# Every step is capped, and the caps shrink to what is left of DK_GPU_BUDGET_S (default 530 s).
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${OUT:-${DK_GPU_LOGS:-/tmp/dk_gpu_logs}}
mkdir -p "$logs"
PY=${PYTHON:-$(command -v python || command -v python3)}
command -v nvcc >/dev/null || export PATH=${CUDA_HOME:-/usr/local/cuda}/bin:$PATH
SAN=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)
T0=$(date +%s)
DEADLINE=$(( T0 + ${DK_GPU_BUDGET_S:-530} ))  # the whole script stays under 9 minutes of device time
failed=0

limit() {  # limit SECONDS: a step's own cap, cut to what is left of the budget (at least 10 s)
  local left=$(( DEADLINE - $(date +%s) ))
  (( left < 10 )) && left=10
  echo $(( $1 < left ? $1 : left ))
}

report() {  # report NAME RC START [LOG]: one line per step, the log's (default NAME) tail on failure
  local took=$(( $(date +%s) - $3 ))
  if [[ $2 -eq 0 ]]; then echo "ok   $1 ($took s)"; else
    echo "FAIL $1 rc=$2 ($took s)"; tail -n 40 "$logs/${4:-$1}.log"; failed=1; fi
}

{ nvidia-smi; "$PY" -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; nvcc --version | tail -2
  echo "compute capability $cap, $(nproc) CPUs"; } > "$logs/env.log" 2>&1
cat "$logs/env.log"

# 1. ptx wrappers on the GPU: its own nvcc build, overlapping the extension's build.
( t=$(date +%s)
  timeout 300 bash -c "nvcc -std=c++20 -x cu -arch=sm_${cap/./} -I csrc python_tests/native/simt/ptx_test/ptx_test.cpp -o /tmp/dk_ptx_test \
    && /tmp/dk_ptx_test all" > "$logs/ptx.log" 2>&1; echo $? > /tmp/dk_ptx.rc ) &
ptx_pid=$!

# 2. the extension, in place, for this GPU only.
t=$(date +%s)
DK_CUDA_ARCHS="$cap" MAX_JOBS=$(nproc) timeout 300 "$PY" setup.py build_ext --inplace > "$logs/build.log" 2>&1
rc=$?; report build $rc "$t"
if [[ $rc -ne 0 ]]; then wait $ptx_pid; report ptx "$(cat /tmp/dk_ptx.rc)" "$T0"; exit 1; fi
"$PY" -c "import diffusion_kernels as dk; i = dk.build_info(); print(i); assert i['cuda'], i" | tee -a "$logs/env.log"

# 3. CUDA tests, with the sanitizers over the small cases in parallel (16 CPUs, one GPU).
small="not 126464 and not 152064 and not c2048 and not c4096 and not trap and not compile"
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -rfE python_tests -m cuda)
for tool in memcheck racecheck; do
  ( timeout "$(limit 280)" "$SAN" --tool "$tool" --error-exitcode 1 "${PYTEST[@]}" -k "$small" > "$logs/$tool.log" 2>&1
    echo $? > "/tmp/dk_$tool.rc" ) &
done
t=$(date +%s)
timeout "$(limit 280)" "${PYTEST[@]}" --durations=8 > "$logs/cuda_tests.log" 2>&1
report cuda_tests $? "$t"
wait
report ptx "$(cat /tmp/dk_ptx.rc)" "$T0"
for tool in memcheck racecheck; do report "$tool" "$(cat /tmp/dk_$tool.rc)" "$t"; done

# 4. timings on the idle GPU.
t=$(date +%s)
timeout "$(limit 150)" "$PY" bench/gpu_bench.py --json "$logs/gpu_bench.json" > "$logs/bench.log" 2>&1
report bench $? "$t"

# 4b. block-causal attention (issue 17): decode step over the exact cache vs recompute vs SDPA with a
#    dense mask, and the training layout's forward+backward memory; same log and JSON as step 4.
t=$(date +%s)
timeout "$(limit 90)" "$PY" bench/gpu_bench.py --only block_attention,training_memory --reps 30 --append \
  --json "$logs/gpu_bench.json" >> "$logs/bench.log" 2>&1
report bench_block $? "$t" bench
cat "$logs/bench.log"

# 5. generate() tokens/s with and without CUDA graphs, LLaDA-8B-shaped random weights (into gpu_bench.json).
t=$(date +%s)
timeout "$(limit 100)" "$PY" bench/bench_graphs.py --merge-json "$logs/gpu_bench.json" >> "$logs/bench.log" 2>&1
rc=$?
if [[ $rc -eq 0 ]]; then echo "ok   graphs ($(( $(date +%s) - t )) s)"; tail -n 8 "$logs/bench.log"; else
  echo "FAIL graphs rc=$rc ($(( $(date +%s) - t )) s)"; tail -n 40 "$logs/bench.log"; failed=1; fi
echo "gpu_validate: $(( $(date +%s) - T0 )) s, $([[ $failed -eq 0 ]] && echo all ok || echo FAILURES)"
exit $failed
