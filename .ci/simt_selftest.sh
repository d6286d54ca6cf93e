#!/usr/bin/env bash
# Self-test of the SIMT emulator (csrc/simt/simt.h), driver in python_tests/native/simt/selftest/.
#
# Legs (default: all that can run here):
#   plain  g++ -O2: every correct case under forward, reverse, random 1..3 (SIMT_ORDER/SIMT_SEED),
#          bitwise-identical outputs across orders, every broken case caught, the timing bench
#   asan   -fsanitize=address,undefined -fno-sanitize-recover=all: the same, any report fails a
#          correct case; ASan/UBSan must catch the memory defects
#   tsan   -fsanitize=thread: the same; TSan must report the injected shared-memory race
#   nvcc   compile-only: simt.h's CUDA branch plus every self-test kernel, sm_80 (C++17) and
#          sm_90 (C++20); skipped when nvcc is missing
# Prints "defect -> caught by" per leg and the wall time of each leg; exits non-zero on any
# failure. Usage: .ci/simt_selftest.sh [plain|asan|tsan|nvcc]...
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$repo/python_tests/native/simt/selftest"
cxx=${CXX:-g++}
legs=("$@")
[[ ${#legs[@]} -gt 0 ]] || legs=(plain asan tsan nvcc)
orders=("forward" "reverse" "random 1" "random 2" "random 3")

work=$(mktemp -d "${TMPDIR:-/tmp}/simt_selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

find_nvcc() {
  if [[ -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/nvcc" ]]; then echo "$CUDA_HOME/bin/nvcc"
  else command -v nvcc || true; fi
}

# CUDA's host headers (vector_types.h, cuda_bf16.h): $CUDA_HOME, $CUDA_PATH, next to nvcc (which
# may be a wrapper script that execs the real one), or what nvcc itself reports.
find_cuda_include() {
  local c cands=() nvcc real top
  [[ -n "${CUDA_HOME:-}" ]] && cands+=("$CUDA_HOME/include")
  [[ -n "${CUDA_PATH:-}" ]] && cands+=("$CUDA_PATH/include")
  nvcc=$(find_nvcc)
  if [[ -n "$nvcc" ]]; then
    real=$(readlink -f "$nvcc")
    cands+=("$(dirname "$real")/../include")
    c=$(grep -aoE '/[^ "]+/bin/nvcc' "$real" 2>/dev/null | head -n1)
    [[ -n "$c" ]] && cands+=("${c%/bin/nvcc}/include")
    top=$("$nvcc" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)
    [[ -n "$top" ]] && cands+=("$top/include")
  fi
  cands+=(/usr/local/cuda/include /usr/local/cuda-*/include)
  for c in "${cands[@]}"; do
    if [[ -f "$c/vector_types.h" && -f "$c/cuda_bf16.h" ]]; then (cd "$c" && pwd); return 0; fi
  done
  return 1
}

cuda_inc=$(find_cuda_include) || { echo "simt_selftest: CUDA headers not found (set CUDA_HOME)" >&2; exit 2; }
echo "simt_selftest: $cxx, CUDA headers $cuda_inc"

failures=0
declare -A caught      # "<leg> <case>" -> mechanism
declare -a leg_times
broken_names=()

fail() { echo "FAIL [$1] $2" >&2; failures=$((failures + 1)); }

build() {  # build <out> <flags...>: the three translation units in parallel, then link
  local out=$1 f pids=() ok=1
  shift
  for f in main correct_cases broken_cases; do
    "$cxx" -std=c++20 -pthread -Wall -Wextra -I "$repo/csrc" -I "$cuda_inc" "$@" \
      -c "$src/$f.cpp" -o "$out.$f.o" 2>"$out.$f.log" &
    pids+=($!)
  done
  for f in "${pids[@]}"; do wait "$f" || ok=0; done
  if [[ $ok == 1 ]] && "$cxx" -pthread "$@" "$out".*.o -o "$out" 2>"$out.link.log"; then
    grep -h "warning:" "$out".*.log | sort -u | head -n 20 >&2
    return 0
  fi
  cat "$out".*.log >&2
  return 1
}

# sanitizer report in a log? (leg-specific)
report_in() {
  case $1 in
    asan) grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$2" ;;
    tsan) grep -q "WARNING: ThreadSanitizer" "$2" ;;
    *) return 1 ;;
  esac
}

run_leg() {  # run_leg <leg> <flags...>
  local leg=$1 t0 bin line name expect mech rc log o
  shift
  t0=$(now)
  bin="$work/selftest_$leg"
  echo "== leg $leg: building ($*)"
  if ! build "$bin" "$@"; then fail "$leg" "build"; return; fi
  echo "== leg $leg: built in $(elapsed "$t0") s"

  # Correct cases, every order, through the environment variables.
  for o in "${orders[@]}"; do
    log="$work/$leg.all.log"
    read -r ord seed <<<"$o"
    SIMT_ORDER=$ord SIMT_SEED=${seed:-0} "$bin" all >"$log" 2>&1
    rc=$?
    if [[ $rc != 0 ]] || report_in "$leg" "$log"; then
      fail "$leg" "correct cases under $o (exit $rc)"
      grep -vE "^PASS" "$log" | head -n 40 >&2
    else
      echo "   $(grep -c '^PASS' "$log") correct cases pass under $o"
    fi
  done
  # Bitwise identical outputs across orders (in one process).
  log="$work/$leg.matrix.log"
  if "$bin" matrix >"$log" 2>&1 && ! report_in "$leg" "$log"; then
    echo "   all correct cases bitwise identical across forward, reverse, random 1-3"
  else
    fail "$leg" "order matrix"
    grep -v "^PASS" "$log" | head -n 40 >&2
  fi

  # Broken cases: each must be caught by the mechanism this build expects.
  while IFS=$'\t' read -r name kind expect; do
    [[ $kind == broken ]] || continue
    [[ $leg == plain ]] && broken_names+=("$name")
    log="$work/$leg.$name.log"
    "$bin" "$name" >"$log" 2>&1
    rc=$?
    mech=""
    case $expect in
      asan:*)
        if [[ $rc == 2 ]]; then mech="- (needs ASan)"
        elif [[ $rc != 0 ]] && grep -qE "${expect#asan:}" "$log"; then
          mech="ASan/UBSan: $(grep -m1 -oE "${expect#asan:}" "$log")"
        fi ;;
      tsan)
        if [[ $rc == 2 ]]; then mech="- (needs TSan)"
        elif grep -q "WARNING: ThreadSanitizer: data race" "$log"; then mech="TSan: data race"
        fi ;;
      *)
        if [[ $rc == 0 || ($leg == tsan && $expect == order-matrix) ]] && grep -q "^CAUGHT" "$log"; then
          case $expect in
            KernelError:*) mech="KernelError" ;;
            order-matrix) mech="order matrix" ;;
            *) mech="$expect" ;;
          esac
          [[ $expect == KernelError:wrote* ]] && mech="KernelError (canary)"
          if report_in "$leg" "$log"; then
            if [[ $leg == tsan && $expect == order-matrix ]]; then mech="$mech + TSan race"
            else mech=""; fi  # the error path itself must be sanitizer-clean
          fi
        fi ;;
    esac
    if [[ -z $mech ]]; then
      fail "$leg" "broken case $name not caught as expected ($expect; exit $rc)"
      head -n 30 "$log" >&2
      mech="MISSED"
    fi
    caught["$leg $name"]=$mech
  done < <("$bin" list)

  if [[ $leg == plain ]]; then
    o=$("$bin" bench) || fail "$leg" "bench"
    echo "   $o"
  fi
  leg_times+=("$leg: $(elapsed "$t0") s")
  echo "== leg $leg: done in $(elapsed "$t0") s"
}

