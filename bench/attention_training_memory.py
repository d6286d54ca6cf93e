"""Forward + backward memory of the BD3-LM/SDAR training attention (x_t (+) x_0, length 2L):
attention_with_kv_cache(causal_block_size=b, noisy_length=L), which builds no mask, against
PyTorch's SDPA given the dense [2L, 2L] boolean mask (built in the measured step: it is part of
that approach). LLaDA2-mini's heads (16 query / 4 KV, head_dim 128), block 32, scaled to a CPU.

    python bench/attention_training_memory.py --json bench/results/attention_training_memory.json

Each method runs in its own process; peak = rise of the resident set during one step after a
warm-up step (bench_loss.py's measure), grads = the q/k/v gradients every method returns,
tensor_peak_bytes = the most bytes held by the tensors the step's ops allocate (LiveTensorPeak:
deterministic, but blind to scratch inside an op, e.g. the kernels' own buffers). The
"loss" column is the same weighted sum of the outputs for every method (they compute the same
attention).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_loss import peak_rss, reset_peak_rss  # noqa: E402

METHODS = ("sdpa_dense_mask", "ours")


def worker(args):
    import torch

    import diffusion_kernels as dk
    from diffusion_kernels import reference
    from diffusion_kernels.testing.live_memory import LiveTensorPeak

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    b, n, hq, hkv, d, block, L = args.batch, 2 * args.noisy, args.heads, args.kv_heads, args.head_dim, args.block, args.noisy
    q = torch.randn(b, n, hq, d, generator=g).requires_grad_()
    k = torch.randn(b, n, hkv, d, generator=g).requires_grad_()
    v = torch.randn(b, n, hkv, d, generator=g).requires_grad_()
    w = torch.randn(b, n, hq, d, generator=g)

    def sdpa_dense_mask():
        mask = reference.attention_block_mask(torch.zeros(b, dtype=torch.int64), n, n, block, L)[:, None]
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True)
        return out.transpose(1, 2)

    def ours():
        kc, vc = torch.empty(b, n, hkv, d), torch.empty(b, n, hkv, d)  # the op's buffers count too
        return dk.attention_with_kv_cache(q, kc, vc, k, v, causal_block_size=block, noisy_length=L)

    fn = {"sdpa_dense_mask": sdpa_dense_mask, "ours": ours}[args.worker]

    def step():
        q.grad = k.grad = v.grad = None
        loss = (fn() * w).sum()
        loss.backward()
        return loss.item()

    step()  # warm-up: pages in code and thread stacks, the same for every method
    q.grad = k.grad = v.grad = None
    before = reset_peak_rss()
    times = []
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
    peak = peak_rss() - before
    for _ in range(args.repeats - 1):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    grads = sum(t.numel() * t.element_size() for t in (q, k, v))
    q.grad = k.grad = v.grad = None
    with LiveTensorPeak() as live:  # the tensors the step's ops allocate (not the ops' own scratch)
        step()
    print(json.dumps({"method": args.worker, "loss": loss, "peak_bytes": peak, "grad_bytes": grads,
                      "tensor_peak_bytes": live.peak, "times_s": times, "median_s": statistics.median(times)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noisy", type=int, default=1024, help="L: the sequence is 2L long")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    results = []
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--worker", method] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("worker", "methods", "json") and v is not None]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{method} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{method:16s} loss {r['loss']:.4f}  peak {r['peak_bytes'] / 2**20:8.1f} MiB  "
              f"net of grads {(r['peak_bytes'] - r['grad_bytes']) / 2**20:8.1f} MiB  "
              f"tensors {r['tensor_peak_bytes'] / 2**20:8.1f} MiB  median {r['median_s']:.2f} s")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k not in ("worker",)}
        config.update(sequence=2 * args.noisy, layout="x_t (+) x_0, causal_block_size + noisy_length")
        with open(args.json, "w") as f:
            json.dump({"config": config, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
