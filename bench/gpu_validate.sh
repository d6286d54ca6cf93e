#!/usr/bin/env bash
# GPU validation, one command, for the rare machine with a GPU: build for that GPU, run the whole
# suite on CUDA, run compute-sanitizer memcheck and racecheck over the CUDA tests, and compare
# the emulated tensor-core wrappers with the real instructions.
#   bash bench/gpu_validate.sh        (from the repository root, torch with CUDA installed)
set -euo pipefail
cd "$(dirname "$0")/.."
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)
echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), compute capability $cap"
DK_CUDA_ARCHS="$cap" DK_BUILD_EMULATOR=1 pip install -q --no-build-isolation -e .
python -c "import diffusion_kernels as dk; print(dk.build_info())"
python -m pytest -q python_tests
SAN=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
for tool in memcheck racecheck; do
  echo "== compute-sanitizer --tool $tool =="
  "$SAN" --tool "$tool" --error-exitcode 1 --target-processes all python -m pytest -q -x python_tests -m cuda
done
# The same driver the emulator tests run, now on the GPU: the layout test checks the hardware's
# ldmatrix/mma against the PTX ISA formulas, the GEMMs compare tensor cores with FORCE_EMU.
echo "== ptx wrappers on the GPU: tensor cores vs documented layouts vs shuffle emulation =="
nvcc -std=c++20 -x cu -arch="sm_${cap/./}" -I csrc csrc/simt/ptx_test/ptx_test.cpp -o /tmp/dk_ptx_test
/tmp/dk_ptx_test all
