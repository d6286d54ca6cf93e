// Calls every CUDA device API the emulator defines, once. nvcc_check.cu compiles it for sm_80 and
// sm_90, and the emulator build compiles and runs it (case "api_coverage"), so an emulator-only
// name (a kernel that would build on the CPU but not for the GPU) cannot slip in.
#pragma once
#include "simt/simt.h"
#include <cstdint>

namespace selftest {

struct ApiBuffers {
  int i[16];
  unsigned u[16];
  unsigned long long ull[16];
  long long ll[16];
  float f[64];
  double d[16];
  unsigned short us[4];
};

template <class T>
__device__ __forceinline__ T shuffle_all(T v) {
  v = __shfl_sync(0xffffffffu, v, 3);
  v = __shfl_up_sync(0xffffffffu, v, 1);
  v = __shfl_down_sync(0xffffffffu, v, 2, 16);
  return __shfl_xor_sync(0xffffffffu, v, 1, 8);
}

__global__ void api_coverage_kernel(ApiBuffers* b) {
  const int t = threadIdx.x;
  // Warp collectives, every overload.
  int vi = shuffle_all(t);
  unsigned vu = shuffle_all(unsigned(t));
  long vl = shuffle_all(long(t));
  unsigned long vul = shuffle_all((unsigned long)t);
  long long vll = shuffle_all((long long)t);
  unsigned long long vull = shuffle_all((unsigned long long)t);
  float vf = shuffle_all(float(t));
  double vd = shuffle_all(double(t));
  __half vh = shuffle_all(__float2half(float(t)));
  __half2 vh2 = shuffle_all(__floats2half2_rn(float(t), 1.f));
  __nv_bfloat16 vb = shuffle_all(__float2bfloat16(float(t)));
  __nv_bfloat162 vb2 = shuffle_all(__floats2bfloat162_rn(float(t), 2.f));
  const unsigned ballot = __ballot_sync(0xffffffffu, t & 1);
  const int any = __any_sync(0xffffffffu, t == 3), all = __all_sync(0xffffffffu, t >= 0);
  __syncwarp();
  __syncwarp(0xffffffffu);
  const unsigned active = __activemask();
  unsigned red = __reduce_add_sync(0xffffffffu, unsigned(t)) + __reduce_min_sync(0xffffffffu, unsigned(t)) +
                 __reduce_max_sync(0xffffffffu, unsigned(t)) + __reduce_and_sync(0xffffffffu, unsigned(t)) +
                 __reduce_or_sync(0xffffffffu, unsigned(t)) + __reduce_xor_sync(0xffffffffu, unsigned(t));
  red += unsigned(__reduce_add_sync(0xffffffffu, -t) + __reduce_min_sync(0xffffffffu, -t) +
                  __reduce_max_sync(0xffffffffu, -t));
  int pred = 0;
  unsigned match = __match_any_sync(0xffffffffu, t % 4) ^ __match_any_sync(0xffffffffu, unsigned(t % 2)) ^
                   __match_any_sync(0xffffffffu, long(t % 3)) ^ __match_any_sync(0xffffffffu, (unsigned long)(t % 5)) ^
                   __match_any_sync(0xffffffffu, (long long)(t % 6)) ^
                   __match_any_sync(0xffffffffu, (unsigned long long)(t % 7)) ^
                   __match_any_sync(0xffffffffu, float(t % 8)) ^ __match_any_sync(0xffffffffu, double(t % 9));
  match ^= __match_all_sync(0xffffffffu, 5, &pred) ^ __match_all_sync(0xffffffffu, 5u, &pred) ^
           __match_all_sync(0xffffffffu, 5l, &pred) ^ __match_all_sync(0xffffffffu, 5ul, &pred) ^
           __match_all_sync(0xffffffffu, 5ll, &pred) ^ __match_all_sync(0xffffffffu, 5ull, &pred) ^
           __match_all_sync(0xffffffffu, 5.f, &pred) ^ __match_all_sync(0xffffffffu, 5.0, &pred);
  // Block-wide barriers.
  __syncthreads();
  const int cnt = __syncthreads_count(t & 1) + __syncthreads_and(1) + __syncthreads_or(0);
  // Atomics, every overload, plus the _block and _system forms.
  atomicAdd(&b->i[0], 1), atomicAdd(&b->u[0], 1u), atomicAdd(&b->ull[0], 1ull), atomicAdd(&b->f[0], 1.f);
  atomicAdd(&b->d[0], 1.0), atomicSub(&b->i[1], 1), atomicSub(&b->u[1], 1u);
  atomicExch(&b->i[2], 7), atomicExch(&b->u[2], 1u), atomicExch(&b->ull[2], 1ull), atomicExch(&b->f[2], 1.f);
  atomicMin(&b->i[3], t), atomicMin(&b->u[3], 1u), atomicMin(&b->ll[3], 1ll), atomicMin(&b->ull[3], 1ull);
  atomicMax(&b->i[4], t), atomicMax(&b->u[4], 1u), atomicMax(&b->ll[4], 1ll), atomicMax(&b->ull[4], 1ull);
  atomicAnd(&b->i[5], 1), atomicAnd(&b->u[5], 1u), atomicAnd(&b->ll[5], 1ll), atomicAnd(&b->ull[5], 1ull);
  atomicOr(&b->i[6], 1), atomicOr(&b->u[6], 1u), atomicOr(&b->ll[6], 1ll), atomicOr(&b->ull[6], 1ull);
  atomicXor(&b->i[7], 1), atomicXor(&b->u[7], 1u), atomicXor(&b->ll[7], 1ll), atomicXor(&b->ull[7], 1ull);
  atomicInc(&b->u[8], 5u), atomicDec(&b->u[9], 5u);
  atomicCAS(&b->i[10], 0, 1), atomicCAS(&b->u[10], 0u, 1u), atomicCAS(&b->ull[10], 0ull, 1ull);
  atomicCAS(&b->us[0], (unsigned short)0, (unsigned short)1);
  atomicAdd_block(&b->i[11], 1), atomicAdd_system(&b->f[11], 1.f), atomicCAS_block(&b->u[11], 0u, 1u);
  atomicMax_system(&b->ll[11], 2ll), atomicExch_block(&b->ull[11], 3ull), atomicSub_system(&b->u[12], 1u);
  atomicMin_block(&b->i[12], 0), atomicAnd_system(&b->u[13], 1u), atomicOr_block(&b->i[13], 1);
  atomicXor_system(&b->ull[12], 1ull), atomicInc_block(&b->u[14], 3u), atomicDec_system(&b->u[15], 3u);
  __threadfence(), __threadfence_block(), __threadfence_system();
  __syncthreads();
  if (t != 0) return;
  // Math, conversions, bits.
  float* f = b->f + 16;
  int k = 0;
  float s, c;
  __sincosf(0.5f, &s, &c);
  const float fs[] = {__expf(1.f), __exp10f(1.f), __logf(2.f), __log2f(2.f), __log10f(10.f), __powf(2.f, 3.f),
                      __sinf(1.f), __cosf(1.f), __tanf(1.f), s + c, __fdividef(1.f, 3.f), fdividef(1.f, 3.f),
                      rsqrtf(4.f), __frsqrt_rn(4.f), __fsqrt_rn(4.f), __frcp_rn(4.f), __saturatef(2.f),
                      __fmaf_rn(1.f, 2.f, 3.f), __fadd_rn(1.f, 2.f), __fsub_rn(1.f, 2.f), __fmul_rn(1.f, 2.f),
                      __fdiv_rn(1.f, 2.f), __int2float_rn(3), __uint2float_rn(3u), __ll2float_rn(3ll),
                      __double2float_rn(3.0), __int_as_float(0x3f800000), __uint_as_float(0x3f800000u),
                      min(1.f, 2.f), max(1.f, 2.f), exp2f(2.f), CUDART_INF_F};
  for (float x : fs) f[k++] = x;
  b->d[1] = rsqrt(4.0) + __fma_rn(1.0, 2.0, 3.0) + __dadd_rn(1.0, 2.0) + __dsub_rn(1.0, 2.0) +
            __dmul_rn(1.0, 2.0) + __ddiv_rn(1.0, 2.0) + __longlong_as_double(0) + __hiloint2double(0, 0) +
            min(1.0, 2.0) + max(1.0, 2.0) + min(1.f, 2.0) + max(1.0, 2.f);
  b->ll[0] = __float2int_rn(1.5f) + __float2int_rz(1.5f) + __float2int_rd(1.5f) + __float2int_ru(1.5f) +
             __float2uint_rn(1.5f) + __float2uint_rz(1.5f) + __float2ll_rn(1.5f) + __float2ll_rz(1.5f) +
             __double2int_rn(1.5) + __double2int_rz(1.5) + __float_as_int(1.f) + __float_as_uint(1.f) +
             __double_as_longlong(1.0) + __double2hiint(1.0) + __double2loint(1.0) + __popc(7u) +
             __popcll(7ull) + __clz(1) + __clzll(1ll) + __ffs(4) + __ffsll(4ll) + __brev(1u) + __brevll(1ull) +
             __byte_perm(1u, 2u, 0x3210u) + __funnelshift_l(1u, 2u, 3u) + __funnelshift_lc(1u, 2u, 3u) +
             __funnelshift_r(1u, 2u, 3u) + __funnelshift_rc(1u, 2u, 3u) + __mulhi(3, 4) + __umulhi(3u, 4u) +
             __mul64hi(3ll, 4ll) + __umul64hi(3ull, 4ull) + min(1, 2) + max(1, 2) + min(1u, 2u) + max(1u, 2u) +
             min(1, 2u) + max(1u, 2) + min(1l, 2l) + max(1ul, 2ul) + min(1ll, 2ll) + max(1ull, 2ull) +
             umin(1u, 2u) + umax(1u, 2u) + llmin(1ll, 2ll) + llmax(1ll, 2ll) + ullmin(1ull, 2ull) +
             ullmax(1ull, 2ull);
  // Cache-hinted loads and stores.
  const float* src = b->f;
  b->f[60] = __ldg(src) + __ldca(src) + __ldcg(src) + __ldcs(src) + __ldlu(src) + __ldcv(src);
  __stwb(&b->f[61], 1.f), __stcg(&b->f[62], 2.f), __stcs(&b->f[63], 3.f), __stwt(&b->f[59], 4.f);
  (void)clock64();
  __nanosleep(1);
  b->u[15] = ballot + any + all + active + red + match + pred + cnt + vi + vu + unsigned(vl) + unsigned(vul) +
             unsigned(vll) + unsigned(vull) + unsigned(vf) + unsigned(vd) + unsigned(__half2float(vh)) +
             unsigned(__low2float(vh2)) + unsigned(__bfloat162float(vb)) + unsigned(__high2float(vb2));
}

}  // namespace selftest
