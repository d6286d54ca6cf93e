// Correct kernels for the self-test, used only by correct_cases.cpp (non-template kernels have one
// definition). Plain CUDA: they also build with nvcc (see nvcc_check.cu).
#pragma once
#include "simt/simt.h"
#include <cmath>
#include <cstdint>
#include "template_kernels.cuh"

namespace selftest {

// ---- online softmax row statistics: max, log-sum-exp, argmax (lowest index wins ties) --------
struct Stats {
  float m, s;
  int a;
};

__device__ __forceinline__ void stats_push(Stats& st, float v, int j) {
  if (v > st.m) {
    st.s = st.s * expf(st.m - v) + 1.f;
    st.m = v;
    st.a = j;
  } else if (v != -INFINITY) {
    st.s += expf(v - st.m);
  }
}

// Symmetric in (a, b), so a butterfly leaves every lane with the same bits.
__device__ __forceinline__ Stats stats_merge(const Stats& a, const Stats& b) {
  Stats r;
  r.m = fmaxf(a.m, b.m);
  r.s = (a.m == r.m ? a.s : a.s * expf(a.m - r.m)) + (b.m == r.m ? b.s : b.s * expf(b.m - r.m));
  r.a = a.m > b.m ? a.a : (b.m > a.m ? b.a : min(a.a, b.a));
  return r;
}

__device__ __forceinline__ Stats stats_warp(Stats st) {
  for (int off = 16; off > 0; off >>= 1) {
    Stats o;
    o.m = __shfl_xor_sync(kFull, st.m, off);
    o.s = __shfl_xor_sync(kFull, st.s, off);
    o.a = __shfl_xor_sync(kFull, st.a, off);
    st = stats_merge(st, o);
  }
  return st;
}

// One block per row; dynamic shared memory holds the per-warp partials (3 x kWarps words).
template <int kThreads>
__global__ void softmax_stats_kernel(const float* logits, int vocab, float* out_max, float* out_lse,
                                     int* out_arg) {
  constexpr int kWarps = kThreads / 32;
  SIMT_DYNAMIC_SHARED(float, smem);
  float* s_m = smem;
  float* s_s = smem + kWarps;
  int* s_a = reinterpret_cast<int*>(smem + 2 * kWarps);
  const float* row = logits + (long long)blockIdx.x * vocab;
  Stats st{-INFINITY, 0.f, 0x7fffffff};
  for (int j = threadIdx.x; j < vocab; j += kThreads) stats_push(st, row[j], j);
  st = stats_warp(st);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) s_m[warp] = st.m, s_s[warp] = st.s, s_a[warp] = st.a;
  __syncthreads();
  if (warp == 0) {
    st = lane < kWarps ? Stats{s_m[lane], s_s[lane], s_a[lane]} : Stats{-INFINITY, 0.f, 0x7fffffff};
    st = stats_warp(st);
    if (lane == 0) {
      out_max[blockIdx.x] = st.m;
      out_lse[blockIdx.x] = st.m + logf(st.s);
      out_arg[blockIdx.x] = st.a;
    }
  }
}

// ---- every shuffle variant x width x type, against a hand computation on the host ------------
// Layout of `out`: [variant][thread]; see shfl_expected() in correct_cases.cpp.
constexpr int kShflThreads = 64;
constexpr int kShflVariants = 4 * 3 * 2 + 4;  // (idx, up, down, xor) x widths (8,16,32) x 2 types + partial

__device__ __forceinline__ unsigned long long shfl_input(int tid, int variant) {
  return 0x9E3779B97F4A7C15ull * (unsigned long long)(tid + 1) + (unsigned long long)variant;
}

