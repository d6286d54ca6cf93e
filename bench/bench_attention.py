"""attention_with_kv_cache on CPU: one Fast-dLLM dual-cache step (block of 32 queries over the
whole sequence, the block's K/V rewritten in place) against full recompute (all L queries over
all L keys, SDPA) and against Fast-dLLM's own dual-cache step (scatter + SDPA).
LLaDA-8B attention shapes: 32 heads x 128.

    pytest bench/bench_attention.py --benchmark-json=bench/results/attention.json
    python bench/summarize.py bench/results/attention.json

The target is a dual-cache step at least 0.7 x (L / 32) times faster than full recompute.
test_block_decode_step (results: bench/results/attention_block.json): the block-causal step of
block diffusion over an exact cache against recomputing the sequence block-causally.
"""
import functools

import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from research_baselines import fast_dllm_dual_cache_attention, full_recompute_attention

HEADS, HEAD_DIM, BLOCK = 32, 128, 32


def _inputs(batch, length, dtype):
    g = torch.Generator().manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
    q_all = mk(batch, length, HEADS, HEAD_DIM)
    k_all, v_all = mk(batch, length, HEADS, HEAD_DIM), mk(batch, length, HEADS, HEAD_DIM)
    start = length // 2  # a block in the middle: prefix and suffix both cached
    return q_all, k_all, v_all, start


@pytest.mark.parametrize("impl", ["ours", "fast_dllm", "full_recompute"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("length", [512, 1024])
def test_dual_cache_step(benchmark, impl, dtype, batch, length):
    q_all, k_all, v_all, start = _inputs(batch, length, dtype)
    q = q_all[:, start:start + BLOCK].contiguous()
    k_new = k_all[:, start:start + BLOCK].contiguous()
    v_new = v_all[:, start:start + BLOCK].contiguous()
    k_cache, v_cache = k_all.clone(), v_all.clone()
    if impl == "ours":
        fn, args = functools.partial(dk.attention_with_kv_cache, cache_seqlens=start), (q, k_cache, v_cache, k_new, v_new)
    elif impl == "fast_dllm":
        fn, args = fast_dllm_dual_cache_attention, (q, k_cache, v_cache, k_new, v_new, start)
    else:
        fn, args = full_recompute_attention, (q_all, k_all, v_all)
    fn(*args)  # warm-up
    benchmark.group = f"dual-cache step B={batch} L={length} {HEADS}x{HEAD_DIM} block {BLOCK} {dtype}".replace("torch.", "")
    benchmark.extra_info.update(impl=impl, batch=batch, length=length, dtype=str(dtype), target=0.7 * length / BLOCK)
    slow = impl == "full_recompute"
    benchmark.pedantic(fn, args=args, rounds=7 if slow else 30, iterations=1, warmup_rounds=1)


# Block diffusion (LLaDA2-mini's attention: 16 query / 4 KV heads x 128, block 32): one decoding
# step of the last block over the exact cache (store_kv=False, as SDAR/LLaDA2 decode before the
# block is final) against recomputing all L positions block-causally, with our op (which skips
# the tiles above the block diagonal: its ideal ratio is about L / (2 block)) and with SDPA given
# the dense boolean mask (what a model without the op runs: the ideal is L / block); and SDPA
# doing the step itself (the block's queries over every key), the bar for our kernel's speed.
BD_HEADS, BD_KV_HEADS, BD_BLOCK = 16, 4, 32


@pytest.mark.parametrize("impl", ["ours", "sdpa_step", "ours_recompute", "sdpa_dense_mask"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("length", [512, 1024])
def test_block_decode_step(benchmark, impl, dtype, length):
    g = torch.Generator().manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
    q, k, v = mk(1, length, BD_HEADS, HEAD_DIM), mk(1, length, BD_KV_HEADS, HEAD_DIM), mk(1, length, BD_KV_HEADS, HEAD_DIM)
    start = (length - 1) // BD_BLOCK * BD_BLOCK  # the last block
    if impl == "ours":
        fn = functools.partial(dk.attention_with_kv_cache, cache_seqlens=start, causal_block_size=BD_BLOCK,
                               store_kv=False)
        args = (q[:, start:].contiguous(), k.clone(), v.clone(), k[:, start:].contiguous(), v[:, start:].contiguous())
    elif impl == "sdpa_step":  # SDPA doing the same step: the block's queries over every key
        def fn(q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), enable_gqa=True).transpose(1, 2)
        args = (q[:, start:].contiguous(), k, v)
    elif impl == "ours_recompute":
        fn = functools.partial(dk.attention_with_kv_cache, causal_block_size=BD_BLOCK)
        args = (q, k.clone(), v.clone())
    else:
        mask = reference.attention_block_mask(torch.zeros(1, dtype=torch.int64), length, length, BD_BLOCK)[:, None]

        def fn(q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True).transpose(1, 2)
        args = (q, k, v)
    fn(*args)  # warm-up
    benchmark.group = (f"block-causal decode step L={length} {BD_HEADS}/{BD_KV_HEADS}x{HEAD_DIM} block {BD_BLOCK} "
                       f"{dtype}").replace("torch.", "")
    benchmark.extra_info.update(impl=impl, batch=1, length=length, dtype=str(dtype), target=0.7 * length / BD_BLOCK)
    benchmark.pedantic(fn, args=args, rounds=20 if impl in ("ours", "sdpa_step") else 5, iterations=1, warmup_rounds=1)
