"""Speed-up of one dual-cache step (ours) over full recompute (SDPA), against the target
0.7 x (L / block). Medians of many rounds; CPU time of the process as well as wall time, since
wall time on a shared machine is dominated by threads waiting for a core. The three are timed in
interleaved rounds (ours x3, Fast-dLLM's step x3, full recompute x1), so a slow spell of the
machine (other tenants) lands on all of them rather than on one.

    python bench/attention_ratio.py [--threads N] [--rounds R]
"""
import argparse
import functools
import statistics
import time

import torch

import diffusion_kernels as dk
from research_baselines import fast_dllm_dual_cache_attention, full_recompute_attention

HEADS, HEAD_DIM, BLOCK = 32, 128, 32


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"threads={a.threads} rounds={a.rounds} (medians; ms)")
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
