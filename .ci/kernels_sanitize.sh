#!/usr/bin/env bash
# The package's CUDA kernels under the SIMT emulator, outside Python, built plain, with
# ASan+UBSan and with TSan (python_tests/native/kernels/kernels_driver.cpp). Every build runs every resume
# order; outputs must be correct and bitwise identical across orders; any sanitizer report fails.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nvcc=${CUDA_HOME:+$CUDA_HOME/bin/nvcc}
[[ -n "$nvcc" && -x "$nvcc" ]] || nvcc=$(command -v nvcc)
cuda_inc=$(dirname "$(grep -oE '/\S+/bin/nvcc' "$nvcc" 2>/dev/null | head -1 || echo "$nvcc")")/../include
[[ -f "$cuda_inc/vector_types.h" ]] || cuda_inc=${CUDA_HOME:-/usr/local/cuda}/include
work=$(mktemp -d "${TMPDIR:-/tmp}/kernels_sanitize.XXXXXX")
trap 'rm -rf "$work"' EXIT
orders=("forward 0" "reverse 0" "random 1" "random 2" "random 3")
declare -A FLAGS=(
  [plain]="-O2"
  [asan]="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  [tsan]="-O1 -g -fsanitize=thread"
)
fail=0
for leg in plain asan tsan; do
  t0=$(date +%s)
  exe="$work/driver_$leg"
  # shellcheck disable=SC2086
  if ! g++ -std=c++20 -pthread ${FLAGS[$leg]} -I "$repo/csrc" -I "$cuda_inc" \
      "$repo/python_tests/native/kernels/kernels_driver.cpp" $(ls "$repo"/csrc/kernels/*_launch.cu | sed 's/^/-x c++ /') \
      -o "$exe" > "$work/build_$leg.log" 2>&1; then
    echo "FAIL $leg: build"; tail -30 "$work/build_$leg.log"; fail=1; continue
  fi
  ref=""
  for o in "${orders[@]}"; do
    read -r order seed <<< "$o"
    out=$(SIMT_ORDER=$order SIMT_SEED=$seed TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$exe" 2>&1); rc=$?
    hashes=$(grep -vE "passed|failed" <<< "$out")
    if [[ $rc -ne 0 ]]; then echo "FAIL $leg $order/$seed (rc=$rc)"; echo "$out" | tail -30; fail=1; continue; fi
    if [[ -z "$ref" ]]; then ref=$hashes; elif [[ "$hashes" != "$ref" ]]; then
      echo "FAIL $leg $order/$seed: output differs from forward order"; diff <(echo "$ref") <(echo "$hashes"); fail=1
    fi
  done
  echo "ok   $leg: $(wc -l <<< "$ref") kernel cases x ${#orders[@]} orders, bitwise identical, $(( $(date +%s) - t0 )) s"
done
exit $fail