__global__ void shuffle_kernel(unsigned long long* out) {
  const int tid = threadIdx.x, lane = tid & 31;
  const int widths[3] = {8, 16, 32};
  int variant = 0;
  for (int op = 0; op < 4; ++op) {
    for (int wi = 0; wi < 3; ++wi) {
      const int w = widths[wi];
      const int src = lane * 7 + 3;  // deliberately >= width: only src % width counts
      const unsigned delta = 3;
      const int xmask = op == 3 && wi == 0 ? 9 : 5;  // 9 crosses 8-lane segments both ways
      // 32-bit type: int reinterpretation of the input's low half; 64-bit: double's bits.
      const unsigned long long in = shfl_input(tid, variant);
      int vi = (int)(unsigned)in, ri = 0;
      switch (op) {
        case 0: ri = __shfl_sync(kFull, vi, src, w); break;
        case 1: ri = __shfl_up_sync(kFull, vi, delta, w); break;
        case 2: ri = __shfl_down_sync(kFull, vi, delta, w); break;
        case 3: ri = __shfl_xor_sync(kFull, vi, xmask, w); break;
      }
      out[variant * kShflThreads + tid] = (unsigned long long)(unsigned)ri;
      ++variant;
      const unsigned long long in2 = shfl_input(tid, variant);
      const double vd = __longlong_as_double((long long)in2);
      double rd = 0;
      switch (op) {
        case 0: rd = __shfl_sync(kFull, vd, src, w); break;
        case 1: rd = __shfl_up_sync(kFull, vd, delta, w); break;
        case 2: rd = __shfl_down_sync(kFull, vd, delta, w); break;
        case 3: rd = __shfl_xor_sync(kFull, vd, xmask, w); break;
      }
      out[variant * kShflThreads + tid] = (unsigned long long)__double_as_longlong(rd);
      ++variant;
    }
  }
  // Lanes 0..15 only, mask 0x0000ffff, width 16, 64-bit integers.
  const unsigned half = 0x0000ffffu;
  for (int op = 0; op < 4; ++op, ++variant) {
    unsigned long long r = ~0ull;
    if (lane < 16) {
      const unsigned long long v = shfl_input(tid, variant);
      switch (op) {
        case 0: r = __shfl_sync(half, v, 15 - lane, 16); break;
        case 1: r = __shfl_up_sync(half, v, 1, 16); break;
        case 2: r = __shfl_down_sync(half, v, 2, 16); break;
        case 3: r = __shfl_xor_sync(half, v, 3, 16); break;
      }
    }
    out[variant * kShflThreads + tid] = r;
  }
}

// ---- votes and block-wide predicates on a block with a partial last warp ---------------------
constexpr int kVoteThreads = 80;  // warps of 32, 32 and 16 lanes
constexpr int kVoteFields = 12;

__device__ __forceinline__ int vote_pred(int tid) { return (tid * 5 + 1) % 7 < 3; }

__global__ void vote_kernel(unsigned* out) {
  const int tid = threadIdx.x, lane = tid & 31;
  const int lanes_here = min(32, kVoteThreads - (tid & ~31));
  const unsigned mask = lanes_here == 32 ? kFull : (1u << lanes_here) - 1;
  const int p = vote_pred(tid);
  unsigned* o = out + tid * kVoteFields;
  o[0] = __ballot_sync(mask, p);
  o[1] = __any_sync(mask, p);
  o[2] = __all_sync(mask, p);
  o[3] = __all_sync(mask, 1);
  o[4] = __syncthreads_count(p);
  o[5] = __syncthreads_and(p);
  o[6] = __syncthreads_or(p);
  o[7] = __syncthreads_and(1);
  o[8] = __activemask();
  o[9] = __reduce_add_sync(mask, (unsigned)tid);
  o[10] = (unsigned)__reduce_max_sync(mask, (int)(lane * 13 % 17) - 8);
  o[11] = __match_any_sync(mask, lane % 3);
  __syncwarp(mask);
}

