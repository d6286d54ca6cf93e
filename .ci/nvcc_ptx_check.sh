#!/usr/bin/env bash
# Compile-only check of csrc/simt/ptx.h with nvcc (no GPU needed).
#
# For each architecture (sm_80, sm_90; -std=c++17) it compiles python_tests/native/simt/ptx_test/nvcc_check.cu
# with `-Xptxas -v --keep` and then:
#   * fails if ptxas reports a stack frame, spill stores or spill loads for any `ptxchk_` kernel
#     (each wrapper in its tensor-core and FORCE_EMU form);
#   * fails unless the generated PTX contains the real instructions (mma.sync.aligned.m16n8k16 for
#     bf16 and f16, ldmatrix.sync.aligned x1/x2/x4 with and without .trans, cp.async +
#     commit_group + wait_group) and shfl.sync (the FORCE_EMU emulation).
# nvcc comes from $CUDA_HOME/bin, else PATH. Extra nvcc flags may be given in $NVCC_FLAGS.
# Usage: .ci/nvcc_ptx_check.sh [arch ...]      (default: sm_80 sm_90)
set -euo pipefail

t_start=$(date +%s.%N)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$repo/python_tests/native/simt/ptx_test/nvcc_check.cu"

if [[ -n "${CUDA_HOME:-}" && -x "${CUDA_HOME}/bin/nvcc" ]]; then
  nvcc="${CUDA_HOME}/bin/nvcc"
elif command -v nvcc >/dev/null 2>&1; then
  nvcc=$(command -v nvcc)
else
  echo "nvcc_ptx_check: nvcc not found (set CUDA_HOME or put nvcc on PATH)" >&2
  exit 2
fi

archs=("$@")
[[ ${#archs[@]} -gt 0 ]] || archs=(sm_80 sm_90)

work=$(mktemp -d "${TMPDIR:-/tmp}/nvcc_ptx_check.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "nvcc_ptx_check: $nvcc ($("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
echo "nvcc_ptx_check: source $src"

required=(
  "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"
  "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
  "ldmatrix.sync.aligned.m8n8.x1.shared.b16"
  "ldmatrix.sync.aligned.m8n8.x2.shared.b16"
  "ldmatrix.sync.aligned.m8n8.x4.shared.b16"
  "ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16"
  "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16"
  "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"
  "cp.async.cg.shared.global"
  "cp.async.commit_group"
  "cp.async.wait_group"
  "shfl.sync"
)

status=0
for arch in "${archs[@]}"; do
  t0=$(date +%s.%N)
  dir="$work/$arch"
  mkdir -p "$dir"
  log="$dir/ptxas.log"
  # shellcheck disable=SC2086
  if ! "$nvcc" -std=c++17 -arch="$arch" -Xptxas -v --keep --keep-dir "$dir" ${NVCC_FLAGS:-} \
      -I "$repo/csrc" -c "$src" -o "$dir/nvcc_check.o" >"$log" 2>&1; then
    cat "$log" >&2
    echo "nvcc_ptx_check: FAIL $arch: compilation failed" >&2
    status=1
    continue
  fi

  # ptxas -v prints, per entry function:
  #   ptxas info    : Function properties for <mangled name>
  #       N bytes stack frame, N bytes spill stores, N bytes spill loads
  #   ptxas info    : Used R registers, ...
  report=$(awk '
    /Function properties for/ { fn = $NF; next }
    /bytes stack frame/ && fn != "" {
      stack = $1; spill_st = $5; spill_ld = $9
      if (fn ~ /ptxchk_/) {
        nk++
        if (stack + 0 > 0 || spill_st + 0 > 0 || spill_ld + 0 > 0) {
          printf "BAD %s stack=%s spill_stores=%s spill_loads=%s\n", fn, stack, spill_st, spill_ld
        }
      }
      last = fn; fn = ""; next
    }
    /Used [0-9]+ registers/ && last ~ /ptxchk_/ {
      for (i = 1; i <= NF; i++) if ($i == "Used") regs = $(i + 1)
      printf "REG %s %s\n", last, regs; last = ""
    }
    END { printf "COUNT %d\n", nk }' "$log")

  nk=$(sed -n 's/^COUNT //p' <<<"$report")
  if [[ "$nk" -lt 1 ]]; then
    echo "nvcc_ptx_check: FAIL $arch: no ptxchk_ kernels in the ptxas report" >&2
    status=1
  fi
  if grep -q '^BAD ' <<<"$report"; then
    grep '^BAD ' <<<"$report" | sed "s/^/nvcc_ptx_check: FAIL $arch: /" >&2
    status=1
  fi
  maxreg=$(grep '^REG ' <<<"$report" | awk '{ if ($3 > m) m = $3 } END { print m + 0 }')

  ptx=$(ls "$dir"/*.ptx 2>/dev/null | head -n 1 || true)
  if [[ -z "$ptx" ]]; then
    echo "nvcc_ptx_check: FAIL $arch: no PTX file kept" >&2
    status=1
    continue
  fi
  missing=0
  for ins in "${required[@]}"; do
    if ! grep -qF "$ins" "$ptx"; then
      echo "nvcc_ptx_check: FAIL $arch: PTX lacks '$ins'" >&2
      missing=1
      status=1
    fi
  done
  if grep -qE '^\s*\.local|ld\.local|st\.local' "$ptx"; then
    echo "nvcc_ptx_check: FAIL $arch: PTX uses local memory" >&2
    status=1
  fi
  t1=$(date +%s.%N)
  printf 'nvcc_ptx_check: %s: %d ptxchk_ kernels, stack/spills: %s, max %d registers, %d PTX patterns %s (%.1f s)\n' \
    "$arch" "$nk" "$(grep -q '^BAD ' <<<"$report" && echo VIOLATED || echo none)" "$maxreg" \
    "${#required[@]}" "$([[ $missing == 0 ]] && echo found || echo MISSING)" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
done

t_end=$(date +%s.%N)
if [[ $status == 0 ]]; then
  printf 'nvcc_ptx_check: PASS (%s) in %.1f s\n' "${archs[*]}" "$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { print b - a }')"
else
  printf 'nvcc_ptx_check: FAIL (%s) in %.1f s\n' "${archs[*]}" "$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { print b - a }')" >&2
fi
exit $status
