// Compile-only check for csrc/simt/ptx.h (driven by .ci/nvcc_ptx_check.sh): one small kernel per
// wrapper, each in its hardware (FORCE_EMU=false) and portable-emulation (FORCE_EMU=true) form.
// ptxas must report no stack frame and no spills for the `ptxchk_` kernels, and the PTX must
// contain the real instructions (mma.sync, ldmatrix, cp.async) and the shuffles of the emulation.
#include "simt/simt.h"
#include "simt/ptx.h"

#include <cstdint>

namespace ptxchk {

using namespace simt::ptx;

template <bool EMU, bool BF16>
__global__ void ptxchk_mma(const uint32_t* __restrict__ a, const uint32_t* __restrict__ b,
                           const float* __restrict__ c, float* __restrict__ d) {
  const int lane = threadIdx.x & 31;
  uint32_t fa[4], fb[2];
  float fc[4], fd[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) fa[i] = a[lane * 4 + i];
#pragma unroll
  for (int i = 0; i < 2; ++i) fb[i] = b[lane * 2 + i];
#pragma unroll
  for (int i = 0; i < 4; ++i) fc[i] = c[lane * 4 + i];
  if (BF16)
    mma_m16n8k16_bf16<EMU>(fd, fa, fb, fc);
  else
    mma_m16n8k16_f16<EMU>(fd, fa, fb, fc);
  // Chain a second mma on the result, as a k loop does (d aliases c).
  if (BF16)
    mma_m16n8k16_bf16<EMU>(fd, fa, fb, fd);
  else
    mma_m16n8k16_f16<EMU>(fd, fa, fb, fd);
#pragma unroll
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = fd[i];
}

// One warp: a 32x8 tile of 16-bit values (four 8x8 matrices stacked) staged in shared memory.
template <bool EMU, int NUM, bool TRANS>
__global__ void ptxchk_ldmatrix(const uint4* __restrict__ src, uint32_t* __restrict__ out) {
  __shared__ __align__(16) uint4 rows[32];  // row i = 8 16-bit elements
  const int lane = threadIdx.x & 31;
  rows[lane] = src[lane];
  __syncwarp();
  uint32_t r[NUM];
  const void* p = &rows[lane];
  if (NUM == 1 && !TRANS) ldmatrix_x1<EMU>(r, p);
  if (NUM == 2 && !TRANS) ldmatrix_x2<EMU>(r, p);
  if (NUM == 4 && !TRANS) ldmatrix_x4<EMU>(r, p);
  if (NUM == 1 && TRANS) ldmatrix_x1_trans<EMU>(r, p);
  if (NUM == 2 && TRANS) ldmatrix_x2_trans<EMU>(r, p);
  if (NUM == 4 && TRANS) ldmatrix_x4_trans<EMU>(r, p);
#pragma unroll
  for (int m = 0; m < NUM; ++m) out[lane * NUM + m] = r[m];
}

// Two-stage cp.async pipeline over `n` 16-byte chunks per thread, with a zero-filled tail.
template <bool EMU>
__global__ void ptxchk_cp_async(const uint4* __restrict__ src, uint4* __restrict__ out, int n, int tail_bytes) {
  __shared__ __align__(16) uint4 stage[2][128];
  const int tid = threadIdx.x;
  cp_async_16<EMU>(&stage[0][tid], &src[tid]);
  cp_async_commit<EMU>();
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (int i = 1; i <= n; ++i) {
    const int s = i & 1;
    if (i < n)
      cp_async_16<EMU>(&stage[s][tid], &src[i * blockDim.x + tid]);
    else
      cp_async_16_zfill<EMU>(&stage[s][tid], &src[i * blockDim.x + tid], tail_bytes);
    cp_async_commit<EMU>();
    cp_async_wait<1, EMU>();
    const uint4 v = stage[s ^ 1][tid];
    acc.x ^= v.x;
    acc.y ^= v.y;
    acc.z ^= v.z;
    acc.w ^= v.w;
  }
  cp_async_wait_all<EMU>();
  const uint4 v = stage[n & 1][tid];
  acc.x ^= v.x;
  acc.y ^= v.y;
  acc.z ^= v.z;
  acc.w ^= v.w;
  out[tid] = acc;
}

__global__ void ptxchk_pack(const float2* __restrict__ in, uint32_t* __restrict__ out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const float2 v = in[i];
  float lo, hi;
  unpack_bf16x2(pack_bf16x2(v.x, v.y), lo, hi);
  out[3 * i + 0] = pack_bf16x2(v.x, v.y);
  out[3 * i + 1] = pack_f16x2(v.x, v.y);
  out[3 * i + 2] = pack_f16x2(lo, hi);
}

template __global__ void ptxchk_mma<false, true>(const uint32_t*, const uint32_t*, const float*, float*);
template __global__ void ptxchk_mma<true, true>(const uint32_t*, const uint32_t*, const float*, float*);
template __global__ void ptxchk_mma<false, false>(const uint32_t*, const uint32_t*, const float*, float*);
template __global__ void ptxchk_mma<true, false>(const uint32_t*, const uint32_t*, const float*, float*);

#define PTXCHK_LDM(NUM, TRANS)                                                                    \
  template __global__ void ptxchk_ldmatrix<false, NUM, TRANS>(const uint4*, uint32_t*);           \
  template __global__ void ptxchk_ldmatrix<true, NUM, TRANS>(const uint4*, uint32_t*);
PTXCHK_LDM(1, false)
PTXCHK_LDM(2, false)
PTXCHK_LDM(4, false)
PTXCHK_LDM(1, true)
PTXCHK_LDM(2, true)
PTXCHK_LDM(4, true)
#undef PTXCHK_LDM

template __global__ void ptxchk_cp_async<false>(const uint4*, uint4*, int, int);
template __global__ void ptxchk_cp_async<true>(const uint4*, uint4*, int, int);

}  // namespace ptxchk