// ---- dynamic shared memory above 48 KiB (opt-in), poisoned at the start of every block --------
__global__ void dynsmem_kernel(int words, int* out, int* poisoned) {
  SIMT_DYNAMIC_SHARED(int, buf);
  // Every thread checks its own words before writing them: each block must see fresh poison.
  int fresh = 1;
  for (int i = threadIdx.x; i < words; i += blockDim.x) fresh &= buf[i] == -1;
  if (!__syncthreads_and(fresh) && threadIdx.x == 0) atomicAdd(poisoned, 1);
  for (int i = threadIdx.x; i < words; i += blockDim.x) buf[i] = i * 3 + (int)blockIdx.x;
  __syncthreads();
  for (int i = threadIdx.x; i < words; i += blockDim.x) out[blockIdx.x * words + i] = buf[words - 1 - i];
}

// ---- fp16 / bf16 conversions and shuffles --------------------------------------------------------
__global__ void half_kernel(const float* in, int n, unsigned short* h_bits, unsigned short* b_bits,
                            float* back, float* shuffled) {
  const int i = threadIdx.x;
  if (i >= n) return;
  const __half h = __float2half(in[i]);
  const __nv_bfloat16 b = __float2bfloat16(in[i]);
  h_bits[i] = __half_as_ushort(h);
  b_bits[i] = __bfloat16_as_ushort(b);
  back[2 * i] = __half2float(h);
  back[2 * i + 1] = __bfloat162float(b);
  const unsigned mask = __activemask();
  const __half hs = __shfl_xor_sync(mask, h, 1);
  const __nv_bfloat16 bs = __shfl_xor_sync(mask, b, 1);
  const __half2 h2 = __shfl_down_sync(mask, __floats2half2_rn(in[i], -in[i]), 1);
  shuffled[4 * i] = __half2float(hs);
  shuffled[4 * i + 1] = __bfloat162float(bs);
  shuffled[4 * i + 2] = __low2float(h2);
  shuffled[4 * i + 3] = __high2float(h2);
}

// ---- atomics: results do not depend on the order of the updates -----------------------------
struct AtomicCounters {
  int i_add, i_sub, i_min, i_max, i_and, i_or, i_xor, i_exch, i_cas;
  unsigned u_add, u_inc, u_dec, u_min, u_max;
  unsigned long long ull_add, ull_or, ull_min, ull_max;
  long long ll_min, ll_max, ll_and, ll_xor;
  float f_add;
  double d_add;
};

__global__ void atomics_kernel(AtomicCounters* c) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(&c->i_add, t);
  atomicSub(&c->i_sub, t);
  atomicMin(&c->i_min, 1000 - t);
  atomicMax(&c->i_max, t * 3 - 50);
  atomicAnd(&c->i_and, ~(1 << (t % 31)));
  atomicOr(&c->i_or, 1 << (t % 13));
  atomicXor(&c->i_xor, t);
  atomicExch(&c->i_exch, 7);
  int old = atomicOr(&c->i_cas, 0), assumed;  // an atomic load: a plain one would race
  do {
    assumed = old;
    old = atomicCAS(&c->i_cas, assumed, assumed + 2);
  } while (old != assumed);
  atomicAdd(&c->u_add, 3u);
  atomicInc(&c->u_inc, 9u);
  atomicDec(&c->u_dec, 5u);
  atomicMin(&c->u_min, (unsigned)(t + 17));
  atomicMax(&c->u_max, (unsigned)t);
  atomicAdd(&c->ull_add, 1ull << 33);
  atomicOr(&c->ull_or, 1ull << (t % 64));
  atomicMin(&c->ull_min, (unsigned long long)t + 5);
  atomicMax(&c->ull_max, (unsigned long long)t << 20);
  atomicMin(&c->ll_min, -(long long)t * 1000000007ll);
  atomicMax(&c->ll_max, (long long)t - 100);
  atomicAnd(&c->ll_and, ~(1ll << (t % 63)));
  atomicXor(&c->ll_xor, (long long)t << 7);
  atomicAdd(&c->f_add, 0.5f);
  atomicAdd(&c->d_add, 0.25);
}

// ---- math and bit intrinsics (one thread; the host checks the values) -------------------------
constexpr int kIntrinsicResults = 32;

