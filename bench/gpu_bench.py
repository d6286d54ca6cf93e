"""GPU timings of every op against the research code's way, for the rare machine with a GPU
(bench/gpu_validate.sh runs it). CPU numbers live in the pytest-benchmark files beside this one.

    python bench/gpu_bench.py --json gpu.json          # on a CUDA machine
    python bench/gpu_bench.py --device cpu --quick     # smoke test of the script itself

Each call reads inputs the previous calls did not touch (a ring of copies larger than the L2), so
a small problem is not timed out of the cache. Time = median wall time of one call followed by a
device synchronisation, launch overhead included (what a sampler loop sees). The copy and read
bandwidths of the same card are measured in the same run, as the ceilings of the streaming ops.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent))

import diffusion_kernels as dk  # noqa: E402
from bench_sampling import CASES as SAMPLING_CASES  # noqa: E402  (the CPU benchmark's cases, on the GPU)
from bench_engines import CASES as ENGINE_CASES, SHAPES as ENGINE_SHAPES, step_inputs as engine_inputs  # noqa: E402
from research_baselines import fast_dllm_dual_cache_attention, full_recompute_attention, llada_topk_transfer  # noqa: E402

MASK_ID = 126336
RING_BYTES = 512 * 2**20  # several times an H100/H200 L2 (50-60 MB)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, ring, device, reps):
    """Median seconds of fn(*ring[i % len(ring)]) over reps calls, after two warm-up calls."""
    for i in range(2):
        fn(*ring[i % len(ring)])
    sync(device)
    times = []
    for i in range(reps):
        args = ring[(i + 2) % len(ring)]
        t0 = time.perf_counter()
        fn(*args)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pipelined_time(fn, ring, device, reps):
    """Seconds per call when reps calls are queued back to back with one synchronisation at the
    end (a sampler loop without host syncs): the larger of the host's and the device's time."""
    fn(*ring[0])
    sync(device)
    t0 = time.perf_counter()
    for i in range(reps):
        fn(*ring[(i + 1) % len(ring)])
    sync(device)
    return (time.perf_counter() - t0) / reps


def kernel_time(fn, ring, device, reps):
    """Seconds of GPU kernel time per call (torch.profiler's device events), or None."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    fn(*ring[0])
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(reps):
            fn(*ring[(i + 1) % len(ring)])
        sync(device)
    total_us = 0.0
    for e in prof.events():
        if str(getattr(e, "device_type", "")).endswith("CUDA"):  # kernels, memcpys and memsets
            total_us += e.time_range.elapsed_us()
    return total_us * 1e-6 / reps if total_us else None


def host_time(fn, ring, device, reps):
    """Seconds of host time per call: reps calls issued back to back, the clock read before the
    final synchronisation (the launch queue holds them all at these counts)."""
    fn(*ring[0])
    sync(device)
    t0 = time.perf_counter()
    for i in range(reps):
        fn(*ring[(i + 1) % len(ring)])
    t1 = time.perf_counter()
    sync(device)
    return (t1 - t0) / reps


def timed_row(fn, ring, device, reps, host=False, **row):
    """A result row: synchronised latency, pipelined time per call and kernel time per call (and
    with host=True the host time per call)."""
    row["seconds"] = median_time(fn, ring, device, reps)
    row["pipelined_seconds"] = pipelined_time(fn, ring, device, reps)
    if host:
        row["host_seconds"] = host_time(fn, ring, device, reps)
    try:
        row["kernel_seconds"] = kernel_time(fn, ring, device, min(reps, 10))
    except Exception as e:  # the profiler's event fields move between torch versions
        row["kernel_seconds"] = None
        row["kernel_error"] = f"{type(e).__name__}: {e}"
    return row


def ring_of(make, nbytes, quick):
    """Copies of one input set so that a pass over the ring leaves no input in the L2."""
    first = make()
    count = 1 if quick else max(2, min(64, RING_BYTES // max(1, nbytes) + 1))
    return [first] + [tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in first) for _ in range(count - 1)]


def bandwidth_rows(device, quick):
    n = (1 << 20) if quick else (1 << 30)  # 4 GiB of float32 on a GPU
    buf = torch.ones(n, device=device)
    t_copy = median_time(lambda b: b.clone(), [(buf,)], device, 5 if quick else 20)
    t_read = median_time(lambda b: b.sum(), [(buf,)], device, 5 if quick else 20)
    return [dict(group="bandwidth", impl="copy", seconds=t_copy, gbps=2 * buf.numel() * 4 / t_copy / 1e9),
            dict(group="bandwidth", impl="read (sum)", seconds=t_read, gbps=buf.numel() * 4 / t_read / 1e9)]


def confidence_rows(device, quick, reps):
    shapes = [(1, 8, 1000), (2, 8, 1003)] if quick else [(1, 32, 126464), (8, 32, 126464), (1, 256, 152064)]
    rows = []
    for shape in shapes:
        nbytes = shape[0] * shape[1] * shape[2] * 2

        def make():
            logits = torch.randn(*shape, device=device).mul_(3).to(torch.bfloat16)
            return logits, torch.full(shape[:2], MASK_ID, device=device)

        ring = ring_of(make, nbytes, quick)
        for case, impls in SAMPLING_CASES.items():
            for impl, fn in impls.items():
                row = timed_row(fn, ring, device, reps if impl == "ours" else max(3, reps // 4),
                                group=f"masked_confidence {case} {list(shape)} bf16", impl=impl)
                rows.append(dict(row, gbps=nbytes / row["seconds"] / 1e9))
        rows += greedy_variant_rows(ring, device, reps, nbytes, f"masked_confidence greedy {list(shape)} bf16")
        rows += sample_variant_rows(ring, device, reps, nbytes, f"masked_confidence T=0.7 {list(shape)} bf16")
        del ring
        ring = ring_of(lambda: (peaked_logits(shape, device), torch.full(shape[:2], MASK_ID, device=device)),
                       nbytes, quick)
        rows += sample_variant_rows(ring, device, reps, nbytes, f"masked_confidence T=0.7 peaked {list(shape)} bf16")
        del ring
    return rows


GREEDY_VARIANTS = ("v1", "v2")  # DK_MC_KERNEL values (csrc/kernels/masked_confidence_launch.cu)
SAMPLE_VARIANTS = ("v1", "v2")  # DK_MC_SAMPLE values: the Gumbel skip against the thread's best / the argmax's score


def greedy_variant_rows(ring, device, reps, nbytes, group):
    """The greedy kernel's variants (DK_MC_KERNEL) timed A/B on the same inputs."""
    fn = lambda l, x: dk.masked_confidence(l, x, MASK_ID)  # noqa: E731
    return variant_rows("DK_MC_KERNEL", GREEDY_VARIANTS, fn, ring, device, reps, nbytes, group)


def sample_variant_rows(ring, device, reps, nbytes, group):
    """The T = 0.7 draw's skip variants (DK_MC_SAMPLE) timed A/B on the same inputs."""
    fn = lambda l, x: dk.masked_confidence(l, x, MASK_ID, temperature=0.7, seed=1234)  # noqa: E731
    return variant_rows("DK_MC_SAMPLE", SAMPLE_VARIANTS, fn, ring, device, reps, nbytes, group)


def variant_rows(env, variants, fn, ring, device, reps, nbytes, group):
    """A kernel's variants, selected by the environment variable `env` (read by the launcher at
    every call), timed one after the other on the same inputs (A/B), each row saying whether its
    tokens equal the first variant's and how far its confidences are from the first's."""
    saved = os.environ.get(env)
    rows, first = [], None
    try:
        for variant in variants:
            os.environ[env] = variant
            x0, conf = fn(*ring[0])[:2]
            first = first or (x0, conf)
            row = timed_row(fn, ring, device, reps, group=group, impl=f"ours {env}={variant}")
            rows.append(dict(row, gbps=nbytes / row["seconds"] / 1e9, tokens_equal_v1=bool(torch.equal(x0, first[0])),
                             max_abs_conf_diff_v1=float((conf - first[1]).abs().nan_to_num(0.0).max())))
    finally:
        if saved is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = saved
    return rows


def peaked_logits(shape, device):
    """N(0, 2.5) plus 50 ids per row 10-25 higher: a trained model's peaked row, where the
    DK_MC_SAMPLE=v2 skip test drops nearly every group (randn * 3 rows are the flat case)."""
    logits = torch.randn(*shape, device=device).mul_(2.5)
    hot = torch.randint(0, shape[-1], (*shape[:-1], 50), device=device)
    logits.scatter_add_(-1, hot, torch.rand(*shape[:-1], 50, device=device).mul_(15).add_(10))
    return logits.to(torch.bfloat16)


def attention_rows(device, quick, reps):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    # (name, batch, heads_q, heads_kv, cache_len): LLaDA-8B 32 heads of 128, Dream-7B GQA 28/4.
    shapes = [("tiny", 1, 4, 2, 96)] if quick else [
        ("LLaDA", 1, 32, 32, 1024), ("LLaDA", 1, 32, 32, 2048), ("LLaDA", 8, 32, 32, 1024), ("Dream", 1, 28, 4, 1024)]
    block, d = (8, 64) if quick else (32, 128)
    rows = []
    for name, b, hq, hkv, length in shapes:
        start = length // 2

        def make():
            k_cache = torch.randn(b, length, hkv, d, device=device, dtype=dtype)
            v_cache = torch.randn_like(k_cache)
            q = torch.randn(b, block, hq, d, device=device, dtype=dtype)
            k_new = torch.randn(b, block, hkv, d, device=device, dtype=dtype)
            return q, k_cache, v_cache, k_new, k_new.clone()

        nbytes = 2 * b * length * hkv * d * 2
        ring = ring_of(make, nbytes, quick)
        rep = hq // hkv

        def fast_dllm(q, kc, vc, kn, vn):
            # Dream's code repeats the kv heads (repeat_kv) before SDPA; LLaDA has none to repeat.
            if rep > 1:
                end = start + kn.shape[1]
                kc[:, start:end], vc[:, start:end] = kn, vn
                kc, vc = kc.repeat_interleave(rep, 2), vc.repeat_interleave(rep, 2)
                return F.scaled_dot_product_attention(q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2))
            return fast_dllm_dual_cache_attention(q, kc, vc, kn, vn, start)

        def full(q, kc, vc, kn, vn):
            # the step without a cache: every position's query (here the cache rows stand in for them)
            ka, va = (kc.repeat_interleave(rep, 2), vc.repeat_interleave(rep, 2)) if rep > 1 else (kc, vc)
            return full_recompute_attention(ka, ka, va)

        ours = lambda q, kc, vc, kn, vn: dk.attention_with_kv_cache(q, kc, vc, kn, vn, cache_seqlens=start)  # noqa: E731
        impls = {"ours": ours, "fast_dllm (SDPA)": fast_dllm, "full recompute (SDPA)": full}
        group = f"attention dual-cache step {name} B={b} L={length} H={hq}/{hkv} D={d} {str(dtype)[6:]}"
        for impl, fn in impls.items():
            row = timed_row(fn, ring, device, reps, host=impl == "ours", group=group, impl=impl)
            rows.append(dict(row, gbps=nbytes / row["seconds"] / 1e9))
        rows += [dict(r, gbps=nbytes / r["seconds"] / 1e9) for r in launch_variant_rows(ours, ring, device, reps, group)]
        del ring
    return rows


ATTENTION_LAUNCHES = ("fused", "separate")  # DK_ATTENTION_LAUNCH values (csrc/kernels/attention_launch.cu)


def launch_variant_rows(fn, ring, device, reps, group):
    """The attention step with the cache write (or store_kv=False's swaps) in the attention launch
    and as launches of their own, timed one after the other on the same inputs (A/B); each row
    says whether its output equals the fused one bitwise."""
    saved = os.environ.get("DK_ATTENTION_LAUNCH")
    rows, first = [], None
    try:
        for variant in ATTENTION_LAUNCHES:
            os.environ["DK_ATTENTION_LAUNCH"] = variant  # read by the launcher at every call
            args = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in ring[0])
            out = fn(*args)
            first = out if first is None else first
            row = timed_row(fn, ring, device, reps, host=True, group=group, impl=f"ours DK_ATTENTION_LAUNCH={variant}")
            rows.append(dict(row, out_equal_fused=bool(torch.equal(out, first))))
    finally:
        if saved is None:
            os.environ.pop("DK_ATTENTION_LAUNCH", None)
        else:
            os.environ["DK_ATTENTION_LAUNCH"] = saved
    return rows


# LLaDA2-mini's attention: 16 query heads, 4 KV heads of 128, block 32 (issue 17).
BLOCK_HEADS = (16, 4, 128, 32)


def sdpa_masked(q, k, v, mask):
    """SDPA over [batch, seq, heads, head_dim] tensors with a boolean mask, the way the SDAR /
    LLaDA2 modeling code runs it: K/V heads repeated to the query heads (transformers' SDPA path
    takes no GQA shortcut when a mask is given), which keeps SDPA on its memory-efficient kernel."""
    rep = q.shape[2] // k.shape[2]
    if rep > 1:
        k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=mask).transpose(1, 2)


