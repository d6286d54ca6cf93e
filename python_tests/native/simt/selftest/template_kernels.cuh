// Template kernels used by both correct_cases.cpp and broken_cases.cpp (the broken cases inject
// a defect through a template flag). Plain CUDA: they also build with nvcc.
#pragma once
#include "simt/simt.h"

namespace selftest {

constexpr unsigned kFull = 0xffffffffu;

// ---- block reduction: float4 grid-stride loads, shuffles, shared memory, atomicAdd -------------
// kBarrier=false is the injected defect "missing __syncthreads between the warp partials and the
// final warp" (used by broken_cases.cpp).
template <int kThreads, bool kBarrier = true>
__global__ void __launch_bounds__(kThreads)
block_sum_kernel(const float* __restrict__ x, long long n, float* __restrict__ partial, float* total) {
  SIMT_SHARED(float, warp_sums, [kThreads / 32]);
  const long long stride = (long long)kThreads * gridDim.x;
  const long long first = (long long)blockIdx.x * kThreads + threadIdx.x;
  float v = 0.f;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  for (long long i = first; i < n / 4; i += stride) {
    const float4 q = x4[i];
    v += (q.x + q.y) + (q.z + q.w);
  }
  for (long long i = (n / 4) * 4 + first; i < n; i += stride) v += x[i];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(kFull, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  if (kBarrier) __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : 0.f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
    if (lane == 0) {
      partial[blockIdx.x] = v;
      atomicAdd(total, v);
    }
  }
}

// ---- tiled matmul C[M][N] = A[M][K] * B[K][N], 16x16 tiles, barriers inside the k loop --------
// kTrailingBarrier=false is the injected defect "missing trailing __syncthreads in the k loop".
template <bool kTrailingBarrier = true>
__global__ void matmul_kernel(const float* A, const float* B, float* C, int M, int N, int K) {
  constexpr int T = 16;
  SIMT_SHARED(float, As, [T][T]);
  SIMT_SHARED(float, Bs, [T][T + 1]);
  const int row = blockIdx.y * T + threadIdx.y, col = blockIdx.x * T + threadIdx.x;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += T) {
    As[threadIdx.y][threadIdx.x] = (row < M && k0 + (int)threadIdx.x < K) ? A[row * K + k0 + threadIdx.x] : 0.f;
    Bs[threadIdx.y][threadIdx.x] = (col < N && k0 + (int)threadIdx.y < K) ? B[(k0 + threadIdx.y) * N + col] : 0.f;
    __syncthreads();
    for (int k = 0; k < T; ++k) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
    if (kTrailingBarrier) __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

}  // namespace selftest