__global__ void intrinsics_kernel(float* f, long long* i) {
  if (threadIdx.x != 0) return;
  f[0] = __expf(1.f);
  f[1] = __logf(8.f);
  f[2] = exp2f(3.f);
  f[3] = __log2f(32.f);
  f[4] = __powf(2.f, 10.f);
  f[5] = __fdividef(1.f, 4.f);
  f[6] = rsqrtf(16.f);
  f[7] = __saturatef(1.5f) + __saturatef(-2.f) + __saturatef(0.25f);
  f[8] = __fmaf_rn(2.f, 3.f, 1.f);
  f[9] = __int_as_float(0x3f800000);
  f[10] = __uint_as_float(0x40000000u);
  f[11] = fmaxf(-INFINITY, 3.f) + fminf(CUDART_INF_F, 2.f);
  f[12] = isnan(__saturatef(NAN)) ? 1.f : 0.f;  // __saturatef(NaN) is 0
  f[13] = isinf(-INFINITY) && isnan(NAN) ? 1.f : 0.f;
  f[14] = min(2.5f, 1.5f) + max(2.5f, 1.5f);
  f[15] = expf(0.f) + logf(1.f);
  i[0] = __float_as_int(1.f);
  i[1] = __float_as_uint(-0.f);
  i[2] = __popc(0xF0F0u);
  i[3] = __popcll(0xFFFFFFFFFFull);
  i[4] = __clz(1);
  i[5] = __clz(0);
  i[6] = __clzll(1ll);
  i[7] = __ffs(0) * 100 + __ffs(8);
  i[8] = __ffsll(1ll << 40);
  i[9] = __brev(1u);
  i[10] = __byte_perm(0x33221100u, 0x77665544u, 0x5140u);
  i[11] = __funnelshift_l(0x80000000u, 0x1u, 1);
  i[12] = min(-3, 5) + max(-3, 5) * 10;
  i[13] = (long long)min(3u, 7u) + (long long)max(10ll, -20ll);
  i[14] = __float2int_rn(2.5f) * 10 + __float2int_rn(3.5f);  // ties to even: 2, 4
  i[15] = __float2int_rz(1e20f) == 2147483647 && __float2int_rn(NAN) == 0 ? 1 : 0;
  i[16] = __umulhi(0x80000000u, 4u);
  i[17] = (long long)__ldg(&i[2]);
}

// ---- 3-D grid and block, partial warp, per-thread 64 KiB of locals ---------------------------
__global__ void indexing_kernel(unsigned* out, int* ok) {
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
  // Large frame: fibers have real stacks.
  volatile unsigned char scratch[64 * 1024];
  for (unsigned i = 0; i < sizeof scratch; i += 4096) scratch[i] = (unsigned char)(i + tid);
  unsigned sum = 0;
  for (unsigned i = 0; i < sizeof scratch; i += 4096) sum += scratch[i];
  const unsigned mask = __activemask();
  const unsigned lanes = min(32u, nthreads - (tid & ~31u));
  if (mask != (lanes == 32 ? kFull : (1u << lanes) - 1)) atomicAdd(ok, 1);
  const unsigned neighbour = __shfl_sync(mask, tid, ((tid & 31) + 1) % lanes);
  out[bid * nthreads + tid] = (bid << 20) | (tid << 8) | (neighbour & 0xff);
  out[gridDim.x * gridDim.y * gridDim.z * nthreads + bid * nthreads + tid] = sum;
}

// ---- lenient mode (SIMT_STRICT=0): exited threads count as arrived at the barrier ------------
__global__ void early_exit_kernel(int* out) {
  if (threadIdx.x >= 40) return;
  const int n = __syncthreads_count(1);
  if (threadIdx.x == 0) out[blockIdx.x] = n;
}

// ---- timing: 3 barriers per block ----------------------------------------------------------------
__global__ void barrier_bench_kernel(int* out) {
  __shared__ int s[1024];
  s[threadIdx.x] = threadIdx.x;
  __syncthreads();
  const int v = s[blockDim.x - 1 - threadIdx.x];
  __syncthreads();
  s[threadIdx.x] = v + 1;
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(out, s[7]);
}

}  // namespace selftest