run_nvcc_leg() {
  local t0 nvcc spec arch std
  t0=$(now)
  nvcc=$(find_nvcc)
  if [[ -z "$nvcc" ]]; then echo "== leg nvcc: skipped (nvcc not found)"; return; fi
  for spec in "sm_80 c++17" "sm_90 c++20"; do
    read -r arch std <<<"$spec"
    if "$nvcc" -std="$std" -arch="$arch" -I "$repo/csrc" -c "$src/nvcc_check.cu" -o "$work/nvcc_$arch.o" \
        >"$work/nvcc_$arch.log" 2>&1; then
      echo "   nvcc -arch=$arch -std=$std: simt.h + self-test kernels compile"
    else
      fail nvcc "nvcc -arch=$arch -std=$std"
      head -n 40 "$work/nvcc_$arch.log" >&2
    fi
  done
  leg_times+=("nvcc: $(elapsed "$t0") s")
  echo "== leg nvcc: done in $(elapsed "$t0") s"
}

ran=()
for leg in "${legs[@]}"; do
  case $leg in
    plain) run_leg plain -O2; ran+=(plain) ;;
    asan) ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
            run_leg asan -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
          ran+=(asan) ;;
    tsan) run_leg tsan -O1 -g -fsanitize=thread; ran+=(tsan) ;;
    nvcc) run_nvcc_leg ;;
    *) echo "unknown leg '$leg' (plain, asan, tsan, nvcc)" >&2; exit 64 ;;
  esac
done

if [[ ${#ran[@]} -gt 0 ]]; then
  if [[ ${#broken_names[@]} == 0 ]]; then  # no plain leg: take the names from any leg
    for k in "${!caught[@]}"; do broken_names+=("${k#* }"); done
    mapfile -t broken_names < <(printf '%s\n' "${broken_names[@]}" | sort -u)
  fi
  echo
  printf "%-28s" "defect"
  for leg in "${ran[@]}"; do printf " | %-34s" "caught by ($leg)"; done
  echo
  for name in "${broken_names[@]}"; do
    printf "%-28s" "$name"
    for leg in "${ran[@]}"; do printf " | %-34s" "${caught["$leg $name"]:-?}"; done
    echo
  done
fi
echo
echo "wall time per leg: ${leg_times[*]}"
if [[ $failures != 0 ]]; then
  echo "simt_selftest: $failures failure(s)"
  exit 1
fi
echo "simt_selftest: OK"
