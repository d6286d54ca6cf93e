// Deliberately broken kernels: each has one defect that the emulator (or a sanitizer build of it)
// must catch. The comment on each says which mechanism does.
#pragma once
#include "simt/simt.h"

namespace selftest {

// KernelError "divergent barrier": odd and even threads wait at different __syncthreads.
__global__ void bad_divergent_barrier(float* out) {
  out[threadIdx.x] = 1.f;
  if (threadIdx.x % 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

// KernelError "divergent barrier": the same, on one line (told apart by the column).
__global__ void bad_divergent_same_line(float* out) {
  out[threadIdx.x] = 1.f;
  if (threadIdx.x < 7) __syncthreads(); else __syncthreads();
}

// KernelError: threads past 16 return, the rest then wait at a barrier (forward order: "returned
// from the kernel while ... wait"; reverse order: "reached after ... returned").
__global__ void bad_barrier_after_exit(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = 1.f;
  __syncthreads();
}

// KernelError "do not exist": a full-warp mask on a 48-thread block (the second warp has 16 lanes).
__global__ void bad_mask_partial_warp(float* out) {
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, float(threadIdx.x), 1);
}

// KernelError "not in the mask": every lane passes the mask of lane 0 only.
__global__ void bad_mask_caller(float* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, float(threadIdx.x), 0);
}

// KernelError "not in mask": lanes 0..15 read lanes 16..31, which are not in the mask.
__global__ void bad_mask_read_outside(float* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, float(threadIdx.x), threadIdx.x + 16);
}

// KernelError "disagree about the mask": lanes compute different masks for the same shuffle.
__global__ void bad_mask_mismatch(float* out) {
  const unsigned mask = threadIdx.x < 16 ? 0x0000ffffu : 0xffffffffu;
  out[threadIdx.x] = __shfl_xor_sync(mask, float(threadIdx.x), 1);
}

// KernelError "deadlock": half the warp waits in a shuffle for lanes that wait at a barrier.
__global__ void bad_deadlock(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 16);
  else __syncthreads();
  out[threadIdx.x] = v;
}

// Canary KernelError (plain build) / ASan heap-buffer-overflow: one float past the dynamic
// shared memory (the launch requests exactly 256 floats).
__global__ void bad_dyn_smem_overrun(float* out) {
  SIMT_DYNAMIC_SHARED(float, buf);
  buf[threadIdx.x + 1] = float(threadIdx.x);  // thread 255 writes buf[256]
  __syncthreads();
  out[threadIdx.x] = buf[threadIdx.x];
}

// Canary KernelError / ASan: one element past a SIMT_SHARED array, inside a template.
template <int N>
__global__ void bad_static_smem_overrun(float* out) {
  SIMT_SHARED(float, tile, [N]);
  tile[threadIdx.x + 1] = 1.f;  // thread N-1 writes tile[N]
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

// ASan heap-buffer-overflow only: reads x[n] (the classic `<=` loop bound).
__global__ void bad_global_oob_read(const float* x, int n, float* out) {
  float s = 0.f;
  for (int i = threadIdx.x; i <= n; i += blockDim.x) s += x[i];
  out[threadIdx.x] = s;
}

// Poison: reads a SIMT_SHARED array that nobody wrote (0xFF bytes = NaN).
__global__ void bad_uninitialised_smem(float* out) {
  SIMT_SHARED(float, tile, [64]);
  if (threadIdx.x < 32) tile[threadIdx.x] = 1.f;  // the upper half is never written
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

// TSan only: eight lanes do a non-atomic read-modify-write of one shared word in the same phase.
// Fibers switch only at sync points, so no resume order can expose it.
__global__ void bad_smem_race(int* out) {
  __shared__ int counter;
  if (threadIdx.x == 0) counter = 0;
  __syncthreads();
  if (threadIdx.x < 8) counter += 1;
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = counter;
}

// Launch-time KernelError "set_max_dynamic_smem": needs 64 KiB of dynamic smem, nobody opted in.
__global__ void bad_big_dyn_smem(float* out) {
  SIMT_DYNAMIC_SHARED(float, buf);
  buf[threadIdx.x] = 1.f;
  out[threadIdx.x] = buf[threadIdx.x];
}

}  // namespace selftest
