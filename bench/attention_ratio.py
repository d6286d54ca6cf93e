"""Speed-up of one dual-cache step (ours) over full recompute (SDPA), against the target
0.7 x (L / block). Medians of many rounds; CPU time of the process as well as wall time, since
wall time on a shared machine is dominated by threads waiting for a core. The three are timed in
interleaved rounds (ours x3, Fast-dLLM's step x3, full recompute x1), so a slow spell of the
machine (other tenants) lands on all of them rather than on one.

With --block: the block-diffusion decode step instead (LLaDA2-mini's attention, 16 query / 4 KV
heads x 128, block 32: the last block's queries over the exact cache, store_kv=False) against
SDPA's step (the same queries over every key, GQA), SDPA's block-causal recompute with a dense
mask, and our recompute.

    python bench/attention_ratio.py [--threads N] [--rounds R] [--block]
"""
import argparse
import functools
import statistics
import time

import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from research_baselines import fast_dllm_dual_cache_attention, full_recompute_attention

HEADS, HEAD_DIM, BLOCK = 32, 128, 32
BD_HEADS, BD_KV_HEADS = 16, 4


def interleaved_medians(calls, rounds):
    """calls: [(fn, args, repeats per round)]; returns [(median wall, median cpu)] per call."""
    times = [([], []) for _ in calls]
    for fn, args, _ in calls:
        fn(*args)
    for _ in range(rounds):
        for (fn, args, repeats), (wall, cpu) in zip(calls, times):
            for _ in range(repeats):
                w, c = time.perf_counter(), time.process_time()
                fn(*args)
                wall.append(time.perf_counter() - w)
                cpu.append(time.process_time() - c)
    return [(statistics.median(w), statistics.median(c)) for w, c in times]


def sdpa(q, k, v, mask=None):
    return torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True).transpose(1, 2)


def block_decode_rows(rounds):
    print("| dtype | L | ours step wall / cpu | SDPA step wall / cpu | SDPA recompute wall / cpu "
          "| ours recompute wall / cpu | step vs SDPA step (cpu) | speed-up vs SDPA recompute wall / cpu | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        for length in (512, 1024):
            g = torch.Generator().manual_seed(0)
            mk = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
            q = mk(1, length, BD_HEADS, HEAD_DIM)
            k, v = mk(1, length, BD_KV_HEADS, HEAD_DIM), mk(1, length, BD_KV_HEADS, HEAD_DIM)
            s = (length - 1) // BLOCK * BLOCK  # the last block
            qs, kn, vn = (t[:, s:].contiguous() for t in (q, k, v))
            mask = reference.attention_block_mask(torch.zeros(1, dtype=torch.int64), length, length, BLOCK)[:, None]
            step = functools.partial(dk.attention_with_kv_cache, cache_seqlens=s, causal_block_size=BLOCK, store_kv=False)
            recompute = functools.partial(dk.attention_with_kv_cache, causal_block_size=BLOCK)
            ours, sdpa_step, sdpa_full, ours_full = interleaved_medians([
                (step, (qs, k.clone(), v.clone(), kn, vn), 3), (sdpa, (qs, k, v), 3),
                (sdpa, (q, k, v, mask), 1), (recompute, (q, k.clone(), v.clone()), 1)], max(3, rounds // 3))
            ms = lambda t: f"{t[0]*1e3:.1f} / {t[1]*1e3:.1f}"  # noqa: E731
            print(f"| {str(dtype)[6:]} | {length} | {ms(ours)} | {ms(sdpa_step)} | {ms(sdpa_full)} | {ms(ours_full)} "
                  f"| {ours[1]/sdpa_step[1]:.2f} | {sdpa_full[0]/ours[0]:.1f} / {sdpa_full[1]/ours[1]:.1f} "
                  f"| {0.7*length/BLOCK:.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block", action="store_true", help="the block-diffusion decode step")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"threads={a.threads} rounds={a.rounds} (medians; ms)")
    if a.block:
        block_decode_rows(a.rounds)
        return
    print("| dtype | B | L | ours wall / cpu | Fast-dLLM step wall / cpu | full recompute wall / cpu | speed-up wall / cpu | target |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        for batch in (1, 4):
            for length in (512, 1024):
                g = torch.Generator().manual_seed(0)
                mk = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
                q_all, k_all, v_all = (mk(batch, length, HEADS, HEAD_DIM) for _ in range(3))
                s = length // 2
                q, kn, vn = (t[:, s:s + BLOCK].contiguous() for t in (q_all, k_all, v_all))
                kc, vc = k_all.clone(), v_all.clone()
                ours, fdl, full = interleaved_medians([
                    (functools.partial(dk.attention_with_kv_cache, cache_seqlens=s), (q, kc, vc, kn, vn), 3),
                    (fast_dllm_dual_cache_attention, (q, kc, vc, kn, vn, s), 3),
                    (full_recompute_attention, (q_all, k_all, v_all), 1)], max(3, a.rounds // 3))
                print(f"| {str(dtype)[6:]} | {batch} | {length} | {ours[0]*1e3:.1f} / {ours[1]*1e3:.1f} "
                      f"| {fdl[0]*1e3:.1f} / {fdl[1]*1e3:.1f} | {full[0]*1e3:.1f} / {full[1]*1e3:.1f} "
                      f"| {full[0]/ours[0]:.1f} / {full[1]/ours[1]:.1f} | {0.7*length/BLOCK:.1f} |", flush=True)


if __name__ == "__main__":
    main()