def block_attention_rows(device, quick, reps):
    """Block-causal decoding of the last block of a context of L: our step over the exact cache
    (store_kv=False: the block's K/V are not committed yet), SDPA over the cached rows + the
    block's with a dense mask (the SDAR/LLaDA2 modeling code's way), and the uncached recompute of
    all L positions (ours and SDPA with a dense [L, L] mask). The dense masks are built in the
    timed call: they are part of that approach."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hq, hkv, d, block = (4, 2, 64, 8) if quick else BLOCK_HEADS
    shapes = [(1, 64)] if quick else [(b, length) for b in (1, 8) for length in (1024, 2048, 4096)]
    rows = []
    for b, length in shapes:
        start = length - block

        def make():  # every position's q, k, v; the block's k/v also apart (the step's new rows)
            q = torch.randn(b, length, hq, d, device=device, dtype=dtype)
            k, v = (torch.randn(b, length, hkv, d, device=device, dtype=dtype) for _ in range(2))
            return q, k, v, k[:, start:].clone(), v[:, start:].clone()

        nbytes = 2 * b * length * hkv * d * 2
        ring = ring_of(make, nbytes + b * length * hq * d * 2, quick)
        starts = torch.full((b,), start, dtype=torch.int64, device=device)

        def ours_step(q, k, v, kn, vn):
            return dk.attention_with_kv_cache(q[:, start:], k, v, kn, vn, cache_seqlens=start,
                                              causal_block_size=block, store_kv=False)

        def sdpa_step(q, k, v, kn, vn):  # the committed rows and the block's, concatenated
            mask = dk.reference.attention_block_mask(starts, block, length, block)[:, None]
            return sdpa_masked(q[:, start:], torch.cat([k[:, :start], kn], 1), torch.cat([v[:, :start], vn], 1), mask)

        def ours_recompute(q, k, v, kn, vn):
            return dk.attention_with_kv_cache(q, k, v, causal_block_size=block)

        def sdpa_recompute(q, k, v, kn, vn):
            mask = dk.reference.attention_block_mask(torch.zeros_like(starts), length, length, block)[:, None]
            return sdpa_masked(q, k, v, mask)

        group = f"block-causal decode step B={b} L={length} H={hq}/{hkv} D={d} block={block} {str(dtype)[6:]}"
        slow_reps = max(3, reps // 5)
        for impl, fn, n in (("ours", ours_step, reps), ("SDPA cat + dense mask", sdpa_step, reps),
                            ("ours recompute", ours_recompute, slow_reps),
                            ("SDPA recompute dense mask", sdpa_recompute, slow_reps)):
            row = timed_row(fn, ring, device, n, host=impl == "ours", group=group, impl=impl)
            rows.append(dict(row, gbps=nbytes / row["seconds"] / 1e9))
        rows += [dict(r, gbps=nbytes / r["seconds"] / 1e9) for r in launch_variant_rows(ours_step, ring, device, reps, group)]
        del ring
    return rows


def training_memory_rows(device, quick, reps):
    """The BD3-LM/SDAR training attention (x_t (+) x_0, length 2L) forward + backward: peak memory
    above the inputs (torch.cuda.max_memory_allocated) and time of ours (causal_block_size +
    noisy_length: no mask) against SDPA with the dense [2L, 2L] mask built in the step."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hq, hkv, d, block = (4, 2, 64, 8) if quick else BLOCK_HEADS
    rows = []
    for b, noisy in [(1, 32)] if quick else [(1, 1024), (1, 2048), (8, 1024)]:
        n = 2 * noisy
        q = torch.randn(b, n, hq, d, device=device, dtype=dtype).requires_grad_()
        k = torch.randn(b, n, hkv, d, device=device, dtype=dtype).requires_grad_()
        v = torch.randn(b, n, hkv, d, device=device, dtype=dtype).requires_grad_()
        w = torch.randn(b, n, hq, d, device=device, dtype=dtype)

        def ours():
            kc, vc = torch.empty_like(k), torch.empty_like(v)  # the op's buffers count too
            return dk.attention_with_kv_cache(q, kc, vc, k, v, causal_block_size=block, noisy_length=noisy)

        def sdpa():
            zero = torch.zeros(b, dtype=torch.int64, device=device)
            return sdpa_masked(q, k, v, dk.reference.attention_block_mask(zero, n, n, block, noisy)[:, None])

        def step(fn):
            q.grad = k.grad = v.grad = None
            (fn().float() * w).sum().backward()

        group = f"block-diffusion training attention fwd+bwd B={b} 2L={n} H={hq}/{hkv} D={d} block={block} {str(dtype)[6:]}"
        for impl, fn in (("ours", ours), ("SDPA dense mask", sdpa)):
            step(fn)  # warm-up
            sync(device)
            q.grad = k.grad = v.grad = None
            row = dict(group=group, impl=impl)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            row["seconds"] = median_time(lambda: step(fn), [()], device, max(3, reps // 10))
            if device.type == "cuda":
                row["peak_extra_gib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
            rows.append(row)
        q.grad = k.grad = v.grad = None
        del q, k, v, w
    return rows


def transfer_rows(device, quick, reps):
    rows = []
    for b, length in ([(2, 16)] if quick else [(8, 256), (64, 1024)]):
        def make():
            conf = torch.rand(b, length, device=device)
            conf[:, ::3] = float("-inf")
            x0 = torch.randint(0, 1000, (b, length), device=device)
            return conf, torch.full((b, length), MASK_ID, device=device), x0
        ring = ring_of(make, b * length * 20, quick)
        k = torch.full((b,), 4, device=device)
        impls = {
            "ours": lambda c, x, x0: dk.select_transfer(c, k=k, x=x, x0=x0),
            "llada loop": lambda c, x, x0: llada_topk_transfer(c, k, x, x0),
        }
        for impl, fn in impls.items():
            rows.append(timed_row(fn, ring, device, reps, group=f"select_transfer top-k B={b} L={length}", impl=impl))
    return rows


def loss_rows(device, quick, reps):
    n, v = (64, 1003) if quick else (4096, 126464)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def make():
        logits = torch.randn(n, v, device=device).to(dtype).requires_grad_()
        targets = torch.randint(0, v, (n,), device=device)
        return logits, targets, torch.rand(n, device=device) < 0.5

    def ours(logits, targets, masked):
        ce, _ = dk.masked_cross_entropy(logits, targets, masked)
        ce.sum().backward()
        logits.grad = None

    def torch_way(logits, targets, masked):
        # LLaDA's SFT/pre-training loss: cross-entropy of the gathered masked rows, float32 upcast
        F.cross_entropy(logits[masked].float(), targets[masked], reduction="sum").backward()
        logits.grad = None

    ring = ring_of(make, n * v * 2, quick)[:2]  # the backward writes a gradient as large again
    rows = []
    for impl, fn in {"ours": ours, "torch (gather + float32 CE)": torch_way}.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        row = timed_row(fn, ring, device, reps, group=f"masked CE forward+backward N={n} V={v} {str(dtype)[6:]} t=0.5",
                        impl=impl)
        if device.type == "cuda":
            row["peak_extra_gib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
        rows.append(row)
    return rows


def engine_rows(device, quick, reps):
    """bench_engines.py's cases: one engine decoding step, ours vs the engine's stock step."""
    rows = []
    for case, (impls, names) in ENGINE_CASES.items():
        for name in ["quick"] if quick else names:
            batch, block, vocab, mask_id = (2, 8, 1000, 999) if quick else ENGINE_SHAPES[name]
            ring = [engine_inputs(batch, block, vocab, mask_id, device)]  # the logits alone exceed the L2
            for impl, fn in impls.items():
                step = (lambda f: lambda ids, logits: f(ids, logits, batch, block, mask_id))(fn)
                rows.append(timed_row(step, ring, device, reps if impl == "ours" else max(3, reps // 5),
                                      group=f"{case} {name} block={block} V={vocab}", impl=impl))
    return rows


def print_table(rows):
    by_group = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r)
    for group, rs in by_group.items():
        print(f"\n{group}")
        ours = next((r["seconds"] for r in rs if r["impl"] == "ours"), None)
        for r in rs:
            extra = f"  pipelined {r['pipelined_seconds'] * 1e6:9.1f} us" if "pipelined_seconds" in r else ""
            extra += f"  host {r['host_seconds'] * 1e6:7.1f} us" if "host_seconds" in r else ""
            if r.get("kernel_seconds"):
                extra += f"  kernels {r['kernel_seconds'] * 1e6:9.1f} us"
            extra += f"  {r['gbps']:8.1f} GB/s" if "gbps" in r else ""
            extra += f"  peak +{r['peak_extra_gib']:.2f} GiB" if "peak_extra_gib" in r else ""
            ratio = f"  ours is {r['seconds'] / ours:6.1f}x faster" if ours and r["impl"] != "ours" else ""
            print(f"  {r['impl']:28s} {r['seconds'] * 1e6:11.1f} us{extra}{ratio}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--only", default="confidence,bandwidth,attention,transfer,loss,engines",
                   help="sections, comma-separated; also block_attention, training_memory (issue 17)")
    p.add_argument("--json")
    p.add_argument("--append", action="store_true", help="add the rows to those already in --json")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    reps = 3 if a.quick else a.reps
    torch.manual_seed(0)
    sections = {"bandwidth": lambda: bandwidth_rows(device, a.quick), "confidence": lambda: confidence_rows(device, a.quick, reps),
                "attention": lambda: attention_rows(device, a.quick, reps), "transfer": lambda: transfer_rows(device, a.quick, reps),
                "block_attention": lambda: block_attention_rows(device, a.quick, reps),
                "training_memory": lambda: training_memory_rows(device, a.quick, reps),
                "loss": lambda: loss_rows(device, a.quick, max(3, reps // 5)),
                "engines": lambda: engine_rows(device, a.quick, max(3, reps // 5))}
    rows = []
    for name in a.only.split(","):
        t0 = time.perf_counter()
        try:
            rows += sections[name]()
        except Exception as e:  # one failing section must not cost the others' numbers on a leased GPU
            print(f"section {name} failed: {type(e).__name__}: {e}", flush=True)
        print(f"[{name}: {time.perf_counter() - t0:.1f} s]", flush=True)
    print_table(rows)
    info = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                torch=torch.__version__, build=dk.build_info())
    if a.json:
        if a.append and Path(a.json).exists():
            rows = json.loads(Path(a.json).read_text())["rows"] + rows
        Path(a.json).write_text(json.dumps(dict(info=info, rows=rows), indent=1, default=str))


if __name__ == "__main__":
    main()
