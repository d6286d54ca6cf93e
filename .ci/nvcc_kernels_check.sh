#!/usr/bin/env bash
# Compile-only check of every CUDA launcher (csrc/kernels/*_launch.cu) with nvcc, no GPU needed:
# for sm_80 and sm_90, `-Xptxas -v` must report no stack frame and no spills for any kernel, and
# the PTX must contain the instructions each kernel family is meant to use (a warp shuffle for
# every reduction kernel; more families add their own line to EXPECT below).
set -euo pipefail
t0=$(date +%s)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nvcc=${CUDA_HOME:+$CUDA_HOME/bin/nvcc}
[[ -n "$nvcc" && -x "$nvcc" ]] || nvcc=$(command -v nvcc) || { echo "nvcc not found" >&2; exit 2; }
declare -A EXPECT=(
  [masked_confidence]="shfl.sync.bfly atom.shared.add.u64 ld.global.nc.v4.u32"
  [attention]="mma.sync.aligned.m16n8k16 ldmatrix cp.async"
  # p_mask must round like the CPU's two tensor ops: an uncontractable multiply, not an FMA (nvcc
  # fuses a plain one; the emulator cannot see contraction)
  [forward_mask]="mul.rn.f32"
)
work=$(mktemp -d "${TMPDIR:-/tmp}/nvcc_kernels.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail=0
for src in "$repo"/csrc/kernels/*_launch.cu; do
  name=$(basename "$src" _launch.cu)
  for arch in sm_80 sm_90; do
    log="$work/$name.$arch.log"
    if ! "$nvcc" -std=c++20 -O3 -arch="$arch" -I "$repo/csrc" -Xptxas -v -c "$src" -o "$work/$name.$arch.o" > "$log" 2>&1; then
      echo "FAIL $name $arch: does not compile"; cat "$log"; fail=1; continue
    fi
    bad=$(grep -E "bytes stack frame|spill" "$log" | grep -vE "^\s*0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" || true)
    if [[ -n "$bad" ]]; then echo "FAIL $name $arch: local memory or spills"; echo "$bad"; fail=1; fi
    regs=$(grep -oE "Used [0-9]+ registers" "$log" | sort -u | tr '\n' ' ')
    "$nvcc" -std=c++20 -O3 -arch="$arch" -I "$repo/csrc" -ptx "$src" -o "$work/$name.$arch.ptx"
    for insn in ${EXPECT[$name]:-}; do
      grep -q "$insn" "$work/$name.$arch.ptx" || { echo "FAIL $name $arch: PTX lacks $insn"; fail=1; }
    done
    echo "ok   $name $arch: no spills; $regs; PTX has: ${EXPECT[$name]:-(nothing required)}"
  done
done
echo "nvcc_kernels_check: $(( $(date +%s) - t0 )) s"
exit $fail
