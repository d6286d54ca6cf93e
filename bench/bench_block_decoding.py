"""Block-diffusion decoding with the exact KV cache vs the uncached recompute, on a random
LLaDA2-mini-shaped BlockDiffusionModel scaled to this CPU (MoE feed-forward, GQA 4:1, partial
RoPE, block 32).

    python bench/bench_block_decoding.py                 # the default shape
    python bench/bench_block_decoding.py --prompt 480 --gen 64

Rows: end-to-end decoding (median seconds, tokens/s, NFE, equal tokens) and one decoding step of
the last block: the cached step runs the block's 32 queries over the cache, the uncached one
recomputes all L positions, so its ideal speedup is L / block (issue 17's target: >= 0.7 of it
for the attention step). Timings are medians; on a shared machine compare ratios.
"""
import argparse
import inspect
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from diffusion_kernels import attention_with_kv_cache  # noqa: E402
from diffusion_kernels.decoding import LLaDAPlan, Proposal  # noqa: E402
from diffusion_kernels.decoding.block_diffusion import BlockDiffusionLoop  # noqa: E402
from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel  # noqa: E402


def scaled_llada2_mini(hidden=256, layers=4, vocab=8192, block=32):
    """LLaDA2.0-mini's shape (16 query / 4 KV heads, head_dim 128 of which half rotary, 256 experts
    top-8 plus one shared, first layer dense, grouped routing) scaled down for a CPU."""
    heads = hidden // 64
    cfg = BlockDiffusionConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
                               num_hidden_layers=layers, num_attention_heads=heads,
                               num_key_value_heads=max(1, heads // 4), head_dim=64, partial_rotary_factor=0.5,
                               num_experts=16, num_experts_per_tok=4, moe_intermediate_size=hidden // 2,
                               num_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2,
                               routed_scaling_factor=2.5, block_size=block, mask_token_id=vocab - 1,
                               naming="llada2")
    model = BlockDiffusionModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # every weight drawn here: the MoE router's is allocated, not initialised
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else p.shape[1] ** -0.5))
            else:
                p.fill_(1.0)
    return model


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def decode(model, prompt, gen, steps, cache):
    B, Lp = prompt.shape
    mask = model.config.mask_token_id
    x = torch.full((B, Lp + gen), mask, dtype=torch.long)
    x[:, :Lp] = prompt
    order = torch.full_like(x, -1)
    # a random model may propose [MASK]: suppress it, as a trained one never proposes it
    loop = BlockDiffusionLoop(model, LLaDAPlan(steps), Proposal(suppress_ids=(mask,)), mask_id=mask, prompt_length=Lp,
                              block_size=model.config.block_size, cache=cache)
    nfe = loop.run(x, order)
    return x, nfe


def step_times(model, x, repeats):
    """One decoding step of the last block: cached (block over the cache) and uncached (whole prefix)."""
    b, L = model.config.block_size, x.shape[1]
    bs = (L - 1) // b * b
    kv = model.init_cache(x.shape[0], L)
    model(x[:, :bs], kv_cache=kv, start=0, store_kv=True)
    cached, _ = _median_time(lambda: model(x[:, bs:], kv_cache=kv, start=bs, store_kv=False), repeats)
    full, _ = _median_time(lambda: model(x), repeats)
    return cached, full, L / (L - bs)


def attention_step_times(L, block, repeats, heads=16, kv_heads=4, head_dim=128):
    """The attention of one decoding step of the last block, LLaDA2-mini's heads: the block's
    queries over the cache with store_kv=False, against the uncached recompute (all L queries
    over all L keys), both block-causal. None when the op has no block rule yet."""
    if "causal_block_size" not in inspect.signature(attention_with_kv_cache).parameters:
        return None
    g = torch.Generator().manual_seed(0)
    bs = (L - 1) // block * block
    q = torch.randn(1, L, heads, head_dim, generator=g)
    k = torch.randn(1, L, kv_heads, head_dim, generator=g)
    v = torch.randn(1, L, kv_heads, head_dim, generator=g)
    kc, vc = k.clone(), v.clone()
    step = dict(cache_seqlens=bs, causal_block_size=block, store_kv=False)
    cached, _ = _median_time(lambda: attention_with_kv_cache(q[:, bs:], kc, vc, k[:, bs:], v[:, bs:], **step),
                             repeats)
    full, _ = _median_time(lambda: attention_with_kv_cache(q, k, v, causal_block_size=block), repeats)
    return cached, full, L / (L - bs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=224)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8, help="steps per block")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attn-length", type=int, default=1024, help="sequence length of the attention-only row")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = scaled_llada2_mini(a.hidden, a.layers)
    vocab = model.config.vocab_size
    prompt = torch.randint(0, vocab - 1, (a.batch, a.prompt), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        rows = {}
        for cache in ("exact", None):
            t, (x, nfe) = _median_time(lambda: decode(model, prompt, a.gen, a.steps, cache), a.repeats)
            rows[cache] = (t, x, nfe)
        c_step, u_step, ideal = step_times(model, rows["exact"][1], max(a.repeats, 5))
    same = torch.equal(rows["exact"][1], rows[None][1])
    L = a.prompt + a.gen
    print(f"## block decoding, random LLaDA2-mini-shaped model (hidden {a.hidden}, {a.layers} layers, MoE 16x4+1), "
          f"batch {a.batch}, prompt {a.prompt}, gen {a.gen}, block 32, {a.steps} steps/block, "
          f"{torch.get_num_threads()} threads\n")
    print("| path | seconds | tokens/s | NFE | tokens equal |")
    print("|---|---|---|---|---|")
    for name, cache in (("exact cache", "exact"), ("uncached recompute", None)):
        t, _, nfe = rows[cache]
        print(f"| {name} | {t:.3f} | {a.batch * a.gen / t:.1f} | {nfe} | {same} |")
    print(f"\nend-to-end speedup {rows[None][0] / rows['exact'][0]:.2f}x")
    print(f"one step of the last block (L = {L}): cached {c_step * 1e3:.2f} ms, uncached {u_step * 1e3:.2f} ms, "
          f"speedup {u_step / c_step:.2f}x of the ideal L / block = {ideal:.2f} "
          f"({u_step / c_step / ideal:.2f} of it)")
    with torch.inference_mode():
        att = attention_step_times(a.attn_length, 32, max(a.repeats, 5))
    if att is None:
        print("attention only: the op has no causal_block_size yet (contract B): skipped")
    else:
        c, u, ideal = att
        print(f"attention only, LLaDA2-mini heads (16 q / 4 kv, head_dim 128), L = {a.attn_length}: cached step "
              f"{c * 1e3:.2f} ms, uncached {u * 1e3:.2f} ms, speedup {u / c:.2f}x of the ideal {ideal:.1f} "
              f"({u / c / ideal:.2f} of it; target >= 0.7)")


if __name__ == "__main__":
    main()
